
/*
 * ngx_llm_router: the llm_router_metrics endpoint, in the Prometheus text
 * format (ngx_http_llm_prometheus.c).
 */


#ifndef _NGX_HTTP_LLM_PROMETHEUS_H_INCLUDED_
#define _NGX_HTTP_LLM_PROMETHEUS_H_INCLUDED_


#include "ngx_http_llm_router.h"


char *ngx_http_llm_router_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_LLM_PROMETHEUS_H_INCLUDED_ */
