
/*
 * ngx_llm_router: the llm_* settings of an upstream{} block, the wrapper over
 * its balancer, its checks at initialization, what the router asks of it
 * (ngx_http_llm_upstream.c).
 */


#ifndef _NGX_HTTP_LLM_UPSTREAM_H_INCLUDED_
#define _NGX_HTTP_LLM_UPSTREAM_H_INCLUDED_


#include "ngx_http_llm_router.h"


void *ngx_http_llm_create_srv_conf(ngx_conf_t *cf);
char *ngx_http_llm_upstream_directive(ngx_conf_t *cf,
    ngx_http_llm_srv_conf_t *lscf);
extern ngx_conf_post_t  ngx_http_llm_upstream_post;
ngx_int_t ngx_http_llm_init_upstreams(ngx_conf_t *cf,
    ngx_http_llm_main_conf_t *lmcf);
ngx_int_t ngx_http_llm_check_upstream_hooks(ngx_conf_t *cf);
ngx_uint_t ngx_http_llm_upstream_usable(ngx_http_llm_main_conf_t *lmcf,
    ngx_http_upstream_srv_conf_t *uscf, ngx_msec_t *retry);
ngx_uint_t ngx_http_llm_learned_context(ngx_http_llm_main_conf_t *lmcf,
    ngx_http_upstream_srv_conf_t *uscf);


#endif /* _NGX_HTTP_LLM_UPSTREAM_H_INCLUDED_ */
