
/*
 * ngx_llm_router: an incremental parser of an HTTP/1.x answer, for the
 * router's own client (ngx_http_llm_probe.c).
 *
 * Pure C with no nginx dependency, so that t/unit/ can test it alone.  It
 * reads the status line ("HTTP/1.x SP 3DIGIT [SP reason] CRLF"), the
 * headers (only Content-Length and Transfer-Encoding matter) and hands out
 * the body in place, ended by Content-Length, by chunked coding or by the
 * connection's close.  It is fed the answer in pieces split anywhere,
 * copies nothing and keeps no more than a few counters.
 */


#ifndef _NGX_HTTP_LLM_HTTP1_H_INCLUDED_
#define _NGX_HTTP_LLM_HTTP1_H_INCLUDED_


#include <stddef.h>


#define NGX_HTTP_LLM_HTTP1_ERROR     -1
#define NGX_HTTP_LLM_HTTP1_AGAIN      0    /* all read, more wanted */
#define NGX_HTTP_LLM_HTTP1_STATUS     1    /* the status line is read */
#define NGX_HTTP_LLM_HTTP1_BODY       2    /* a piece of the body */
#define NGX_HTTP_LLM_HTTP1_DONE       3    /* the body ended */

/* the bytes of the status line, headers and trailer at most */
#define NGX_HTTP_LLM_HTTP1_HEADERS_MAX  (64 * 1024)


typedef struct {
    unsigned             state;
    unsigned             status;       /* 0 until the status line is read */
    unsigned             minor;        /* HTTP/1.minor */
    unsigned             name;         /* header names still matching */
    size_t               name_len;
    size_t               received;     /* bytes read */
    size_t               headers;      /* bytes of status, headers, trailer */
    unsigned long long   length;       /* Content-Length, a chunk's rest */
    unsigned long long   value;        /* the number being read */
    unsigned             digits;
    unsigned             has_length:1;
    unsigned             chunked:1;
    unsigned             coding:1;     /* a Transfer-Encoding not chunked */
    unsigned             tail:1;       /* the value has ended, or differs */
} ngx_http_llm_http1_t;


void ngx_http_llm_http1_init(ngx_http_llm_http1_t *h);

/*
 * Reads from *pos to last, moves *pos past what it read.  BODY: the piece
 * of the body is *body, *len bytes; call again for the rest.
 */
int ngx_http_llm_http1_parse(ngx_http_llm_http1_t *h,
    const unsigned char **pos, const unsigned char *last,
    const unsigned char **body, size_t *len);

/* 1: the answer is whole if the connection closes now */
int ngx_http_llm_http1_complete_at_close(ngx_http_llm_http1_t *h);


#endif /* _NGX_HTTP_LLM_HTTP1_H_INCLUDED_ */
