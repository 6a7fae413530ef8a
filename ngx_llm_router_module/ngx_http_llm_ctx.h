
/*
 * ngx_llm_router: the request context and the helpers every content
 * handler shares (ngx_http_llm_ctx.c).
 */


#ifndef _NGX_HTTP_LLM_CTX_H_INCLUDED_
#define _NGX_HTTP_LLM_CTX_H_INCLUDED_


#include "ngx_http_llm_router.h"


ngx_http_llm_ctx_t *ngx_http_llm_find_ctx(ngx_http_request_t *r);
ngx_http_llm_ctx_t *ngx_http_llm_get_ctx(ngx_http_request_t *r);
char *ngx_http_llm_set_content_handler(ngx_conf_t *cf,
    ngx_http_handler_pt handler);
ngx_int_t ngx_http_llm_accept_get(ngx_http_request_t *r,
    ngx_http_llm_main_conf_t **lmcf);
ngx_int_t ngx_http_llm_send_buffer(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, ngx_buf_t *b);


#endif /* _NGX_HTTP_LLM_CTX_H_INCLUDED_ */
