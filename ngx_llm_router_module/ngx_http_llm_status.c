
/*
 * ngx_llm_router: llm_router_status, a snapshot of the peers' state as JSON.
 * Not here: the state itself (zone.c, check.c), the page (status_html.c).
 *
 * The zone is copied under its lock and formatted after; a client that
 * prefers text/html gets a self-contained page that refreshes itself.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <math.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_status.h"
#include "ngx_http_llm_status_html.h"
#include "ngx_http_llm_ctx.h"
#include "ngx_http_llm_json.h"
#include "ngx_http_llm_prom.h"
#include "ngx_http_llm_balance.h"
#include "ngx_http_llm_engine.h"


/* room for one peer's JSON besides its quoted names and error; its three
 * numbers take up to NGX_HTTP_LLM_PROM_NUMBER_LEN each */
#define NGX_HTTP_LLM_STATUS_PEER_LEN  (288 + 6 * (2 * NGX_HTTP_LLM_NAME_LEN \
                                       + NGX_HTTP_LLM_ERROR_LEN))


static ngx_int_t ngx_http_llm_status_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_llm_status_snapshot(ngx_http_request_t *r,
    ngx_http_llm_main_conf_t *lmcf, ngx_http_llm_peer_state_t **snapshot);
static ngx_buf_t *ngx_http_llm_status_json(ngx_http_request_t *r,
    ngx_http_llm_main_conf_t *lmcf, ngx_http_llm_peer_state_t *peers);
static u_char *ngx_http_llm_status_upstream(ngx_http_request_t *r, u_char *p,
    ngx_http_llm_srv_conf_t *lscf, ngx_http_llm_peer_state_t *peers);
static u_char *ngx_http_llm_status_peer(ngx_http_request_t *r, u_char *p,
    ngx_http_llm_srv_conf_t *lscf, ngx_http_llm_peer_state_t *st,
    ngx_uint_t k);
static u_char *ngx_http_llm_status_metrics(ngx_http_request_t *r, u_char *p,
    ngx_http_llm_srv_conf_t *lscf, ngx_http_llm_peer_state_t *st);
static u_char *ngx_http_llm_status_number(u_char *p, const char *name,
    ngx_uint_t has, double value);
static u_char *ngx_http_llm_status_string(ngx_http_request_t *r, u_char *p,
    u_char *s, size_t len);


char *
ngx_http_llm_router_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    return ngx_http_llm_set_content_handler(cf, ngx_http_llm_status_handler);
}


static ngx_int_t
ngx_http_llm_status_handler(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_http_llm_main_conf_t   *lmcf;
    ngx_http_llm_peer_state_t  *peers;

    rc = ngx_http_llm_accept_get(r, &lmcf);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_llm_status_snapshot(r, lmcf, &peers) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_llm_status_wants_html(r)) {
        b = ngx_http_llm_status_html(r, lmcf, peers);
        if (b == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_llm_send_buffer(r, NGX_HTTP_OK, "text/html", b);
    }

    b = ngx_http_llm_status_json(r, lmcf, peers);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_llm_send_buffer(r, NGX_HTTP_OK, "application/json", b);
}


/* a copy of this configuration's peers, in upstream order (NULL: no zone) */

