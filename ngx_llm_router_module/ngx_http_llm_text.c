
/*
 * ngx_llm_router: text from clients and engines, checked, decoded, quoted;
 * the texts of a prompt.  Not here: anything of nginx; JSON grammar (jscan).
 */


#include <string.h>

#include "ngx_http_llm_jscan.h"
#include "ngx_http_llm_text.h"


/* ngx_http_llm_texts_t states */
#define TX_TOP     0    /* the value itself: a string or an array */
#define TX_ARRAY   1    /* in its array */
#define TX_PARTS   2    /* in a message's "content" parts */
#define TX_DONE    3


static const unsigned char *ngx_http_llm_text_member(const unsigned char *p,
    const unsigned char *last, const char *name, const unsigned char **value,
    const unsigned char **value_end);
static const unsigned char *ngx_http_llm_text_unescape(
    const unsigned char *p, const unsigned char *last, unsigned char *buf,
    size_t *k);
static int ngx_http_llm_text_hex4(const unsigned char *p,
    const unsigned char *last, unsigned *cp);
static size_t ngx_http_llm_text_escape(const unsigned char *p,
    const unsigned char *last);


/* the length of the valid UTF-8 sequence at p (RFC 3629), 0 if none */

size_t
ngx_http_llm_utf8_len(const unsigned char *p, const unsigned char *last)
{
    size_t         n, i;
    unsigned char  c, lo, hi;

    c = *p;

    if (c < 0x80) {
        return 1;
    }

    if (c < 0xc2) {
        return 0;               /* a continuation byte, or overlong */
    }

    lo = 0x80;
    hi = 0xbf;

    if (c < 0xe0) {
        n = 2;

    } else if (c < 0xf0) {
        n = 3;
        lo = (c == 0xe0) ? 0xa0 : 0x80;     /* overlong */
        hi = (c == 0xed) ? 0x9f : 0xbf;     /* surrogates */

    } else if (c < 0xf5) {
        n = 4;
        lo = (c == 0xf0) ? 0x90 : 0x80;     /* overlong */
        hi = (c == 0xf4) ? 0x8f : 0xbf;     /* above U+10FFFF */

    } else {
        return 0;
    }

    if ((size_t) (last - p) < n || p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }

    return n;
}


/*
 * A name as decoded from the body: at most NGX_HTTP_LLM_NAME_MAX bytes of
 * valid UTF-8 without control characters, so that it can go into a header,
 * a log line or JSON as it is.
 */

int
ngx_http_llm_text_name(const unsigned char *p, size_t len)
{
    size_t                n;
    unsigned char         c;
    const unsigned char  *last;

    if (len > NGX_HTTP_LLM_NAME_MAX) {
        return NGX_HTTP_LLM_NAME_LONG;
    }

    last = p + len;

    while (p < last) {
        c = *p;

        if (c >= 0x20 && c < 0x7f) {
            p++;
            continue;
        }

        if (c < 0x80) {
            return NGX_HTTP_LLM_NAME_CONTROL;
        }

        n = ngx_http_llm_utf8_len(p, last);

        if (n == 0) {
            return NGX_HTTP_LLM_NAME_UTF8;
        }

        p += n;
    }

    return NGX_HTTP_LLM_NAME_OK;
}


/*
 * The contents of a JSON string (between its quotes) decoded into dst,
 * which has room for len bytes (decoding never grows a string); with dst
 * NULL only counted.  Returns the decoded length, or NGX_HTTP_LLM_TEXT_BAD
 * for an escape that is not JSON's.  An escaped NUL or control character
 * is decoded as that byte and a lone surrogate as its three bytes: the
 * name check refuses both.
 */

size_t
ngx_http_llm_text_decode(unsigned char *dst, const unsigned char *src,
    size_t len)
{
    size_t                n, k;
    unsigned char         buf[4];
    const unsigned char  *p, *q, *last;

    p = src;
    last = src + len;
    n = 0;

    while (p < last) {

        if (*p != '\\') {
            q = memchr(p, '\\', last - p);
            k = (q ? q : last) - p;

            if (dst) {
                memcpy(dst + n, p, k);
            }

            n += k;
            p += k;
            continue;
        }

        p = ngx_http_llm_text_unescape(p, last, buf, &k);

        if (p == NULL) {
            return NGX_HTTP_LLM_TEXT_BAD;
        }

        if (dst) {
            memcpy(dst + n, buf, k);
        }

        n += k;
    }

    return n;
}


