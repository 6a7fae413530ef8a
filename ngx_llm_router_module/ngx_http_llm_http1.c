
/*
 * ngx_llm_router: the parser of an HTTP/1.x answer (status, framing, body).
 * Not here: sockets, events, nginx (ngx_http_llm_probe.c is the client).
 */


#include "ngx_http_llm_http1.h"


#define NGX_HTTP_LLM_HTTP1_LENGTH  1    /* Content-Length */
#define NGX_HTTP_LLM_HTTP1_CODING  2    /* Transfer-Encoding */

/* a length above this is refused before it can overflow */
#define NGX_HTTP_LLM_HTTP1_BIG     0x0fffffffffffffffULL


enum {
    sw_start = 0,
    sw_H,
    sw_HT,
    sw_HTT,
    sw_HTTP,
    sw_major,
    sw_dot,
    sw_minor,
    sw_space,
    sw_code,
    sw_after_code,
    sw_reason,
    sw_status_lf,
    sw_line,
    sw_name,
    sw_value,
    sw_header_lf,
    sw_headers_lf,
    sw_body_close,
    sw_body_length,
    sw_chunk_size,
    sw_chunk_ext,
    sw_chunk_size_lf,
    sw_chunk_data,
    sw_chunk_cr,
    sw_chunk_lf,
    sw_trailer,
    sw_trailer_skip,
    sw_trailer_lf,
    sw_done
};


static const char  ngx_http_llm_http1_length[] = "content-length";
static const char  ngx_http_llm_http1_coding[] = "transfer-encoding";
static const char  ngx_http_llm_http1_chunked[] = "chunked";


static int ngx_http_llm_http1_status_line(ngx_http_llm_http1_t *h,
    unsigned char c);
static int ngx_http_llm_http1_header(ngx_http_llm_http1_t *h,
    unsigned char c);
static int ngx_http_llm_http1_name(ngx_http_llm_http1_t *h, unsigned char c);
static int ngx_http_llm_http1_value(ngx_http_llm_http1_t *h,
    unsigned char c);
static int ngx_http_llm_http1_line_end(ngx_http_llm_http1_t *h);
static int ngx_http_llm_http1_headers_end(ngx_http_llm_http1_t *h);
static int ngx_http_llm_http1_chunk(ngx_http_llm_http1_t *h,
    unsigned char c);
static int ngx_http_llm_http1_chunk_size(ngx_http_llm_http1_t *h,
    unsigned char c);
static int ngx_http_llm_http1_chunk_start(ngx_http_llm_http1_t *h);


void
ngx_http_llm_http1_init(ngx_http_llm_http1_t *h)
{
    h->state = sw_start;
    h->status = 0;
    h->minor = 0;
    h->name = 0;
    h->name_len = 0;
    h->received = 0;
    h->headers = 0;
    h->length = 0;
    h->value = 0;
    h->digits = 0;
    h->has_length = 0;
    h->chunked = 0;
    h->coding = 0;
    h->tail = 0;
}


int
ngx_http_llm_http1_parse(ngx_http_llm_http1_t *h, const unsigned char **pos,
    const unsigned char *last, const unsigned char **body, size_t *len)
{
    int                   rc;
    size_t                n;
    unsigned              state;
    const unsigned char  *p;

    p = *pos;

    for ( ;; ) {
        state = h->state;

        if (state == sw_done) {
            *pos = p;
            return NGX_HTTP_LLM_HTTP1_DONE;
        }

        if (p == last) {
            *pos = p;
            return NGX_HTTP_LLM_HTTP1_AGAIN;
        }

        /* the body's bytes, in place */

        if (state == sw_body_close || state == sw_body_length
            || state == sw_chunk_data)
        {
            n = last - p;

            if (state != sw_body_close && h->length < n) {
                n = (size_t) h->length;
            }

            *body = p;
            *len = n;
            p += n;
            h->received += n;

            if (state != sw_body_close) {
                h->length -= n;

                if (h->length == 0) {
                    h->state = (state == sw_body_length) ? sw_done
                                                         : sw_chunk_cr;
                }
            }

            *pos = p;
            return NGX_HTTP_LLM_HTTP1_BODY;
        }

        h->received++;

        /* the status line, the headers and the trailer share the cap */

        if ((state < sw_body_close || state >= sw_trailer)
            && ++h->headers > NGX_HTTP_LLM_HTTP1_HEADERS_MAX)
        {
            rc = NGX_HTTP_LLM_HTTP1_ERROR;

        } else if (state < sw_line) {
            rc = ngx_http_llm_http1_status_line(h, *p++);

        } else if (state < sw_body_close) {
            rc = ngx_http_llm_http1_header(h, *p++);

        } else {
            rc = ngx_http_llm_http1_chunk(h, *p++);
        }

        if (rc != NGX_HTTP_LLM_HTTP1_AGAIN) {
            *pos = p;
            return rc;
        }
    }
}


