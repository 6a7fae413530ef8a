
/*
 * ngx_llm_router: a zero-copy scanner for the top level of a JSON object.
 *
 * The router needs a few top-level fields ("model", "stream", ...) and
 * byte offsets to edit others.  Parsing the whole document into a tree and
 * printing it again would cost far more than proxying it, so the scanner
 * walks the body once, records each top-level member's key and value span
 * and checks the grammar on the way.  Strings are skipped with memchr();
 * their contents (escapes, control characters) are left to the engine.
 * Nesting is tracked with a bit stack, so deep documents cannot overflow
 * the C stack.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <cjson/cJSON.h>

#include "ngx_http_llm_router.h"


#define NGX_HTTP_LLM_JSON_MAX_DEPTH  1024


typedef struct {
    u_char      bits[NGX_HTTP_LLM_JSON_MAX_DEPTH / 8];
    ngx_uint_t  depth;
} ngx_http_llm_json_stack_t;


static u_char *ngx_http_llm_json_skip_ws(u_char *p, u_char *end);
static u_char *ngx_http_llm_json_skip_string(u_char *p, u_char *end);
static u_char *ngx_http_llm_json_skip_number(u_char *p, u_char *end);
static u_char *ngx_http_llm_json_skip_literal(u_char *p, u_char *end);
static u_char *ngx_http_llm_json_skip_key(u_char *p, u_char *end,
    const char **err);
static u_char *ngx_http_llm_json_skip_value(u_char *p, u_char *end,
    const char **err, u_char **errpos);
static ngx_uint_t ngx_http_llm_json_type(u_char c);
static ngx_uint_t ngx_http_llm_json_key_equals(ngx_http_llm_json_member_t *m,
    ngx_str_t *key);


static u_char *
ngx_http_llm_json_skip_ws(u_char *p, u_char *end)
{
    while (p < end
           && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    {
        p++;
    }

    return p;
}


/* p is at the opening quote; returns one past the closing quote */

static u_char *
ngx_http_llm_json_skip_string(u_char *p, u_char *end)
{
    u_char  *start, *q, *s;

    start = ++p;

    for ( ;; ) {
        q = memchr(p, '"', end - p);
        if (q == NULL) {
            return NULL;
        }

        /* the quote is escaped if an odd number of backslashes precede it */

        for (s = q; s > start && s[-1] == '\\'; s--) { /* void */ }

        if (((q - s) & 1) == 0) {
            return q + 1;
        }

        p = q + 1;
    }
}


static u_char *
ngx_http_llm_json_skip_number(u_char *p, u_char *end)
{
    u_char  *digits;

    if (p < end && *p == '-') {
        p++;
    }

    if (p == end) {
        return NULL;
    }

    if (*p == '0') {
        p++;

    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

    } else {
        return NULL;
    }

    if (p < end && *p == '.') {
        digits = ++p;

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

        if (p == digits) {
            return NULL;
        }
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;

        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }

        digits = p;

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

        if (p == digits) {
            return NULL;
        }
    }

    return p;
}


static u_char *
ngx_http_llm_json_skip_literal(u_char *p, u_char *end)
{
    size_t       len;
    const char  *word;

    switch (*p) {
    case 't':
        word = "true";
        break;
    case 'f':
        word = "false";
        break;
    default:
        word = "null";
        break;
    }

    len = ngx_strlen(word);

    if ((size_t) (end - p) < len || ngx_strncmp(p, word, len) != 0) {
        return NULL;
    }

    return p + len;
}


/* a member key and its colon; returns the start of the value */

static u_char *
ngx_http_llm_json_skip_key(u_char *p, u_char *end, const char **err)
{
    p = ngx_http_llm_json_skip_ws(p, end);

    if (p == end || *p != '"') {
        *err = "expected a string key";
        return NULL;
    }

    p = ngx_http_llm_json_skip_string(p, end);
    if (p == NULL) {
        *err = "unterminated string";
        return NULL;
    }

    p = ngx_http_llm_json_skip_ws(p, end);

    if (p == end || *p != ':') {
        *err = "expected ':' after a key";
        return NULL;
    }

    return p + 1;
}


#define ngx_http_llm_stack_push(st, obj)                                      \
    if ((obj)) {                                                              \
        (st)->bits[(st)->depth >> 3] |= (u_char) (1 << ((st)->depth & 7));    \
    } else {                                                                  \
        (st)->bits[(st)->depth >> 3] &= (u_char) ~(1 << ((st)->depth & 7));   \
    }                                                                         \
    (st)->depth++

#define ngx_http_llm_stack_top_is_object(st)                                  \
    ((st)->bits[((st)->depth - 1) >> 3] & (1 << (((st)->depth - 1) & 7)))


/*
 * p is at the first byte of a value; returns one past its end, or NULL
 * with the reason in *err and its place in *errpos
 */

