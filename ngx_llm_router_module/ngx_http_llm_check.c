
/*
 * ngx_llm_router: llm_engine, llm_check, llm_scrape; the probes' timers,
 * claims and outcomes.  Not here: what an engine is asked or how its
 * answer is read (ngx_http_llm_engine.c), HTTP (ngx_http_llm_probe.c).
 *
 * Every worker keeps a timer per probed peer and kind of probe (a job).
 * When it fires, the worker claims the peer's next probe in the shared
 * zone; the claim succeeds for one worker per interval, and a claim left
 * by a worker that died mid-probe is taken over after the timeout.  A
 * probe is an HTTP/1.0 GET through ngx_http_llm_probe.c.  A check is
 * decided by the status line: after "fall" failures in a row the peer is
 * down, after "rise" successes up again.  A scrape reads the Prometheus
 * text (at most NGX_HTTP_LLM_METRICS_MAX bytes) through the incremental
 * parser and keeps the engine's running and waiting requests and KV-cache
 * use; a limits probe keeps the context size the engine reports.  Timers
 * are cancelable and the connection is marked idle, so neither a reload
 * nor a shutdown waits for a probe.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_prom.h"
#include "ngx_http_llm_engine.h"
#include "ngx_http_llm_probe.h"
#include "ngx_http_llm_check.h"
#include "ngx_http_llm_peers.h"
#include "ngx_http_llm_upstream.h"
#include "ngx_http_llm_zone.h"


#define NGX_HTTP_LLM_PROBE_CHECK   0
#define NGX_HTTP_LLM_PROBE_SCRAPE  1
#define NGX_HTTP_LLM_PROBE_LIMITS  2

#define NGX_HTTP_LLM_LIMITS_MAX    (256 * 1024)


/* one peer, one kind of probe: its timer and its probe */
typedef struct {
    ngx_event_t                  timer;
    ngx_http_llm_probe_t         probe;
    ngx_uint_t                   kind;
    ngx_http_llm_srv_conf_t     *lscf;
    ngx_http_llm_main_conf_t    *lmcf;
    ngx_uint_t                   n;
    ngx_str_t                    name;
    ngx_msec_t                   interval;
    ngx_msec_t                   started;
    ngx_http_llm_prom_t         *prom;
    ngx_buf_t                   *body;       /* limits: the JSON */
} ngx_http_llm_job_t;


static ngx_int_t ngx_http_llm_check_number(ngx_http_llm_srv_conf_t *lscf,
    ngx_str_t *value);
static ngx_int_t ngx_http_llm_param_msec(ngx_str_t *value, size_t skip,
    ngx_msec_t *ms);
static ngx_int_t ngx_http_llm_param_uri(ngx_str_t *value, ngx_str_t *uri);
static ngx_int_t ngx_http_llm_job_create(ngx_cycle_t *cycle,
    ngx_http_llm_main_conf_t *lmcf, ngx_http_llm_srv_conf_t *lscf,
    ngx_uint_t n, ngx_uint_t kind);
static ngx_http_llm_claim_t *ngx_http_llm_job_claim_of(
    ngx_http_llm_job_t *job);
static void ngx_http_llm_job_timer(ngx_event_t *ev);
static ngx_uint_t ngx_http_llm_job_claim(ngx_http_llm_job_t *job);
static void ngx_http_llm_job_start(ngx_http_llm_job_t *job);
static ngx_int_t ngx_http_llm_scrape_body(ngx_http_llm_probe_t *p,
    u_char *data, size_t len);
static ngx_int_t ngx_http_llm_limits_body(ngx_http_llm_probe_t *p,
    u_char *data, size_t len);
static void ngx_http_llm_job_done(ngx_http_llm_probe_t *p,
    ngx_uint_t result);
static void ngx_http_llm_job_finish(ngx_http_llm_job_t *job,
    const char *error);
static void ngx_http_llm_check_done(ngx_http_llm_job_t *job,
    const char *error);
static void ngx_http_llm_scrape_done(ngx_http_llm_job_t *job,
    const char *error);
static void ngx_http_llm_limits_done(ngx_http_llm_job_t *job,
    const char *error);
static void ngx_http_llm_job_abandon(ngx_http_llm_job_t *job);
static void ngx_http_llm_job_release(ngx_http_llm_job_t *job,
    ngx_http_llm_claim_t *cl);


