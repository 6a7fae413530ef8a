
/*
 * ngx_llm_router: the response filters' exports (ngx_http_llm_response.c);
 * their shared state is in ngx_http_llm_response_common.h.
 */


#ifndef _NGX_HTTP_LLM_RESPONSE_H_INCLUDED_
#define _NGX_HTTP_LLM_RESPONSE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


ngx_int_t ngx_http_llm_response_filter_init(ngx_conf_t *cf);
ngx_int_t ngx_http_llm_hide_accept_encoding(ngx_http_request_t *r);
char *ngx_http_llm_check_buffer_size(ngx_conf_t *cf, void *post,
    void *data);


#endif /* _NGX_HTTP_LLM_RESPONSE_H_INCLUDED_ */