/*
 * The escape at p ('\\') decoded into buf (its *k bytes, 1 to 4; a pair
 * of surrogates is one code point); returns one past it, NULL if it is
 * not JSON's.
 */

static const unsigned char *
ngx_http_llm_text_unescape(const unsigned char *p, const unsigned char *last,
    unsigned char *buf, size_t *k)
{
    unsigned              cp, lo;
    unsigned char         c;
    const unsigned char  *q;

    /* the one-letter escapes and what they stand for */
    static const unsigned char  from[] = "\"\\/bfnrt";
    static const unsigned char  to[] = "\"\\/\b\f\n\r\t";

    if (last - p < 2) {
        return NULL;
    }

    c = p[1];
    p += 2;
    *k = 1;

    if (c != 'u') {
        q = memchr(from, c, sizeof(from) - 1);

        if (q == NULL) {
            return NULL;
        }

        buf[0] = to[q - from];
        return p;
    }

    if (ngx_http_llm_text_hex4(p, last, &cp) != 0) {
        return NULL;
    }

    p += 4;

    if (cp >= 0xd800 && cp < 0xdc00 && last - p >= 6
        && p[0] == '\\' && p[1] == 'u'
        && ngx_http_llm_text_hex4(p + 2, last, &lo) == 0
        && lo >= 0xdc00 && lo < 0xe000)
    {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        p += 6;
    }

    if (cp < 0x80) {
        buf[0] = (unsigned char) cp;

    } else if (cp < 0x800) {
        buf[0] = (unsigned char) (0xc0 | (cp >> 6));
        buf[1] = (unsigned char) (0x80 | (cp & 0x3f));
        *k = 2;

    } else if (cp < 0x10000) {
        buf[0] = (unsigned char) (0xe0 | (cp >> 12));
        buf[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        buf[2] = (unsigned char) (0x80 | (cp & 0x3f));
        *k = 3;

    } else {
        buf[0] = (unsigned char) (0xf0 | (cp >> 18));
        buf[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
        buf[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        buf[3] = (unsigned char) (0x80 | (cp & 0x3f));
        *k = 4;
    }

    return p;
}


static int
ngx_http_llm_text_hex4(const unsigned char *p, const unsigned char *last,
    unsigned *cp)
{
    unsigned       n, i;
    unsigned char  c;

    if (last - p < 4) {
        return -1;
    }

    n = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];
        n <<= 4;

        if (c >= '0' && c <= '9') {
            n |= c - '0';

        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            n |= (c | 0x20) - 'a' + 10;

        } else {
            return -1;
        }
    }

    *cp = n;

    return 0;
}


/*
 * The length of the valid JSON escape at p ('\\'), a pair of surrogates
 * as one, 0 if it is not one.
 */

static size_t
ngx_http_llm_text_escape(const unsigned char *p, const unsigned char *last)
{
    size_t                k;
    unsigned char         buf[4];
    const unsigned char  *q;

    q = ngx_http_llm_text_unescape(p, last, buf, &k);

    return q ? (size_t) (q - p) : 0;
}


/*
 * src quoted as the contents of a JSON string (without the quotes) into
 * dst, or only counted with dst NULL; returns the length.  The result is
 * always valid JSON and valid UTF-8: '"' and '\\' are escaped, control
 * characters and 0x7f become \u00XX, a byte that is not part of valid
 * UTF-8 becomes U+FFFD.  With json set, src is itself the contents of a
 * JSON string: its valid escapes are kept as they are.  At most 6 bytes
 * out for a byte in.
 */

size_t
ngx_http_llm_text_quote(unsigned char *dst, const unsigned char *src,
    size_t len, int json)
{
    size_t                n, k, skip;
    unsigned char         c, esc[6];
    const unsigned char  *p, *q, *last, *from;

    static const unsigned char  hex[] = "0123456789abcdef";
    static const unsigned char  fffd[] = { 0xef, 0xbf, 0xbd };

    p = src;
    last = src + len;
    n = 0;

    while (p < last) {

        for (q = p; q < last; q++) {
            c = *q;

            if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
                break;
            }
        }

        if (q > p) {
            if (dst) {
                memcpy(dst + n, p, q - p);
            }

            n += q - p;
            p = q;
            continue;
        }

        c = *p;
        from = esc;
        skip = 1;

        if (c == '\\' && json && (k = ngx_http_llm_text_escape(p, last))) {
            from = p;
            skip = k;

        } else if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = c;
            k = 2;

        } else if (c < 0x80) {
            esc[0] = '\\';
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            k = 6;

        } else {
            k = ngx_http_llm_utf8_len(p, last);

            if (k) {
                from = p;
                skip = k;

            } else {
                from = fffd;
                k = sizeof(fffd);
            }
        }

        if (dst) {
            memcpy(dst + n, from, k);
        }

        n += k;
        p += skip;
    }

    return n;
}


