
/*
 * ngx_llm_router: active health checks (llm_check).
 *
 * Every worker keeps a timer per checked peer.  When it fires, the worker
 * claims the peer's next check in the shared zone; the claim succeeds for
 * one worker per interval, and a claim older than the timeout (a worker
 * that died mid-check) can be taken over.  The check is an HTTP/1.0 GET of
 * the engine's health URI over a non-blocking connection; the status line
 * decides.  After "fall" failures in a row the peer is down, after "rise"
 * successes up again.  Timers are cancelable and the connection is marked
 * idle, so neither a reload nor a shutdown waits for a check.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"


typedef struct {
    ngx_event_t                  timer;
    ngx_peer_connection_t        pc;
    ngx_http_llm_srv_conf_t     *lscf;
    ngx_http_llm_main_conf_t    *lmcf;
    ngx_uint_t                   n;
    ngx_str_t                    name;
    ngx_msec_t                   started;
    size_t                       sent;
    size_t                       received;
    u_char                       buf[128];
} ngx_http_llm_checker_t;


static void ngx_http_llm_check_timer(ngx_event_t *ev);
static ngx_uint_t ngx_http_llm_check_claim(ngx_http_llm_checker_t *ck);
static void ngx_http_llm_check_start(ngx_http_llm_checker_t *ck);
static void ngx_http_llm_check_write(ngx_event_t *wev);
static void ngx_http_llm_check_read(ngx_event_t *rev);
static ngx_int_t ngx_http_llm_check_status(ngx_http_llm_checker_t *ck);
static void ngx_http_llm_check_done(ngx_http_llm_checker_t *ck,
    const char *error);
static void ngx_http_llm_check_close(ngx_http_llm_checker_t *ck);
static void ngx_http_llm_check_abandon(ngx_http_llm_checker_t *ck);


ngx_int_t
ngx_http_llm_check_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                     i, k;
    ngx_http_llm_checker_t        *ck;
    ngx_http_llm_srv_conf_t      **lscfp, *lscf;
    ngx_http_llm_main_conf_t      *lmcf;
    ngx_http_upstream_rr_peer_t   *peer;

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

        if (lscf->check_interval == 0) {
            continue;
        }

        for (k = 0; k < lscf->npeers; k++) {
            peer = ngx_http_llm_rr_peer(lscf, k);
            if (peer == NULL) {
                continue;
            }

            ck = ngx_pcalloc(cycle->pool, sizeof(ngx_http_llm_checker_t));
            if (ck == NULL) {
                return NGX_ERROR;
            }

            ck->lscf = lscf;
            ck->lmcf = lmcf;
            ck->n = k;
            ck->name = peer->name;

            ck->timer.handler = ngx_http_llm_check_timer;
            ck->timer.data = ck;
            ck->timer.log = cycle->log;
            ck->timer.cancelable = 1;

            /* the first check soon, spread a little between workers */

            ngx_add_timer(&ck->timer, 10 + ngx_random() % 50);
        }
    }

    return NGX_OK;
}


static void
ngx_http_llm_check_timer(ngx_event_t *ev)
{
    ngx_http_llm_checker_t  *ck;

    ck = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (ck->pc.connection == NULL && ngx_http_llm_check_claim(ck)) {
        ngx_http_llm_check_start(ck);
    }

    /* claims are cheap: look twice an interval, check once */

    ngx_add_timer(ev, ck->lscf->check_interval / 2 + 1);
}


static ngx_uint_t
ngx_http_llm_check_claim(ngx_http_llm_checker_t *ck)
{
    ngx_uint_t                  claimed;
    ngx_msec_t                  now;
    ngx_slab_pool_t            *shpool;
    ngx_http_llm_peer_state_t  *st;

    shpool = ck->lmcf->shpool;
    st = ngx_http_llm_peer_state(ck->lmcf, ck->lscf, ck->n);
    now = ngx_current_msec;
    claimed = 0;

    ngx_shmtx_lock(&shpool->mutex);

    if ((ngx_msec_int_t) (now - st->next_check) >= 0
        && (st->checker == 0
            || (ngx_msec_int_t) (now - st->check_started)
               > (ngx_msec_int_t) (ck->lscf->check_timeout + 1000)))
    {
        st->checker = ngx_pid;
        st->check_started = now;
        st->next_check = now + ck->lscf->check_interval;
        claimed = 1;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return claimed;
}


static void
ngx_http_llm_check_start(ngx_http_llm_checker_t *ck)
{
    ngx_int_t                     rc;
    ngx_connection_t             *c;
    ngx_http_upstream_rr_peer_t  *peer;

    peer = ngx_http_llm_rr_peer(ck->lscf, ck->n);
    if (peer == NULL) {
        ngx_http_llm_check_done(ck, "no such peer");
        return;
    }

    ngx_memzero(&ck->pc, sizeof(ngx_peer_connection_t));

    ck->pc.sockaddr = peer->sockaddr;
    ck->pc.socklen = peer->socklen;
    ck->pc.name = &ck->name;
    ck->pc.get = ngx_event_get_peer;
    ck->pc.log = ck->timer.log;
    ck->pc.log_error = NGX_ERROR_INFO;

    ck->started = ngx_current_msec;
    ck->sent = 0;
    ck->received = 0;

    rc = ngx_event_connect_peer(&ck->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_http_llm_check_close(ck);
        ngx_http_llm_check_done(ck, "connect failed");
        return;
    }

    c = ck->pc.connection;
    c->data = ck;
    c->idle = 1;
    c->read->handler = ngx_http_llm_check_read;
    c->write->handler = ngx_http_llm_check_write;
    c->read->cancelable = 1;
    c->write->cancelable = 1;

    ngx_add_timer(c->read, ck->lscf->check_timeout);
    ngx_add_timer(c->write, ck->lscf->check_timeout);

    if (rc == NGX_OK) {
        ngx_http_llm_check_write(c->write);
    }
}


static void
ngx_http_llm_check_write(ngx_event_t *wev)
{
    ssize_t                  n;
    ngx_str_t               *req;
    ngx_connection_t        *c;
    ngx_http_llm_checker_t  *ck;

    c = wev->data;
    ck = c->data;
    req = &ck->lscf->check_request;

    if (c->close) {
        ngx_http_llm_check_abandon(ck);
        return;
    }

    if (wev->timedout) {
        ngx_http_llm_check_close(ck);
        ngx_http_llm_check_done(ck, "timed out");
        return;
    }

    while (ck->sent < req->len) {
        n = c->send(c, req->data + ck->sent, req->len - ck->sent);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                break;
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_http_llm_check_close(ck);
            ngx_http_llm_check_done(ck, ck->sent ? "connection closed"
                                                 : "connect failed");
            return;
        }

        ck->sent += n;
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_llm_check_close(ck);
        ngx_http_llm_check_done(ck, "event error");
    }
}


