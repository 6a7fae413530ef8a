
/*
 * ngx_llm_router: from the model a client asked for to a route
 * (ngx_http_llm_route.c).
 */


#ifndef _NGX_HTTP_LLM_ROUTE_H_INCLUDED_
#define _NGX_HTTP_LLM_ROUTE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_llm_router.h"


ngx_http_llm_route_t *ngx_http_llm_find_route(ngx_http_llm_main_conf_t *lmcf,
    ngx_str_t *name);
ngx_uint_t ngx_http_llm_glob_match(ngx_str_t *pattern, ngx_str_t *name);
ngx_http_llm_route_t *ngx_http_llm_healthy_route(
    ngx_http_llm_main_conf_t *lmcf, ngx_http_llm_route_t *route);


#endif /* _NGX_HTTP_LLM_ROUTE_H_INCLUDED_ */
