
/*
 * ngx_llm_router: the llm_router_status endpoint (ngx_http_llm_status.c).
 */


#ifndef _NGX_HTTP_LLM_STATUS_H_INCLUDED_
#define _NGX_HTTP_LLM_STATUS_H_INCLUDED_


#include "ngx_http_llm_router.h"


char *ngx_http_llm_router_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_LLM_STATUS_H_INCLUDED_ */
