
/*
 * ngx_llm_router: the llm_model and llm_alias directives and the route
 * tables (ngx_http_llm_conf.c).
 */


#ifndef _NGX_HTTP_LLM_CONF_H_INCLUDED_
#define _NGX_HTTP_LLM_CONF_H_INCLUDED_


#include "ngx_http_llm_router.h"


char *ngx_http_llm_model_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_llm_alias(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_uint_t ngx_http_llm_first_model(ngx_http_llm_main_conf_t *lmcf,
    ngx_str_t *name, ngx_uint_t before);
ngx_int_t ngx_http_llm_init_routes(ngx_conf_t *cf,
    ngx_http_llm_main_conf_t *lmcf);


#endif /* _NGX_HTTP_LLM_CONF_H_INCLUDED_ */
