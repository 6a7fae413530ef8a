
/*
 * ngx_llm_router: upstream{}'s llm settings, the peer wrapper, init checks.
 * Not here: policies (balance.c), llm_dispatch (dispatch.c), slots (zone.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_upstream.h"
#include "ngx_http_llm_dispatch.h"
#include "ngx_http_llm_peers.h"
#include "ngx_http_llm_engine.h"


/* per request: the balancer's data and the peer counted in flight */
typedef struct {
    void                          *data;
    ngx_event_get_peer_pt          original_get_peer;
    ngx_event_free_peer_pt         original_free_peer;
#if (NGX_HTTP_SSL)
    ngx_event_set_peer_session_pt  original_set_session;
    ngx_event_save_peer_session_pt original_save_session;
#endif
    ngx_http_llm_srv_conf_t       *lscf;
    ngx_http_llm_main_conf_t      *lmcf;
    ngx_http_llm_peer_state_t     *counted;
} ngx_http_llm_peer_data_t;


static ngx_http_llm_srv_conf_t *ngx_http_llm_register_upstream(
    ngx_conf_t *cf, ngx_http_llm_srv_conf_t *lscf);
static ngx_int_t ngx_http_llm_init_model_upstreams(ngx_conf_t *cf,
    ngx_http_llm_main_conf_t *lmcf);
static ngx_int_t ngx_http_llm_init_upstream_blocks(ngx_conf_t *cf,
    ngx_http_llm_main_conf_t *lmcf);
static ngx_int_t ngx_http_llm_upstream_needs(ngx_conf_t *cf,
    ngx_http_llm_main_conf_t *lmcf, ngx_http_llm_srv_conf_t *lscf);
static ngx_int_t ngx_http_llm_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_llm_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static void ngx_http_llm_sync_down(ngx_http_llm_srv_conf_t *lscf,
    ngx_http_llm_main_conf_t *lmcf);

