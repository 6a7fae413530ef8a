
/*
 * ngx_llm_router: an incremental parser of server-sent events (pure C).
 * Not here: what an event means to the router (ngx_http_llm_response_sse.c).
 */


#include <string.h>

#include "ngx_http_llm_sse.h"


#define NGX_HTTP_LLM_SSE_FIELD  0    /* reading the field name */
#define NGX_HTTP_LLM_SSE_SPACE  1    /* after "data:", an optional ' ' */
#define NGX_HTTP_LLM_SSE_VALUE  2    /* in a data line's value */
#define NGX_HTTP_LLM_SSE_SKIP   3    /* in a comment or another field */
#define NGX_HTTP_LLM_SSE_NSPACE 4    /* after "event:", an optional ' ' */
#define NGX_HTTP_LLM_SSE_NAME   5    /* in an event line's value */


static void ngx_http_llm_sse_append(ngx_http_llm_sse_t *p,
    const unsigned char *s, size_t n);
static int ngx_http_llm_sse_end_line(ngx_http_llm_sse_t *p);
static void ngx_http_llm_sse_field(ngx_http_llm_sse_t *p, unsigned char c);
static size_t ngx_http_llm_sse_value(ngx_http_llm_sse_t *p,
    const unsigned char *in, size_t i, size_t len);
static size_t ngx_http_llm_sse_name(ngx_http_llm_sse_t *p,
    const unsigned char *in, size_t i, size_t len);
static size_t ngx_http_llm_sse_eol(const unsigned char *in, size_t i,
    size_t len);


void
ngx_http_llm_sse_init(ngx_http_llm_sse_t *p, unsigned char *data,
    size_t cap)
{
    memset(p, 0, sizeof(ngx_http_llm_sse_t));

    p->data = data;
    p->data_cap = cap;
    p->line_empty = 1;
}


/* forget the event just reported, keep the line state */

void
ngx_http_llm_sse_next(ngx_http_llm_sse_t *p)
{
    p->data_len = 0;
    p->data_lines = 0;
    p->truncated = 0;
    p->raw_len = 0;
    p->value_start = 0;
    p->value_end = 0;
    p->name_len = 0;
}


static void
ngx_http_llm_sse_append(ngx_http_llm_sse_t *p, const unsigned char *s,
    size_t n)
{
    if (p->truncated) {
        return;
    }

    if (p->data_cap - p->data_len < n) {
        /* what fits: the same bytes however the stream was split */
        n = p->data_cap - p->data_len;
        p->truncated = 1;
    }

    memcpy(p->data + p->data_len, s, n);
    p->data_len += n;
}


/* a line ended; returns 1 when it was blank, which ends the event */

static int
ngx_http_llm_sse_end_line(ngx_http_llm_sse_t *p)
{
    int  blank;

    blank = p->line_empty;

    if (p->state == NGX_HTTP_LLM_SSE_FIELD && !blank) {

        /* a field name without ':': "data" alone is an empty data line */

        if (p->field_len == 4 && memcmp(p->field, "data", 4) == 0) {
            if (p->data_lines++) {
                ngx_http_llm_sse_append(p, (const unsigned char *) "\n", 1);
            }

            if (p->data_lines == 1) {
                p->value_start = p->raw_len;
                p->value_end = p->raw_len;
            }
        }
    }

    if (p->state == NGX_HTTP_LLM_SSE_SPACE && p->data_lines == 1) {
        p->value_start = p->raw_len;
        p->value_end = p->raw_len;
    }

    p->state = NGX_HTTP_LLM_SSE_FIELD;
    p->field_len = 0;
    p->line_empty = 1;

    return blank;
}


/*
 * Feeds up to len bytes; returns how many were used.  *event is set to 1
 * when an event ended at the last byte used (then call
 * ngx_http_llm_sse_next() before feeding the rest), else to 0.
 */

