
/*
 * Unit tests of the resumable JSON scanner (ngx_http_llm_jscan.c): every
 * document is also fed split at every byte, and must give the same result.
 * Built and run by `./build.sh test`; prints "N passed, N failed".
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_llm_jscan.h"


static int  passed, failed;

static void check_skim(const char *doc);


#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (cond) {                                                           \
            passed++;                                                         \
        } else {                                                              \
            failed++;                                                         \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                       \
            printf(__VA_ARGS__);                                              \
            printf("\n");                                                     \
        }                                                                     \
    } while (0)


static int
scan(ngx_http_llm_jscan_t *s, const char *doc, size_t len, size_t step)
{
    int     rc;
    size_t  off, n;

    ngx_http_llm_jscan_init(s);

    rc = NGX_HTTP_LLM_JSCAN_AGAIN;

    for (off = 0; off < len && rc == NGX_HTTP_LLM_JSCAN_AGAIN; off += n) {
        n = (step && len - off > step) ? step : len - off;
        rc = ngx_http_llm_jscan_feed(s, (const unsigned char *) doc + off, n);
    }

    return ngx_http_llm_jscan_finish(s);
}


/* the same result at every split point and with 1-byte pieces */

static void
check_splits(const char *doc, int expect)
{
    int                           rc, rc2;
    size_t                        len, i, step, k;
    ngx_http_llm_jscan_t         *whole, *part;
    ngx_http_llm_jscan_member_t  *a, *b;

    whole = malloc(sizeof(ngx_http_llm_jscan_t));
    part = malloc(sizeof(ngx_http_llm_jscan_t));

    if (whole == NULL || part == NULL) {
        exit(2);
    }

    len = strlen(doc);

    rc = scan(whole, doc, len, 0);
    CHECK(rc == expect, "%s: result %d, expected %d", doc, rc, expect);

    for (step = 1; step <= len; step++) {
        for (i = 0; i < 2; i++) {
            /* i == 0: pieces of "step" bytes; i == 1: one cut at "step" */

            if (i == 0) {
                rc2 = scan(part, doc, len, step);

            } else {
                ngx_http_llm_jscan_init(part);
                rc2 = ngx_http_llm_jscan_feed(part,
                                              (const unsigned char *) doc,
                                              step);
                if (rc2 == NGX_HTTP_LLM_JSCAN_AGAIN) {
                    ngx_http_llm_jscan_feed(part,
                                        (const unsigned char *) doc + step,
                                        len - step);
                }
                rc2 = ngx_http_llm_jscan_finish(part);
            }

            if (rc2 != rc || part->nmembers != whole->nmembers
                || (rc == NGX_HTTP_LLM_JSCAN_INVALID
                    && part->error_offset != whole->error_offset))
            {
                CHECK(0, "%s: split %zu/%zu differs", doc, step, i);
                goto done;
            }

            for (k = 0; k < whole->nmembers; k++) {
                a = &part->members[k];
                b = &whole->members[k];

                if (a->key != b->key || a->key_len != b->key_len
                    || a->value != b->value || a->value_end != b->value_end
                    || a->type != b->type)
                {
                    CHECK(0, "%s: member %zu differs at split %zu", doc, k,
                          step);
                    goto done;
                }
            }

            passed++;
        }
    }

done:

    free(whole);
    free(part);
}


static void
check_member(const char *doc, size_t k, const char *key, const char *value,
    unsigned type)
{
    ngx_http_llm_jscan_t          s;
    ngx_http_llm_jscan_member_t  *m;

    scan(&s, doc, strlen(doc), 0);

    if (k >= s.nmembers) {
        CHECK(0, "%s: no member %zu", doc, k);
        return;
    }

    m = &s.members[k];

    CHECK(m->key_len == strlen(key)
          && memcmp(doc + m->key, key, m->key_len) == 0
          && doc[m->key - 1] == '"',
          "%s: member %zu key", doc, k);

    CHECK((size_t) (m->value_end - m->value) == strlen(value)
          && memcmp(doc + m->value, value, strlen(value)) == 0,
          "%s: member %zu value '%.*s'", doc, k,
          (int) (m->value_end - m->value), doc + m->value);

    CHECK(m->type == type, "%s: member %zu type %u", doc, k, m->type);
}


