
/*
 * ngx_llm_router: JSON answers (ngx_http_llm_response_json.c).
 */


#ifndef _NGX_HTTP_LLM_RESPONSE_JSON_H_INCLUDED_
#define _NGX_HTTP_LLM_RESPONSE_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"


void ngx_http_llm_observe_json(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
ngx_int_t ngx_http_llm_held_body(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
ngx_int_t ngx_http_llm_refuse(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, const char *code, const char *text);
ngx_int_t ngx_http_llm_read_usage(ngx_http_llm_ctx_t *ctx, u_char *p,
    size_t len);


#endif /* _NGX_HTTP_LLM_RESPONSE_JSON_H_INCLUDED_ */
