
/*
 * ngx_llm_router: the router's own non-blocking HTTP/1.x client, for the
 * checks, scrapes and limits (check.c) and /tokenize (tokenize.c).
 */


#ifndef _NGX_HTTP_LLM_PROBE_H_INCLUDED_
#define _NGX_HTTP_LLM_PROBE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_http_llm_http1.h"


/* the receive buffer */
#define NGX_HTTP_LLM_PROBE_BUF        4096
#define NGX_HTTP_LLM_PROBE_READ_MAX   (64 * 1024)   /* in one event */

/* how a probe ended: callers word these themselves */
#define NGX_HTTP_LLM_PROBE_OK         0
#define NGX_HTTP_LLM_PROBE_CONNECT    1    /* nothing could be sent */
#define NGX_HTTP_LLM_PROBE_SEND       2    /* closed while sending */
#define NGX_HTTP_LLM_PROBE_CLOSED     3    /* closed before any answer */
#define NGX_HTTP_LLM_PROBE_INVALID    4    /* not HTTP/1.x, or cut short */
#define NGX_HTTP_LLM_PROBE_RESET      5    /* reset during the answer */
#define NGX_HTTP_LLM_PROBE_TIMEDOUT   6
#define NGX_HTTP_LLM_PROBE_EVENT      7    /* the event module failed */
#define NGX_HTTP_LLM_PROBE_TOO_LARGE  8    /* the body handler's cap */
#define NGX_HTTP_LLM_PROBE_NOMEM      9
#define NGX_HTTP_LLM_PROBE_ABANDONED  10   /* nginx is exiting */
#define NGX_HTTP_LLM_PROBE_NRESULTS   11


typedef struct ngx_http_llm_probe_s  ngx_http_llm_probe_t;

/* a piece of the body: NGX_OK, NGX_DECLINED (too large) or NGX_ERROR */
typedef ngx_int_t (*ngx_http_llm_probe_body_pt)(ngx_http_llm_probe_t *p,
    u_char *data, size_t len);

/* the end, with the connection closed; p->status: 0 when none came */
typedef void (*ngx_http_llm_probe_done_pt)(ngx_http_llm_probe_t *p,
    ngx_uint_t result);


struct ngx_http_llm_probe_s {
    /* set by the caller: pc.sockaddr, pc.socklen, pc.name, pc.log */
    ngx_peer_connection_t         pc;
    ngx_str_t                     request;     /* sent whole */
    ngx_msec_t                    timeout;     /* the whole exchange */
    u_char                       *buf;         /* NGX_HTTP_LLM_PROBE_BUF */
    ngx_pool_t                   *pool;        /* the connection's, or NULL */
    ngx_uint_t                    body_status; /* whose body is read; 0:
                                                  the status line decides */
    ngx_http_llm_probe_body_pt    body;
    ngx_http_llm_probe_done_pt    done;
    void                         *data;
    unsigned                      idle:1;      /* closed at exit, no wait */

    /* the client's */
    ngx_uint_t                    status;
    size_t                        sent;
    ngx_http_llm_http1_t          http;
};


ngx_int_t ngx_http_llm_probe_request(ngx_pool_t *pool, ngx_str_t *request,
    const char *method, ngx_str_t *uri, ngx_str_t *body, ngx_uint_t n);
ngx_int_t ngx_http_llm_probe_connect(ngx_http_llm_probe_t *p);
void ngx_http_llm_probe_close(ngx_http_llm_probe_t *p);


#endif /* _NGX_HTTP_LLM_PROBE_H_INCLUDED_ */