static u_char *
ngx_http_llm_json_skip_value(u_char *p, u_char *end, const char **err,
    u_char **errpos)
{
    u_char                     *q;
    ngx_http_llm_json_stack_t   st;

    st.depth = 0;

    for ( ;; ) {

        /* a value is expected at p */

        p = ngx_http_llm_json_skip_ws(p, end);

        if (p == end) {
            *err = "unexpected end of data";
            goto failed;
        }

        switch (*p) {

        case '{':
        case '[':
            if (st.depth == NGX_HTTP_LLM_JSON_MAX_DEPTH) {
                *err = "nesting too deep";
                goto failed;
            }

            ngx_http_llm_stack_push(&st, *p == '{');

            p = ngx_http_llm_json_skip_ws(p + 1, end);

            if (p < end && (*p == '}' || *p == ']')) {
                /* empty: the loop below checks the bracket matches */
                break;
            }

            if (ngx_http_llm_stack_top_is_object(&st)) {
                q = ngx_http_llm_json_skip_key(p, end, err);
                if (q == NULL) {
                    goto failed;
                }

                p = q;
            }

            continue;

        case '"':
            q = ngx_http_llm_json_skip_string(p, end);
            if (q == NULL) {
                *err = "unterminated string";
                goto failed;
            }

            p = q;
            break;

        case 't':
        case 'f':
        case 'n':
            q = ngx_http_llm_json_skip_literal(p, end);
            if (q == NULL) {
                *err = "invalid literal";
                goto failed;
            }

            p = q;
            break;

        default:
            q = ngx_http_llm_json_skip_number(p, end);
            if (q == NULL) {
                *err = "unexpected character";
                goto failed;
            }

            p = q;
            break;
        }

        /* after a value: close containers or go on to the next element */

        for ( ;; ) {
            if (st.depth == 0) {
                return p;
            }

            p = ngx_http_llm_json_skip_ws(p, end);

            if (p == end) {
                *err = "unexpected end of data";
                goto failed;
            }

            if (*p == ',') {
                p++;

                if (ngx_http_llm_stack_top_is_object(&st)) {
                    q = ngx_http_llm_json_skip_key(p, end, err);
                    if (q == NULL) {
                        goto failed;
                    }

                    p = q;
                }

                break;
            }

            if (*p == (ngx_http_llm_stack_top_is_object(&st) ? '}' : ']')) {
                st.depth--;
                p++;
                continue;
            }

            *err = "expected ',' or a closing bracket";
            goto failed;
        }
    }

failed:

    *errpos = p;

    return NULL;
}


static ngx_uint_t
ngx_http_llm_json_type(u_char c)
{
    switch (c) {
    case '"':
        return NGX_HTTP_LLM_JSON_STRING;
    case '{':
        return NGX_HTTP_LLM_JSON_OBJECT;
    case '[':
        return NGX_HTTP_LLM_JSON_ARRAY;
    case 't':
        return NGX_HTTP_LLM_JSON_TRUE;
    case 'f':
        return NGX_HTTP_LLM_JSON_FALSE;
    case 'n':
        return NGX_HTTP_LLM_JSON_NULL;
    default:
        return NGX_HTTP_LLM_JSON_NUMBER;
    }
}


/*
 * Scans a whole document that must be one JSON object and records its
 * top-level members in doc->members (an initialized array).
 */

ngx_uint_t
ngx_http_llm_json_scan(ngx_http_llm_json_doc_t *doc, u_char *p, u_char *end)
{
    u_char                      *begin, *q;
    const char                  *err;
    ngx_http_llm_json_member_t  *m;

    begin = p;
    err = NULL;

    p = ngx_http_llm_json_skip_ws(p, end);

    if (p == end) {
        doc->error = "the body is empty";
        doc->error_offset = 0;
        return NGX_HTTP_LLM_JSON_INVALID;
    }

    if (*p != '{') {
        q = ngx_http_llm_json_skip_value(p, end, &err, &p);

        if (q == NULL) {
            goto invalid;
        }

        if (ngx_http_llm_json_skip_ws(q, end) == end) {
            return NGX_HTTP_LLM_JSON_NOT_OBJECT;
        }

        p = q;
        err = "trailing data after the value";
        goto invalid;
    }

    doc->start = p++;

    p = ngx_http_llm_json_skip_ws(p, end);

    if (p < end && *p == '}') {
        p++;
        goto done;
    }

    for ( ;; ) {
        p = ngx_http_llm_json_skip_ws(p, end);

        if (p == end || *p != '"') {
            err = "expected a string key";
            goto invalid;
        }

        m = ngx_array_push(&doc->members);
        if (m == NULL) {
            return NGX_HTTP_LLM_JSON_NOMEM;
        }

        m->start = p;

        q = ngx_http_llm_json_skip_string(p, end);
        if (q == NULL) {
            err = "unterminated string";
            goto invalid;
        }

        m->key.data = p + 1;
        m->key.len = q - p - 2;
        m->escaped = memchr(m->key.data, '\\', m->key.len) != NULL;

        p = ngx_http_llm_json_skip_ws(q, end);

        if (p == end || *p != ':') {
            err = "expected ':' after a key";
            goto invalid;
        }

        p = ngx_http_llm_json_skip_ws(p + 1, end);

        if (p == end) {
            err = "unexpected end of data";
            goto invalid;
        }

        m->value = p;
        m->type = ngx_http_llm_json_type(*p);

        q = ngx_http_llm_json_skip_value(p, end, &err, &p);
        if (q == NULL) {
            goto invalid;
        }

        m->value_end = q;
        p = q;

        p = ngx_http_llm_json_skip_ws(p, end);

        if (p < end && *p == ',') {
            p++;
            continue;
        }

        if (p < end && *p == '}') {
            p++;
            break;
        }

        err = "expected ',' or '}' after a member";
        goto invalid;
    }

done:

    doc->end = p;

    if (ngx_http_llm_json_skip_ws(p, end) != end) {
        err = "trailing data after the object";
        goto invalid;
    }

    return NGX_HTTP_LLM_JSON_OK;

invalid:

    doc->error = err;
    doc->error_offset = p - begin;

    return NGX_HTTP_LLM_JSON_INVALID;
}