/* the words of the status page and the log for a probe's end */
static const char  *ngx_http_llm_job_errors[] = {
    NULL,                   /* NGX_HTTP_LLM_PROBE_OK */
    "connect failed",
    "connection closed",    /* while sending */
    "connection closed",
    "invalid response",
    "connection reset",
    "timed out",
    "event error",
    "metrics too large",
    "no memory",
    "shutting down"
};


/* llm_engine vllm|llamacpp|sglang|tgi|ollama|openai [skip=...]; */

char *
ngx_http_llm_engine_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_srv_conf_t *lscf = conf;

    char  *rv;

    if (lscf->engine != NGX_HTTP_LLM_ENGINE_NONE) {
        return "is duplicate";
    }

    rv = ngx_http_llm_engine_conf(cf, lscf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    return ngx_http_llm_upstream_directive(cf, lscf);
}


/* llm_check [interval=] [timeout=] [fall=] [rise=] [uri=] [status=]; */

char *
ngx_http_llm_check(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_srv_conf_t *lscf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i, timeout_set;

    if (lscf->check_interval) {
        return "is duplicate";
    }

    lscf->check_interval = 5000;
    lscf->check_timeout = 2000;
    timeout_set = 0;
    lscf->fall = 3;
    lscf->rise = 2;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "interval=", 9) == 0) {
            if (ngx_http_llm_param_msec(&value[i], 9, &lscf->check_interval)
                != NGX_OK)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            if (ngx_http_llm_param_msec(&value[i], 8, &lscf->check_timeout)
                != NGX_OK)
            {
                goto invalid;
            }

            timeout_set = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "fall=", 5) == 0
            || ngx_strncmp(value[i].data, "rise=", 5) == 0
            || ngx_strncmp(value[i].data, "status=", 7) == 0)
        {
            if (ngx_http_llm_check_number(lscf, &value[i]) != NGX_OK) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "uri=", 4) == 0) {
            if (ngx_http_llm_param_uri(&value[i], &lscf->check_uri) != NGX_OK)
            {
                goto invalid;
            }

            continue;
        }

        goto invalid;
    }

    if (!timeout_set) {
        lscf->check_timeout = ngx_min(lscf->check_timeout,
                                      lscf->check_interval);
    }

    if (lscf->check_timeout > lscf->check_interval) {
        return "has a timeout longer than its interval";
    }

    return ngx_http_llm_upstream_directive(cf, lscf);

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}


/* llm_scrape [interval=] [uri=]; */

char *
ngx_http_llm_scrape(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_srv_conf_t *lscf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (lscf->scrape_interval) {
        return "is duplicate";
    }

    lscf->scrape_interval = 1000;
    ngx_str_set(&lscf->scrape_uri, "/metrics");

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "interval=", 9) == 0) {
            if (ngx_http_llm_param_msec(&value[i], 9, &lscf->scrape_interval)
                != NGX_OK)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "uri=", 4) == 0) {
            if (ngx_http_llm_param_uri(&value[i], &lscf->scrape_uri)
                != NGX_OK)
            {
                goto invalid;
            }

            continue;
        }

        goto invalid;
    }

    return ngx_http_llm_upstream_directive(cf, lscf);

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}


/* fall=N, rise=N (above zero) or status=NNN (100 to 599) */

