
/*
 * ngx_llm_router: the shared memory zone (llm_router_zone) that holds the
 * state of every peer of every llm upstream, so that all workers see the
 * same health, load and metrics.
 *
 * On reload the zone is adopted.  If the peers are the same, in the same
 * order, the new workers share the old workers' array; otherwise a new
 * array is laid out, peers still configured keep their state (found again
 * by upstream and peer name), and the old array stays allocated until the
 * next change of layout, for the old workers finishing their requests.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"


static ngx_int_t ngx_http_llm_init_zone(ngx_shm_zone_t *shm_zone, void *data);
static ngx_uint_t ngx_http_llm_same_layout(ngx_http_llm_main_conf_t *lmcf,
    ngx_http_llm_shctx_t *old, ngx_uint_t n);
static void ngx_http_llm_name_state(ngx_http_llm_peer_state_t *st,
    ngx_http_llm_srv_conf_t *lscf, ngx_uint_t k);
static void ngx_http_llm_adopt_state(ngx_http_llm_peer_state_t *st,
    ngx_http_llm_shctx_t *old);


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
    return &lmcf->peers[lscf->base + n];
}


static ngx_int_t
ngx_http_llm_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_llm_main_conf_t *olmcf = data;

    size_t                        len;
    ngx_uint_t                    i, k, n;
    ngx_slab_pool_t              *shpool;
    ngx_http_llm_shctx_t         *sh, *old;
    ngx_http_llm_srv_conf_t     **lscfp, *lscf;
    ngx_http_llm_main_conf_t     *lmcf;
    ngx_http_llm_peer_state_t    *peers, *st;

    lmcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    lmcf->shpool = shpool;

    old = NULL;

    if (olmcf && olmcf->sh && olmcf->sh->version == NGX_HTTP_LLM_ZONE_VERSION)
    {
        old = olmcf->sh;
    }

    /* every llm upstream's peers get consecutive slots */

    n = 0;
    lscfp = lmcf->upstreams.elts;

    for (i = 0; i < lmcf->upstreams.nelts; i++) {
        lscfp[i]->base = n;
        n += lscfp[i]->npeers;
    }

    ngx_shmtx_lock(&shpool->mutex);

    sh = old;

    if (sh == NULL) {
        sh = ngx_slab_calloc_locked(shpool, sizeof(ngx_http_llm_shctx_t));
        if (sh == NULL) {
            goto too_small;
        }

        sh->version = NGX_HTTP_LLM_ZONE_VERSION;
        shpool->data = sh;

        len = sizeof(" in llm_router_zone \"\"") + shm_zone->shm.name.len;

        shpool->log_ctx = ngx_slab_alloc_locked(shpool, len);
        if (shpool->log_ctx == NULL) {
            goto too_small;
        }

        ngx_sprintf(shpool->log_ctx, " in llm_router_zone \"%V\"%Z",
                    &shm_zone->shm.name);
    }

    if (old && old->peers && ngx_http_llm_same_layout(lmcf, old, n)) {
        peers = old->peers;
        goto done;
    }

    peers = ngx_slab_calloc_locked(shpool,
                              (n + 1) * sizeof(ngx_http_llm_peer_state_t));
    if (peers == NULL) {
        goto too_small;
    }

    for (i = 0; i < lmcf->upstreams.nelts; i++) {
        lscf = lscfp[i];

        for (k = 0; k < lscf->npeers; k++) {
            st = &peers[lscf->base + k];

            ngx_http_llm_name_state(st, lscf, k);

            if (old) {
                ngx_http_llm_adopt_state(st, old);
            }
        }
    }

    if (old && old->previous) {
        ngx_slab_free_locked(shpool, old->previous);
    }

    sh->previous = old ? old->peers : NULL;
    sh->peers = peers;
    sh->npeers = n;

done:

    ngx_shmtx_unlock(&shpool->mutex);

    lmcf->sh = sh;
    lmcf->peers = peers;
    lmcf->npeers = n;

    return NGX_OK;

too_small:

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                  "llm_router_zone \"%V\" is too small for %ui peers",
                  &shm_zone->shm.name, n);

    return NGX_ERROR;
}


static void
ngx_http_llm_name_state(ngx_http_llm_peer_state_t *st,
    ngx_http_llm_srv_conf_t *lscf, ngx_uint_t k)
{
    size_t                        len;
    ngx_http_upstream_rr_peer_t  *peer;

    len = ngx_min(lscf->upstream->host.len, NGX_HTTP_LLM_NAME_LEN - 1);
    ngx_memcpy(st->upstream, lscf->upstream->host.data, len);

    peer = ngx_http_llm_rr_peer(lscf, k);

    if (peer) {
        len = ngx_min(peer->name.len, NGX_HTTP_LLM_NAME_LEN - 1);
        ngx_memcpy(st->name, peer->name.data, len);
    }
}


/* the same peers in the same order as the zone's newest array */

static ngx_uint_t
ngx_http_llm_same_layout(ngx_http_llm_main_conf_t *lmcf,
    ngx_http_llm_shctx_t *old, ngx_uint_t n)
{
    ngx_uint_t                  i, k;
    ngx_http_llm_srv_conf_t   **lscfp, *lscf;
    ngx_http_llm_peer_state_t   st;

    if (old->npeers != n) {
        return 0;
    }

    lscfp = lmcf->upstreams.elts;

    for (i = 0; i < lmcf->upstreams.nelts; i++) {
        lscf = lscfp[i];

        for (k = 0; k < lscf->npeers; k++) {
            ngx_memzero(st.upstream, NGX_HTTP_LLM_NAME_LEN);
            ngx_memzero(st.name, NGX_HTTP_LLM_NAME_LEN);

            ngx_http_llm_name_state(&st, lscf, k);

            if (ngx_strcmp(st.upstream, old->peers[lscf->base + k].upstream)
                != 0
                || ngx_strcmp(st.name, old->peers[lscf->base + k].name) != 0)
            {
                return 0;
            }
        }
    }

    return 1;
}


/* a peer kept across a reload keeps its health; checks start afresh */

static void
ngx_http_llm_adopt_state(ngx_http_llm_peer_state_t *st,
    ngx_http_llm_shctx_t *old)
{
    ngx_uint_t                  i;
    ngx_http_llm_peer_state_t  *o;

    for (i = 0; i < old->npeers; i++) {
        o = &old->peers[i];

        if (ngx_strcmp(o->upstream, st->upstream) != 0
            || ngx_strcmp(o->name, st->name) != 0)
        {
            continue;
        }

        st->down = o->down;
        st->fails = o->fails;
        st->successes = o->successes;
        st->checks = o->checks;
        st->latency = o->latency;
        st->last_check = o->last_check;
        st->last_check_ms = o->last_check_ms;
        ngx_memcpy(st->error, o->error, NGX_HTTP_LLM_ERROR_LEN);

        st->running = o->running;
        st->waiting = o->waiting;
        st->kv_cache = o->kv_cache;
        st->has_running = o->has_running;
        st->has_waiting = o->has_waiting;
        st->has_kv_cache = o->has_kv_cache;
        st->bad_logged = o->bad_logged;
        st->scrapes = o->scrapes;
        st->bad_lines = o->bad_lines;
        st->scraped = o->scraped;
        st->last_scrape = o->last_scrape;
        st->last_scrape_ms = o->last_scrape_ms;
        ngx_memcpy(st->scrape_error, o->scrape_error,
                   NGX_HTTP_LLM_ERROR_LEN);

        return;
    }
}