/* an error code or type: 1 to 64 printable ASCII bytes, no quote, no space */

int
ngx_http_llm_text_token(const unsigned char *p, size_t len)
{
    size_t  i;

    if (len == 0 || len > 64) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (p[i] <= 0x20 || p[i] >= 0x7f || p[i] == '"' || p[i] == '\\') {
            return 0;
        }
    }

    return 1;
}


/*
 * Text from a client, a hook or an engine for a log line, into dst, or
 * only counted with dst NULL; returns the length.  A control byte (below
 * 0x20, or 0x7f) becomes \xXX, so that a newline cannot start a forged
 * line; the rest is kept.  At most 4 bytes out for a byte in.
 */

size_t
ngx_http_llm_text_log(unsigned char *dst, const unsigned char *src,
    size_t len)
{
    size_t         i, n;
    unsigned char  c;

    static const unsigned char  hex[] = "0123456789ABCDEF";

    n = 0;

    for (i = 0; i < len; i++) {
        c = src[i];

        if (c >= 0x20 && c != 0x7f) {
            if (dst) {
                dst[n] = c;
            }

            n++;
            continue;
        }

        if (dst) {
            dst[n] = '\\';
            dst[n + 1] = 'x';
            dst[n + 2] = hex[c >> 4];
            dst[n + 3] = hex[c & 0xf];
        }

        n += 4;
    }

    return n;
}


/*
 * The texts of a prompt, one after another: the value itself if it is a
 * string; the strings of an array; with chat set, the "content" of each
 * message (an object) when it is a string, or the "text" of its parts.
 * The value was checked by the scanner; whatever it holds, nothing is read
 * past its end and nothing is allocated.
 */

void
ngx_http_llm_texts_init(ngx_http_llm_texts_t *t, const unsigned char *p,
    size_t len, int chat)
{
    t->pos = p;
    t->last = p + len;
    t->parts = NULL;
    t->parts_last = NULL;
    t->messages = 0;
    t->state = TX_TOP;
    t->chat = chat ? 1 : 0;
}


/* 1: *text (raw, between its quotes) and *len; 0: no more; -1: broken */

int
ngx_http_llm_texts_next(ngx_http_llm_texts_t *t, const unsigned char **text,
    size_t *len)
{
    const unsigned char  *p, *q, *last, *v, *ve;

    last = t->last;

    for ( ;; ) {

        switch (t->state) {

        case TX_TOP:
            p = ngx_http_llm_jskim_space(t->pos, last);
            t->state = TX_DONE;

            if (p < last && *p == '"') {
                q = ngx_http_llm_jskim_value(p, last);
                if (q == NULL) {
                    return -1;
                }

                *text = p + 1;
                *len = q - 1 - (p + 1);
                return 1;
            }

            if (p < last && *p == '[') {
                t->pos = p + 1;
                t->state = TX_ARRAY;
                continue;
            }

            return 0;

        case TX_ARRAY:
            p = ngx_http_llm_jskim_space(t->pos, last);

            if (p < last && *p == ',') {
                p = ngx_http_llm_jskim_space(p + 1, last);
            }

            if (p < last && *p == ']') {
                t->state = TX_DONE;
                return 0;
            }

            q = ngx_http_llm_jskim_value(p, last);

            if (q == NULL || q == p) {
                t->state = TX_DONE;
                return -1;
            }

            t->pos = q;

            if (*p == '"') {
                *text = p + 1;
                *len = q - 1 - (p + 1);
                return 1;
            }

            if (*p != '{' || !t->chat) {
                continue;
            }

            t->messages++;

            if (ngx_http_llm_text_member(p, q, "content", &v, &ve) == NULL
                || v == NULL)
            {
                continue;
            }

            if (*v == '"') {
                *text = v + 1;
                *len = ve - 1 - (v + 1);
                return 1;
            }

            if (*v == '[') {
                t->parts = v + 1;
                t->parts_last = ve - 1;     /* its ']' */
                t->state = TX_PARTS;
            }

            continue;

        case TX_PARTS:
            p = ngx_http_llm_jskim_space(t->parts, t->parts_last);

            if (p < t->parts_last && *p == ',') {
                p = ngx_http_llm_jskim_space(p + 1, t->parts_last);
            }

            q = ngx_http_llm_jskim_value(p, t->parts_last);

            if (q == NULL || q == p) {
                t->state = TX_ARRAY;
                continue;
            }

            t->parts = q;

            if (*p == '{'
                && ngx_http_llm_text_member(p, q, "text", &v, &ve) != NULL
                && v != NULL && *v == '"')
            {
                *text = v + 1;
                *len = ve - 1 - (v + 1);
                return 1;
            }

            continue;

        default:
            return 0;
        }
    }
}


