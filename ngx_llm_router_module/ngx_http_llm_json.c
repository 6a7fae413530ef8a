
/*
 * ngx_llm_router: JSON helpers around the scanner (ngx_http_llm_jscan.c):
 * key comparison, string and number values, quoting.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <cjson/cJSON.h>

#include "ngx_http_llm_router.h"


/* a raw key, as it stands between its quotes, equals a plain name */

ngx_uint_t
ngx_http_llm_json_key_equals(u_char *p, size_t len, ngx_str_t *name)
{
    u_char      *end, c;
    ngx_uint_t   i, n, k;

    if (memchr(p, '\\', len) == NULL) {
        return len == name->len && ngx_strncmp(p, name->data, len) == 0;
    }

    /* rare: decode escapes as we go; names are ASCII */

    end = p + len;
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

        if (i == name->len || name->data[i] != c) {
            return 0;
        }

        i++;
    }

    return i == name->len;
}


/*
 * The value of a quoted JSON string (quotes included in "in"); points
 * into "in" when there is nothing to decode.
 */

ngx_int_t
ngx_http_llm_json_string_value(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out)
{
    cJSON   *json;
    size_t   len;

    out->data = in->data + 1;
    out->len = in->len - 2;

    if (memchr(out->data, '\\', out->len) == NULL) {
        return NGX_OK;
    }

    json = cJSON_ParseWithLength((const char *) in->data, in->len);

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

    if (len == in->len + 2) {
        p = ngx_cpymem(p, in->data, in->len);   /* nothing to escape */
        *p = '"';
        return NGX_OK;
    }

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
