
/*
 * ngx_llm_router: how an llm upstream numbers its peers, primaries then
 * backups (ngx_http_llm_peers.c).
 */


#ifndef _NGX_HTTP_LLM_PEERS_H_INCLUDED_
#define _NGX_HTTP_LLM_PEERS_H_INCLUDED_


#include "ngx_http_llm_router.h"


ngx_uint_t ngx_http_llm_peers_offset(ngx_http_llm_srv_conf_t *lscf,
    ngx_http_upstream_rr_peers_t *peers);
ngx_http_upstream_rr_peer_t *ngx_http_llm_rr_peer(
    ngx_http_llm_srv_conf_t *lscf, ngx_uint_t n);


#endif /* _NGX_HTTP_LLM_PEERS_H_INCLUDED_ */