static ngx_int_t
ngx_http_llm_check_number(ngx_http_llm_srv_conf_t *lscf, ngx_str_t *value)
{
    ngx_int_t   n;
    ngx_str_t   s;

    s.data = (u_char *) ngx_strchr(value->data, '=') + 1;
    s.len = value->data + value->len - s.data;

    n = ngx_atoi(s.data, s.len);

    if (n == NGX_ERROR || n == 0) {
        return NGX_ERROR;
    }

    if (value->data[0] == 'f') {
        lscf->fall = n;

    } else if (value->data[0] == 'r') {
        lscf->rise = n;

    } else if (n >= 100 && n <= 599) {
        lscf->check_status = n;

    } else {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* NAME=TIME, a time above zero */

static ngx_int_t
ngx_http_llm_param_msec(ngx_str_t *value, size_t skip, ngx_msec_t *ms)
{
    ngx_str_t   s;
    ngx_msec_t  t;

    s.data = value->data + skip;
    s.len = value->len - skip;

    t = ngx_parse_time(&s, 0);

    if (t == (ngx_msec_t) NGX_ERROR || t == 0) {
        return NGX_ERROR;
    }

    *ms = t;

    return NGX_OK;
}


/* uri=/PATH */

static ngx_int_t
ngx_http_llm_param_uri(ngx_str_t *value, ngx_str_t *uri)
{
    uri->data = value->data + 4;
    uri->len = value->len - 4;

    return (uri->len && uri->data[0] == '/') ? NGX_OK : NGX_ERROR;
}


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
                && ngx_http_llm_job_create(cycle, lmcf, lscf, k,
                                             NGX_HTTP_LLM_PROBE_CHECK)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (lscf->scrape_interval
                && ngx_http_llm_job_create(cycle, lmcf, lscf, k,
                                             NGX_HTTP_LLM_PROBE_SCRAPE)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (lscf->limits_interval
                && ngx_http_llm_job_create(cycle, lmcf, lscf, k,
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
ngx_http_llm_job_create(ngx_cycle_t *cycle, ngx_http_llm_main_conf_t *lmcf,
    ngx_http_llm_srv_conf_t *lscf, ngx_uint_t n, ngx_uint_t kind)
{
    ngx_http_llm_job_t           *job;
    ngx_http_upstream_rr_peer_t  *peer;

    peer = ngx_http_llm_rr_peer(lscf, n);
    if (peer == NULL) {
        return NGX_OK;
    }

    job = ngx_pcalloc(cycle->pool, sizeof(ngx_http_llm_job_t));
    if (job == NULL) {
        return NGX_ERROR;
    }

    job->probe.buf = ngx_palloc(cycle->pool, NGX_HTTP_LLM_PROBE_BUF);
    if (job->probe.buf == NULL) {
        return NGX_ERROR;
    }

    job->kind = kind;
    job->lscf = lscf;
    job->lmcf = lmcf;
    job->n = n;
    job->name = peer->name;

    job->probe.done = ngx_http_llm_job_done;
    job->probe.data = job;
    job->probe.idle = 1;

    if (kind == NGX_HTTP_LLM_PROBE_CHECK) {
        job->probe.request = lscf->check_request;
        job->interval = lscf->check_interval;
        job->probe.timeout = lscf->check_timeout;

    } else if (kind == NGX_HTTP_LLM_PROBE_SCRAPE) {
        job->probe.request = lscf->scrape_request;
        job->interval = lscf->scrape_interval;
        job->probe.timeout = ngx_min(lscf->scrape_interval, 5000);
        job->probe.body_status = 200;
        job->probe.body = ngx_http_llm_scrape_body;

        job->prom = ngx_palloc(cycle->pool, sizeof(ngx_http_llm_prom_t));
        if (job->prom == NULL) {
            return NGX_ERROR;
        }

    } else {
        job->probe.request = lscf->limits_request;
        job->interval = lscf->limits_interval;
        job->probe.timeout = 2000;
        job->probe.body_status = 200;
        job->probe.body = ngx_http_llm_limits_body;

        job->body = ngx_create_temp_buf(cycle->pool, NGX_HTTP_LLM_LIMITS_MAX);
        if (job->body == NULL) {
            return NGX_ERROR;
        }
    }

    job->timer.handler = ngx_http_llm_job_timer;
    job->timer.data = job;
    job->timer.log = cycle->log;
    job->timer.cancelable = 1;

    /* the first probe soon, spread a little between workers */

    ngx_add_timer(&job->timer, 10 + ngx_random() % 50);

    return NGX_OK;
}


static ngx_http_llm_claim_t *
ngx_http_llm_job_claim_of(ngx_http_llm_job_t *job)
{
    ngx_http_llm_peer_state_t  *st;

    st = ngx_http_llm_peer_state(job->lmcf, job->lscf, job->n);

    return (job->kind == NGX_HTTP_LLM_PROBE_CHECK) ? &st->check
           : (job->kind == NGX_HTTP_LLM_PROBE_SCRAPE) ? &st->scrape
           : &st->limits;
}


static void
ngx_http_llm_job_timer(ngx_event_t *ev)
{
    ngx_http_llm_job_t  *job;

    job = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (job->probe.pc.connection == NULL && ngx_http_llm_job_claim(job)) {
        ngx_http_llm_job_start(job);
    }

    /* claims are cheap: look twice an interval, probe once */

    ngx_add_timer(ev, job->interval / 2 + 1);
}


static ngx_uint_t
ngx_http_llm_job_claim(ngx_http_llm_job_t *job)
{
    ngx_uint_t             claimed;
    ngx_msec_t             now;
    ngx_slab_pool_t       *shpool;
    ngx_http_llm_claim_t  *cl;

    shpool = job->lmcf->shpool;
    cl = ngx_http_llm_job_claim_of(job);
    now = ngx_current_msec;
    claimed = 0;

    ngx_shmtx_lock(&shpool->mutex);

    if ((ngx_msec_int_t) (now - cl->next) >= 0
        && (cl->owner == 0
            || (ngx_msec_int_t) (now - cl->started)
               > (ngx_msec_int_t) (job->probe.timeout + 1000)))
    {
        cl->owner = ngx_pid;
        cl->started = now;
        cl->next = now + job->interval;
        job->started = now;
        claimed = 1;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return claimed;
}


static void
ngx_http_llm_job_start(ngx_http_llm_job_t *job)
{
    ngx_int_t                     rc;
    ngx_peer_connection_t        *pc;
    ngx_http_upstream_rr_peer_t  *peer;

    peer = ngx_http_llm_rr_peer(job->lscf, job->n);
    if (peer == NULL) {
        ngx_http_llm_job_finish(job, "no such peer");
        return;
    }

    pc = &job->probe.pc;
    ngx_memzero(pc, sizeof(ngx_peer_connection_t));

    pc->sockaddr = peer->sockaddr;
    pc->socklen = peer->socklen;
    pc->name = &job->name;
    pc->log = job->timer.log;
    pc->log_error = NGX_ERROR_INFO;

    if (job->prom) {
        ngx_http_llm_prom_init(job->prom, job->lscf->metrics,
                               job->lscf->metrics[3] ? 4
                               : job->lscf->metrics[2] ? 3 : 2,
                               NGX_HTTP_LLM_METRICS_MAX);
    }

    rc = ngx_http_llm_probe_connect(&job->probe);

    if (rc == NGX_ERROR) {

        /* out of connections or sockets here: says nothing of the peer */

        ngx_http_llm_job_abandon(job);
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_llm_job_finish(job, "connect failed");
    }
}


static ngx_int_t
ngx_http_llm_scrape_body(ngx_http_llm_probe_t *p, u_char *data, size_t len)
{
    ngx_http_llm_job_t  *job = p->data;

    if (ngx_http_llm_prom_feed(job->prom, data, len)
        == NGX_HTTP_LLM_PROM_TOO_BIG)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_limits_body(ngx_http_llm_probe_t *p, u_char *data, size_t len)
{
    ngx_http_llm_job_t  *job = p->data;

    if ((size_t) (job->body->end - job->body->last) < len) {
        return NGX_DECLINED;
    }

    job->body->last = ngx_cpymem(job->body->last, data, len);

    return NGX_OK;
}


static void
ngx_http_llm_job_done(ngx_http_llm_probe_t *p, ngx_uint_t result)
{
    ngx_http_llm_job_t  *job = p->data;

    if (result == NGX_HTTP_LLM_PROBE_ABANDONED) {

        /* nginx is shutting down: no outcome */

        ngx_http_llm_job_abandon(job);
        return;
    }

    ngx_http_llm_job_finish(job, ngx_http_llm_job_errors[result]);
}


static void
ngx_http_llm_job_finish(ngx_http_llm_job_t *job, const char *error)
{
    if (job->kind == NGX_HTTP_LLM_PROBE_CHECK) {
        ngx_http_llm_check_done(job, error);

    } else if (job->kind == NGX_HTTP_LLM_PROBE_SCRAPE) {
        ngx_http_llm_scrape_done(job, error);

    } else {
        ngx_http_llm_limits_done(job, error);
    }
}


/* records one check's outcome; a change of state is logged */

static void
ngx_http_llm_check_done(ngx_http_llm_job_t *job, const char *error)
{
    size_t                      len;
    ngx_int_t                   changed;
    ngx_time_t                 *tp;
    ngx_slab_pool_t            *shpool;
    ngx_http_llm_srv_conf_t    *lscf;
    ngx_http_llm_peer_state_t  *st;
    u_char                      status[NGX_HTTP_LLM_ERROR_LEN];

    if (error == NULL && job->probe.status
        && !(job->lscf->check_status
             ? job->probe.status == job->lscf->check_status
             : (job->probe.status >= 200 && job->probe.status < 300)))
    {
        ngx_sprintf(status, "status %ui%Z", job->probe.status);
        error = (char *) status;
    }

    lscf = job->lscf;
    shpool = job->lmcf->shpool;
    st = ngx_http_llm_peer_state(job->lmcf, lscf, job->n);
    tp = ngx_timeofday();
    changed = 0;

    ngx_shmtx_lock(&shpool->mutex);

    st->checks++;
    st->latency = ngx_current_msec - job->started;
    st->last_check = tp->sec;
    st->last_check_ms = tp->msec;
    ngx_http_llm_job_release(job, &st->check);

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
        ngx_log_error(NGX_LOG_WARN, job->timer.log, 0,
                      "llm router: peer %V of upstream \"%V\" is %s%s",
                      &job->name, &lscf->upstream->host,
                      error ? "down: " : "up", error ? error : "");
    }
}


/* keeps a scrape's values; bad lines in the metrics are logged once */

static void
ngx_http_llm_scrape_done(ngx_http_llm_job_t *job, const char *error)
{
    size_t                      len;
    ngx_uint_t                  bad, log_bad;
    ngx_time_t                 *tp;
    ngx_slab_pool_t            *shpool;
    ngx_http_llm_prom_t        *prom;
    ngx_http_llm_peer_state_t  *st;
    u_char                      status[NGX_HTTP_LLM_ERROR_LEN];

    prom = job->prom;

    if (error == NULL && job->probe.status != 200) {
        ngx_sprintf(status, "status %ui%Z", job->probe.status);
        error = (char *) status;
    }

    if (error == NULL) {
        ngx_http_llm_prom_finish(prom);
    }

    shpool = job->lmcf->shpool;
    st = ngx_http_llm_peer_state(job->lmcf, job->lscf, job->n);
    tp = ngx_timeofday();
    bad = prom->bad_lines;
    log_bad = 0;

    ngx_shmtx_lock(&shpool->mutex);

    ngx_http_llm_job_release(job, &st->scrape);
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
        ngx_log_error(NGX_LOG_WARN, job->timer.log, 0,
                      "llm router: the metrics of peer %V of upstream "
                      "\"%V\" have %uz malformed lines (logged once)",
                      &job->name, &job->lscf->upstream->host, bad);
    }
}


/* keeps the context size an engine reports; a change is logged */

static void
ngx_http_llm_limits_done(ngx_http_llm_job_t *job, const char *error)
{
    ngx_uint_t                  n, old;
    ngx_slab_pool_t            *shpool;
    ngx_http_llm_peer_state_t  *st;

    n = 0;

    if (error == NULL && job->probe.status == 200) {
        n = ngx_http_llm_engine_limits(job->lscf->engine, job->body->pos,
                                       job->body->last - job->body->pos);
    }

    job->body->last = job->body->pos;

    shpool = job->lmcf->shpool;
    st = ngx_http_llm_peer_state(job->lmcf, job->lscf, job->n);

    ngx_shmtx_lock(&shpool->mutex);

    ngx_http_llm_job_release(job, &st->limits);

    old = st->max_context;

    if (n) {
        st->max_context = n;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (n && n != old) {
        ngx_log_error(NGX_LOG_INFO, job->timer.log, 0,
                      "llm router: peer %V of upstream \"%V\" has a "
                      "context of %ui tokens", &job->name,
                      &job->lscf->upstream->host, n);

    } else if (n == 0) {
        ngx_log_error(NGX_LOG_WARN, job->timer.log, 0,
                      "llm router: peer %V of upstream \"%V\" did not "
                      "report its context size: %s", &job->name,
                      &job->lscf->upstream->host,
                      error ? error : "no value in the answer");
    }
}


/* shutting down: no outcome, and the claim is given back */

static void
ngx_http_llm_job_abandon(ngx_http_llm_job_t *job)
{
    ngx_slab_pool_t       *shpool;
    ngx_http_llm_claim_t  *cl;

    ngx_http_llm_probe_close(&job->probe);

    shpool = job->lmcf->shpool;
    cl = ngx_http_llm_job_claim_of(job);

    ngx_shmtx_lock(&shpool->mutex);

    if (cl->owner == ngx_pid && cl->started == job->started) {
        cl->owner = 0;
        cl->next = ngx_current_msec;
    }

    ngx_shmtx_unlock(&shpool->mutex);
}


/* under the lock: a claim taken over by another worker is not ours */

static void
ngx_http_llm_job_release(ngx_http_llm_job_t *job, ngx_http_llm_claim_t *cl)
{
    if (cl->owner == ngx_pid && cl->started == job->started) {
        cl->owner = 0;
    }
}
