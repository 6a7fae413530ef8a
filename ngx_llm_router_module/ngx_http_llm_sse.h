
/*
 * ngx_llm_router: an incremental parser of server-sent events.
 *
 * Fed an event stream in pieces split anywhere, it finds where each event
 * ends (a blank line, after "\n", "\r\n" or "\r" line ends) and collects
 * the event's data lines, joined by "\n", into a caller-given buffer.  It
 * also keeps where, in the event's raw bytes, the value of its first data
 * line lies, so that a filter can splice a new value into the original
 * bytes.  Comment lines (":" heartbeats) and other fields are kept in the
 * raw bytes and otherwise ignored, but for the event's name (its last
 * "event:" line, up to NGX_HTTP_LLM_SSE_NAME_MAX bytes), by which the
 * Responses and Messages APIs end their streams.
 *
 * Pure C with no nginx dependency, so that t/unit/ can test it alone.
 */


#ifndef _NGX_HTTP_LLM_SSE_H_INCLUDED_
#define _NGX_HTTP_LLM_SSE_H_INCLUDED_


#include <stddef.h>


#define NGX_HTTP_LLM_SSE_NAME_MAX  32


typedef struct {
    unsigned char  *data;         /* the data lines, joined by "\n" */
    size_t          data_cap;
    size_t          data_len;
    size_t          data_lines;
    unsigned        truncated:1;  /* data holds only its first data_cap */

    size_t          raw_len;      /* bytes of this event fed so far */
    size_t          value_start;  /* first data line's value, in raw */
    size_t          value_end;

    unsigned char   name[NGX_HTTP_LLM_SSE_NAME_MAX];   /* "event:" */
    size_t          name_len;     /* over NAME_MAX: longer, not kept */

    /* the line being read */
    unsigned        state;
    unsigned        cr:1;         /* the last byte was '\r' */
    unsigned        line_empty:1;
    unsigned char   field[5];
    size_t          field_len;
} ngx_http_llm_sse_t;


void ngx_http_llm_sse_init(ngx_http_llm_sse_t *p, unsigned char *data,
    size_t cap);
size_t ngx_http_llm_sse_feed(ngx_http_llm_sse_t *p, const unsigned char *in,
    size_t len, int *event);
void ngx_http_llm_sse_next(ngx_http_llm_sse_t *p);


#endif /* _NGX_HTTP_LLM_SSE_H_INCLUDED_ */