/*
 * The value of the first member "name" of the object at p ('{') in
 * *value, *value_end (NULL if there is none); returns one past the object,
 * or NULL when it is broken.
 */

static const unsigned char *
ngx_http_llm_text_member(const unsigned char *p, const unsigned char *last,
    const char *name, const unsigned char **value,
    const unsigned char **value_end)
{
    size_t                key_len;
    const unsigned char  *key, *q;

    *value = NULL;
    *value_end = NULL;

    p = ngx_http_llm_jskim_space(p + 1, last);

    if (p < last && *p == '}') {
        return p + 1;
    }

    for ( ;; ) {
        if (p == last || *p != '"') {
            return NULL;
        }

        key = p + 1;

        q = ngx_http_llm_jskim_string(key, last);
        if (q == NULL) {
            return NULL;
        }

        key_len = q - 1 - key;
        p = ngx_http_llm_jskim_space(q, last);

        if (p == last || *p != ':') {
            return NULL;
        }

        p = ngx_http_llm_jskim_space(p + 1, last);

        q = ngx_http_llm_jskim_value(p, last);
        if (q == NULL || q == p) {
            return NULL;
        }

        if (*value == NULL
            && ngx_http_llm_text_key_is(key, key_len, name, strlen(name)))
        {
            *value = p;
            *value_end = q;
        }

        p = ngx_http_llm_jskim_space(q, last);

        if (p < last && *p == '}') {
            return p + 1;
        }

        if (p == last || *p != ',') {
            return NULL;
        }

        p = ngx_http_llm_jskim_space(p + 1, last);
    }
}


/*
 * A raw key, as it stands between its quotes, equals the plain name of n
 * bytes; an escaped key is decoded as it is compared.
 */

int
ngx_http_llm_text_key_is(const unsigned char *p, size_t len,
    const char *name, size_t n)
{
    size_t                k;
    unsigned char         buf[4];
    const unsigned char  *last, *s;

    if (memchr(p, '\\', len) == NULL) {
        return len == n && memcmp(p, name, n) == 0;
    }

    /* rare: an escaped key */

    s = (const unsigned char *) name;
    last = p + len;

    while (p < last) {

        if (*p != '\\') {
            if (n == 0 || *p++ != *s++) {
                return 0;
            }

            n--;
            continue;
        }

        p = ngx_http_llm_text_unescape(p, last, buf, &k);

        if (p == NULL || k > n || memcmp(buf, s, k) != 0) {
            return 0;
        }

        s += k;
        n -= k;
    }

    return n == 0;
}


/* the number of values in the array at p ('['), -1 if it is broken */

long
ngx_http_llm_text_array_len(const unsigned char *p, size_t len)
{
    long                  n;
    const unsigned char  *q, *last;

    last = p + len;
    p = ngx_http_llm_jskim_space(p, last);

    if (p == last || *p != '[') {
        return -1;
    }

    p = ngx_http_llm_jskim_space(p + 1, last);

    if (p < last && *p == ']') {
        return 0;
    }

    for (n = 1; /* void */ ; n++) {
        q = ngx_http_llm_jskim_value(p, last);

        if (q == NULL || q == p) {
            return -1;
        }

        p = ngx_http_llm_jskim_space(q, last);

        if (p < last && *p == ']') {
            return n;
        }

        if (p == last || *p != ',') {
            return -1;
        }

        p = ngx_http_llm_jskim_space(p + 1, last);
    }
}
