
/*
 * Unit tests of the body edits (ngx_http_llm_edit.c): an edit overlapping
 * another is refused whatever the order they come in, adjacent ones are
 * kept in order, and the walk writes exactly the size the list counts, the
 * body fed whole or split at every byte.  Built and run by
 * `./build.sh test`; prints "N passed, N failed".
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_llm_edit.h"


static int  passed, failed;


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


#define ADD(l, s, e, text)  add(l, s, e, text)


static int
add(ngx_http_llm_edits_t *l, off_t start, off_t end, const char *text)
{
    return ngx_http_llm_edits_add(l, start, end, (const unsigned char *) text,
                                  text ? strlen(text) : 0);
}


typedef struct {
    char    buf[8192];
    size_t  len;
} out_t;


static int
collect(void *arg, const unsigned char *p, size_t len)
{
    out_t  *o = arg;

    if (len > sizeof(o->buf) - o->len) {
        return -1;
    }

    memcpy(o->buf + o->len, p, len);
    o->len += len;

    return 0;
}


/* the edited body, whole and in pieces of every split: all must agree */

static void
check_result(ngx_http_llm_edits_t *l, const char *body, const char *expect)
{
    char                       dst[8192];
    out_t                      o;
    size_t                     len, cut, step;
    ssize_t                    n;
    ngx_http_llm_edits_walk_t  w;

    len = strlen(body);

    n = ngx_http_llm_edits_apply(l, (const unsigned char *) body, len,
                                 (unsigned char *) dst, sizeof(dst));

    CHECK(n >= 0 && (size_t) n == strlen(expect)
          && memcmp(dst, expect, n) == 0
          && (off_t) len + l->delta == n,
          "\"%s\" gives \"%.*s\", not \"%s\"", body, (int) (n > 0 ? n : 0),
          dst, expect);

    /* a buffer one byte short is never overrun */

    if (n > 0) {
        CHECK(ngx_http_llm_edits_apply(l, (const unsigned char *) body, len,
                                       (unsigned char *) dst, n - 1) == -1,
              "\"%s\": a short buffer is refused", body);
    }

    for (cut = 0; cut <= len; cut++) {
        for (step = 1; step <= 2; step++) {
            size_t  off, piece;

            o.len = 0;
            ngx_http_llm_edits_walk_init(&w, l, collect, &o);

            /* [0, cut) whole, the rest in pieces of step bytes */

            if (ngx_http_llm_edits_walk_feed(&w, (const unsigned char *) body,
                                             cut)
                != 0)
            {
                break;
            }

            for (off = cut; off < len; off += piece) {
                piece = (len - off > step) ? step : len - off;

                if (ngx_http_llm_edits_walk_feed(&w,
                        (const unsigned char *) body + off, piece) != 0)
                {
                    break;
                }
            }

            CHECK(ngx_http_llm_edits_walk_finish(&w) == 0
                  && o.len == strlen(expect)
                  && memcmp(o.buf, expect, o.len) == 0
                  && w.out == (off_t) o.len,
                  "\"%s\" cut at %zu, step %zu: \"%.*s\"", body, cut, step,
                  (int) o.len, o.buf);
        }
    }
}


