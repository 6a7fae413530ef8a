
/*
 * ngx_llm_router: llm_router_status as an HTML page
 * (ngx_http_llm_status_html.c).
 */


#ifndef _NGX_HTTP_LLM_STATUS_HTML_H_INCLUDED_
#define _NGX_HTTP_LLM_STATUS_HTML_H_INCLUDED_


#include "ngx_http_llm_router.h"


ngx_uint_t ngx_http_llm_status_wants_html(ngx_http_request_t *r);
ngx_buf_t *ngx_http_llm_status_html(ngx_http_request_t *r,
    ngx_http_llm_main_conf_t *lmcf, ngx_http_llm_peer_state_t *peers);


#endif /* _NGX_HTTP_LLM_STATUS_HTML_H_INCLUDED_ */
