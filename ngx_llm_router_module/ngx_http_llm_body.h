
/*
 * ngx_llm_router: the precontent phase handler and the routing of a
 * request (ngx_http_llm_body.c).
 */


#ifndef _NGX_HTTP_LLM_BODY_H_INCLUDED_
#define _NGX_HTTP_LLM_BODY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"


ngx_int_t ngx_http_llm_router_handler(ngx_http_request_t *r);
void ngx_http_llm_resume_routing(ngx_http_request_t *r);


#endif /* _NGX_HTTP_LLM_BODY_H_INCLUDED_ */
