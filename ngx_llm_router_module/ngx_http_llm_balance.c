
/*
 * ngx_llm_router: balancing policies (llm_balance) inside upstream{}.
 *
 * Built like nginx's own least_conn: round-robin peer data underneath, the
 * per-request "tried" bitmap, "down", max_fails/fail_timeout, max_conns,
 * backup servers and "zone" upstreams all keep working; only the choice
 * among the usable peers differs.  The loads come from the shared zone, so
 * every worker sees the requests the others have in flight:
 *
 *   least_conn  fewest requests in flight, per unit of weight;
 *   least_load  the engine's own queue while its scraped metrics are fresh:
 *               (running + 2 * waiting + sent since the scrape)
 *               * (1 + KV-cache use), per unit of weight; a peer whose
 *               metrics are missing or stale counts its requests in flight;
 *   random_two  two usable peers at random, the one with fewer requests in
 *               flight per unit of weight.
 *
 * Ties go to nginx's smooth weighted round robin.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"


typedef struct {
    ngx_http_upstream_rr_peer_data_t  *rrp;
    ngx_http_llm_srv_conf_t           *lscf;
} ngx_http_llm_balance_data_t;


static ngx_int_t ngx_http_llm_balance_get(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_llm_balance_free(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state);
#if (NGX_HTTP_SSL)
static ngx_int_t ngx_http_llm_balance_set_session(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_llm_balance_save_session(ngx_peer_connection_t *pc,
    void *data);
#endif
static ngx_http_upstream_rr_peer_t *ngx_http_llm_balance_choose(
    ngx_http_llm_balance_data_t *bd, ngx_http_upstream_rr_peers_t *peers,
    ngx_uint_t *index);
static ngx_uint_t ngx_http_llm_balance_usable(ngx_http_llm_balance_data_t *bd,
    ngx_http_upstream_rr_peer_t *peer, ngx_uint_t i, time_t now);
static double ngx_http_llm_balance_load(ngx_http_llm_balance_data_t *bd,
    ngx_http_upstream_rr_peers_t *peers, ngx_http_upstream_rr_peer_t *peer,
    ngx_uint_t i);


static ngx_str_t  ngx_http_llm_policies[] = {
    ngx_string("round_robin"),
    ngx_string("least_conn"),
    ngx_string("least_load"),
    ngx_string("random_two"),
    ngx_null_string
};


/* llm_balance round_robin | least_conn | least_load | random_two; */

char *
ngx_http_llm_balance(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_srv_conf_t *lscf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (lscf->balance_set) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; ngx_http_llm_policies[i].len; i++) {
        if (ngx_http_llm_policies[i].len == value[1].len
            && ngx_strncmp(ngx_http_llm_policies[i].data, value[1].data,
                           value[1].len) == 0)
        {
            break;
        }
    }

    if (ngx_http_llm_policies[i].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown balancing policy \"%V\", use "
                           "round_robin, least_conn, least_load or "
                           "random_two", &value[1]);
        return NGX_CONF_ERROR;
    }

    lscf->balance = i;
    lscf->balance_set = 1;

    return ngx_http_llm_upstream_directive(cf, lscf);
}


const char *
ngx_http_llm_balance_name(ngx_uint_t balance)
{
    return (const char *) ngx_http_llm_policies[balance].data;
}


ngx_int_t
ngx_http_llm_balance_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_upstream_t          *u;
    ngx_http_llm_balance_data_t  *bd;

    if (ngx_http_upstream_init_round_robin_peer(r, us) != NGX_OK) {
        return NGX_ERROR;
    }

    bd = ngx_palloc(r->pool, sizeof(ngx_http_llm_balance_data_t));
    if (bd == NULL) {
        return NGX_ERROR;
    }

    u = r->upstream;

    bd->rrp = u->peer.data;
    bd->lscf = ngx_http_conf_upstream_srv_conf(us,
                                               ngx_http_llm_router_module);

    u->peer.data = bd;
    u->peer.get = ngx_http_llm_balance_get;
    u->peer.free = ngx_http_llm_balance_free;

