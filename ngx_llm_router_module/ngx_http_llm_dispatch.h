
/*
 * ngx_llm_router: llm_dispatch (ngx_http_llm_dispatch.c).
 */


#ifndef _NGX_HTTP_LLM_DISPATCH_H_INCLUDED_
#define _NGX_HTTP_LLM_DISPATCH_H_INCLUDED_


#include "ngx_http_llm_router.h"


char *ngx_http_llm_dispatch(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_llm_check_dispatch(ngx_conf_t *cf);


#endif /* _NGX_HTTP_LLM_DISPATCH_H_INCLUDED_ */
