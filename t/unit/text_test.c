/* unit-sources: ngx_http_llm_jscan.c */

/*
 * Unit tests of ngx_http_llm_text.c: names, JSON string decoding, quoting
 * into valid JSON and UTF-8, and the walk over a prompt's texts.
 * Built and run by `./build.sh test`; prints "N passed, N failed".
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_llm_text.h"


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


#define U(s)  ((const unsigned char *) (s))
#define KEY_IS(raw, name) \
    ngx_http_llm_text_key_is(U(raw), strlen(raw), name, strlen(name))


/* valid UTF-8 (no decoding needed here: well-formedness only) */

static int
utf8_ok(const unsigned char *p, size_t len)
{
    size_t                n;
    const unsigned char  *last;

    last = p + len;

    while (p < last) {
        n = ngx_http_llm_utf8_len(p, last);
        if (n == 0) {
            return 0;
        }

        p += n;
    }

    return 1;
}


static void
check_name(const char *s, size_t len, int expect)
{
    int  rc;

    rc = ngx_http_llm_text_name(U(s), len);
    CHECK(rc == expect, "name \"%.*s\" (%zu bytes): %d, expected %d",
          (int) len, s, len, rc, expect);
}


static void
check_decode(const char *raw, const char *expect, size_t expect_len)
{
    size_t          n, m;
    unsigned char  *buf;

    buf = malloc(strlen(raw) + 1);

    n = ngx_http_llm_text_decode(buf, U(raw), strlen(raw));
    m = ngx_http_llm_text_decode(NULL, U(raw), strlen(raw));

    CHECK(n == m, "decode \"%s\": counted %zu, wrote %zu", raw, m, n);

    if (expect == NULL) {
        CHECK(n == NGX_HTTP_LLM_TEXT_BAD, "decode \"%s\": %zu, expected bad",
              raw, n);

    } else {
        CHECK(n == expect_len && memcmp(buf, expect, n) == 0,
              "decode \"%s\": %zu bytes, expected %zu", raw, n, expect_len);
    }

    free(buf);
}


static void
check_quote(const char *in, size_t len, int json, const char *expect)
{
    size_t          n, m;
    unsigned char  *buf;

    buf = malloc(6 * len + 1);

    n = ngx_http_llm_text_quote(buf, U(in), len, json);
    m = ngx_http_llm_text_quote(NULL, U(in), len, json);

    CHECK(n == m, "quote: counted %zu, wrote %zu", m, n);
    CHECK(n <= 6 * len, "quote: %zu bytes out for %zu in", n, len);
    CHECK(utf8_ok(buf, n), "quote: not UTF-8");

    if (expect) {
        CHECK(n == strlen(expect) && memcmp(buf, expect, n) == 0,
              "quote: \"%.*s\", expected \"%s\"", (int) n, buf, expect);
    }

    free(buf);
}


/* the texts joined by '|', and the messages counted */

static void
check_texts(const char *value, int chat, const char *expect, size_t messages,
    int end)
{
    int                    rc;
    char                   out[1024];
    size_t                 len, n;
    const unsigned char   *text;
    ngx_http_llm_texts_t   t;

    ngx_http_llm_texts_init(&t, U(value), strlen(value), chat);

    n = 0;
    out[0] = '\0';

    while ((rc = ngx_http_llm_texts_next(&t, &text, &len)) == 1) {
        n += snprintf(out + n, sizeof(out) - n, "%s%.*s", n ? "|" : "",
                      (int) len, (const char *) text);
    }

    CHECK(strcmp(out, expect) == 0, "texts of %s: \"%s\", expected \"%s\"",
          value, out, expect);
    CHECK(t.messages == messages, "texts of %s: %zu messages, expected %zu",
          value, t.messages, messages);
    CHECK(rc == end, "texts of %s: ended with %d, expected %d", value, rc,
          end);
}


/* every prefix of a value: the walk stays inside it */

static void
check_texts_cut(const char *value)
{
    size_t                 len, i, n;
    unsigned char         *copy;
    const unsigned char   *text;
    ngx_http_llm_texts_t   t;

    len = strlen(value);

    for (i = 0; i <= len; i++) {
        copy = malloc(i ? i : 1);
        memcpy(copy, value, i);

        ngx_http_llm_texts_init(&t, copy, i, 1);

        while (ngx_http_llm_texts_next(&t, &text, &n) == 1) {
            CHECK(text >= copy && text + n <= copy + i, "text out of range");
        }

        free(copy);
    }
}


static void
check_log(const char *in, size_t len, const char *want)
{
    size_t         n, m;
    unsigned char  *out;

    n = ngx_http_llm_text_log(NULL, U(in), len);
    out = malloc(n + 1);

    if (out == NULL) {
        abort();
    }

    m = ngx_http_llm_text_log(out, U(in), len);

    CHECK(n == m && n == strlen(want) && memcmp(out, want, n) == 0
          && memchr(out, '\n', n) == NULL,
          "log text of \"%s\": %.*s", in, (int) m, out);

    free(out);
}