/*
 * Strings of 0 to 80 bytes holding an escaped quote, an escaped
 * backslash, or neither, at every position: scanned whole and at every
 * split, with the value's offsets, and skimmed whole and cut.
 */

static void
check_long_strings(void)
{
    char    doc[320], value[128], quoted[132];
    size_t  len, pos, kind, vlen;

    for (len = 0; len <= 80; len++) {
        for (pos = 0; pos <= len; pos++) {
            for (kind = 0; kind < 3; kind++) {
                memset(value, 'x', len);
                vlen = len;

                if (kind) {
                    memmove(value + pos + 2, value + pos, len - pos);
                    value[pos] = '\\';
                    value[pos + 1] = (kind == 1) ? '"' : '\\';
                    vlen += 2;
                }

                value[vlen] = '\0';

                snprintf(doc, sizeof(doc), "{\"a\":\"%s\",\"b\":\"%s\"}",
                         value, value);
                check_splits(doc, NGX_HTTP_LLM_JSCAN_OK);
                check_skim(doc);

                snprintf(quoted, sizeof(quoted), "\"%s\"", value);
                check_member(doc, 1, "b", quoted, NGX_HTTP_LLM_JSON_STRING);

                /* the closing quote escaped: the string never ends */

                snprintf(doc, sizeof(doc), "{\"a\":\"%s\\\"}", value);
                check_splits(doc, NGX_HTTP_LLM_JSCAN_INVALID);
            }
        }
    }
}


static const char  *valid[] = {
    "{}",
    " { } ",
    "{\"model\":\"m\"}",
    "{\"messages\":[{\"role\":\"user\",\"content\":\"hi \\\"x\\\" \\\\\"}],"
        "\"model\":\"llama3-8b\",\"stream\":true}",
    "{\"a\":[],\"b\":{},\"c\":[[[]]],\"d\":{\"e\":{\"f\":[1,2,{}]}}}",
    "{\"n\":-0.5e+10,\"m\":0,\"k\":12345678901234567890,\"j\":1E5,"
        "\"i\":-0,\"h\":3.25}",
    "{\"t\":true,\"f\":false,\"z\":null}",
    "{\"s\":\"\\\\\\\\\",\"q\":\"\\\\\\\"\",\"u\":\"\\u00e9\"}",
    "{\"k\\\"ey\":\"v\\\\\"}",
    "\n\t{\r\n \"a\" : 1 ,\n \"b\" :\t\"x\" }\n",
    "{\"x\":\"\xc3\xa9\xe2\x82\xac\",\"y\":\"}]{[,:\"}",
};


static const char  *invalid[] = {
    "",
    "   ",
    "{",
    "{\"a\"",
    "{\"a\":",
    "{\"a\":1",
    "{\"a\":1,}",
    "{,}",
    "{\"a\" 1}",
    "{\"a\":01}",
    "{\"a\":1.}",
    "{\"a\":.5}",
    "{\"a\":1e}",
    "{\"a\":-}",
    "{\"a\":tru}",
    "{\"a\":nul}",
    "{\"a\":[1,]}",
    "{\"a\":[1 2]}",
    "{\"a\":{]}",
    "{\"a\":\"x}",
    "{\"a\":\"x\\\"}",
    "{} {}",
    "{}x",
    "{a:1}",
    "{\"a\":+1}",
};


static const char  *not_object[] = {
    "[]",
    "[{\"model\":\"m\"}]",
    "\"model\"",
    "12",
    "null",
};


/*
 * The skim finds the members the scanner finds in a valid document, then
 * the end; cut anywhere before its last '}', it never says the object
 * ended and never reads past the cut (each cut is its own allocation, for
 * ASan).
 */

