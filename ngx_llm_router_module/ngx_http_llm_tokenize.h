
/*
 * ngx_llm_router: exact token counts from an engine's /tokenize.
 */


#ifndef _NGX_HTTP_LLM_TOKENIZE_H_INCLUDED_
#define _NGX_HTTP_LLM_TOKENIZE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"


/* called when the count is in (ctx->exact_tokens, -1: none) */
typedef void (*ngx_http_llm_tokenize_done_pt)(ngx_http_request_t *r);


ngx_int_t ngx_http_llm_tokenize_start(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_upstream_srv_conf_t *uscf,
    ngx_str_t *body, ngx_uint_t n, ngx_msec_t timeout,
    ngx_http_llm_tokenize_done_pt done);


#endif /* _NGX_HTTP_LLM_TOKENIZE_H_INCLUDED_ */
