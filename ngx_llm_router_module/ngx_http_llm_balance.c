
/*
 * ngx_llm_router: the balancing policies (llm_balance) and their ring.
 * Not here: the peer wrapper that counts in flight (upstream.c), the zone.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_balance.h"
#include "ngx_http_llm_peers.h"
#include "ngx_http_llm_ctx.h"


/*
 * Built like nginx's own least_conn (its init_upstream is round robin's,
 * then its own peer.init, under the peer wrapper of ngx_http_llm_upstream.c
 * that keepalive may wrap): round-robin peer data underneath, the
 * per-request "tried" bitmap, "down", max_fails/fail_timeout, max_conns,
 * backup servers and "zone" upstreams all keep working; only the choice
 * among the usable peers differs.  The loads come from the shared zone, so
 * every worker sees the requests the others have in flight:
 *
 *   least_conn  fewest requests in flight, per unit of weight;
 *   least_load  the engine's own queue while its scraped metrics are fresh:
 *               (running + 2 * waiting at the scrape, plus the change of
 *               this router's requests in flight since) * (1 + KV-cache
 *               use), per unit of weight; a peer whose metrics are missing
 *               or stale counts its requests in flight;
 *   random_two  two usable peers at random, the one with fewer requests in
 *               flight per unit of weight;
 *   session     a consistent-hash ring of the primary peers (160 points per
 *               unit of weight, MurmurHash2 of "address-N") and the
 *               MurmurHash2 of a session key (default $llm_session,
 *               the body's "user"): the same session goes to the same peer,
 *               and only the sessions of a peer that leaves move;
 *   prefix      the same ring, keyed by the CRC32 of the first bytes of the
 *               prompt (system prompt and first messages) mixed through
 *               MurmurHash2, so that requests
 *               sharing a prefix meet the engine's prefix cache.
 *
 * session and prefix pass over a peer that has more requests in flight
 * than factor * (all in flight + 1) / usable peers (the load bound of
 * "consistent hashing with bounded loads"); without a key they act as
 * least_conn.
 *
 * Ties go to nginx's smooth weighted round robin.
 */


/* a point of a consistent-hash ring */
typedef struct {
    uint32_t                           hash;
    ngx_uint_t                         peer;  /* index among the primaries */
} ngx_http_llm_ring_point_t;


typedef struct {
    ngx_http_upstream_rr_peer_data_t  *rrp;
    ngx_http_llm_srv_conf_t           *lscf;
    uint32_t                           hash;
    unsigned                           has_hash:1;
} ngx_http_llm_balance_data_t;


#define NGX_HTTP_LLM_RING_POINTS  160


static ngx_int_t ngx_http_llm_balance_params(ngx_conf_t *cf,
    ngx_http_llm_srv_conf_t *lscf, ngx_str_t *key);
static ngx_int_t ngx_http_llm_balance_session_key(ngx_conf_t *cf,
    ngx_http_llm_srv_conf_t *lscf, ngx_str_t *key);