int
ngx_http_llm_http1_complete_at_close(ngx_http_llm_http1_t *h)
{
    return h->state == sw_body_close || h->state == sw_done;
}


/* "HTTP/1.x SP 3DIGIT [SP reason] CRLF", a bare LF as well */

static int
ngx_http_llm_http1_status_line(ngx_http_llm_http1_t *h, unsigned char c)
{
    switch (h->state) {

    case sw_start: case sw_H: case sw_HT: case sw_HTT: case sw_HTTP:
        if (c != (unsigned char) "HTTP/"[h->state]) {
            return NGX_HTTP_LLM_HTTP1_ERROR;
        }

        h->state++;
        return NGX_HTTP_LLM_HTTP1_AGAIN;

    case sw_major:
        if (c != '1') {
            return NGX_HTTP_LLM_HTTP1_ERROR;
        }

        h->state = sw_dot;
        return NGX_HTTP_LLM_HTTP1_AGAIN;

    case sw_dot:
        if (c != '.') {
            return NGX_HTTP_LLM_HTTP1_ERROR;
        }

        h->state = sw_minor;
        return NGX_HTTP_LLM_HTTP1_AGAIN;

    case sw_minor:
        if (c < '0' || c > '9') {
            return NGX_HTTP_LLM_HTTP1_ERROR;
        }

        h->minor = c - '0';
        h->state = sw_space;
        return NGX_HTTP_LLM_HTTP1_AGAIN;

    case sw_space:
        if (c != ' ') {
            return NGX_HTTP_LLM_HTTP1_ERROR;
        }

        h->value = 0;
        h->digits = 0;
        h->state = sw_code;
        return NGX_HTTP_LLM_HTTP1_AGAIN;

    case sw_code:
        if (c < '0' || c > '9' || (h->digits == 0 && c == '0')) {
            return NGX_HTTP_LLM_HTTP1_ERROR;
        }

        h->value = h->value * 10 + (c - '0');

        if (++h->digits == 3) {
            h->state = sw_after_code;
        }

        return NGX_HTTP_LLM_HTTP1_AGAIN;

    case sw_after_code:
        if (c == ' ') {
            h->state = sw_reason;
            return NGX_HTTP_LLM_HTTP1_AGAIN;
        }

        if (c == '\r') {
            h->state = sw_status_lf;
            return NGX_HTTP_LLM_HTTP1_AGAIN;
        }

        if (c != '\n') {
            return NGX_HTTP_LLM_HTTP1_ERROR;
        }

        break;

    case sw_reason:
        if (c == '\r') {
            h->state = sw_status_lf;
            return NGX_HTTP_LLM_HTTP1_AGAIN;
        }

        if (c != '\n') {
            return NGX_HTTP_LLM_HTTP1_AGAIN;
        }

        break;

    default: /* sw_status_lf */
        if (c != '\n') {
            return NGX_HTTP_LLM_HTTP1_ERROR;
        }

        break;
    }

    h->status = (unsigned) h->value;
    h->state = sw_line;

    return NGX_HTTP_LLM_HTTP1_STATUS;
}


/* a header line; only Content-Length and Transfer-Encoding are read */

static int
ngx_http_llm_http1_header(ngx_http_llm_http1_t *h, unsigned char c)
{
    switch (h->state) {

    case sw_line:
        if (c == '\r') {
            h->state = sw_headers_lf;
            return NGX_HTTP_LLM_HTTP1_AGAIN;
        }

        if (c == '\n') {
            return ngx_http_llm_http1_headers_end(h);
        }

        h->name = NGX_HTTP_LLM_HTTP1_LENGTH|NGX_HTTP_LLM_HTTP1_CODING;
        h->name_len = 0;
        h->state = sw_name;

        /* fall through */

    case sw_name:
        return ngx_http_llm_http1_name(h, c);

    case sw_value:
        if (c == '\r') {
            h->state = sw_header_lf;
            return NGX_HTTP_LLM_HTTP1_AGAIN;
        }

        if (c == '\n') {
            return ngx_http_llm_http1_line_end(h);
        }

        return ngx_http_llm_http1_value(h, c);

    case sw_header_lf:
        if (c != '\n') {
            return NGX_HTTP_LLM_HTTP1_ERROR;
        }

        return ngx_http_llm_http1_line_end(h);

    default: /* sw_headers_lf */
        if (c != '\n') {
            return NGX_HTTP_LLM_HTTP1_ERROR;
        }

        return ngx_http_llm_http1_headers_end(h);
    }
}


