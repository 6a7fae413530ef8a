
/*
 * ngx_llm_router: event-stream answers (ngx_http_llm_response_sse.c).
 */


#ifndef _NGX_HTTP_LLM_RESPONSE_SSE_H_INCLUDED_
#define _NGX_HTTP_LLM_RESPONSE_SSE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"


ngx_int_t ngx_http_llm_sse_start(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
ngx_int_t ngx_http_llm_sse_body(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
void ngx_http_llm_sse_broken(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_int_t rc);


#endif /* _NGX_HTTP_LLM_RESPONSE_SSE_H_INCLUDED_ */