#if (NGX_HTTP_SSL)
    u->peer.set_session = ngx_http_llm_balance_set_session;
    u->peer.save_session = ngx_http_llm_balance_save_session;
#endif

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_balance_get(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_llm_balance_data_t *bd = data;

    time_t                             now;
    uintptr_t                          m;
    ngx_int_t                          rc;
    ngx_uint_t                         i, n;
    ngx_http_upstream_rr_peer_t       *best;
    ngx_http_upstream_rr_peers_t      *peers;
    ngx_http_upstream_rr_peer_data_t  *rrp;

    rrp = bd->rrp;
    peers = rrp->peers;

    if (peers->single || bd->lscf->slots == NULL) {
        return ngx_http_upstream_get_round_robin_peer(pc, rrp);
    }

    pc->cached = 0;
    pc->connection = NULL;

    now = ngx_time();

    ngx_http_upstream_rr_peers_wlock(peers);

    best = ngx_http_llm_balance_choose(bd, peers, &i);

    if (best == NULL) {
        goto failed;
    }

    if (now - best->checked > best->fail_timeout) {
        best->checked = now;
    }

    pc->sockaddr = best->sockaddr;
    pc->socklen = best->socklen;
    pc->name = &best->name;

    best->conns++;
    rrp->current = best;

    n = i / (8 * sizeof(uintptr_t));
    m = (uintptr_t) 1 << i % (8 * sizeof(uintptr_t));
    rrp->tried[n] |= m;

    ngx_http_upstream_rr_peers_unlock(peers);

    return NGX_OK;

failed:

    if (peers->next) {

        /* the backup servers, as round robin does */

        rrp->peers = peers->next;

        n = (rrp->peers->number + (8 * sizeof(uintptr_t) - 1))
            / (8 * sizeof(uintptr_t));

        for (i = 0; i < n; i++) {
            rrp->tried[i] = 0;
        }

        ngx_http_upstream_rr_peers_unlock(peers);

        rc = ngx_http_llm_balance_get(pc, bd);

        if (rc != NGX_BUSY) {
            return rc;
        }

        ngx_http_upstream_rr_peers_wlock(peers);
    }

    ngx_http_upstream_rr_peers_unlock(peers);

    pc->name = peers->name;

    return NGX_BUSY;
}


/* the peer with the least load; ties by smooth weighted round robin */

static ngx_http_upstream_rr_peer_t *
ngx_http_llm_balance_choose(ngx_http_llm_balance_data_t *bd,
    ngx_http_upstream_rr_peers_t *peers, ngx_uint_t *index)
{
    double                        load, best_load;
    time_t                        now;
    ngx_int_t                     total;
    ngx_uint_t                    i, n, a, b, first, second;
    ngx_http_upstream_rr_peer_t  *peer, *best, *pa, *pb;

    now = ngx_time();
    best = NULL;
    best_load = 0;
    first = 0;

    if (bd->lscf->balance == NGX_HTTP_LLM_BALANCE_RANDOM_TWO) {

        /* count the usable peers, draw two of them */

        n = 0;

        for (peer = peers->peer, i = 0; peer; peer = peer->next, i++) {
            n += ngx_http_llm_balance_usable(bd, peer, i, now);
        }

        if (n == 0) {
            return NULL;
        }

        a = ngx_random() % n;
        b = (n > 1) ? (a + 1 + ngx_random() % (n - 1)) % n : a;
        pa = NULL;
        pb = NULL;
        first = 0;
        second = 0;
        n = 0;

        for (peer = peers->peer, i = 0; peer; peer = peer->next, i++) {
            if (!ngx_http_llm_balance_usable(bd, peer, i, now)) {
                continue;
            }

            if (n == a) {
                pa = peer;
                first = i;
            }

            if (n == b) {
                pb = peer;
                second = i;
            }

            n++;
        }

        if (ngx_http_llm_balance_load(bd, peers, pb, second)
            < ngx_http_llm_balance_load(bd, peers, pa, first))
        {
            *index = second;
            return pb;
        }

        *index = first;
        return pa;
    }

    /* least_conn, least_load: the least loaded, then its equals */

    for (peer = peers->peer, i = 0; peer; peer = peer->next, i++) {

        if (!ngx_http_llm_balance_usable(bd, peer, i, now)) {
            continue;
        }

        load = ngx_http_llm_balance_load(bd, peers, peer, i);

        if (best == NULL || load < best_load) {
            best = peer;
            best_load = load;
            first = i;
        }
    }

    if (best == NULL) {
        return NULL;
    }

    total = 0;
    *index = first;

    for (peer = best, i = first; peer; peer = peer->next, i++) {

        if (!ngx_http_llm_balance_usable(bd, peer, i, now)
            || ngx_http_llm_balance_load(bd, peers, peer, i) != best_load)
        {
            continue;
        }

        peer->current_weight += peer->effective_weight;
        total += peer->effective_weight;

        if (peer->effective_weight < peer->weight) {
            peer->effective_weight++;
        }

        if (peer->current_weight > best->current_weight) {
            best = peer;
            *index = i;
        }
    }

    best->current_weight -= total;

    return best;
}