static ngx_int_t
ngx_http_llm_status_snapshot(ngx_http_request_t *r,
    ngx_http_llm_main_conf_t *lmcf, ngx_http_llm_peer_state_t **snapshot)
{
    ngx_uint_t                  i, k, n, npeers;
    ngx_http_llm_srv_conf_t   **lscfp;
    ngx_http_llm_peer_state_t  *peers;

    *snapshot = NULL;

    if (lmcf->sh == NULL) {
        return NGX_OK;
    }

    lscfp = lmcf->upstreams.elts;
    npeers = 0;

    for (i = 0; i < lmcf->upstreams.nelts; i++) {
        npeers += lscfp[i]->npeers;
    }

    peers = ngx_palloc(r->pool,
                       (npeers + 1) * sizeof(ngx_http_llm_peer_state_t));
    if (peers == NULL) {
        return NGX_ERROR;
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    n = 0;

    for (i = 0; i < lmcf->upstreams.nelts; i++) {
        for (k = 0; k < lscfp[i]->npeers; k++) {
            peers[n++] = *lscfp[i]->slots[k];
        }
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    *snapshot = peers;

    return NGX_OK;
}


static ngx_buf_t *
ngx_http_llm_status_json(ngx_http_request_t *r,
    ngx_http_llm_main_conf_t *lmcf, ngx_http_llm_peer_state_t *peers)
{
    size_t                     len;
    u_char                    *p;
    ngx_buf_t                 *b;
    ngx_uint_t                 i, n;
    ngx_http_llm_srv_conf_t  **lscfp;

    lscfp = lmcf->upstreams.elts;

    len = sizeof("{\"zone\":,\"upstreams\":[]}\n") + 2 * 6 * 64
          + lmcf->upstreams.nelts * NGX_HTTP_LLM_STATUS_PEER_LEN;

    for (i = 0; i < lmcf->upstreams.nelts; i++) {
        len += (lscfp[i]->npeers + 1) * NGX_HTTP_LLM_STATUS_PEER_LEN
               + 6 * lscfp[i]->check_uri.len;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NULL;
    }

    p = ngx_cpymem(b->last, "{\"zone\":", sizeof("{\"zone\":") - 1);

    if (lmcf->shm_zone) {
        p = ngx_http_llm_status_string(r, p, lmcf->shm_zone->shm.name.data,
                                       lmcf->shm_zone->shm.name.len);
        if (p == NULL) {
            return NULL;
        }

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"upstreams\":[", sizeof(",\"upstreams\":[") - 1);

    n = 0;

    for (i = 0; i < lmcf->upstreams.nelts; i++) {
        if (i) {
            *p++ = ',';
        }

        p = ngx_http_llm_status_upstream(r, p, lscfp[i],
                                         peers ? peers + n : NULL);
        if (p == NULL) {
            return NULL;
        }

        n += lscfp[i]->npeers;
    }

    p = ngx_cpymem(p, "]}\n", 3);
    b->last = p;

    return b;
}


static u_char *
ngx_http_llm_status_upstream(ngx_http_request_t *r, u_char *p,
    ngx_http_llm_srv_conf_t *lscf, ngx_http_llm_peer_state_t *peers)
{
    ngx_str_t    name;
    ngx_uint_t   k;

    p = ngx_sprintf(p, "{\"name\":");
    p = ngx_http_llm_status_string(r, p, lscf->upstream->host.data,
                                   lscf->upstream->host.len);
    if (p == NULL) {
        return NULL;
    }

    p = ngx_sprintf(p, ",\"engine\":\"%s\",\"balance\":\"%s\",\"check\":",
                    ngx_http_llm_engine_name(lscf->engine),
                    ngx_http_llm_balance_name(lscf->balance));

    if (lscf->check_interval) {
        if (ngx_http_llm_json_quote(r->pool, &lscf->check_uri, &name)
            != NGX_OK)
        {
            return NULL;
        }

        p = ngx_sprintf(p, "{\"interval_ms\":%M,\"timeout_ms\":%M,"
                           "\"fall\":%ui,\"rise\":%ui,\"uri\":%V}",
                        lscf->check_interval, lscf->check_timeout,
                        lscf->fall, lscf->rise, &name);

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"peers\":[", sizeof(",\"peers\":[") - 1);

    for (k = 0; peers && k < lscf->npeers; k++) {

        if (k) {
            *p++ = ',';
        }

        p = ngx_http_llm_status_peer(r, p, lscf, &peers[k], k);
        if (p == NULL) {
            return NULL;
        }
    }

    return ngx_cpymem(p, "]}", 2);
}


/* one peer of an upstream: its health, its metrics, its context size */

static u_char *
ngx_http_llm_status_peer(ngx_http_request_t *r, u_char *p,
    ngx_http_llm_srv_conf_t *lscf, ngx_http_llm_peer_state_t *st,
    ngx_uint_t k)
{
    p = ngx_cpymem(p, "{\"name\":", sizeof("{\"name\":") - 1);
    p = ngx_http_llm_status_string(r, p, st->name, ngx_strlen(st->name));
    if (p == NULL) {
        return NULL;
    }

    p = ngx_sprintf(p, ",\"up\":%s,\"configured_down\":%s,"
                       "\"in_flight\":%A,\"failed_tries\":%A,"
                       "\"fails\":%ui,\"successes\":%ui,\"checks\":%ui,",
                    (st->down || lscf->config_down[k]) ? "false" : "true",
                    lscf->config_down[k] ? "true" : "false",
                    st->in_flight, st->failed, st->fails, st->successes,
                    st->checks);

    if (st->last_check) {
        p = ngx_sprintf(p, "\"last_check_ms\":%T%03ui,"
                           "\"latency_ms\":%M,",
                        st->last_check, st->last_check_ms, st->latency);

    } else {
        p = ngx_sprintf(p, "\"last_check_ms\":null,"
                           "\"latency_ms\":null,");
    }

    p = ngx_cpymem(p, "\"last_error\":", sizeof("\"last_error\":") - 1);

    if (st->error[0]) {
        p = ngx_http_llm_status_string(r, p, st->error,
                                       ngx_strlen(st->error));
        if (p == NULL) {
            return NULL;
        }

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_http_llm_status_metrics(r, p, lscf, st);
    if (p == NULL) {
        return NULL;
    }

    /* the context size the engine reported (max_context auto) */

    if (lscf->limits_interval) {
        p = st->max_context
            ? ngx_sprintf(p, ",\"max_context\":%ui", st->max_context)
            : ngx_cpymem(p, ",\"max_context\":null",
                         sizeof(",\"max_context\":null") - 1);
    }

    *p++ = '}';

    return p;
}


/* the scraped engine gauges; stale after two intervals without a scrape */

static u_char *
ngx_http_llm_status_metrics(ngx_http_request_t *r, u_char *p,
    ngx_http_llm_srv_conf_t *lscf, ngx_http_llm_peer_state_t *st)
{
    ngx_msec_t  age;

    p = ngx_cpymem(p, ",\"metrics\":", sizeof(",\"metrics\":") - 1);

    if (lscf->scrape_interval == 0) {
        return ngx_cpymem(p, "null", 4);
    }

    *p++ = '{';

    p = ngx_http_llm_status_number(p, "running",
                                   st->scrapes && st->has_running,
                                   st->running);
    *p++ = ',';
    p = ngx_http_llm_status_number(p, "waiting",
                                   st->scrapes && st->has_waiting,
                                   st->waiting);
    *p++ = ',';
    p = ngx_http_llm_status_number(p, "kv_cache",
                                   st->scrapes && st->has_kv_cache,
                                   st->kv_cache);

    if (st->scrapes) {
        age = ngx_current_msec - st->scraped;
        p = ngx_sprintf(p, ",\"age_ms\":%M,\"stale\":%s", age,
                        age > 2 * lscf->scrape_interval ? "true" : "false");

    } else {
        p = ngx_sprintf(p, ",\"age_ms\":null,\"stale\":true");
    }

    p = ngx_sprintf(p, ",\"scrapes\":%ui,\"malformed_lines\":%ui,"
                       "\"last_error\":", st->scrapes, st->bad_lines);

    if (st->scrape_error[0]) {
        p = ngx_http_llm_status_string(r, p, st->scrape_error,
                                       ngx_strlen(st->scrape_error));
        if (p == NULL) {
            return NULL;
        }

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    *p++ = '}';

    return p;
}


/* "name":value with up to 4 decimals, or null */

static u_char *
ngx_http_llm_status_number(u_char *p, const char *name, ngx_uint_t has,
    double value)
{
    p = ngx_sprintf(p, "\"%s\":", name);

    /* JSON has no NaN nor Inf */

    if (!has || !isfinite(value)) {
        return ngx_cpymem(p, "null", 4);
    }

    return p + ngx_http_llm_prom_number(p, value, 4);
}


static u_char *
ngx_http_llm_status_string(ngx_http_request_t *r, u_char *p, u_char *s,
    size_t len)
{
    ngx_str_t  in, out;

    in.data = s;
    in.len = len;

    if (ngx_http_llm_json_quote(r->pool, &in, &out) != NGX_OK) {
        return NULL;
    }

    return ngx_cpymem(p, out.data, out.len);
}
