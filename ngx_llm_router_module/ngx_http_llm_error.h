
/*
 * ngx_llm_router: OpenAI-shaped error bodies and the error filter
 * (ngx_http_llm_error.c).
 */


#ifndef _NGX_HTTP_LLM_ERROR_H_INCLUDED_
#define _NGX_HTTP_LLM_ERROR_H_INCLUDED_


#include "ngx_http_llm_router.h"


ngx_uint_t ngx_http_llm_error_token(const char *s);
void ngx_http_llm_set_error(ngx_http_llm_ctx_t *ctx, const char *code,
    const char *type, const char *param, ngx_str_t *message);
ngx_int_t ngx_http_llm_send_error(ngx_http_request_t *r, ngx_uint_t status,
    ngx_http_llm_ctx_t *ctx);
ngx_buf_t *ngx_http_llm_error_body(ngx_http_request_t *r, ngx_uint_t status,
    ngx_http_llm_ctx_t *ctx);
ngx_int_t ngx_http_llm_error_filter_init(ngx_conf_t *cf);


#endif /* _NGX_HTTP_LLM_ERROR_H_INCLUDED_ */
