
/*
 * ngx_llm_router: the shared zone (llm_router_zone) and its peer slots.
 * Not here: what slots hold (check.c, upstream.c), peer numbers (peers.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_zone.h"
#include "ngx_http_llm_peers.h"
#include "ngx_http_llm_metrics.h"


/*
 * The shared zone holds the state of every peer of every llm upstream, so
 * that all workers see the same health, load and metrics.
 *
 * A peer's state is a slot found by upstream and peer name, and a slot never
 * moves: on reload the new configuration looks its peers up and shares the
 * slots of the peers it keeps with the old workers still finishing their
 * requests, so health, claims and in-flight counts go on undisturbed.  A
 * slot of a peer no configuration names any more stays allocated (a few
 * hundred bytes), so that an old worker can never write into freed memory.
 */


static ngx_int_t ngx_http_llm_init_zone(ngx_shm_zone_t *shm_zone, void *data);
static ngx_http_llm_shctx_t *ngx_http_llm_create_zone(
    ngx_shm_zone_t *shm_zone, ngx_slab_pool_t *shpool);
static ngx_http_llm_peer_state_t *ngx_http_llm_find_slot(
    ngx_http_llm_shctx_t *sh, ngx_slab_pool_t *shpool,
    ngx_http_llm_srv_conf_t *lscf, ngx_uint_t k);


char *
ngx_http_llm_router_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_main_conf_t *lmcf = conf;

    ssize_t          size;
    ngx_str_t       *value;
    ngx_shm_zone_t  *shm_zone;

    if (lmcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small", &value[1]);
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &value[1], size,
                                     &ngx_http_llm_router_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", &value[1]);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_llm_init_zone;
    shm_zone->data = lmcf;

    lmcf->shm_zone = shm_zone;

    return NGX_CONF_OK;
}


ngx_http_llm_peer_state_t *
ngx_http_llm_peer_state(ngx_http_llm_main_conf_t *lmcf,
    ngx_http_llm_srv_conf_t *lscf, ngx_uint_t n)
{
    return lscf->slots[n];
}


static ngx_int_t
ngx_http_llm_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_llm_main_conf_t *olmcf = data;

    size_t                      len;
    ngx_uint_t                  i, k, n;
    ngx_slab_pool_t            *shpool;
    ngx_http_llm_shctx_t       *sh;
    ngx_http_llm_srv_conf_t   **lscfp, *lscf;
    ngx_http_llm_main_conf_t   *lmcf;
    ngx_http_llm_peer_state_t  *st;

    lmcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    lmcf->shpool = shpool;

    /* the zone of the running configuration, if its layout is known */

    sh = NULL;

    if (olmcf && olmcf->sh && olmcf->sh->version == NGX_HTTP_LLM_ZONE_VERSION)
    {
        sh = olmcf->sh;
    }

    n = 0;
    lscfp = lmcf->upstreams.elts;

    for (i = 0; i < lmcf->upstreams.nelts; i++) {
        lscf = lscfp[i];

        len = (lscf->npeers + 1) * sizeof(ngx_http_llm_peer_state_t *);

        lscf->slots = ngx_pcalloc(lmcf->pool, len);
        if (lscf->slots == NULL) {
            return NGX_ERROR;
        }

        n += lscf->npeers;
    }

    ngx_shmtx_lock(&shpool->mutex);

    if (sh == NULL) {
        sh = ngx_http_llm_create_zone(shm_zone, shpool);
        if (sh == NULL) {
            goto too_small;
        }
    }

    for (i = 0; i < lmcf->upstreams.nelts; i++) {
        lscf = lscfp[i];

        for (k = 0; k < lscf->npeers; k++) {
            st = ngx_http_llm_find_slot(sh, shpool, lscf, k);
            if (st == NULL) {
                goto too_small;
            }

            /* a claim made under a longer interval must not delay probes */

            st->check.next = ngx_current_msec;
            st->scrape.next = ngx_current_msec;

            lscf->slots[k] = st;
        }
    }

    if (ngx_http_llm_metrics_bind(lmcf, sh, shpool) != NGX_OK) {
        goto too_small;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    lmcf->sh = sh;

    return NGX_OK;

too_small:

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                  "llm_router_zone \"%V\" is too small for %ui peers",
                  &shm_zone->shm.name, n);

    return NGX_ERROR;
}


/* a new zone, or one whose layout changed: under the zone's lock */

static ngx_http_llm_shctx_t *
ngx_http_llm_create_zone(ngx_shm_zone_t *shm_zone, ngx_slab_pool_t *shpool)
{
    size_t                 len;
    ngx_http_llm_shctx_t  *sh;

    sh = ngx_slab_calloc_locked(shpool, sizeof(ngx_http_llm_shctx_t));
    if (sh == NULL) {
        return NULL;
    }

    sh->version = NGX_HTTP_LLM_ZONE_VERSION;
    ngx_queue_init(&sh->slots);
    ngx_queue_init(&sh->models);
    shpool->data = sh;

    len = sizeof(" in llm_router_zone \"\"") + shm_zone->shm.name.len;

    shpool->log_ctx = ngx_slab_alloc_locked(shpool, len);
    if (shpool->log_ctx == NULL) {
        return NULL;
    }

    ngx_sprintf(shpool->log_ctx, " in llm_router_zone \"%V\"%Z",
                &shm_zone->shm.name);

    return sh;
}


/* the slot of a peer, by upstream and peer name, made if it is new */

static ngx_http_llm_peer_state_t *
ngx_http_llm_find_slot(ngx_http_llm_shctx_t *sh, ngx_slab_pool_t *shpool,
    ngx_http_llm_srv_conf_t *lscf, ngx_uint_t k)
{
    size_t                        len;
    ngx_queue_t                  *q;
    ngx_http_llm_peer_state_t    *st;
    ngx_http_upstream_rr_peer_t  *peer;
    u_char                        upstream[NGX_HTTP_LLM_NAME_LEN];
    u_char                        name[NGX_HTTP_LLM_NAME_LEN];

    ngx_memzero(upstream, NGX_HTTP_LLM_NAME_LEN);
    ngx_memzero(name, NGX_HTTP_LLM_NAME_LEN);

    len = ngx_min(lscf->upstream->host.len, NGX_HTTP_LLM_NAME_LEN - 1);
    ngx_memcpy(upstream, lscf->upstream->host.data, len);

    peer = ngx_http_llm_rr_peer(lscf, k);

    if (peer) {
        len = ngx_min(peer->name.len, NGX_HTTP_LLM_NAME_LEN - 1);
        ngx_memcpy(name, peer->name.data, len);
    }

    for (q = ngx_queue_head(&sh->slots);
         q != ngx_queue_sentinel(&sh->slots);
         q = ngx_queue_next(q))
    {
        st = ngx_queue_data(q, ngx_http_llm_peer_state_t, queue);

        if (ngx_strcmp(st->upstream, upstream) == 0
            && ngx_strcmp(st->name, name) == 0)
        {
            return st;
        }
    }

    st = ngx_slab_calloc_locked(shpool, sizeof(ngx_http_llm_peer_state_t));
    if (st == NULL) {
        return NULL;
    }

    ngx_memcpy(st->upstream, upstream, NGX_HTTP_LLM_NAME_LEN);
    ngx_memcpy(st->name, name, NGX_HTTP_LLM_NAME_LEN);

    ngx_queue_insert_tail(&sh->slots, &st->queue);
    sh->nslots++;

    return st;
}
