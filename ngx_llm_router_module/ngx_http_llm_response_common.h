
/*
 * ngx_llm_router: the response filters' shared state (no .c of its own:
 * every response file reads it, none owns it).
 *
 * ngx_http_llm_response_t is the filters' state of one answer; only the
 * response files (response.c, response_json.c, response_error.c,
 * response_sse.c, response_fail.c) look inside it.
 */


#ifndef _NGX_HTTP_LLM_RESPONSE_COMMON_H_INCLUDED_
#define _NGX_HTTP_LLM_RESPONSE_COMMON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_sse.h"


#define NGX_HTTP_LLM_MODE_NONE      0
#define NGX_HTTP_LLM_MODE_OBSERVE   1    /* JSON, passed on untouched */
#define NGX_HTTP_LLM_MODE_EDIT      2    /* JSON, held to restore model */
#define NGX_HTTP_LLM_MODE_ERROR     3    /* engine error, held */
#define NGX_HTTP_LLM_MODE_SSE       4

/* the API of a stream, by its path: how it ends, how its errors look */
#define NGX_HTTP_LLM_API_CHAT       0    /* chat/completions, completions */
#define NGX_HTTP_LLM_API_RESPONSES  1    /* OpenAI's /v1/responses */
#define NGX_HTTP_LLM_API_MESSAGES   2    /* Anthropic's /v1/messages */


#define ngx_http_llm_is_space(c)                                              \
    ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')


struct ngx_http_llm_response_s {
    ngx_uint_t                      mode;
    ngx_buf_t                      *body;       /* JSON kept */
    size_t                          limit;
    size_t                          event_max;
    ngx_uint_t                      api;        /* NGX_HTTP_LLM_API_* */
    ngx_http_llm_sse_t              sse;
    ngx_buf_t                      *raw;        /* the event, rewriting */
    ngx_str_t                       model_json; /* to restore, or empty */
    ngx_str_t                       edit_before;    /* EDIT: raw parts */
    ngx_str_t                       edit_after;
    ngx_chain_t                    *in;         /* the engine's, unread */
    ngx_chain_t                    *free;
    ngx_chain_t                    *busy;
    ngx_chain_t                    *out;
    ngx_chain_t                    *out_last;   /* out's last link */
    ngx_uint_t                      nout;       /* buffers in out */
    ngx_uint_t                      nbusy;      /* busy ones with bytes */
    ngx_pool_t                     *scratch;    /* reset after each event */
    void                          (*finalize)(ngx_http_request_t *r,
                                                ngx_int_t rc);

    ngx_str_t                       replacement;   /* REPLACE */
    ngx_uint_t                      hooks;      /* NGX_HTTP_LLM_HOOK_* bits */

    unsigned                        rewrite:1;  /* SSE events copied */
    unsigned                        tail:1;     /* JSON over the limit */
    unsigned                        raw_pass:1; /* event too big to hold */
    unsigned                        ended:1;    /* our last buffer sent */
    unsigned                        injecting:1;
    unsigned                        hook_abort:1;
    unsigned                        in_last:1;  /* last_buf is in in */
};


/* the answer goes out as application/json */

static ngx_inline void
ngx_http_llm_set_json_type(ngx_http_request_t *r)
{
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
}


/* ms since the request came in (time to the first token, metrics.c) */

static ngx_inline ngx_msec_int_t
ngx_http_llm_elapsed(ngx_http_request_t *r)
{
    ngx_time_t      *tp;
    ngx_msec_int_t   ms;

    tp = ngx_timeofday();

    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                           + (tp->msec - r->start_msec));

    return ngx_max(ms, 0);
}


#endif /* _NGX_HTTP_LLM_RESPONSE_COMMON_H_INCLUDED_ */