static ngx_int_t ngx_http_llm_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_llm_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state);
#if (NGX_HTTP_SSL)
static ngx_int_t ngx_http_llm_set_session(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_llm_save_session(ngx_peer_connection_t *pc,
    void *data);
#endif


void *
ngx_http_llm_create_srv_conf(ngx_conf_t *cf)
{
    ngx_http_llm_srv_conf_t  *lscf;

    lscf = ngx_pcalloc(cf->pool, sizeof(ngx_http_llm_srv_conf_t));
    if (lscf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     lscf->engine = NGX_HTTP_LLM_ENGINE_NONE;
     *     lscf->check_interval = 0;
     *     lscf->upstream = NULL;
     */

    return lscf;
}


/* the common end of the llm_* directives in upstream{} */

char *
ngx_http_llm_upstream_directive(ngx_conf_t *cf, ngx_http_llm_srv_conf_t *lscf)
{
    if (lscf->dispatch) {
        return "cannot be in an \"llm_dispatch\" block";
    }

    if (ngx_http_llm_register_upstream(cf, lscf) == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * The same, as the cmd->post of llm_balance: the command table passes it,
 * so that the policies reach the wrapper without naming this file, as the
 * wrapper composes around them without naming theirs.
 */

static char *
ngx_http_llm_upstream_post_handler(ngx_conf_t *cf, void *post, void *data)
{
    return ngx_http_llm_upstream_directive(cf, data);
}


ngx_conf_post_t  ngx_http_llm_upstream_post = {
    ngx_http_llm_upstream_post_handler
};


/*
 * Remembers the upstream and wraps its initialization, once.  The wrapper
 * keeps the peers that the active checks mark down out of whatever balancer
 * is under it (round robin, least_conn, hash, random, llm_balance) and
 * counts the requests in flight to each peer; as keepalive does, it wraps
 * the block's init_upstream, then its peer.init; keepalive may wrap it.
 */

static ngx_http_llm_srv_conf_t *
ngx_http_llm_register_upstream(ngx_conf_t *cf, ngx_http_llm_srv_conf_t *lscf)
{
    ngx_http_llm_srv_conf_t        **p;
    ngx_http_llm_main_conf_t        *lmcf;
    ngx_http_upstream_srv_conf_t    *uscf;

    if (lscf->upstream) {
        return lscf;
    }

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);
    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_llm_router_module);

    p = ngx_array_push(&lmcf->upstreams);
    if (p == NULL) {
        return NULL;
    }

    *p = lscf;

    lscf->upstream = uscf;
    lscf->file = cf->conf_file->file.name;
    lscf->line = cf->conf_file->line;

    lscf->original_init_upstream = uscf->peer.init_upstream
                                   ? uscf->peer.init_upstream
                                   : ngx_http_upstream_init_round_robin;

    uscf->peer.init_upstream = ngx_http_llm_init_upstream;

    return lscf;
}


/* after the whole http{} block: defaults, and the hook must have run */

ngx_int_t
ngx_http_llm_init_upstreams(ngx_conf_t *cf, ngx_http_llm_main_conf_t *lmcf)
{
    if (ngx_http_llm_check_dispatch(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_llm_init_model_upstreams(cf, lmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_llm_init_upstream_blocks(cf, lmcf);
}


/* what each model asks of its upstream */

static ngx_int_t
ngx_http_llm_init_model_upstreams(ngx_conf_t *cf,
    ngx_http_llm_main_conf_t *lmcf)
{
    ngx_uint_t                 i;
    ngx_http_llm_model_t      *models;
    ngx_http_llm_srv_conf_t   *lscf;

    /* the engines of "max_context auto" models are asked for it */

    models = lmcf->models.elts;

    for (i = 0; i < lmcf->models.nelts; i++) {
        lscf = ngx_http_conf_upstream_srv_conf(models[i].upstream,
                                               ngx_http_llm_router_module);

        if (lscf->dispatch) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "llm_model \"%V\" cannot use upstream \"%V\": "
                          "it has \"llm_dispatch\", in %V:%ui",
                          &models[i].name, &models[i].upstream->host,
                          &models[i].file, models[i].line);
            return NGX_ERROR;
        }

        if (models[i].tokenize == 1
            && !ngx_http_llm_engine_tokenizes(lscf->engine))
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"tokenize on\" of llm_model \"%V\" needs "
                          "\"llm_engine vllm\" or \"llm_engine llamacpp\" "
                          "in upstream \"%V\", in %V:%ui",
                          &models[i].name, &models[i].upstream->host,
                          &models[i].file, models[i].line);
            return NGX_ERROR;
        }

        if (models[i].max_context != NGX_HTTP_LLM_CONTEXT_AUTO) {
            continue;
        }

        lscf = ngx_http_conf_upstream_srv_conf(models[i].upstream,
                                               ngx_http_llm_router_module);

        if (lscf->engine == NGX_HTTP_LLM_ENGINE_NONE) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"max_context auto\" of llm_model \"%V\" needs "
                          "an llm_engine in upstream \"%V\", in %V:%ui",
                          &models[i].name, &models[i].upstream->host,
                          &models[i].file, models[i].line);
            return NGX_ERROR;
        }

        /* asked as often as it is checked, else every 10 s */

        if (lscf->limits_interval == 0) {
            lscf->limits_interval = lscf->check_interval
                                    ? lscf->check_interval : 10000;
        }
    }

    return NGX_OK;
}


/* each llm upstream: what it needs, then what its engine is asked */