static ngx_uint_t
ngx_http_llm_json_key_equals(ngx_http_llm_json_member_t *m, ngx_str_t *key)
{
    u_char      *p, *end, c;
    ngx_uint_t   i, n, k;

    if (!m->escaped) {
        return m->key.len == key->len
               && ngx_strncmp(m->key.data, key->data, key->len) == 0;
    }

    /* rare: decode simple escapes and compare as we go */

    p = m->key.data;
    end = p + m->key.len;
    i = 0;

    while (p < end) {
        c = *p++;

        if (c == '\\' && p < end) {
            c = *p++;

            switch (c) {
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u':
                if (end - p < 4) {
                    return 0;
                }

                n = 0;

                for (k = 0; k < 4; k++) {
                    c = p[k];
                    n <<= 4;

                    if (c >= '0' && c <= '9') {
                        n |= c - '0';
                    } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
                        n |= (c | 0x20) - 'a' + 10;
                    } else {
                        return 0;
                    }
                }

                p += 4;

                if (n > 0x7f) {
                    return 0;
                }

                c = (u_char) n;
                break;
            default:
                break;
            }
        }

        if (i == key->len || key->data[i] != c) {
            return 0;
        }

        i++;
    }

    return i == key->len;
}


ngx_http_llm_json_member_t *
ngx_http_llm_json_find(ngx_http_llm_json_doc_t *doc, ngx_str_t *key,
    ngx_uint_t *count)
{
    ngx_uint_t                   i;
    ngx_http_llm_json_member_t  *m, *found;

    m = doc->members.elts;
    found = NULL;
    *count = 0;

    for (i = 0; i < doc->members.nelts; i++) {
        if (ngx_http_llm_json_key_equals(&m[i], key)) {
            if (found == NULL) {
                found = &m[i];
            }

            (*count)++;
        }
    }

    return found;
}


/* the decoded value of a string member; points into the body if it can */

ngx_int_t
ngx_http_llm_json_string_value(ngx_pool_t *pool,
    ngx_http_llm_json_member_t *m, ngx_str_t *out)
{
    cJSON   *json;
    size_t   len;

    out->data = m->value + 1;
    out->len = m->value_end - m->value - 2;

    if (memchr(out->data, '\\', out->len) == NULL) {
        return NGX_OK;
    }

    json = cJSON_ParseWithLength((const char *) m->value,
                                 m->value_end - m->value);
    if (json == NULL || !cJSON_IsString(json)) {
        cJSON_Delete(json);
        return NGX_DECLINED;
    }

    len = ngx_strlen(json->valuestring);

    out->data = ngx_pnalloc(pool, len);
    if (out->data == NULL) {
        cJSON_Delete(json);
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, json->valuestring, len);
    out->len = len;

    cJSON_Delete(json);

    return NGX_OK;
}


/* "in" as a quoted JSON string */

ngx_int_t
ngx_http_llm_json_quote(ngx_pool_t *pool, ngx_str_t *in, ngx_str_t *out)
{
    u_char      *p, c;
    size_t       len;
    ngx_uint_t   i;

    static u_char  hex[] = "0123456789abcdef";

    len = 2;

    for (i = 0; i < in->len; i++) {
        c = in->data[i];
        len += (c == '"' || c == '\\') ? 2 : (c < 0x20 ? 6 : 1);
    }

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    out->len = len;

    *p++ = '"';

    for (i = 0; i < in->len; i++) {
        c = in->data[i];

        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = c;

        } else if (c < 0x20) {
            *p++ = '\\';
            *p++ = 'u';
            *p++ = '0';
            *p++ = '0';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];

        } else {
            *p++ = c;
        }
    }

    *p = '"';

    return NGX_OK;
}


ngx_int_t
ngx_http_llm_json_number(u_char *p, u_char *end, double *out)
{
    char   buf[64], *last;
    size_t len;

    len = end - p;

    if (len == 0 || len >= sizeof(buf)
        || ngx_http_llm_json_skip_number(p, end) != end)
    {
        return NGX_DECLINED;
    }

    ngx_memcpy(buf, p, len);
    buf[len] = '\0';

    *out = strtod(buf, &last);

    return (last == buf + len) ? NGX_OK : NGX_DECLINED;
}