static char *ngx_http_llm_balance_install(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_llm_srv_conf_t *lscf);
static ngx_int_t ngx_http_llm_balance_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_llm_balance_init_ring(ngx_conf_t *cf,
    ngx_http_llm_srv_conf_t *lscf, ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_llm_balance_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
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
static ngx_http_upstream_rr_peer_t *ngx_http_llm_balance_two(
    ngx_http_llm_balance_data_t *bd, ngx_http_upstream_rr_peers_t *peers,
    ngx_uint_t *index, time_t now);
static ngx_uint_t ngx_http_llm_balance_usable(ngx_http_llm_balance_data_t *bd,
    ngx_http_upstream_rr_peer_t *peer, ngx_uint_t i, time_t now);
static double ngx_http_llm_balance_load(ngx_http_llm_balance_data_t *bd,
    ngx_http_upstream_rr_peers_t *peers, ngx_http_upstream_rr_peer_t *peer,
    ngx_uint_t i);
static ngx_http_upstream_rr_peer_t *ngx_http_llm_balance_ring(
    ngx_http_llm_balance_data_t *bd, ngx_http_upstream_rr_peers_t *peers,
    ngx_uint_t *index);
static int ngx_libc_cdecl ngx_http_llm_ring_cmp(const void *one,
    const void *two);


static ngx_str_t  ngx_http_llm_policies[] = {
    ngx_string("round_robin"),
    ngx_string("least_conn"),
    ngx_string("least_load"),
    ngx_string("random_two"),
    ngx_string("session"),
    ngx_string("prefix"),
    ngx_null_string
};


static ngx_str_t  ngx_http_llm_session_default = ngx_string("$llm_session");


/*
 * llm_balance round_robin | least_conn | least_load | random_two
 *           | session [key=VALUE] [factor=F] | prefix [length=N] [factor=F];
 */

char *
ngx_http_llm_balance(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_srv_conf_t *lscf = conf;

    ngx_str_t   *value, key;
    ngx_uint_t   p;

    if (lscf->balance_set) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (p = 0; ngx_http_llm_policies[p].len; p++) {
        if (ngx_http_llm_policies[p].len == value[1].len
            && ngx_strncmp(ngx_http_llm_policies[p].data, value[1].data,
                           value[1].len) == 0)
        {
            break;
        }
    }

    if (ngx_http_llm_policies[p].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown balancing policy \"%V\", use "
                           "round_robin, least_conn, least_load, "
                           "random_two, session or prefix", &value[1]);
        return NGX_CONF_ERROR;
    }

    lscf->balance = p;
    lscf->balance_set = 1;
    lscf->factor = 1.25;
    lscf->prefix_length = 512;
    key = ngx_http_llm_session_default;

    if (ngx_http_llm_balance_params(cf, lscf, &key) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (p == NGX_HTTP_LLM_BALANCE_SESSION
        && ngx_http_llm_balance_session_key(cf, lscf, &key) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return ngx_http_llm_balance_install(cf, cmd, lscf);
}


/* key=VALUE (session), length=N (prefix), factor=F (session, prefix) */

static ngx_int_t
ngx_http_llm_balance_params(ngx_conf_t *cf, ngx_http_llm_srv_conf_t *lscf,
    ngx_str_t *key)
{
    ssize_t      n;
    ngx_str_t   *value;
    ngx_uint_t   i, p;

    value = cf->args->elts;
    p = lscf->balance;

    for (i = 2; i < cf->args->nelts; i++) {

        if (p == NGX_HTTP_LLM_BALANCE_SESSION
            && ngx_strncmp(value[i].data, "key=", 4) == 0
            && value[i].len > 4)
        {
            key->data = value[i].data + 4;
            key->len = value[i].len - 4;
            continue;
        }

        if (p == NGX_HTTP_LLM_BALANCE_PREFIX
            && ngx_strncmp(value[i].data, "length=", 7) == 0)
        {
            n = ngx_atoi(value[i].data + 7, value[i].len - 7);

            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            lscf->prefix_length = n;
            continue;
        }

        if ((p == NGX_HTTP_LLM_BALANCE_SESSION
             || p == NGX_HTTP_LLM_BALANCE_PREFIX)
            && ngx_strncmp(value[i].data, "factor=", 7) == 0)
        {
            lscf->factor = strtod((char *) value[i].data + 7, NULL);

            if (!(lscf->factor >= 1 && lscf->factor <= 100)) {
                goto invalid;
            }

            continue;
        }

        goto invalid;
    }

    return NGX_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_llm_balance_session_key(ngx_conf_t *cf,
    ngx_http_llm_srv_conf_t *lscf, ngx_str_t *key)
{
    ngx_http_compile_complex_value_t  ccv;

    lscf->session_key = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (lscf->session_key == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = key;
    ccv.complex_value = lscf->session_key;

    return ngx_http_compile_complex_value(&ccv);
}


/*
 * cmd->post (ngx_http_llm_upstream_post) puts the block's llm wrapper over
 * its balancer, once: it counts the requests in flight that the policies
 * read, and keepalive may wrap it in turn.  As least_conn, the policy then
 * replaces round robin: under the wrapper.
 */

static char *
ngx_http_llm_balance_install(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_llm_srv_conf_t *lscf)
{
    char             *rv;
    ngx_conf_post_t  *post;

    post = cmd->post;

    rv = post->post_handler(cf, post, lscf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (lscf->original_init_upstream != ngx_http_upstream_init_round_robin) {
        return "must come before other balancing directives and keepalive";
    }

    lscf->original_init_upstream = ngx_http_llm_balance_init_upstream;

    return NGX_CONF_OK;
}


/* as least_conn's: round robin's peers, then the policy's peer.init */

static ngx_int_t
ngx_http_llm_balance_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_llm_srv_conf_t  *lscf;

    lscf = ngx_http_conf_upstream_srv_conf(us, ngx_http_llm_router_module);

    if (ngx_http_upstream_init_round_robin(cf, us) != NGX_OK) {
        return NGX_ERROR;
    }

    if (lscf->balance == NGX_HTTP_LLM_BALANCE_RR) {
        return NGX_OK;
    }

    if (ngx_http_llm_balance_init_ring(cf, lscf, us) != NGX_OK) {
        return NGX_ERROR;
    }

    us->peer.init = ngx_http_llm_balance_init_peer;

    return NGX_OK;
}


/* the ring: points for every primary peer, by weight, sorted */

static ngx_int_t
ngx_http_llm_balance_init_ring(ngx_conf_t *cf, ngx_http_llm_srv_conf_t *lscf,
    ngx_http_upstream_srv_conf_t *us)
{
    u_char                        buf[NGX_SOCKADDR_STRLEN + 32], *p;
    uint32_t                      hash;
    ngx_uint_t                    i, j;
    ngx_http_llm_ring_point_t    *point;
    ngx_http_upstream_rr_peer_t  *peer;
    ngx_http_upstream_rr_peers_t *peers;

    if (lscf->balance != NGX_HTTP_LLM_BALANCE_SESSION
        && lscf->balance != NGX_HTTP_LLM_BALANCE_PREFIX)
    {
        return NGX_OK;
    }

    peers = us->peer.data;

    lscf->ring = ngx_array_create(cf->pool,
                                  peers->total_weight
                                  * NGX_HTTP_LLM_RING_POINTS + 1,
                                  sizeof(ngx_http_llm_ring_point_t));
    if (lscf->ring == NULL) {
        return NGX_ERROR;
    }

    for (peer = peers->peer, i = 0; peer; peer = peer->next, i++) {

        for (j = 0; j < NGX_HTTP_LLM_RING_POINTS * (ngx_uint_t) peer->weight;
             j++)
        {
            p = ngx_snprintf(buf, sizeof(buf), "%V-%ui", &peer->name, j);
            hash = ngx_murmur_hash2(buf, p - buf);

            point = ngx_array_push(lscf->ring);
            if (point == NULL) {
                return NGX_ERROR;
            }

            point->hash = hash;
            point->peer = i;
        }
    }

    ngx_qsort(lscf->ring->elts, lscf->ring->nelts,
              sizeof(ngx_http_llm_ring_point_t), ngx_http_llm_ring_cmp);

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_http_llm_ring_cmp(const void *one, const void *two)
{
    const ngx_http_llm_ring_point_t  *a = one, *b = two;

    return (a->hash < b->hash) ? -1 : (a->hash > b->hash) ? 1 : 0;
}


const char *
ngx_http_llm_balance_name(ngx_uint_t balance)
{
    return (const char *) ngx_http_llm_policies[balance].data;
}


static ngx_int_t
ngx_http_llm_balance_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_str_t                     key;
    ngx_http_upstream_t          *u;
    ngx_http_llm_ctx_t           *ctx;
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

    bd->has_hash = 0;

    if (bd->lscf->balance == NGX_HTTP_LLM_BALANCE_SESSION) {
        if (ngx_http_complex_value(r, bd->lscf->session_key, &key) != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (key.len) {

            /* not CRC32: keys like "user-1", "user-2" would cluster */

            bd->hash = ngx_murmur_hash2(key.data, key.len);
            bd->has_hash = 1;
        }

    } else if (bd->lscf->balance == NGX_HTTP_LLM_BALANCE_PREFIX) {
        ctx = ngx_http_llm_find_ctx(r->main);

        if (ctx && ctx->has_prefix) {
            bd->hash = ctx->prefix_hash;
            bd->has_hash = 1;
        }
    }

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
    ngx_uint_t                    i, first;
    ngx_http_upstream_rr_peer_t  *peer, *best;

    now = ngx_time();
    best = NULL;
    best_load = 0;
    first = 0;

    if (bd->has_hash && bd->lscf->ring
        && peers == bd->lscf->upstream->peer.data)
    {
        best = ngx_http_llm_balance_ring(bd, peers, index);
        if (best) {
            return best;
        }

        /* every peer over the bound: the least loaded */
    }

    if (bd->lscf->balance == NGX_HTTP_LLM_BALANCE_RANDOM_TWO) {
        return ngx_http_llm_balance_two(bd, peers, index, now);
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


/* random_two: two usable peers drawn, the less loaded of them */

static ngx_http_upstream_rr_peer_t *
ngx_http_llm_balance_two(ngx_http_llm_balance_data_t *bd,
    ngx_http_upstream_rr_peers_t *peers, ngx_uint_t *index, time_t now)
{
    ngx_uint_t                    i, n, a, b, first, second;
    ngx_http_upstream_rr_peer_t  *peer, *pa, *pb;

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

    if (pa == NULL || pb == NULL) {
        return NULL;    /* not reached: the lock keeps the same peers usable */
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


/* clockwise from the key's point to the first usable peer under the bound */

static ngx_http_upstream_rr_peer_t *
ngx_http_llm_balance_ring(ngx_http_llm_balance_data_t *bd,
    ngx_http_upstream_rr_peers_t *peers, ngx_uint_t *index)
{
    double                        total, bound;
    time_t                        now;
    ngx_uint_t                    i, n, lo, hi, mid, usable, k;
    ngx_http_llm_ring_point_t    *points;
    ngx_http_upstream_rr_peer_t  *peer;

    now = ngx_time();
    total = 0;
    usable = 0;

    for (peer = peers->peer, i = 0; peer; peer = peer->next, i++) {
        if (ngx_http_llm_balance_usable(bd, peer, i, now)) {
            usable++;
            total += (double) bd->lscf->slots[i]->in_flight;
        }
    }

    if (usable == 0) {
        return NULL;
    }

    /* a peer may take ceil(factor * (all + 1) / usable) requests */

    bound = bd->lscf->factor * (total + 1) / usable;
    bound = (double) (ngx_uint_t) (bound + 0.999999);

    points = bd->lscf->ring->elts;
    n = bd->lscf->ring->nelts;

    /* the first point at or after the hash */

    lo = 0;
    hi = n;

    while (lo < hi) {
        mid = (lo + hi) / 2;

        if (points[mid].hash < bd->hash) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    for (k = 0; k < n; k++) {
        i = points[(lo + k) % n].peer;

        for (peer = peers->peer, mid = 0; peer && mid < i; peer = peer->next) {
            mid++;
        }

        if (peer == NULL || !ngx_http_llm_balance_usable(bd, peer, i, now)
            || (double) bd->lscf->slots[i]->in_flight + 1 > bound)
        {
            continue;
        }

        *index = i;
        return peer;
    }

    return NULL;
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
        /* what finished or started since the scrape counts at once */

        load = (st->has_running ? st->running : 0)
               + 2 * (st->has_waiting ? st->waiting : 0)
               + (double) st->in_flight - (double) st->scrape_in_flight;

        if (load < 0) {
            load = 0;
        }

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
