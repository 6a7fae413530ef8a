
/*
 * ngx_llm_router: the engine's directives in upstream{} (llm_engine,
 * llm_check, llm_scrape) and the probes they start in every worker.
 */


#ifndef _NGX_HTTP_LLM_CHECK_H_INCLUDED_
#define _NGX_HTTP_LLM_CHECK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"


char *ngx_http_llm_engine_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_llm_check(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_llm_scrape(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_llm_check_init_process(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_LLM_CHECK_H_INCLUDED_ */