static void
check_skim(const char *doc)
{
    int                           rc;
    size_t                        len, cut, i;
    unsigned char                *buf;
    ngx_http_llm_jskim_t          k;
    ngx_http_llm_jscan_t         *s;
    ngx_http_llm_jscan_member_t  *m;

    len = strlen(doc);

    s = malloc(sizeof(ngx_http_llm_jscan_t));
    buf = malloc(len + 1);
    if (s == NULL || buf == NULL) {
        exit(2);
    }

    memcpy(buf, doc, len);
    scan(s, doc, len, 0);

    CHECK(ngx_http_llm_jskim_open(&k, buf, len), "skim opens %s", doc);

    for (i = 0; i < s->nmembers; i++) {
        m = &s->members[i];
        rc = ngx_http_llm_jskim_next(&k);

        CHECK(rc == NGX_HTTP_LLM_JSKIM_MEMBER
              && k.key == buf + m->key && k.key_len == m->key_len
              && k.value == buf + m->value
              && k.value_end == buf + m->value_end,
              "skim member %zu of %s", i, doc);
    }

    CHECK(ngx_http_llm_jskim_next(&k) == NGX_HTTP_LLM_JSKIM_END,
          "skim ends %s", doc);
    free(buf);

    for (cut = 0; cut < (size_t) s->obj_end - 1; cut++) {
        buf = malloc(cut ? cut : 1);
        if (buf == NULL) {
            exit(2);
        }

        memcpy(buf, doc, cut);

        if (ngx_http_llm_jskim_open(&k, buf, cut)) {
            do {
                rc = ngx_http_llm_jskim_next(&k);
            } while (rc == NGX_HTTP_LLM_JSKIM_MEMBER
                     && k.value_end <= buf + cut);

            CHECK(rc == NGX_HTTP_LLM_JSKIM_BROKEN,
                  "skim of %s cut at %zu: %d", doc, cut, rc);
        }

        free(buf);
    }

    free(s);
}


static void
check_skim_cases(void)
{
    unsigned char         *p;
    ngx_http_llm_jskim_t   k;

    p = (unsigned char *) "[1]";
    CHECK(!ngx_http_llm_jskim_open(&k, p, 3), "skim: not an object");

    p = (unsigned char *) "{\"a\" 1}";
    CHECK(ngx_http_llm_jskim_open(&k, p, strlen((char *) p))
          && ngx_http_llm_jskim_next(&k) == NGX_HTTP_LLM_JSKIM_BROKEN,
          "skim: no colon");

    /* not checked: a member is delimited, what follows it is not judged */

    p = (unsigned char *) "{\"a\":tru,\"b\":[{},";
    CHECK(ngx_http_llm_jskim_open(&k, p, strlen((char *) p))
          && ngx_http_llm_jskim_next(&k) == NGX_HTTP_LLM_JSKIM_MEMBER
          && k.value_end - k.value == 3
          && ngx_http_llm_jskim_next(&k) == NGX_HTTP_LLM_JSKIM_BROKEN,
          "skim: a bad literal delimited, an unclosed array broken");

    p = (unsigned char *) "{\"a\":1 x";
    CHECK(ngx_http_llm_jskim_open(&k, p, strlen((char *) p))
          && ngx_http_llm_jskim_next(&k) == NGX_HTTP_LLM_JSKIM_MEMBER
          && ngx_http_llm_jskim_next(&k) == NGX_HTTP_LLM_JSKIM_BROKEN,
          "skim: garbage after a member");
}


