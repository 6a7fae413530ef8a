
/*
 * ngx_llm_router: the shared memory zone (llm_router_zone) that holds the
 * state of every peer of every llm upstream, so that all workers see the
 * same health.  On reload the zone is adopted: peers still configured keep
 * their state, found again by upstream and peer name.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"


static ngx_int_t ngx_http_llm_init_zone(ngx_shm_zone_t *shm_zone, void *data);
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
    return &lmcf->sh->peers[lscf->base + n];
}


static ngx_int_t
ngx_http_llm_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_llm_main_conf_t *olmcf = data;

    size_t                        len;
    ngx_str_t                    *name;
    ngx_uint_t                    i, k, n;
    ngx_slab_pool_t              *shpool;
    ngx_http_llm_shctx_t         *sh, *old;
    ngx_http_llm_srv_conf_t     **lscfp, *lscf;
    ngx_http_llm_main_conf_t     *lmcf;
    ngx_http_llm_peer_state_t    *peers, *st;
    ngx_http_upstream_rr_peer_t  *peer;

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

    peers = ngx_slab_calloc_locked(shpool,
                              (n + 1) * sizeof(ngx_http_llm_peer_state_t));
    if (peers == NULL) {
        goto too_small;
    }

    for (i = 0; i < lmcf->upstreams.nelts; i++) {
        lscf = lscfp[i];

        for (k = 0; k < lscf->npeers; k++) {
            st = &peers[lscf->base + k];
            peer = ngx_http_llm_rr_peer(lscf, k);

            len = ngx_min(lscf->upstream->host.len,
                          NGX_HTTP_LLM_NAME_LEN - 1);
            ngx_memcpy(st->upstream, lscf->upstream->host.data, len);

            name = peer ? &peer->name : NULL;
            len = name ? ngx_min(name->len, NGX_HTTP_LLM_NAME_LEN - 1) : 0;

            if (len) {
                ngx_memcpy(st->name, name->data, len);
            }

            if (old) {
                ngx_http_llm_adopt_state(st, old);
            }
        }
    }

    if (old && old->peers) {
        ngx_slab_free_locked(shpool, old->peers);
    }

    sh->peers = peers;
    sh->npeers = n;

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