int
main(void)
{
    char    name[300];
    size_t  i;

    /* names */

    check_name("gpt-4o", 6, NGX_HTTP_LLM_NAME_OK);
    check_name("caf\xc3\xa9", 5, NGX_HTTP_LLM_NAME_OK);
    check_name("\xf0\x9f\x98\x80", 4, NGX_HTTP_LLM_NAME_OK);
    check_name("a\"b\\c", 5, NGX_HTTP_LLM_NAME_OK);
    check_name("", 0, NGX_HTTP_LLM_NAME_OK);
    check_name("a\rb", 3, NGX_HTTP_LLM_NAME_CONTROL);
    check_name("a\nb", 3, NGX_HTTP_LLM_NAME_CONTROL);
    check_name("a\0b", 3, NGX_HTTP_LLM_NAME_CONTROL);
    check_name("a\tb", 3, NGX_HTTP_LLM_NAME_CONTROL);
    check_name("a\x7f", 2, NGX_HTTP_LLM_NAME_CONTROL);
    check_name("\xff\xfe", 2, NGX_HTTP_LLM_NAME_UTF8);
    check_name("\xc3", 1, NGX_HTTP_LLM_NAME_UTF8);
    check_name("\xc0\xaf", 2, NGX_HTTP_LLM_NAME_UTF8);        /* overlong */
    check_name("\xe0\x80\xaf", 3, NGX_HTTP_LLM_NAME_UTF8);    /* overlong */
    check_name("\xed\xa0\x80", 3, NGX_HTTP_LLM_NAME_UTF8);    /* surrogate */
    check_name("\xf4\x90\x80\x80", 4, NGX_HTTP_LLM_NAME_UTF8);
    check_name("\xe2\x82", 2, NGX_HTTP_LLM_NAME_UTF8);        /* cut */
    check_name("\x80", 1, NGX_HTTP_LLM_NAME_UTF8);

    memset(name, 'a', sizeof(name));
    check_name(name, 256, NGX_HTTP_LLM_NAME_OK);
    check_name(name, 257, NGX_HTTP_LLM_NAME_LONG);

    /* decoding */

    check_decode("plain", "plain", 5);
    check_decode("caf\\u00e9", "caf\xc3\xa9", 5);
    check_decode("\\u20ac", "\xe2\x82\xac", 3);
    check_decode("\\ud83d\\ude00", "\xf0\x9f\x98\x80", 4);
    check_decode("\\ud83d", "\xed\xa0\xbd", 3);        /* lone surrogate */
    check_decode("a\\u0000b", "a\0b", 3);
    check_decode("\\r\\n\\t\\b\\f\\/\\\\\\\"", "\r\n\t\b\f/\\\"", 8);
    check_decode("\\x", NULL, 0);
    check_decode("\\u12", NULL, 0);
    check_decode("\\u12g4", NULL, 0);
    check_decode("a\\", NULL, 0);

    CHECK(ngx_http_llm_text_name(U("a\0b"), 3) == NGX_HTTP_LLM_NAME_CONTROL,
          "decoded NUL");

    /* quoting */

    check_quote("plain", 5, 0, "plain");
    check_quote("a\"b\\c", 5, 0, "a\\\"b\\\\c");
    check_quote("\r\n\x01\x7f", 4, 0, "\\u000d\\u000a\\u0001\\u007f");
    check_quote("\xff\xfe", 2, 0, "\xef\xbf\xbd\xef\xbf\xbd");
    check_quote("caf\xc3\xa9", 5, 0, "caf\xc3\xa9");
    check_quote("\xe2\x82", 2, 0, "\xef\xbf\xbd\xef\xbf\xbd");
    check_quote("a\\u00e9\\n\\x", 11, 1, "a\\u00e9\\n\\\\x");
    check_quote("\\", 1, 1, "\\\\");
    check_quote("\\u12", 4, 1, "\\\\u12");
    check_quote("\x01", 1, 1, "\\u0001");

    for (i = 0; i < 256; i++) {
        name[0] = (char) i;
        name[1] = (char) (255 - i);
        check_quote(name, 2, (int) (i & 1), NULL);
    }

    /* tokens */

    CHECK(ngx_http_llm_text_token(U("invalid_request"), 15), "token");
    CHECK(!ngx_http_llm_text_token(U("a b"), 3), "token with a space");
    CHECK(!ngx_http_llm_text_token(U("a\r\nb"), 4), "token with CRLF");
    CHECK(!ngx_http_llm_text_token(U("a\"b"), 3), "token with a quote");
    CHECK(!ngx_http_llm_text_token(U(""), 0), "empty token");
    CHECK(!ngx_http_llm_text_token(U(name), 65), "long token");

    /* log lines: control bytes escaped, the rest kept */

    check_log("plain \"q\" \\ caf\xc3\xa9 \xff", 19,
              "plain \"q\" \\ caf\xc3\xa9 \xff");
    check_log("a\nFORGED [emerg] x", 18, "a\\x0AFORGED [emerg] x");
    check_log("\r\t\x7f\x1f", 4, "\\x0D\\x09\\x7F\\x1F");
    check_log("a\0b", 3, "a\\x00b");
    check_log("", 0, "");

    for (i = 0; i < 256; i++) {
        name[0] = (char) i;
        CHECK(ngx_http_llm_text_log(NULL, U(name), 1)
              == ((i < 0x20 || i == 0x7f) ? 4 : 1), "log byte %zu", i);
    }

    /* a name at the limit, a character across it */

    memset(name, 'a', sizeof(name));
    memcpy(name + 254, "\xc3\xa9", 2);
    check_name(name, 256, NGX_HTTP_LLM_NAME_OK);
    memcpy(name + 255, "\xc3\xa9", 2);
    check_name(name, 257, NGX_HTTP_LLM_NAME_LONG);
    check_name(name, 256, NGX_HTTP_LLM_NAME_UTF8);

    /* texts */

    check_texts("\"hello\"", 1, "hello", 0, 0);
    check_texts("[\"a\",\"b\\\"c\"]", 0, "a|b\\\"c", 0, 0);
    check_texts("[{\"role\":\"user\",\"content\":\"hi\"},"
                "{\"content\":[{\"type\":\"text\",\"text\":\"x\"},"
                "{\"type\":\"image\"},{\"text\":\"y\",\"text\":\"z\"}]},"
                "{\"content\":null},{}]", 1, "hi|x|y", 4, 0);
    check_texts("[{\"content\":\"hi\"}]", 0, "", 0, 0);
    check_texts("[{\"c\\u006fntent\":\"esc\"}]", 1, "esc", 1, 0);
    check_texts("[{\"content\":\"first\",\"content\":\"second\"}]", 1,
                "first", 1, 0);
    check_texts(" [ 0 , 1 , [ \"nested\" ] , { \"content\" : \"s\" } ] ", 1,
                "s", 1, 0);
    check_texts("[0,0,0,0]", 1, "", 0, 0);
    check_texts("12", 1, "", 0, 0);
    check_texts("{\"content\":\"x\"}", 1, "", 0, 0);
    check_texts("[\"a\",", 1, "a", 0, -1);
    check_texts("[}", 1, "", 0, -1);
    check_texts("[{\"content\":[\"str\",{\"text\":\"t\"}]}]", 1, "t", 1, 0);

    check_texts_cut("[{\"role\":\"user\",\"content\":\"h\\\"i\"},"
                    "{\"content\":[{\"type\":\"text\",\"text\":\"x\"}]},"
                    "\"s\",[1,{\"a\":\"]\"}]]");

    /* arrays */

    CHECK(ngx_http_llm_text_array_len(U("[]"), 2) == 0, "[]");
    CHECK(ngx_http_llm_text_array_len(U(" [ ] "), 5) == 0, "[ ]");
    CHECK(ngx_http_llm_text_array_len(U("[1,2,3]"), 7) == 3, "[1,2,3]");
    CHECK(ngx_http_llm_text_array_len(U("[\"a,b\",[1,2],{\"x\":[]}]"), 23)
          == 3, "nested");
    CHECK(ngx_http_llm_text_array_len(U("[1,2"), 4) == -1, "cut");
    CHECK(ngx_http_llm_text_array_len(U("[1,]"), 4) == -1, "trailing comma");
    CHECK(ngx_http_llm_text_array_len(U("{}"), 2) == -1, "not an array");

    /* keys */

    CHECK(KEY_IS("content", "content"), "key");
    CHECK(!KEY_IS("contents", "content"), "key");
    CHECK(KEY_IS("\\u0074ext", "text"), "key");
    CHECK(!KEY_IS("\\u0074ext", "tex"), "escaped key, name shorter");
    CHECK(!KEY_IS("\\u0074ex", "text"), "escaped key, name longer");
    CHECK(!KEY_IS("te\\u0078", "text"), "escaped key, last byte");
    CHECK(KEY_IS("a\\nb", "a\nb"), "escaped newline");
    CHECK(KEY_IS("caf\\u00e9", "caf\xc3\xa9"), "escaped non-ASCII");
    CHECK(KEY_IS("\\ud83d\\ude00", "\xf0\x9f\x98\x80"), "surrogates");
    CHECK(!KEY_IS("a\\x", "ax"), "not JSON's escape");
    CHECK(!KEY_IS("a\\", "a\\"), "a cut escape");
    CHECK(!KEY_IS("\\u00", "u00"), "a cut \\u");
    CHECK(ngx_http_llm_text_key_is(U("\\u0000"), 6, "\0", 1), "NUL");

    /* an escaped key longer than any buffer */

    {
        size_t          i;
        static char     raw[6 * 200 + 1], name[201];

        for (i = 0; i < 200; i++) {
            memcpy(raw + 6 * i, "\\u0061", 6);
            name[i] = 'a';
        }

        CHECK(ngx_http_llm_text_key_is(U(raw), 6 * 200, name, 200),
              "a long escaped key");
        CHECK(!ngx_http_llm_text_key_is(U(raw), 6 * 200, name, 199),
              "a long escaped key, name shorter");
    }

    printf("%d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