int
main(void)
{
    char                  *deep;
    size_t                 i, n;
    ngx_http_llm_jscan_t   s;

    for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        check_splits(valid[i], NGX_HTTP_LLM_JSCAN_OK);
    }

    for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        check_splits(invalid[i], NGX_HTTP_LLM_JSCAN_INVALID);
    }

    for (i = 0; i < sizeof(not_object) / sizeof(not_object[0]); i++) {
        check_splits(not_object[i], NGX_HTTP_LLM_JSCAN_NOT_OBJECT);
    }

    check_member(valid[3], 0, "messages",
                 "[{\"role\":\"user\",\"content\":\"hi \\\"x\\\" \\\\\"}]",
                 NGX_HTTP_LLM_JSON_ARRAY);
    check_member(valid[3], 1, "model", "\"llama3-8b\"",
                 NGX_HTTP_LLM_JSON_STRING);
    check_member(valid[3], 2, "stream", "true", NGX_HTTP_LLM_JSON_TRUE);
    check_member(valid[5], 0, "n", "-0.5e+10", NGX_HTTP_LLM_JSON_NUMBER);
    check_member(valid[5], 5, "h", "3.25", NGX_HTTP_LLM_JSON_NUMBER);
    check_member(valid[6], 2, "z", "null", NGX_HTTP_LLM_JSON_NULL);
    check_member(valid[8], 0, "k\\\"ey", "\"v\\\\\"", NGX_HTTP_LLM_JSON_STRING);
    check_member(valid[9], 1, "b", "\"x\"", NGX_HTTP_LLM_JSON_STRING);
    check_member(valid[4], 3, "d", "{\"e\":{\"f\":[1,2,{}]}}",
                 NGX_HTTP_LLM_JSON_OBJECT);

    check_long_strings();

    for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        check_skim(valid[i]);
    }

    check_skim_cases();

    CHECK(ngx_http_llm_jscan_type('"') == NGX_HTTP_LLM_JSON_STRING
          && ngx_http_llm_jscan_type('{') == NGX_HTTP_LLM_JSON_OBJECT
          && ngx_http_llm_jscan_type('[') == NGX_HTTP_LLM_JSON_ARRAY
          && ngx_http_llm_jscan_type('t') == NGX_HTTP_LLM_JSON_TRUE
          && ngx_http_llm_jscan_type('f') == NGX_HTTP_LLM_JSON_FALSE
          && ngx_http_llm_jscan_type('n') == NGX_HTTP_LLM_JSON_NULL
          && ngx_http_llm_jscan_type('-') == NGX_HTTP_LLM_JSON_NUMBER
          && ngx_http_llm_jscan_type('7') == NGX_HTTP_LLM_JSON_NUMBER,
          "value types by their first byte");

    scan(&s, "{ }", 3, 0);
    CHECK(s.obj_start == 0 && s.obj_end == 3, "object offsets");

    scan(&s, "{\"a\":1e}", 8, 0);
    CHECK(s.error_offset == 7 && strcmp(s.error, "invalid number") == 0,
          "error offset %lld: %s", (long long) s.error_offset, s.error);

    /* depth limit */

    n = NGX_HTTP_LLM_JSCAN_MAX_DEPTH + 10;
    deep = malloc(2 * n + 16);
    if (deep == NULL) {
        return 2;
    }

    strcpy(deep, "{\"a\":");
    memset(deep + 5, '[', n);
    memset(deep + 5 + n, ']', n);
    strcpy(deep + 5 + 2 * n, "}");
    CHECK(scan(&s, deep, strlen(deep), 0) == NGX_HTTP_LLM_JSCAN_INVALID
          && strcmp(s.error, "nesting too deep") == 0, "nesting limit");

    n = NGX_HTTP_LLM_JSCAN_MAX_DEPTH - 1;
    memset(deep + 5, '[', n);
    memset(deep + 5 + n, ']', n);
    strcpy(deep + 5 + 2 * n, "}");
    CHECK(scan(&s, deep, strlen(deep), 0) == NGX_HTTP_LLM_JSCAN_OK,
          "just under the nesting limit");
    free(deep);

    /* member limit */

    deep = malloc(16 * (NGX_HTTP_LLM_JSCAN_MAX_MEMBERS + 2));
    if (deep == NULL) {
        return 2;
    }

    strcpy(deep, "{");
    for (i = 0; i <= NGX_HTTP_LLM_JSCAN_MAX_MEMBERS; i++) {
        sprintf(deep + strlen(deep), "%s\"k%zu\":%zu", i ? "," : "", i, i);
    }
    strcat(deep, "}");
    CHECK(scan(&s, deep, strlen(deep), 0) == NGX_HTTP_LLM_JSCAN_TOO_MANY,
          "member limit");
    free(deep);

    printf("json scanner: %d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