static ngx_uint_t
ngx_http_llm_balance_usable(ngx_http_llm_balance_data_t *bd,
    ngx_http_upstream_rr_peer_t *peer, ngx_uint_t i, time_t now)
{
    uintptr_t  m;
    ngx_uint_t n;

    n = i / (8 * sizeof(uintptr_t));
    m = (uintptr_t) 1 << i % (8 * sizeof(uintptr_t));

    if (bd->rrp->tried[n] & m) {
        return 0;
    }

    if (peer->down) {
        return 0;
    }

    if (peer->max_fails
        && peer->fails >= peer->max_fails
        && now - peer->checked <= peer->fail_timeout)
    {
        return 0;
    }

    if (peer->max_conns && peer->conns >= peer->max_conns) {
        return 0;
    }

    return 1;
}


/* the load of peer i of "peers", per unit of weight */

static double
ngx_http_llm_balance_load(ngx_http_llm_balance_data_t *bd,
    ngx_http_upstream_rr_peers_t *peers, ngx_http_upstream_rr_peer_t *peer,
    ngx_uint_t i)
{
    double                      load;
    ngx_uint_t                  k;
    ngx_http_llm_srv_conf_t    *lscf;
    ngx_http_llm_peer_state_t  *st;

    lscf = bd->lscf;

    k = ngx_http_llm_peers_offset(lscf, peers) + i;

    if (k >= lscf->npeers) {
        return 0;
    }

    st = lscf->slots[k];

    if (lscf->balance == NGX_HTTP_LLM_BALANCE_LEAST_LOAD
        && st->scrapes
        && ngx_current_msec - st->scraped <= 2 * lscf->scrape_interval)
    {
        load = (st->has_running ? st->running : 0)
               + 2 * (st->has_waiting ? st->waiting : 0)
               + (double) st->sent;

        if (st->has_kv_cache && st->kv_cache > 0 && st->kv_cache <= 1) {
            load *= 1 + st->kv_cache;
        }

    } else {
        load = (double) st->in_flight;
    }

    return load / peer->weight;
}


static void
ngx_http_llm_balance_free(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_llm_balance_data_t *bd = data;

    ngx_http_upstream_free_round_robin_peer(pc, bd->rrp, state);
}


#if (NGX_HTTP_SSL)

static ngx_int_t
ngx_http_llm_balance_set_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_llm_balance_data_t *bd = data;

    return ngx_http_upstream_set_round_robin_peer_session(pc, bd->rrp);
}


static void
ngx_http_llm_balance_save_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_llm_balance_data_t *bd = data;

    ngx_http_upstream_save_round_robin_peer_session(pc, bd->rrp);
}

#endif