static ngx_int_t
ngx_http_llm_init_upstream_blocks(ngx_conf_t *cf,
    ngx_http_llm_main_conf_t *lmcf)
{
    ngx_uint_t                 i;
    ngx_http_llm_srv_conf_t  **lscfp, *lscf;

    lscfp = lmcf->upstreams.elts;

    for (i = 0; i < lmcf->upstreams.nelts; i++) {
        lscf = lscfp[i];

        if (ngx_http_llm_upstream_needs(cf, lmcf, lscf) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ngx_http_llm_engine_init_upstream(cf, lscf) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The zone that keeps the state of checks, scrapes, policies and learned
 * context sizes, and a name that fits the zone's slots.
 */

static ngx_int_t
ngx_http_llm_upstream_needs(ngx_conf_t *cf, ngx_http_llm_main_conf_t *lmcf,
    ngx_http_llm_srv_conf_t *lscf)
{
    if ((lscf->check_interval || lscf->scrape_interval || lscf->balance
         || lscf->limits_interval)
        && lmcf->shm_zone == NULL)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "%s in upstream \"%V\" needs "
                      "\"llm_router_zone\", in %V:%ui",
                      lscf->check_interval ? "llm_check"
                      : lscf->scrape_interval ? "llm_scrape"
                      : lscf->balance ? "llm_balance"
                      : "max_context auto",
                      &lscf->upstream->host, &lscf->file, lscf->line);
        return NGX_ERROR;
    }

    if (lscf->upstream->host.len >= NGX_HTTP_LLM_NAME_LEN) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "upstream name \"%V\" is longer than %d bytes, "
                      "in %V:%ui", &lscf->upstream->host,
                      NGX_HTTP_LLM_NAME_LEN - 1, &lscf->file,
                      lscf->line);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_init_upstream(ngx_conf_t *cf, ngx_http_upstream_srv_conf_t *us)
{
    ngx_uint_t                     n;
    ngx_http_llm_srv_conf_t       *lscf;
    ngx_http_upstream_rr_peer_t   *peer;
    ngx_http_upstream_rr_peers_t  *peers;

    lscf = ngx_http_conf_upstream_srv_conf(us, ngx_http_llm_router_module);

    if (lscf->original_init_upstream(cf, us) != NGX_OK) {
        return NGX_ERROR;
    }

    lscf->original_init_peer = us->peer.init;
    us->peer.init = ngx_http_llm_init_peer;

    /* the peers, primary then backup, and their configured "down" */

    n = 0;

    for (peers = us->peer.data; peers; peers = peers->next) {
        n += peers->number;
    }

    lscf->npeers = n;

    lscf->config_down = ngx_pcalloc(cf->pool, n + 1);
    if (lscf->config_down == NULL) {
        return NGX_ERROR;
    }

    n = 0;

    for (peers = us->peer.data; peers; peers = peers->next) {
        for (peer = peers->peer; peer; peer = peer->next) {
            lscf->config_down[n++] = peer->down ? 1 : 0;

            /* the zone keys a peer's state by its name: whole names only */

            if (peer->name.len >= NGX_HTTP_LLM_NAME_LEN) {
                ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                              "peer name \"%V\" in upstream \"%V\" is "
                              "longer than %d bytes, in %V:%ui", &peer->name,
                              &us->host, NGX_HTTP_LLM_NAME_LEN - 1,
                              &lscf->file, lscf->line);
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_upstream_t        *u;
    ngx_http_llm_srv_conf_t    *lscf;
    ngx_http_llm_main_conf_t   *lmcf;
    ngx_http_llm_peer_data_t   *pd;

    lscf = ngx_http_conf_upstream_srv_conf(us, ngx_http_llm_router_module);
    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_router_module);

    if (lscf->check_interval && lmcf->sh) {
        ngx_http_llm_sync_down(lscf, lmcf);
    }

    if (lscf->original_init_peer(r, us) != NGX_OK) {
        return NGX_ERROR;
    }

    if (lmcf->sh == NULL) {
        return NGX_OK;
    }

    /* count the requests in flight to each peer, across workers */

    pd = ngx_palloc(r->pool, sizeof(ngx_http_llm_peer_data_t));
    if (pd == NULL) {
        return NGX_ERROR;
    }

    u = r->upstream;

    pd->data = u->peer.data;
    pd->original_get_peer = u->peer.get;
    pd->original_free_peer = u->peer.free;
    pd->lscf = lscf;
    pd->lmcf = lmcf;
    pd->counted = NULL;

    u->peer.data = pd;
    u->peer.get = ngx_http_llm_get_peer;
    u->peer.free = ngx_http_llm_free_peer;

#if (NGX_HTTP_SSL)
    pd->original_set_session = u->peer.set_session;
    pd->original_save_session = u->peer.save_session;

    u->peer.set_session = ngx_http_llm_set_session;
    u->peer.save_session = ngx_http_llm_save_session;
#endif

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_llm_peer_data_t  *pd = data;

    ngx_int_t                      rc;
    ngx_uint_t                     k;
    ngx_http_upstream_rr_peer_t   *peer;
    ngx_http_upstream_rr_peers_t  *peers;

    rc = pd->original_get_peer(pc, pd->data);

    if (rc != NGX_OK && rc != NGX_DONE) {
        return rc;
    }

    /* the peer chosen, by address */

    k = 0;

    for (peers = pd->lscf->upstream->peer.data; peers; peers = peers->next) {
        for (peer = peers->peer; peer; peer = peer->next, k++) {

            if (k < pd->lscf->npeers
                && ngx_cmp_sockaddr(pc->sockaddr, pc->socklen,
                                    peer->sockaddr, peer->socklen, 1)
                   == NGX_OK)
            {
                pd->counted = pd->lscf->slots[k];
                (void) ngx_atomic_fetch_add(&pd->counted->in_flight, 1);
                return rc;
            }
        }
    }

    return rc;
}


/* called once a try ends, whatever ended it: abort, error, retry, done */

static void
ngx_http_llm_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_llm_peer_data_t  *pd = data;

    if (pd->counted) {
        (void) ngx_atomic_fetch_add(&pd->counted->in_flight, -1);

        /* the try failed: proxy_next_upstream may retry another peer */

        if (state & NGX_PEER_FAILED) {
            (void) ngx_atomic_fetch_add(&pd->counted->failed, 1);
        }

        pd->counted = NULL;
    }

    pd->original_free_peer(pc, pd->data, state);
}


#if (NGX_HTTP_SSL)

static ngx_int_t
ngx_http_llm_set_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_llm_peer_data_t  *pd = data;

    return pd->original_set_session(pc, pd->data);
}