static int
ngx_http_llm_http1_name(ngx_http_llm_http1_t *h, unsigned char c)
{
    unsigned char  lc;

    if (c == ':') {
        if (h->name_len == 0) {
            return NGX_HTTP_LLM_HTTP1_ERROR;
        }

        if ((h->name & NGX_HTTP_LLM_HTTP1_LENGTH)
            && h->name_len == sizeof(ngx_http_llm_http1_length) - 1)
        {
            h->name = NGX_HTTP_LLM_HTTP1_LENGTH;

        } else if ((h->name & NGX_HTTP_LLM_HTTP1_CODING)
                   && h->name_len == sizeof(ngx_http_llm_http1_coding) - 1)
        {
            h->name = NGX_HTTP_LLM_HTTP1_CODING;

        } else {
            h->name = 0;
        }

        h->name_len = 0;
        h->value = 0;
        h->digits = 0;
        h->tail = 0;
        h->state = sw_value;

        return NGX_HTTP_LLM_HTTP1_AGAIN;
    }

    /* a name is a token: no controls, spaces or DEL */

    if (c <= ' ' || c == 0x7f) {
        return NGX_HTTP_LLM_HTTP1_ERROR;
    }

    lc = (c >= 'A' && c <= 'Z') ? (unsigned char) (c | 0x20) : c;

    if ((h->name & NGX_HTTP_LLM_HTTP1_LENGTH)
        && (h->name_len >= sizeof(ngx_http_llm_http1_length) - 1
            || lc != (unsigned char) ngx_http_llm_http1_length[h->name_len]))
    {
        h->name &= ~NGX_HTTP_LLM_HTTP1_LENGTH;
    }

    if ((h->name & NGX_HTTP_LLM_HTTP1_CODING)
        && (h->name_len >= sizeof(ngx_http_llm_http1_coding) - 1
            || lc != (unsigned char) ngx_http_llm_http1_coding[h->name_len]))
    {
        h->name &= ~NGX_HTTP_LLM_HTTP1_CODING;
    }

    h->name_len++;

    return NGX_HTTP_LLM_HTTP1_AGAIN;
}


/* a byte of a value, neither CR nor LF; spaces around it are skipped */

static int
ngx_http_llm_http1_value(ngx_http_llm_http1_t *h, unsigned char c)
{
    unsigned char  lc;

    if (h->name == NGX_HTTP_LLM_HTTP1_LENGTH) {

        if (c == ' ' || c == '\t') {
            h->tail = (h->digits != 0);
            return NGX_HTTP_LLM_HTTP1_AGAIN;
        }

        if (c < '0' || c > '9' || h->tail
            || h->value > NGX_HTTP_LLM_HTTP1_BIG / 10)
        {
            return NGX_HTTP_LLM_HTTP1_ERROR;
        }

        h->value = h->value * 10 + (c - '0');
        h->digits++;

        return NGX_HTTP_LLM_HTTP1_AGAIN;
    }

    if (h->name == NGX_HTTP_LLM_HTTP1_CODING && c != ' ' && c != '\t') {
        lc = (c >= 'A' && c <= 'Z') ? (unsigned char) (c | 0x20) : c;

        if (h->name_len < sizeof(ngx_http_llm_http1_chunked) - 1
            && lc == (unsigned char) ngx_http_llm_http1_chunked[h->name_len])
        {
            h->name_len++;

        } else {
            h->tail = 1;        /* another coding, or a list of them */
        }
    }

    return NGX_HTTP_LLM_HTTP1_AGAIN;
}


static int
ngx_http_llm_http1_line_end(ngx_http_llm_http1_t *h)
{
    if (h->name == NGX_HTTP_LLM_HTTP1_LENGTH) {

        /* one length, or the same one repeated */

        if (h->digits == 0 || (h->has_length && h->length != h->value)) {
            return NGX_HTTP_LLM_HTTP1_ERROR;
        }

        h->length = h->value;
        h->has_length = 1;

    } else if (h->name == NGX_HTTP_LLM_HTTP1_CODING) {

        if (!h->tail && h->name_len == sizeof(ngx_http_llm_http1_chunked) - 1)
        {
            h->chunked = 1;

        } else {
            h->coding = 1;
        }
    }

    h->state = sw_line;

    return NGX_HTTP_LLM_HTTP1_AGAIN;
}


