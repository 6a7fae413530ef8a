
/*
 * ngx_llm_router: how an answer fails (ngx_http_llm_response_fail.c), and
 * the filters after the router's.
 */


#ifndef _NGX_HTTP_LLM_RESPONSE_FAIL_H_INCLUDED_
#define _NGX_HTTP_LLM_RESPONSE_FAIL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"


extern ngx_http_output_header_filter_pt  ngx_http_llm_next_header_filter;
extern ngx_http_output_body_filter_pt    ngx_http_llm_next_body_filter;


void ngx_http_llm_stream_failed(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_int_t rc);
ngx_int_t ngx_http_llm_stream_error_text(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_str_t *text);
ngx_int_t ngx_http_llm_error_event(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_uint_t status, ngx_str_t *text);
void ngx_http_llm_upstream_stop(ngx_http_request_t *r);


#endif /* _NGX_HTTP_LLM_RESPONSE_FAIL_H_INCLUDED_ */