static void
ngx_http_llm_save_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_llm_peer_data_t  *pd = data;

    pd->original_save_session(pc, pd->data);
}

#endif


/*
 * A peer is down if configured so or if the checks say so.  The peers are
 * written, under the lock of a "zone" upstream, only when that changes.
 */

static void
ngx_http_llm_sync_down(ngx_http_llm_srv_conf_t *lscf,
    ngx_http_llm_main_conf_t *lmcf)
{
    ngx_uint_t                     n, changed;
    ngx_http_upstream_rr_peer_t   *peer;
    ngx_http_upstream_rr_peers_t  *peers;

    for (peers = lscf->upstream->peer.data; peers; peers = peers->next) {

        changed = 0;

        ngx_http_upstream_rr_peers_rlock(peers);

        n = ngx_http_llm_peers_offset(lscf, peers);

        for (peer = peers->peer; peer && n < lscf->npeers; peer = peer->next)
        {
            if (peer->down != (lscf->config_down[n] || lscf->slots[n]->down))
            {
                changed = 1;
            }

            n++;
        }

        ngx_http_upstream_rr_peers_unlock(peers);

        if (!changed) {
            continue;
        }

        ngx_http_upstream_rr_peers_wlock(peers);

        n = ngx_http_llm_peers_offset(lscf, peers);

        for (peer = peers->peer; peer && n < lscf->npeers; peer = peer->next)
        {
            peer->down = lscf->config_down[n] || lscf->slots[n]->down;
            n++;
        }

        ngx_http_upstream_rr_peers_unlock(peers);
    }
}


/*
 * After the upstreams were initialized: a balancing directive written after
 * llm_engine or llm_check replaces the hook, which then never ran.
 */

ngx_int_t
ngx_http_llm_check_upstream_hooks(ngx_conf_t *cf)
{
    ngx_uint_t                 i;
    ngx_http_llm_srv_conf_t  **lscfp;
    ngx_http_llm_main_conf_t  *lmcf;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_llm_router_module);
    lscfp = lmcf->upstreams.elts;

    for (i = 0; i < lmcf->upstreams.nelts; i++) {
        if (lscfp[i]->original_init_peer == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "the llm_* directives of upstream \"%V\" must "
                          "follow its balancing directive (least_conn, "
                          "hash, random ...), in %V:%ui",
                          &lscfp[i]->upstream->host, &lscfp[i]->file,
                          lscfp[i]->line);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* an upstream without checks is always usable; retry: when to ask again */

ngx_uint_t
ngx_http_llm_upstream_usable(ngx_http_llm_main_conf_t *lmcf,
    ngx_http_upstream_srv_conf_t *uscf, ngx_msec_t *retry)
{
    ngx_uint_t                k;
    ngx_http_llm_srv_conf_t  *lscf;

    lscf = ngx_http_conf_upstream_srv_conf(uscf, ngx_http_llm_router_module);

    *retry = lscf->check_interval;

    if (lscf->check_interval == 0 || lmcf->sh == NULL
        || lscf->npeers == 0)
    {
        return 1;
    }

    for (k = 0; k < lscf->npeers; k++) {
        if (!lscf->config_down[k] && !lscf->slots[k]->down)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * The context size the engines of an upstream report: the smallest among
 * its peers that are up; 0 while none has answered.
 */

ngx_uint_t
ngx_http_llm_learned_context(ngx_http_llm_main_conf_t *lmcf,
    ngx_http_upstream_srv_conf_t *uscf)
{
    ngx_uint_t                  k, ctx, n;
    ngx_http_llm_srv_conf_t    *lscf;
    ngx_http_llm_peer_state_t  *st;

    lscf = ngx_http_conf_upstream_srv_conf(uscf, ngx_http_llm_router_module);

    if (lscf->slots == NULL) {
        return 0;
    }

    ctx = 0;

    for (k = 0; k < lscf->npeers; k++) {
        st = lscf->slots[k];
        n = st->max_context;

        if (n && !st->down && (ctx == 0 || n < ctx)) {
            ctx = n;
        }
    }

    return ctx;
}
