
/*
 * ngx_llm_router: the shared zone, llm_router_zone (ngx_http_llm_zone.c).
 */


#ifndef _NGX_HTTP_LLM_ZONE_H_INCLUDED_
#define _NGX_HTTP_LLM_ZONE_H_INCLUDED_


#include "ngx_http_llm_router.h"


char *ngx_http_llm_router_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_http_llm_peer_state_t *ngx_http_llm_peer_state(
    ngx_http_llm_main_conf_t *lmcf, ngx_http_llm_srv_conf_t *lscf,
    ngx_uint_t n);


#endif /* _NGX_HTTP_LLM_ZONE_H_INCLUDED_ */
