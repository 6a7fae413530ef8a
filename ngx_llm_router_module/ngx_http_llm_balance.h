
/*
 * ngx_llm_router: the balancing policies, llm_balance
 * (ngx_http_llm_balance.c).
 */


#ifndef _NGX_HTTP_LLM_BALANCE_H_INCLUDED_
#define _NGX_HTTP_LLM_BALANCE_H_INCLUDED_


#include "ngx_http_llm_router.h"


char *ngx_http_llm_balance(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
const char *ngx_http_llm_balance_name(ngx_uint_t balance);


#endif /* _NGX_HTTP_LLM_BALANCE_H_INCLUDED_ */
