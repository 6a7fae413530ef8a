
/*
 * ngx_llm_router: active health checks (llm_check) and engine metrics
 * scraping (llm_scrape).
 *
 * Every worker keeps a timer per probed peer and kind of probe.  When it
 * fires, the worker claims the peer's next probe in the shared zone; the
 * claim succeeds for one worker per interval, and a claim left by a worker
 * that died mid-probe is taken over after the timeout.  A probe is an
 * HTTP/1.0 GET over a non-blocking connection.  A check is decided by the
 * status line: after "fall" failures in a row the peer is down, after
 * "rise" successes up again.  A scrape reads the Prometheus text (at most
 * NGX_HTTP_LLM_METRICS_MAX bytes) through the incremental parser and keeps
 * the engine's running and waiting requests and KV-cache use.  Timers are
 * cancelable and the connection is marked idle, so neither a reload nor a
 * shutdown waits for a probe.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_prom.h"
#include "ngx_http_llm_engine.h"


#define NGX_HTTP_LLM_PROBE_CHECK   0
#define NGX_HTTP_LLM_PROBE_SCRAPE  1
#define NGX_HTTP_LLM_PROBE_LIMITS  2

#define NGX_HTTP_LLM_LIMITS_MAX    (256 * 1024)

#define NGX_HTTP_LLM_PROBE_BUF     4096


typedef struct ngx_http_llm_probe_s  ngx_http_llm_probe_t;

struct ngx_http_llm_probe_s {
    ngx_event_t                  timer;
    ngx_peer_connection_t        pc;
    ngx_uint_t                   kind;
    ngx_http_llm_srv_conf_t     *lscf;
    ngx_http_llm_main_conf_t    *lmcf;
    ngx_uint_t                   n;
    ngx_str_t                    name;
    ngx_str_t                   *request;
    ngx_msec_t                   interval;
    ngx_msec_t                   timeout;
    ngx_msec_t                   started;
    size_t                       sent;
    size_t                       received;   /* of the status line */
    ngx_int_t                    status;     /* 0: not yet known */
    ngx_uint_t                   eoh;        /* 1: at a line start, 2: done */
    u_char                      *buf;
    ngx_http_llm_prom_t         *prom;
    ngx_buf_t                   *body;       /* limits: the JSON */
};


static ngx_int_t ngx_http_llm_probe_create(ngx_cycle_t *cycle,
    ngx_http_llm_main_conf_t *lmcf, ngx_http_llm_srv_conf_t *lscf,
    ngx_uint_t n, ngx_uint_t kind);
static ngx_http_llm_claim_t *ngx_http_llm_probe_claim_of(
    ngx_http_llm_probe_t *pr);
static void ngx_http_llm_probe_timer(ngx_event_t *ev);
static ngx_uint_t ngx_http_llm_probe_claim(ngx_http_llm_probe_t *pr);
static void ngx_http_llm_probe_start(ngx_http_llm_probe_t *pr);
static void ngx_http_llm_probe_write(ngx_event_t *wev);
static ngx_http_llm_probe_t *ngx_http_llm_probe_event(ngx_event_t *ev);
static void ngx_http_llm_probe_sent(ngx_event_t *wev);
static void ngx_http_llm_probe_read(ngx_event_t *rev);
static ngx_int_t ngx_http_llm_probe_parse(ngx_http_llm_probe_t *pr,
    u_char *p, u_char *last);
static void ngx_http_llm_probe_finish(ngx_http_llm_probe_t *pr,
    const char *error);
static void ngx_http_llm_check_done(ngx_http_llm_probe_t *pr,
    const char *error);
static void ngx_http_llm_scrape_done(ngx_http_llm_probe_t *pr,
    const char *error);
static void ngx_http_llm_limits_done(ngx_http_llm_probe_t *pr,
    const char *error);
static void ngx_http_llm_probe_close(ngx_http_llm_probe_t *pr);
static void ngx_http_llm_probe_abandon(ngx_http_llm_probe_t *pr);
static void ngx_http_llm_probe_release(ngx_http_llm_probe_t *pr,
    ngx_http_llm_claim_t *cl);


