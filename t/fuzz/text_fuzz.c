/* fuzz-sources: ngx_http_llm_text.c ngx_http_llm_jscan.c */

/*
 * libFuzzer target: the text helpers (names, JSON string decoding,
 * quoting, the walk over a prompt's texts).  Checks: counting and writing
 * give the same length; a quoted text is valid UTF-8 without raw control
 * bytes, at most 6 bytes out for a byte in, and decodes back to the input
 * when the input was valid UTF-8; a name said good is short, UTF-8 and
 * free of control bytes; a raw key equals its decoded text; the texts of
 * a prompt lie inside it.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined \
 *       -I ngx_llm_router_module -o build/text_fuzz t/fuzz/text_fuzz.c \
 *       ngx_llm_router_module/ngx_http_llm_text.c
 *   build/text_fuzz -runs=1000000 t/fuzz/corpus/text
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_llm_text.h"


/* a reference UTF-8 check, by code points (RFC 3629) */

static int
utf8_valid(const unsigned char *p, size_t len)
{
    size_t    i, n, k;
    uint32_t  cp, min;

    for (i = 0; i < len; i += n) {
        if (p[i] < 0x80) {
            n = 1;
            continue;
        }

        if ((p[i] & 0xe0) == 0xc0) {
            n = 2; cp = p[i] & 0x1f; min = 0x80;
        } else if ((p[i] & 0xf0) == 0xe0) {
            n = 3; cp = p[i] & 0x0f; min = 0x800;
        } else if ((p[i] & 0xf8) == 0xf0) {
            n = 4; cp = p[i] & 0x07; min = 0x10000;
        } else {
            return 0;
        }

        if (len - i < n) {
            return 0;
        }

        for (k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return 0;
            }

            cp = (cp << 6) | (p[i + k] & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) {
            return 0;
        }
    }

    return 1;
}


static void
check_quote(const unsigned char *data, size_t size, int json)
{
    size_t          n, m, i, d;
    unsigned char  *q, *back;

    n = ngx_http_llm_text_quote(NULL, data, size, json);
    q = malloc(n + 1);
    m = ngx_http_llm_text_quote(q, data, size, json);

    if (n != m || n > 6 * size || !utf8_valid(q, n)) {
        abort();
    }

    for (i = 0; i < n; i++) {
        if (q[i] < 0x20 || q[i] == 0x7f) {
            abort();
        }

        if (q[i] == '"' && (i == 0 || q[i - 1] != '\\')) {
            abort();            /* every quote is escaped */
        }
    }

    back = malloc(n + 1);
    d = ngx_http_llm_text_decode(back, q, n);

    if (d == NGX_HTTP_LLM_TEXT_BAD) {
        abort();                /* the quoted text is a JSON string */
    }

    if (!json && utf8_valid(data, size)
        && (d != size || memcmp(back, data, size) != 0))
    {
        abort();
    }

    free(back);
    free(q);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                    rc;
    size_t                 n, m, i, len;
    unsigned char         *buf;
    const unsigned char   *text;
    ngx_http_llm_texts_t   t;

    /* names */

    rc = ngx_http_llm_text_name(data, size);

    if (rc == NGX_HTTP_LLM_NAME_OK) {
        if (size > NGX_HTTP_LLM_NAME_MAX || !utf8_valid(data, size)) {
            abort();
        }

        for (i = 0; i < size; i++) {
            if (data[i] < 0x20 || data[i] == 0x7f) {
                abort();
            }
        }

    } else if (rc == NGX_HTTP_LLM_NAME_UTF8 && utf8_valid(data, size)) {
        abort();
    }

    /* decoding */

    buf = malloc(size + 1);
    n = ngx_http_llm_text_decode(NULL, data, size);
    m = ngx_http_llm_text_decode(buf, data, size);

    if (n != m || (n != NGX_HTTP_LLM_TEXT_BAD && n > size)) {
        abort();
    }

    /* a raw key equals what it decodes to, and nothing shorter */

    if (n != NGX_HTTP_LLM_TEXT_BAD
        && (!ngx_http_llm_text_key_is(data, size, (char *) buf, n)
            || (n && ngx_http_llm_text_key_is(data, size, (char *) buf,
                                              n - 1))))
    {
        abort();
    }

    free(buf);

    /* quoting */

    check_quote(data, size, 0);
    check_quote(data, size, 1);

    (void) ngx_http_llm_text_token(data, size);
    (void) ngx_http_llm_text_array_len(data, size);

    /* the texts of a prompt */

    ngx_http_llm_texts_init(&t, data, size, size ? data[0] & 1 : 1);

    for (i = 0; i <= size; i++) {
        rc = ngx_http_llm_texts_next(&t, &text, &len);

        if (rc != 1) {
            break;
        }

        if (text < data || text + len > data + size) {
            abort();
        }
    }

    if (i > size) {
        abort();                /* more texts than bytes: a loop */
    }

    return 0;
}