/* chunked coding comes before a length; a coding it cannot undo fails */

static int
ngx_http_llm_http1_headers_end(ngx_http_llm_http1_t *h)
{
    if (h->coding) {
        return NGX_HTTP_LLM_HTTP1_ERROR;
    }

    if (h->chunked) {
        h->length = 0;
        h->digits = 0;
        h->state = sw_chunk_size;

    } else if (h->has_length) {
        h->state = (h->length == 0) ? sw_done : sw_body_length;

    } else {
        h->state = sw_body_close;
    }

    return NGX_HTTP_LLM_HTTP1_AGAIN;
}


/* chunk sizes, extensions, the CRLF after the data and the trailer */

static int
ngx_http_llm_http1_chunk(ngx_http_llm_http1_t *h, unsigned char c)
{
    switch (h->state) {

    case sw_chunk_size:
        return ngx_http_llm_http1_chunk_size(h, c);

    case sw_chunk_ext:
        if (c == '\r') {
            h->state = sw_chunk_size_lf;
        }

        if (c != '\n') {
            return NGX_HTTP_LLM_HTTP1_AGAIN;
        }

        break;

    case sw_chunk_size_lf:
        if (c != '\n') {
            return NGX_HTTP_LLM_HTTP1_ERROR;
        }

        break;

    case sw_chunk_cr:
        if (c == '\r') {
            h->state = sw_chunk_lf;
            return NGX_HTTP_LLM_HTTP1_AGAIN;
        }

        /* fall through */

    case sw_chunk_lf:
        if (c != '\n') {
            return NGX_HTTP_LLM_HTTP1_ERROR;
        }

        h->length = 0;
        h->digits = 0;
        h->state = sw_chunk_size;

        return NGX_HTTP_LLM_HTTP1_AGAIN;

    case sw_trailer:
        if (c == '\r') {
            h->state = sw_trailer_lf;

        } else if (c == '\n') {
            h->state = sw_done;

        } else {
            h->state = sw_trailer_skip;
        }

        return NGX_HTTP_LLM_HTTP1_AGAIN;

    case sw_trailer_skip:
        if (c == '\n') {
            h->state = sw_trailer;
        }

        return NGX_HTTP_LLM_HTTP1_AGAIN;

    default: /* sw_trailer_lf */
        if (c != '\n') {
            return NGX_HTTP_LLM_HTTP1_ERROR;
        }

        h->state = sw_done;

        return NGX_HTTP_LLM_HTTP1_AGAIN;
    }

    return ngx_http_llm_http1_chunk_start(h);
}


/* a hex digit of a chunk's size, or what follows the size */

static int
ngx_http_llm_http1_chunk_size(ngx_http_llm_http1_t *h, unsigned char c)
{
    unsigned  d;

    if (c >= '0' && c <= '9') {
        d = c - '0';

    } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
        d = (c | 0x20) - 'a' + 10;

    } else {
        if (h->digits == 0) {
            return NGX_HTTP_LLM_HTTP1_ERROR;
        }

        if (c == '\r') {
            h->state = sw_chunk_size_lf;
            return NGX_HTTP_LLM_HTTP1_AGAIN;
        }

        if (c == '\n') {
            return ngx_http_llm_http1_chunk_start(h);
        }

        if (c == ';' || c == ' ' || c == '\t') {
            h->state = sw_chunk_ext;
            return NGX_HTTP_LLM_HTTP1_AGAIN;
        }

        return NGX_HTTP_LLM_HTTP1_ERROR;
    }

    if (h->length > NGX_HTTP_LLM_HTTP1_BIG >> 4) {
        return NGX_HTTP_LLM_HTTP1_ERROR;
    }

    h->length = (h->length << 4) + d;
    h->digits++;

    return NGX_HTTP_LLM_HTTP1_AGAIN;
}


/* the end of a chunk's size line: the last chunk has size 0 */

static int
ngx_http_llm_http1_chunk_start(ngx_http_llm_http1_t *h)
{
    h->state = (h->length == 0) ? sw_trailer : sw_chunk_data;

    return NGX_HTTP_LLM_HTTP1_AGAIN;
}