size_t
ngx_http_llm_sse_feed(ngx_http_llm_sse_t *p, const unsigned char *in,
    size_t len, int *event)
{
    int            blank;
    size_t         i, n;
    unsigned char  c;

    *event = 0;

    for (i = 0; i < len; /* void */) {
        c = in[i];

        if (p->cr) {
            p->cr = 0;

            if (c == '\n') {
                /* the '\n' of a "\r\n" line end */
                i++;
                p->raw_len++;
                continue;
            }
        }

        if (c == '\n' || c == '\r') {
            blank = ngx_http_llm_sse_end_line(p);

            i++;
            p->raw_len++;
            p->cr = (c == '\r');

            if (blank) {
                *event = 1;
                return i;
            }

            continue;
        }

        p->line_empty = 0;

        switch (p->state) {

        case NGX_HTTP_LLM_SSE_FIELD:
            ngx_http_llm_sse_field(p, c);
            i++;
            p->raw_len++;
            break;

        case NGX_HTTP_LLM_SSE_SPACE:

            if (p->data_lines == 1) {
                p->value_start = p->raw_len + (c == ' ');
                p->value_end = p->value_start;
            }

            p->state = NGX_HTTP_LLM_SSE_VALUE;

            if (c == ' ') {
                i++;
                p->raw_len++;
            }

            break;

        case NGX_HTTP_LLM_SSE_VALUE:
            i = ngx_http_llm_sse_value(p, in, i, len);
            break;

        case NGX_HTTP_LLM_SSE_NSPACE:

            p->state = NGX_HTTP_LLM_SSE_NAME;

            if (c == ' ') {
                i++;
                p->raw_len++;
            }

            break;

        case NGX_HTTP_LLM_SSE_NAME:
            i = ngx_http_llm_sse_name(p, in, i, len);
            break;

        default: /* NGX_HTTP_LLM_SSE_SKIP */
            n = ngx_http_llm_sse_eol(in, i, len);
            p->raw_len += n - i;
            i = n;
            break;
        }
    }

    return i;
}


/* a byte of a field name, or the ':' after it */

static void
ngx_http_llm_sse_field(ngx_http_llm_sse_t *p, unsigned char c)
{
    if (c != ':') {
        if (p->field_len < sizeof(p->field)) {
            p->field[p->field_len++] = c;

        } else {
            p->state = NGX_HTTP_LLM_SSE_SKIP;
        }

        return;
    }

    if (p->field_len == 4 && memcmp(p->field, "data", 4) == 0) {
        if (p->data_lines++) {
            ngx_http_llm_sse_append(p, (const unsigned char *) "\n", 1);
        }

        p->state = NGX_HTTP_LLM_SSE_SPACE;

    } else if (p->field_len == 5 && memcmp(p->field, "event", 5) == 0) {
        p->name_len = 0;        /* the last "event:" line wins */
        p->state = NGX_HTTP_LLM_SSE_NSPACE;

    } else {
        /* a comment (empty name) or another field */
        p->state = NGX_HTTP_LLM_SSE_SKIP;
    }
}


/* the rest of a data line's value, in one piece; the index after it */

static size_t
ngx_http_llm_sse_value(ngx_http_llm_sse_t *p, const unsigned char *in,
    size_t i, size_t len)
{
    size_t  n;

    n = ngx_http_llm_sse_eol(in, i, len);

    ngx_http_llm_sse_append(p, in + i, n - i);

    p->raw_len += n - i;

    if (p->data_lines == 1) {
        p->value_end = p->raw_len;
    }

    return n;
}


/* the rest of an event line's value, kept up to NAME_MAX bytes */

static size_t
ngx_http_llm_sse_name(ngx_http_llm_sse_t *p, const unsigned char *in,
    size_t i, size_t len)
{
    size_t  n;

    for (n = i; n < len && in[n] != '\n' && in[n] != '\r'; n++) {
        if (p->name_len < NGX_HTTP_LLM_SSE_NAME_MAX) {
            p->name[p->name_len] = in[n];
        }

        if (p->name_len <= NGX_HTTP_LLM_SSE_NAME_MAX) {
            p->name_len++;
        }
    }

    p->raw_len += n - i;

    return n;
}


/* where the line ends: the first '\n' or '\r' from i, else len */

static size_t
ngx_http_llm_sse_eol(const unsigned char *in, size_t i, size_t len)
{
    while (i < len && in[i] != '\n' && in[i] != '\r') {
        i++;
    }

    return i;
}