int
main(void)
{
    char                 *body, *expect, *data;
    size_t                i, k, n;
    ssize_t               got;
    ngx_http_llm_edit_t   elts[16], big[2];
    ngx_http_llm_edits_t  l;

    /* empty list: the body as it is */

    ngx_http_llm_edits_init(&l, elts, 16);
    check_result(&l, "{\"a\":1}", "{\"a\":1}");
    check_result(&l, "", "");

    /* an insertion of nothing is no edit */

    CHECK(ADD(&l, 3, 3, NULL) == NGX_HTTP_LLM_EDIT_OK && l.nelts == 0,
          "empty insertion");

    /* invalid ranges */

    CHECK(ADD(&l, 4, 3, "x") == NGX_HTTP_LLM_EDIT_INVALID, "end < start");
    CHECK(ADD(&l, -1, 3, "x") == NGX_HTTP_LLM_EDIT_INVALID, "start < 0");

    /* replace, delete, insert, in any order of adding */
    /*            0123456789012345678 */
    /* body:      {"a":1,"b":2,"c":3} */

    ngx_http_llm_edits_init(&l, elts, 16);
    CHECK(ADD(&l, 18, 18, ",\"d\":4") == 0, "insert at the end");
    CHECK(ADD(&l, 6, 12, NULL) == 0, "delete ,\"b\":2");
    CHECK(ADD(&l, 5, 6, "10") == 0, "replace 1");
    CHECK(l.nelts == 3 && l.elts[0].start == 5 && l.elts[1].start == 6
          && l.elts[2].start == 18, "ordered");
    check_result(&l, "{\"a\":1,\"b\":2,\"c\":3}", "{\"a\":10,\"c\":3,\"d\":4}");

    /* overlaps are refused, whatever was first */

    CHECK(ADD(&l, 5, 6, "7") == NGX_HTTP_LLM_EDIT_OVERLAP, "same range");
    CHECK(ADD(&l, 4, 7, "7") == NGX_HTTP_LLM_EDIT_OVERLAP, "around one");
    CHECK(ADD(&l, 5, 5, "7") == 0, "insertion before a replacement");
    CHECK(ADD(&l, 5, 5, "8") == NGX_HTTP_LLM_EDIT_OVERLAP,
          "two insertions at a point");
    CHECK(ADD(&l, 8, 8, "x") == NGX_HTTP_LLM_EDIT_OVERLAP,
          "insertion inside a deletion");
    CHECK(ADD(&l, 11, 14, "x") == NGX_HTTP_LLM_EDIT_OVERLAP,
          "straddles a deletion's end");
    CHECK(ADD(&l, 0, 19, NULL) == NGX_HTTP_LLM_EDIT_OVERLAP,
          "covers them all");
    CHECK(ADD(&l, 12, 18, "") == 0, "adjacent on both sides");
    CHECK(ADD(&l, 12, 12, "y") == 0,
          "insertion between two adjacent deletions");
    CHECK(ADD(&l, 12, 12, "z") == NGX_HTTP_LLM_EDIT_OVERLAP,
          "a second insertion there");
    check_result(&l, "{\"a\":1,\"b\":2,\"c\":3}", "{\"a\":710y,\"d\":4}");

    /* the case of issue 15: two edits of one member, the second refused */

    ngx_http_llm_edits_init(&l, elts, 16);
    CHECK(ADD(&l, 5, 9, "{\"include_usage\":true}") == 0, "usage");
    CHECK(ADD(&l, 0, 9, NULL) == NGX_HTTP_LLM_EDIT_OVERLAP, "drop refused");
    CHECK(ADD(&l, 5, 9, "1") == NGX_HTTP_LLM_EDIT_OVERLAP, "set refused");
    check_result(&l, "{\"o\":null}", "{\"o\":{\"include_usage\":true}}");

    /* an adjacent replacement and insertion: the replacement first */

    ngx_http_llm_edits_init(&l, elts, 16);
    CHECK(ADD(&l, 6, 6, ",\"x\":0") == 0, "insert");
    CHECK(ADD(&l, 5, 6, "2") == 0, "replace before it");
    check_result(&l, "{\"a\":1}", "{\"a\":2,\"x\":0}");

    /* a key renamed and its value replaced: two edits of one member */

    ngx_http_llm_edits_init(&l, elts, 16);
    CHECK(ADD(&l, 5, 8, "99") == 0, "value");
    CHECK(ADD(&l, 1, 4, "\"bb\"") == 0, "key");
    check_result(&l, "{\"a\":12345}", "{\"bb\":9945}");

    /* the whole body replaced, and everything deleted */

    ngx_http_llm_edits_init(&l, elts, 16);
    CHECK(ADD(&l, 0, 7, "{}") == 0, "whole");
    check_result(&l, "{\"a\":1}", "{}");

    ngx_http_llm_edits_init(&l, elts, 16);
    CHECK(ADD(&l, 0, 7, NULL) == 0, "all");
    check_result(&l, "{\"a\":1}", "");

    /* an edit past the body's end fails the walk */

    ngx_http_llm_edits_init(&l, elts, 16);
    CHECK(ADD(&l, 9, 9, "x") == 0, "past the end");
    CHECK(ngx_http_llm_edits_apply(&l, (const unsigned char *) "{}", 2,
                                   (unsigned char *) elts, 64) == -1,
          "an edit past the end is refused");

    ngx_http_llm_edits_init(&l, elts, 16);
    CHECK(ADD(&l, 1, 9, NULL) == 0, "deletion past the end");
    CHECK(ngx_http_llm_edits_apply(&l, (const unsigned char *) "{}", 2,
                                   (unsigned char *) elts, 64) == -1,
          "a deletion past the end is refused");

    /* a full list refuses more */

    ngx_http_llm_edits_init(&l, big, 2);
    CHECK(ADD(&l, 1, 1, "a") == 0 && ADD(&l, 2, 2, "b") == 0, "two");
    CHECK(ADD(&l, 3, 3, "c") == NGX_HTTP_LLM_EDIT_FULL && l.nelts == 2,
          "full");

    /* drops: every subset of three members leaves a valid object */

    {
        static const char  *name[] = { "\"a\":1", "\"b\":2", "\"c\":3" };
        unsigned char                 dropped[3];
        size_t                        kept, mask;
        ngx_http_llm_jscan_member_t   m[3];
        char                          want[64];

        for (i = 0; i < 3; i++) {
            m[i].key = 2 + 6 * i;
            m[i].key_len = 1;
            m[i].value = 5 + 6 * i;
            m[i].value_end = 6 + 6 * i;
            m[i].type = 2;
        }

        for (mask = 0; mask < 8; mask++) {
            strcpy(want, "{");

            for (i = 0; i < 3; i++) {
                dropped[i] = (mask >> i) & 1;

                if (!dropped[i]) {
                    if (want[1]) {
                        strcat(want, ",");
                    }

                    strcat(want, name[i]);
                }
            }

            strcat(want, "}");

            ngx_http_llm_edits_init(&l, elts, 16);
            CHECK(ngx_http_llm_edits_drop(&l, m, 3, dropped, &kept) == 0
                  && kept == 3 - (size_t) __builtin_popcount(mask),
                  "drop mask %zu", mask);
            check_result(&l, "{\"a\":1,\"b\":2,\"c\":3}", want);
        }

        /* a drop over an edited value is refused */

        ngx_http_llm_edits_init(&l, elts, 16);
        ADD(&l, 11, 12, "5");
        dropped[0] = 0;
        dropped[1] = 1;
        dropped[2] = 0;
        CHECK(ngx_http_llm_edits_drop(&l, m, 3, dropped, &kept)
              == NGX_HTTP_LLM_EDIT_OVERLAP, "drop over an edit");
    }

    /* covered */

    ngx_http_llm_edits_init(&l, elts, 16);
    ADD(&l, 5, 9, "x");
    ADD(&l, 12, 12, "y");
    CHECK(ngx_http_llm_edits_covered(&l, 0, 6) == 1, "covered: start");
    CHECK(ngx_http_llm_edits_covered(&l, 8, 10) == 1, "covered: end");
    CHECK(ngx_http_llm_edits_covered(&l, 9, 12) == 0, "covered: between");
    CHECK(ngx_http_llm_edits_covered(&l, 0, 5) == 0, "covered: before");

    /* long data and a long body: 3000-byte member replaced, many edits */

    n = 3000;
    body = malloc(n + 32);
    expect = malloc(2 * n + 64);
    data = malloc(n + 1);

    if (body == NULL || expect == NULL || data == NULL) {
        return 2;
    }

    strcpy(body, "{\"o\":{\"x\":\"");
    memset(body + strlen(body), 'A', n);
    strcpy(body + 11 + n, "\"}}");

    memset(data, 'B', n);
    data[n] = '\0';

    ngx_http_llm_edits_init(&l, elts, 16);
    CHECK(ADD(&l, 5, 5 + 7 + n + 1, data) == 0, "long replacement");
    CHECK(ADD(&l, 5, 5 + 7 + n + 1, "{}") == NGX_HTTP_LLM_EDIT_OVERLAP,
          "the long member again");
    CHECK(ADD(&l, 0, (off_t) strlen(body), NULL)
          == NGX_HTTP_LLM_EDIT_OVERLAP, "the body around it");

    sprintf(expect, "{\"o\":%s}", data);
    check_result(&l, body, expect);

    got = ngx_http_llm_edits_apply(&l, (unsigned char *) body, strlen(body),
                                   (unsigned char *) expect, 16);
    CHECK(got == -1, "long data into a short buffer is refused");

    /* every single-byte replacement of every pair of positions */

    strcpy(body, "{\"k\":[1,2]}");
    n = strlen(body);

    for (i = 0; i <= n; i++) {
        for (k = i; k <= n; k++) {
            ngx_http_llm_edits_init(&l, elts, 16);

            if (ADD(&l, i, k, "#") != 0) {
                CHECK(0, "add %zu %zu", i, k);
                continue;
            }

            sprintf(expect, "%.*s#%s", (int) i, body, body + k);
            check_result(&l, body, expect);
        }
    }

    free(body);
    free(expect);
    free(data);

    printf("edits: %d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
