
/*
 * ngx_llm_router: JSON for nginx strings: keys, values, quoting into a
 * pool, include_usage.  Not here: grammar (jscan.c), byte loops (text.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <cjson/cJSON.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_json.h"
#include "ngx_http_llm_text.h"
#include "ngx_http_llm_jscan.h"


/* a raw key, as it stands between its quotes, equals a plain name */

ngx_uint_t
ngx_http_llm_json_key_equals(u_char *p, size_t len, ngx_str_t *name)
{
    return ngx_http_llm_text_key_is(p, len, (char *) name->data, name->len);
}


/*
 * The value of a quoted JSON string (quotes included in "in"); points
 * into "in" when there is nothing to decode.  NGX_DECLINED: an escape
 * that is not JSON's.  An escaped NUL stays a byte of the value.
 */

ngx_int_t
ngx_http_llm_json_string_value(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out)
{
    size_t   len;
    u_char  *p;

    ngx_str_null(out);

    if (memchr(in->data + 1, '\\', in->len - 2) == NULL) {
        out->data = in->data + 1;
        out->len = in->len - 2;
        return NGX_OK;
    }

    p = ngx_pnalloc(pool, in->len - 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    len = ngx_http_llm_text_decode(p, in->data + 1, in->len - 2);

    if (len == NGX_HTTP_LLM_TEXT_BAD) {
        return NGX_DECLINED;    /* "out" stays empty */
    }

    out->data = p;
    out->len = len;

    return NGX_OK;
}


/*
 * "in" as a quoted JSON string, always valid JSON and UTF-8: control
 * characters and 0x7f escaped, bytes that are not UTF-8 replaced by
 * U+FFFD (ngx_http_llm_text_quote()).
 */

ngx_int_t
ngx_http_llm_json_quote(ngx_pool_t *pool, ngx_str_t *in, ngx_str_t *out)
{
    u_char  *p;
    size_t   len;

    len = ngx_http_llm_text_quote(NULL, in->data, in->len, 0);

    p = ngx_pnalloc(pool, len + 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    out->len = len + 2;

    *p++ = '"';
    p += ngx_http_llm_text_quote(p, in->data, in->len, 0);
    *p = '"';

    return NGX_OK;
}


/* "in" for a log line: its control bytes escaped (ngx_http_llm_text_log()) */

ngx_int_t
ngx_http_llm_log_text(ngx_pool_t *pool, ngx_str_t *in, ngx_str_t *out)
{
    u_char  *p;
    size_t   len;

    len = ngx_http_llm_text_log(NULL, in->data, in->len);

    if (len == in->len) {
        *out = *in;             /* nothing to escape */
        return NGX_OK;
    }

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_http_llm_text_log(p, in->data, in->len);

    out->data = p;              /* out may be in */
    out->len = len;

    return NGX_OK;
}


/*
 * The object "in" (raw JSON, checked by the scanner) with
 * "include_usage":true, its members kept as they are: for stream_options,
 * without a tree.  NGX_DECLINED: it has "include_usage":true already (the
 * last copy counts, as in the Python engines), or it cannot be read.
 */

ngx_int_t
ngx_http_llm_json_include_usage(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out)
{
    int                    rc;
    u_char                *p;
    ngx_uint_t             asked;
    ngx_http_llm_jskim_t   k;

    static ngx_str_t  name = ngx_string("include_usage");

    if (!ngx_http_llm_jskim_open(&k, in->data, in->len)) {
        return NGX_DECLINED;
    }

    p = ngx_pnalloc(pool, in->len + sizeof(",\"include_usage\":true}"));
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    *p++ = '{';
    asked = 0;

    while ((rc = ngx_http_llm_jskim_next(&k)) == NGX_HTTP_LLM_JSKIM_MEMBER) {

        if (ngx_http_llm_json_key_equals((u_char *) k.key, k.key_len, &name))
        {
            asked = (k.value_end - k.value == 4
                     && ngx_strncmp(k.value, "true", 4) == 0);
            continue;                   /* replaced */
        }

        if (p > out->data + 1) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, k.key - 1, k.value_end - (k.key - 1));
    }

    if (rc != NGX_HTTP_LLM_JSKIM_END || asked) {
        return NGX_DECLINED;            /* asked: the client wants it */
    }

    if (p > out->data + 1) {
        *p++ = ',';
    }

    p = ngx_cpymem(p, "\"include_usage\":true}",
                   sizeof("\"include_usage\":true}") - 1);

    out->len = p - out->data;

    return NGX_OK;
}


/* a JSON number, checked with the scanner's grammar */

ngx_int_t
ngx_http_llm_json_number(u_char *p, size_t len, double *out)
{
    char   buf[64], *last;

    if (len == 0 || len >= sizeof(buf)
        || !ngx_http_llm_jscan_is_number(p, len))
    {
        return NGX_DECLINED;
    }

    ngx_memcpy(buf, p, len);
    buf[len] = '\0';

    *out = strtod(buf, &last);

    return (last == buf + len) ? NGX_OK : NGX_DECLINED;
}


/*
 * A count (a token count): a JSON number that is not negative, its
 * fraction dropped; -1 if it is negative, too big or not a number.
 */

ngx_int_t
ngx_http_llm_json_count(u_char *p, size_t len)
{
    u_char     *last;
    double      d;
    ngx_int_t   n;

    last = p + len;
    n = 0;

    for ( /* void */ ; p < last && *p >= '0' && *p <= '9'; p++) {
        if (n >= NGX_MAX_INT_T_VALUE / 10) {
            return -1;
        }

        n = n * 10 + (*p - '0');
    }

    if (p == last - len) {
        return -1;              /* no digits: "-", or not a number */
    }

    if (p == last) {
        return n;
    }

    if (*p == '.') {
        for (p++; p < last && *p >= '0' && *p <= '9'; p++) { /* void */ }

        if (p == last) {
            return n;
        }
    }

    /* an exponent: rare enough for strtod() */

    p = last - len;

    if (ngx_http_llm_json_number(p, len, &d) != NGX_OK
        || d < 0 || d >= (double) NGX_MAX_INT_T_VALUE)
    {
        return -1;
    }

    return (ngx_int_t) d;
}


/* a cJSON tree as compact text, in the pool */

ngx_int_t
ngx_http_llm_json_print(ngx_pool_t *pool, cJSON *json, ngx_str_t *out)
{
    char  *text;

    text = cJSON_PrintUnformatted(json);
    if (text == NULL) {
        return NGX_ERROR;
    }

    out->len = ngx_strlen(text);
    out->data = ngx_pnalloc(pool, out->len);

    if (out->data != NULL) {
        ngx_memcpy(out->data, text, out->len);
    }

    cJSON_free(text);

    return (out->data != NULL) ? NGX_OK : NGX_ERROR;
}