ngx_int_t
ngx_http_llm_check_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                 i, k;
    ngx_http_llm_srv_conf_t  **lscfp, *lscf;
    ngx_http_llm_main_conf_t  *lmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    lmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_llm_router_module);

    if (lmcf == NULL || lmcf->sh == NULL) {
        return NGX_OK;
    }

    lscfp = lmcf->upstreams.elts;

    for (i = 0; i < lmcf->upstreams.nelts; i++) {
        lscf = lscfp[i];

        for (k = 0; k < lscf->npeers; k++) {

            if (lscf->check_interval
                && ngx_http_llm_probe_create(cycle, lmcf, lscf, k,
                                             NGX_HTTP_LLM_PROBE_CHECK)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (lscf->scrape_interval
                && ngx_http_llm_probe_create(cycle, lmcf, lscf, k,
                                             NGX_HTTP_LLM_PROBE_SCRAPE)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (lscf->limits_interval
                && ngx_http_llm_probe_create(cycle, lmcf, lscf, k,
                                             NGX_HTTP_LLM_PROBE_LIMITS)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_probe_create(ngx_cycle_t *cycle, ngx_http_llm_main_conf_t *lmcf,
    ngx_http_llm_srv_conf_t *lscf, ngx_uint_t n, ngx_uint_t kind)
{
    ngx_http_llm_probe_t         *pr;
    ngx_http_upstream_rr_peer_t  *peer;

    peer = ngx_http_llm_rr_peer(lscf, n);
    if (peer == NULL) {
        return NGX_OK;
    }

    pr = ngx_pcalloc(cycle->pool, sizeof(ngx_http_llm_probe_t));
    if (pr == NULL) {
        return NGX_ERROR;
    }

    pr->buf = ngx_palloc(cycle->pool, NGX_HTTP_LLM_PROBE_BUF);
    if (pr->buf == NULL) {
        return NGX_ERROR;
    }

    pr->kind = kind;
    pr->lscf = lscf;
    pr->lmcf = lmcf;
    pr->n = n;
    pr->name = peer->name;

    if (kind == NGX_HTTP_LLM_PROBE_CHECK) {
        pr->request = &lscf->check_request;
        pr->interval = lscf->check_interval;
        pr->timeout = lscf->check_timeout;

    } else if (kind == NGX_HTTP_LLM_PROBE_SCRAPE) {
        pr->request = &lscf->scrape_request;
        pr->interval = lscf->scrape_interval;
        pr->timeout = ngx_min(lscf->scrape_interval, 5000);

        pr->prom = ngx_palloc(cycle->pool, sizeof(ngx_http_llm_prom_t));
        if (pr->prom == NULL) {
            return NGX_ERROR;
        }

    } else {
        pr->request = &lscf->limits_request;
        pr->interval = lscf->limits_interval;
        pr->timeout = 2000;

        pr->body = ngx_create_temp_buf(cycle->pool, NGX_HTTP_LLM_LIMITS_MAX);
        if (pr->body == NULL) {
            return NGX_ERROR;
        }
    }

    pr->timer.handler = ngx_http_llm_probe_timer;
    pr->timer.data = pr;
    pr->timer.log = cycle->log;
    pr->timer.cancelable = 1;

    /* the first probe soon, spread a little between workers */

    ngx_add_timer(&pr->timer, 10 + ngx_random() % 50);

    return NGX_OK;
}


static ngx_http_llm_claim_t *
ngx_http_llm_probe_claim_of(ngx_http_llm_probe_t *pr)
{
    ngx_http_llm_peer_state_t  *st;

    st = ngx_http_llm_peer_state(pr->lmcf, pr->lscf, pr->n);

    return (pr->kind == NGX_HTTP_LLM_PROBE_CHECK) ? &st->check
           : (pr->kind == NGX_HTTP_LLM_PROBE_SCRAPE) ? &st->scrape
           : &st->limits;
}


static void
ngx_http_llm_probe_timer(ngx_event_t *ev)
{
    ngx_http_llm_probe_t  *pr;

    pr = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (pr->pc.connection == NULL && ngx_http_llm_probe_claim(pr)) {
        ngx_http_llm_probe_start(pr);
    }

    /* claims are cheap: look twice an interval, probe once */

    ngx_add_timer(ev, pr->interval / 2 + 1);
}


static ngx_uint_t
ngx_http_llm_probe_claim(ngx_http_llm_probe_t *pr)
{
    ngx_uint_t             claimed;
    ngx_msec_t             now;
    ngx_slab_pool_t       *shpool;
    ngx_http_llm_claim_t  *cl;

    shpool = pr->lmcf->shpool;
    cl = ngx_http_llm_probe_claim_of(pr);
    now = ngx_current_msec;
    claimed = 0;

    ngx_shmtx_lock(&shpool->mutex);

    if ((ngx_msec_int_t) (now - cl->next) >= 0
        && (cl->owner == 0
            || (ngx_msec_int_t) (now - cl->started)
               > (ngx_msec_int_t) (pr->timeout + 1000)))
    {
        cl->owner = ngx_pid;
        cl->started = now;
        cl->next = now + pr->interval;
        pr->started = now;
        claimed = 1;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return claimed;
}


static void
ngx_http_llm_probe_start(ngx_http_llm_probe_t *pr)
{
    ngx_int_t                     rc;
    ngx_connection_t             *c;
    ngx_http_upstream_rr_peer_t  *peer;

    peer = ngx_http_llm_rr_peer(pr->lscf, pr->n);
    if (peer == NULL) {
        ngx_http_llm_probe_finish(pr, "no such peer");
        return;
    }

    ngx_memzero(&pr->pc, sizeof(ngx_peer_connection_t));

    pr->pc.sockaddr = peer->sockaddr;
    pr->pc.socklen = peer->socklen;
    pr->pc.name = &pr->name;
    pr->pc.get = ngx_event_get_peer;
    pr->pc.log = pr->timer.log;
    pr->pc.log_error = NGX_ERROR_INFO;

    pr->sent = 0;
    pr->received = 0;
    pr->status = 0;
    pr->eoh = 0;

    if (pr->prom) {
        ngx_http_llm_prom_init(pr->prom, pr->lscf->metrics,
                               pr->lscf->metrics[3] ? 4
                               : pr->lscf->metrics[2] ? 3 : 2,
                               NGX_HTTP_LLM_METRICS_MAX);
    }

    rc = ngx_event_connect_peer(&pr->pc);

    if (rc == NGX_ERROR) {

        /* out of connections or sockets here: says nothing of the peer */

        ngx_http_llm_probe_abandon(pr);
        return;
    }

    if (rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_http_llm_probe_close(pr);
        ngx_http_llm_probe_finish(pr, "connect failed");
        return;
    }

    c = pr->pc.connection;
    c->data = pr;
    c->idle = 1;
    c->read->handler = ngx_http_llm_probe_read;
    c->write->handler = ngx_http_llm_probe_write;
    c->read->cancelable = 1;
    c->write->cancelable = 1;

    ngx_add_timer(c->read, pr->timeout);
    ngx_add_timer(c->write, pr->timeout);

    if (rc == NGX_OK) {
        ngx_http_llm_probe_write(c->write);
    }
}


/* the probe of an event, or NULL if the event ended it */

static ngx_http_llm_probe_t *
ngx_http_llm_probe_event(ngx_event_t *ev)
{
    ngx_connection_t      *c;
    ngx_http_llm_probe_t  *pr;

    c = ev->data;
    pr = c->data;

    if (c->close) {

        /* nginx is shutting down: no outcome */

        ngx_http_llm_probe_abandon(pr);
        return NULL;
    }

    if (ev->timedout) {
        ngx_http_llm_probe_close(pr);
        ngx_http_llm_probe_finish(pr, "timed out");
        return NULL;
    }

    return pr;
}


static void
ngx_http_llm_probe_write(ngx_event_t *wev)
{
    ssize_t                n;
    ngx_connection_t      *c;
    ngx_http_llm_probe_t  *pr;

    pr = ngx_http_llm_probe_event(wev);
    if (pr == NULL) {
        return;
    }

    c = wev->data;

    while (pr->sent < pr->request->len) {
        n = c->send(c, pr->request->data + pr->sent,
                    pr->request->len - pr->sent);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                goto failed;
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_http_llm_probe_close(pr);
            ngx_http_llm_probe_finish(pr, pr->sent ? "connection closed"
                                                   : "connect failed");
            return;
        }

        pr->sent += n;
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    /* all sent: no more write events, wait for the answer */

    wev->handler = ngx_http_llm_probe_sent;

    if (ngx_handle_write_event(wev, 0) != NGX_OK
        || ngx_handle_read_event(c->read, 0) != NGX_OK)
    {
        goto failed;
    }

    return;

failed:

    ngx_http_llm_probe_close(pr);
    ngx_http_llm_probe_finish(pr, "event error");
}


static void
ngx_http_llm_probe_sent(ngx_event_t *wev)
{
    (void) ngx_http_llm_probe_event(wev);
}


static void
ngx_http_llm_probe_read(ngx_event_t *rev)
{
    ssize_t                n;
    ngx_int_t              rc;
    ngx_connection_t      *c;
    ngx_http_llm_probe_t  *pr;

    pr = ngx_http_llm_probe_event(rev);
    if (pr == NULL) {
        return;
    }

    c = rev->data;

    for ( ;; ) {
        n = c->recv(c, pr->buf, NGX_HTTP_LLM_PROBE_BUF);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_http_llm_probe_close(pr);
                ngx_http_llm_probe_finish(pr, "event error");
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_http_llm_probe_close(pr);

            if (pr->status == 0) {
                ngx_http_llm_probe_finish(pr,
                                          (n == NGX_ERROR && pr->sent == 0)
                                          ? "connect failed"
                                          : pr->received ? "invalid response"
                                                         : "connection closed");
                return;
            }

            /* a scrape's body ends when the engine closes, not on a reset */

            ngx_http_llm_probe_finish(pr, (n == NGX_ERROR) ? "connection reset"
                                          : (pr->eoh == 2) ? NULL
                                          : "invalid response");
            return;
        }

        rc = ngx_http_llm_probe_parse(pr, pr->buf, pr->buf + n);

        if (rc == NGX_AGAIN) {
            continue;
        }

        ngx_http_llm_probe_close(pr);
        ngx_http_llm_probe_finish(pr, (rc == NGX_ERROR) ? "invalid response"
                                      : (rc == NGX_DECLINED)
                                        ? "metrics too large" : NULL);
        return;
    }
}


/*
 * Reads "HTTP/1.x SSS" and, for a scrape, the headers up to the empty line
 * and the body into the parser.  NGX_OK: the probe has its answer.
 */

static ngx_int_t
ngx_http_llm_probe_parse(ngx_http_llm_probe_t *pr, u_char *p, u_char *last)
{
    u_char  c;

    /* "HTTP/d.d ddd" and a space or the line's end */

    while (pr->status == 0 && p < last) {
        c = *p++;

        switch (pr->received) {

        case 0: case 1: case 2: case 3: case 4:
            if (c != "HTTP/"[pr->received]) {
                return NGX_ERROR;
            }

            break;

        case 5: case 7:
            if (c < '0' || c > '9') {
                return NGX_ERROR;
            }

            break;

        case 6:
            if (c != '.') {
                return NGX_ERROR;
            }

            break;

        case 8:
            if (c != ' ') {
                return NGX_ERROR;
            }

            break;

        case 9: case 10: case 11:
            if (c < '0' || c > '9') {
                return NGX_ERROR;
            }

            pr->eoh = pr->eoh * 10 + (c - '0');
            break;

        default: /* 12 */
            if (c != ' ' && c != '\r' && c != '\n') {
                return NGX_ERROR;
            }

            if (pr->eoh < 100) {
                return NGX_ERROR;
            }

            pr->status = pr->eoh;
            pr->eoh = (c == '\n') ? 1 : 0;
            break;
        }

        pr->received++;
    }

    if (pr->status == 0) {
        return NGX_AGAIN;
    }

    if (pr->kind == NGX_HTTP_LLM_PROBE_CHECK || pr->status != 200) {
        return NGX_OK;
    }

    /* the headers end with an empty line, "\r\n" or a bare "\n" */

    while (pr->eoh < 2 && p < last) {
        c = *p++;

        if (c == '\n') {
            pr->eoh++;

        } else if (c != '\r') {
            pr->eoh = 0;
        }
    }

    if (p < last && pr->kind == NGX_HTTP_LLM_PROBE_LIMITS) {
        if ((size_t) (pr->body->end - pr->body->last) < (size_t) (last - p)) {
            return NGX_DECLINED;
        }

        pr->body->last = ngx_cpymem(pr->body->last, p, last - p);
        return NGX_AGAIN;
    }

    if (p < last
        && ngx_http_llm_prom_feed(pr->prom, p, last - p)
           == NGX_HTTP_LLM_PROM_TOO_BIG)
    {
        return NGX_DECLINED;
    }

    return NGX_AGAIN;
}


static void
ngx_http_llm_probe_finish(ngx_http_llm_probe_t *pr, const char *error)
{
    if (pr->kind == NGX_HTTP_LLM_PROBE_CHECK) {
        ngx_http_llm_check_done(pr, error);

    } else if (pr->kind == NGX_HTTP_LLM_PROBE_SCRAPE) {
        ngx_http_llm_scrape_done(pr, error);

    } else {
        ngx_http_llm_limits_done(pr, error);
    }
}


/* records one check's outcome; a change of state is logged */

static void
ngx_http_llm_check_done(ngx_http_llm_probe_t *pr, const char *error)
{
    size_t                      len;
    ngx_int_t                   changed;
    ngx_time_t                 *tp;
    ngx_slab_pool_t            *shpool;
    ngx_http_llm_srv_conf_t    *lscf;
    ngx_http_llm_peer_state_t  *st;
    u_char                      status[NGX_HTTP_LLM_ERROR_LEN];

    if (error == NULL && pr->status
        && !(pr->lscf->check_status
             ? (ngx_uint_t) pr->status == pr->lscf->check_status
             : (pr->status >= 200 && pr->status < 300)))
    {
        ngx_sprintf(status, "status %i%Z", pr->status);
        error = (char *) status;
    }

    lscf = pr->lscf;
    shpool = pr->lmcf->shpool;
    st = ngx_http_llm_peer_state(pr->lmcf, lscf, pr->n);
    tp = ngx_timeofday();
    changed = 0;

    ngx_shmtx_lock(&shpool->mutex);

    st->checks++;
    st->latency = ngx_current_msec - pr->started;
    st->last_check = tp->sec;
    st->last_check_ms = tp->msec;
    ngx_http_llm_probe_release(pr, &st->check);

    if (error == NULL) {
        st->fails = 0;
        st->successes++;
        st->error[0] = '\0';

        if (st->down && st->successes >= lscf->rise) {
            st->down = 0;
            changed = 1;
        }

    } else {
        st->successes = 0;
        st->fails++;

        len = ngx_min(ngx_strlen(error), NGX_HTTP_LLM_ERROR_LEN - 1);
        ngx_memcpy(st->error, error, len);
        st->error[len] = '\0';

        if (!st->down && st->fails >= lscf->fall) {
            st->down = 1;
            changed = 1;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (changed) {
        ngx_log_error(NGX_LOG_WARN, pr->timer.log, 0,
                      "llm router: peer %V of upstream \"%V\" is %s%s",
                      &pr->name, &lscf->upstream->host,
                      error ? "down: " : "up", error ? error : "");
    }
}


/* keeps a scrape's values; bad lines in the metrics are logged once */

static void
ngx_http_llm_scrape_done(ngx_http_llm_probe_t *pr, const char *error)
{
    size_t                      len;
    ngx_uint_t                  bad, log_bad;
    ngx_time_t                 *tp;
    ngx_slab_pool_t            *shpool;
    ngx_http_llm_prom_t        *prom;
    ngx_http_llm_peer_state_t  *st;
    u_char                      status[NGX_HTTP_LLM_ERROR_LEN];

    prom = pr->prom;

    if (error == NULL && pr->status != 200) {
        ngx_sprintf(status, "status %i%Z", pr->status);
        error = (char *) status;
    }

    if (error == NULL) {
        ngx_http_llm_prom_finish(prom);
    }

    shpool = pr->lmcf->shpool;
    st = ngx_http_llm_peer_state(pr->lmcf, pr->lscf, pr->n);
    tp = ngx_timeofday();
    bad = prom->bad_lines;
    log_bad = 0;

    ngx_shmtx_lock(&shpool->mutex);

    ngx_http_llm_probe_release(pr, &st->scrape);
    st->last_scrape = tp->sec;
    st->last_scrape_ms = tp->msec;

    if (error) {
        len = ngx_min(ngx_strlen(error), NGX_HTTP_LLM_ERROR_LEN - 1);
        ngx_memcpy(st->scrape_error, error, len);
        st->scrape_error[len] = '\0';

    } else {
        st->scrapes++;
        st->scraped = ngx_current_msec;
        st->scrape_in_flight = st->in_flight;
        st->scrape_error[0] = '\0';

        st->has_running = prom->seen[0];
        st->running = prom->sum[0];
        st->has_waiting = prom->seen[1];
        st->waiting = prom->sum[1];

        /* vLLM renamed its KV-cache gauge: the older name as a fallback */

        st->has_kv_cache = prom->seen[2] || prom->seen[3];
        st->kv_cache = prom->seen[2] ? prom->sum[2] : prom->sum[3];

        st->bad_lines = bad;

        if (bad && !st->bad_logged) {
            st->bad_logged = 1;
            log_bad = 1;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (log_bad) {
        ngx_log_error(NGX_LOG_WARN, pr->timer.log, 0,
                      "llm router: the metrics of peer %V of upstream "
                      "\"%V\" have %uz malformed lines (logged once)",
                      &pr->name, &pr->lscf->upstream->host, bad);
    }
}


/* keeps the context size an engine reports; a change is logged */

static void
ngx_http_llm_limits_done(ngx_http_llm_probe_t *pr, const char *error)
{
    ngx_uint_t                  n, old;
    ngx_slab_pool_t            *shpool;
    ngx_http_llm_peer_state_t  *st;

    n = 0;

    if (error == NULL && pr->status == 200) {
        n = ngx_http_llm_engine_limits(pr->lscf->engine, pr->body->pos,
                                       pr->body->last - pr->body->pos);
    }

    pr->body->last = pr->body->pos;

    shpool = pr->lmcf->shpool;
    st = ngx_http_llm_peer_state(pr->lmcf, pr->lscf, pr->n);

    ngx_shmtx_lock(&shpool->mutex);

    ngx_http_llm_probe_release(pr, &st->limits);

    old = st->max_context;

    if (n) {
        st->max_context = n;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (n && n != old) {
        ngx_log_error(NGX_LOG_INFO, pr->timer.log, 0,
                      "llm router: peer %V of upstream \"%V\" has a "
                      "context of %ui tokens", &pr->name,
                      &pr->lscf->upstream->host, n);

    } else if (n == 0) {
        ngx_log_error(NGX_LOG_WARN, pr->timer.log, 0,
                      "llm router: peer %V of upstream \"%V\" did not "
                      "report its context size: %s", &pr->name,
                      &pr->lscf->upstream->host,
                      error ? error : "no value in the answer");
    }
}


static void
ngx_http_llm_probe_close(ngx_http_llm_probe_t *pr)
{
    if (pr->pc.connection) {
        ngx_close_connection(pr->pc.connection);
        pr->pc.connection = NULL;
    }
}


/* shutting down: no outcome, and the claim is given back */

static void
ngx_http_llm_probe_abandon(ngx_http_llm_probe_t *pr)
{
    ngx_slab_pool_t       *shpool;
    ngx_http_llm_claim_t  *cl;

    ngx_http_llm_probe_close(pr);

    shpool = pr->lmcf->shpool;
    cl = ngx_http_llm_probe_claim_of(pr);

    ngx_shmtx_lock(&shpool->mutex);

    if (cl->owner == ngx_pid && cl->started == pr->started) {
        cl->owner = 0;
        cl->next = ngx_current_msec;
    }

    ngx_shmtx_unlock(&shpool->mutex);
}


/* under the lock: a claim taken over by another worker is not ours */

static void
ngx_http_llm_probe_release(ngx_http_llm_probe_t *pr, ngx_http_llm_claim_t *cl)
{
    if (cl->owner == ngx_pid && cl->started == pr->started) {
        cl->owner = 0;
    }
}
