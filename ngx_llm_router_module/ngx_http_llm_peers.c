
/*
 * ngx_llm_router: how an llm upstream numbers its peers, the zone slots' index.
 * Not here: the slots (zone.c), choosing a peer (balance.c, upstream.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_peers.h"


/* the index of the first peer of "peers": primaries, then the backups */

ngx_uint_t
ngx_http_llm_peers_offset(ngx_http_llm_srv_conf_t *lscf,
    ngx_http_upstream_rr_peers_t *peers)
{
    ngx_http_upstream_rr_peers_t  *primary;

    primary = lscf->upstream->peer.data;

    return (peers == primary) ? 0 : primary->number;
}


/* peer n of an upstream, counting the primaries, then the backups */

ngx_http_upstream_rr_peer_t *
ngx_http_llm_rr_peer(ngx_http_llm_srv_conf_t *lscf, ngx_uint_t n)
{
    ngx_http_upstream_rr_peer_t   *peer;
    ngx_http_upstream_rr_peers_t  *peers;

    for (peers = lscf->upstream->peer.data; peers; peers = peers->next) {
        for (peer = peers->peer; peer; peer = peer->next) {
            if (n-- == 0) {
                return peer;
            }
        }
    }

    return NULL;
}
