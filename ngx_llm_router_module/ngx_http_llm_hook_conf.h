
/*
 * ngx_llm_router: the hook directives, and the hook files loaded
 * (ngx_http_llm_hook_conf.c).
 */


#ifndef _NGX_HTTP_LLM_HOOK_CONF_H_INCLUDED_
#define _NGX_HTTP_LLM_HOOK_CONF_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"


char *ngx_http_llm_hook_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_llm_hook_limits(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_llm_model_hook(ngx_conf_t *cf, ngx_http_llm_model_t *model);
ngx_int_t ngx_http_llm_hook_init_process(ngx_cycle_t *cycle);
void ngx_http_llm_hook_exit_process(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_LLM_HOOK_CONF_H_INCLUDED_ */