static void
ngx_http_llm_check_read(ngx_event_t *rev)
{
    ssize_t                  n;
    ngx_int_t                status;
    ngx_connection_t        *c;
    ngx_http_llm_checker_t  *ck;
    u_char                   error[NGX_HTTP_LLM_ERROR_LEN];

    c = rev->data;
    ck = c->data;

    if (c->close) {
        ngx_http_llm_check_abandon(ck);
        return;
    }

    if (rev->timedout) {
        ngx_http_llm_check_close(ck);
        ngx_http_llm_check_done(ck, "timed out");
        return;
    }

    for ( ;; ) {
        n = c->recv(c, ck->buf + ck->received,
                    sizeof(ck->buf) - ck->received);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_http_llm_check_close(ck);
                ngx_http_llm_check_done(ck, "event error");
            }

            return;
        }

        if (n > 0) {
            ck->received += n;
        }

        status = ngx_http_llm_check_status(ck);

        if (status == NGX_AGAIN && n > 0
            && ck->received < sizeof(ck->buf))
        {
            continue;
        }

        ngx_http_llm_check_close(ck);

        if (status == NGX_AGAIN || status == NGX_ERROR) {
            ngx_http_llm_check_done(ck,
                                    (n == NGX_ERROR && ck->sent == 0)
                                    ? "connect failed"
                                    : (n == NGX_ERROR || n == 0)
                                    ? "connection closed"
                                    : "invalid response");
            return;
        }

        if (ck->lscf->check_status ? (ngx_uint_t) status
                                     == ck->lscf->check_status
                                   : (status >= 200 && status < 300))
        {
            ngx_http_llm_check_done(ck, NULL);
            return;
        }

        ngx_sprintf(error, "status %i%Z", status);
        ngx_http_llm_check_done(ck, (char *) error);
        return;
    }
}


/* the status of "HTTP/1.x SSS ...", NGX_AGAIN while incomplete */

static ngx_int_t
ngx_http_llm_check_status(ngx_http_llm_checker_t *ck)
{
    u_char     *p, *last;
    ngx_int_t   status;

    p = ck->buf;
    last = ck->buf + ck->received;

    if (last - p < 12) {
        return NGX_AGAIN;
    }

    if (ngx_strncmp(p, "HTTP/", 5) != 0) {
        return NGX_ERROR;
    }

    p = ngx_strlchr(p, last, ' ');

    if (p == NULL || last - p < 4) {
        return NGX_AGAIN;
    }

    status = ngx_atoi(p + 1, 3);

    return (status >= 100 && status <= 599) ? status : NGX_ERROR;
}


/* records one check's outcome; a change of state is logged */

static void
ngx_http_llm_check_done(ngx_http_llm_checker_t *ck, const char *error)
{
    size_t                      len;
    ngx_int_t                   changed;
    ngx_time_t                 *tp;
    ngx_slab_pool_t            *shpool;
    ngx_http_llm_srv_conf_t    *lscf;
    ngx_http_llm_peer_state_t  *st;

    lscf = ck->lscf;
    shpool = ck->lmcf->shpool;
    st = ngx_http_llm_peer_state(ck->lmcf, lscf, ck->n);
    tp = ngx_timeofday();
    changed = 0;

    ngx_shmtx_lock(&shpool->mutex);

    st->checks++;
    st->latency = ngx_current_msec - ck->started;
    st->last_check = tp->sec;
    st->last_check_ms = tp->msec;
    st->checker = 0;

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
        ngx_log_error(NGX_LOG_WARN, ck->timer.log, 0,
                      "llm router: peer %V of upstream \"%V\" is %s%s%s",
                      &ck->name, &lscf->upstream->host,
                      error ? "down: " : "up",
                      error ? error : "", "");
    }
}


static void
ngx_http_llm_check_close(ngx_http_llm_checker_t *ck)
{
    if (ck->pc.connection) {
        ngx_close_connection(ck->pc.connection);
        ck->pc.connection = NULL;
    }
}


/* shutting down: no outcome, and the claim is given back */

static void
ngx_http_llm_check_abandon(ngx_http_llm_checker_t *ck)
{
    ngx_slab_pool_t            *shpool;
    ngx_http_llm_peer_state_t  *st;

    ngx_http_llm_check_close(ck);

    shpool = ck->lmcf->shpool;
    st = ngx_http_llm_peer_state(ck->lmcf, ck->lscf, ck->n);

    ngx_shmtx_lock(&shpool->mutex);

    if (st->checker == ngx_pid) {
        st->checker = 0;
        st->next_check = ngx_current_msec;
    }

    ngx_shmtx_unlock(&shpool->mutex);
}
