
/*
 * ngx_llm_router: counters per model and the Prometheus endpoint.
 *
 * Each llm_model block has its counters in the zone, found by model and
 * upstream name like the peers' slots (so a reload keeps them).  The log
 * phase adds to them with atomic operations; llm_router_metrics sizes and
 * writes the whole text under one hold of the zone's lock.  Histogram
 * buckets are kept apart and summed up on output, so that a bucket, its
 * "+Inf" and the count always agree.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_prom.h"


typedef struct {
    const char  *name;
    const char  *type;
    const char  *help;
} ngx_http_llm_family_t;


static ngx_int_t ngx_http_llm_metrics_log(ngx_http_request_t *r);
static void ngx_http_llm_metrics_add(ngx_atomic_t *counter,
    ngx_atomic_uint_t n);
static void ngx_http_llm_observe(ngx_atomic_t *buckets, ngx_atomic_t *sum,
    const ngx_msec_t *bounds, ngx_uint_t n, ngx_msec_int_t ms);
static ngx_int_t ngx_http_llm_metrics_handler(ngx_http_request_t *r);
static size_t ngx_http_llm_metrics_size(ngx_http_llm_main_conf_t *lmcf);
static u_char *ngx_http_llm_metrics_models(u_char *p,
    ngx_http_llm_main_conf_t *lmcf);
static u_char *ngx_http_llm_metrics_peers(u_char *p,
    ngx_http_llm_main_conf_t *lmcf);
static u_char *ngx_http_llm_metrics_family(u_char *p,
    ngx_http_llm_family_t *f);
static u_char *ngx_http_llm_metrics_histogram(u_char *p, const char *name,
    u_char *labels, ngx_atomic_t *buckets, ngx_atomic_t *sum,
    const ngx_msec_t *bounds, ngx_uint_t n);
static u_char *ngx_http_llm_metrics_seconds(u_char *p, ngx_msec_t ms);
static u_char *ngx_http_llm_metrics_double(u_char *p, ngx_uint_t has,
    double v);
static u_char *ngx_http_llm_metrics_label(u_char *p, u_char *value);
static ngx_http_llm_model_stats_t *ngx_http_llm_find_stats(
    ngx_http_llm_shctx_t *sh, ngx_slab_pool_t *shpool,
    ngx_http_llm_model_t *model);


static const ngx_msec_t  ngx_http_llm_duration_bounds[] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000,
    600000
};

static const ngx_msec_t  ngx_http_llm_ttft_bounds[] = {
    25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000
};


static ngx_http_llm_family_t  ngx_http_llm_families[] = {
    { "llm_requests_total", "counter",
      "Requests routed to a model, by status class." },
    { "llm_requests_in_flight", "gauge",
      "Requests routed to a model and not finished." },
    { "llm_request_duration_seconds", "histogram",
      "Time from the request to the end of its response." },
    { "llm_time_to_first_token_seconds", "histogram",
      "Time to the first content event of a stream, or to the response "
      "header." },
    { "llm_prompt_tokens_total", "counter",
      "Prompt tokens, from the engines' usage." },
    { "llm_completion_tokens_total", "counter",
      "Completion tokens, from the engines' usage." },
    { "llm_stream_aborts_total", "counter",
      "Streams the client closed before their end." },
    { "llm_stream_failures_total", "counter",
      "Streams the engine broke off after the first byte." },
    { "llm_peer_up", "gauge", "1 when the peer passes its checks." },
    { "llm_peer_in_flight", "gauge", "Requests in flight to the peer." },
    { "llm_peer_failed_tries_total", "counter",
      "Tries of the peer that failed." },
    { "llm_peer_engine_requests_running", "gauge",
      "Requests the engine runs, as last scraped." },
    { "llm_peer_engine_requests_waiting", "gauge",
      "Requests the engine queues, as last scraped." },
    { "llm_peer_engine_kv_cache_usage_ratio", "gauge",
      "KV-cache use of the engine (0 to 1), as last scraped." },
    { "llm_peer_check_latency_seconds", "gauge",
      "Time the last health check took." },
    { NULL, NULL, NULL }
};


#define NGX_HTTP_LLM_FAMILY_REQUESTS   0
#define NGX_HTTP_LLM_FAMILY_PEER_UP    8


char *
ngx_http_llm_router_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_main_conf_t  *lmcf;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_llm_router_module);

    if (lmcf->metrics_line == 0) {
        lmcf->metrics_file = cf->conf_file->file.name;
        lmcf->metrics_line = cf->conf_file->line;
    }

    return ngx_http_llm_set_content_handler(cf, ngx_http_llm_metrics_handler);
}


ngx_int_t
ngx_http_llm_metrics_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_llm_main_conf_t   *lmcf;
    ngx_http_core_main_conf_t  *cmcf;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_llm_router_module);

    if (lmcf->metrics_line && lmcf->shm_zone == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"llm_router_metrics\" in %V:%ui needs "
                      "\"llm_router_zone\"", &lmcf->metrics_file,
                      lmcf->metrics_line);
        return NGX_ERROR;
    }

    if (lmcf->shm_zone == NULL) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_llm_metrics_log;

    return NGX_OK;
}


/* in the zone's init, under its lock: each model's counters */

ngx_int_t
ngx_http_llm_metrics_bind(ngx_http_llm_main_conf_t *lmcf,
    ngx_http_llm_shctx_t *sh, ngx_slab_pool_t *shpool)
{
    ngx_uint_t             i;
    ngx_http_llm_model_t  *models;

    models = lmcf->models.elts;

    for (i = 0; i < lmcf->models.nelts; i++) {
        models[i].stats = ngx_http_llm_find_stats(sh, shpool, &models[i]);

        if (models[i].stats == NULL) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_http_llm_model_stats_t *
ngx_http_llm_find_stats(ngx_http_llm_shctx_t *sh, ngx_slab_pool_t *shpool,
    ngx_http_llm_model_t *model)
{
    size_t                       len;
    ngx_queue_t                 *q;
    ngx_http_llm_model_stats_t  *st;
    u_char                       name[NGX_HTTP_LLM_MODEL_LEN];
    u_char                       upstream[NGX_HTTP_LLM_NAME_LEN];

    ngx_memzero(name, NGX_HTTP_LLM_MODEL_LEN);
    ngx_memzero(upstream, NGX_HTTP_LLM_NAME_LEN);

    len = ngx_min(model->name.len, NGX_HTTP_LLM_MODEL_LEN - 1);
    ngx_memcpy(name, model->name.data, len);

    len = ngx_min(model->upstream->host.len, NGX_HTTP_LLM_NAME_LEN - 1);
    ngx_memcpy(upstream, model->upstream->host.data, len);

    for (q = ngx_queue_head(&sh->models);
         q != ngx_queue_sentinel(&sh->models);
         q = ngx_queue_next(q))
    {
        st = ngx_queue_data(q, ngx_http_llm_model_stats_t, queue);

        if (ngx_strcmp(st->model, name) == 0
            && ngx_strcmp(st->upstream, upstream) == 0)
        {
            return st;
        }
    }

    st = ngx_slab_calloc_locked(shpool, sizeof(ngx_http_llm_model_stats_t));
    if (st == NULL) {
        return NULL;
    }

    ngx_memcpy(st->model, name, NGX_HTTP_LLM_MODEL_LEN);
    ngx_memcpy(st->upstream, upstream, NGX_HTTP_LLM_NAME_LEN);

    ngx_queue_insert_tail(&sh->models, &st->queue);

    return st;
}


/* a request was routed: it is in flight for its model */

void
ngx_http_llm_metrics_start(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_http_llm_model_stats_t  *st;

    st = ctx->route->model->stats;

    if (st == NULL || ctx->counted) {
        return;
    }

    (void) ngx_atomic_fetch_add(&st->in_flight, 1);
    ctx->counted = 1;
}


static ngx_int_t
ngx_http_llm_metrics_log(ngx_http_request_t *r)
{
    ngx_uint_t                   status;
    ngx_msec_int_t               ms;
    ngx_http_llm_ctx_t          *ctx;
    ngx_http_llm_model_stats_t  *st;

    ctx = ngx_http_llm_find_ctx(r);

    if (ctx == NULL || ctx->route == NULL || ctx->logged) {
        return NGX_OK;
    }

    st = ctx->route->model->stats;

    if (st == NULL) {
        return NGX_OK;
    }

    ctx->logged = 1;

    if (ctx->counted) {
        (void) ngx_atomic_fetch_add(&st->in_flight, (ngx_atomic_int_t) -1);
        ctx->counted = 0;
    }

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (status == 0 && r->connection->error) {
        status = NGX_HTTP_CLIENT_CLOSED_REQUEST;
    }

    if (status >= 100 && status < 600) {
        (void) ngx_atomic_fetch_add(&st->requests[status / 100 - 1], 1);
    }

    ms = ngx_http_llm_elapsed(r);

    ngx_http_llm_observe(st->duration, &st->duration_sum,
                         ngx_http_llm_duration_bounds,
                         NGX_HTTP_LLM_DURATION_BUCKETS, ms);

    if (ctx->ttft >= 0 && status >= 200 && status < 300) {
        ngx_http_llm_observe(st->ttft, &st->ttft_sum,
                             ngx_http_llm_ttft_bounds,
                             NGX_HTTP_LLM_TTFT_BUCKETS, ctx->ttft);
    }

    if (ctx->prompt_tokens > 0) {
        ngx_http_llm_metrics_add(&st->prompt_tokens, ctx->prompt_tokens);
    }

    if (ctx->completion_tokens > 0) {
        ngx_http_llm_metrics_add(&st->completion_tokens,
                                 ctx->completion_tokens);
    }

    if (ctx->stream_failed) {
        (void) ngx_atomic_fetch_add(&st->stream_failures, 1);

    } else if (ctx->sse && !ctx->stream_done
               && (ctx->stream_aborted || r->connection->error))
    {
        (void) ngx_atomic_fetch_add(&st->stream_aborts, 1);
    }

    return NGX_OK;
}


/*
 * Adds what an engine says to a counter that must never go back: an engine
 * can claim up to 2^63 tokens an answer, so the sum could wrap; it stops at
 * the top instead.
 */

static void
ngx_http_llm_metrics_add(ngx_atomic_t *counter, ngx_atomic_uint_t n)
{
    ngx_atomic_uint_t  old, sum;

    do {
        old = *counter;
        sum = old + n;

        if (sum < old) {
            sum = (ngx_atomic_uint_t) -1;

            if (old == sum) {
                return;
            }
        }

    } while (!ngx_atomic_cmp_set(counter, old, sum));
}


static void
ngx_http_llm_observe(ngx_atomic_t *buckets, ngx_atomic_t *sum,
    const ngx_msec_t *bounds, ngx_uint_t n, ngx_msec_int_t ms)
{
    ngx_uint_t  i;

    ms = ngx_max(ms, 0);

    for (i = 0; i < n && (ngx_msec_t) ms > bounds[i]; i++) {
        /* void */
    }

    (void) ngx_atomic_fetch_add(&buckets[i], 1);
    (void) ngx_atomic_fetch_add(sum, ms);
}


static ngx_int_t
ngx_http_llm_metrics_handler(ngx_http_request_t *r)
{
    u_char                    *p;
    size_t                     size;
    ngx_int_t                  rc;
    ngx_buf_t                 *b;
    ngx_http_llm_main_conf_t  *lmcf;

    rc = ngx_http_llm_accept_get(r);
    if (rc != NGX_OK) {
        return rc;
    }

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_router_module);

    if (lmcf->sh == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    size = ngx_http_llm_metrics_size(lmcf);

    b = ngx_create_temp_buf(r->pool, size);

    if (b) {
        p = ngx_http_llm_metrics_models(b->last, lmcf);
        b->last = ngx_http_llm_metrics_peers(p, lmcf);
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_llm_send_buffer(r, NGX_HTTP_OK,
                                    "text/plain; version=0.0.4", b);
}


/* an upper bound of the text's length */

static size_t
ngx_http_llm_metrics_size(ngx_http_llm_main_conf_t *lmcf)
{
    size_t                     size, labels, number;
    ngx_uint_t                 i, samples;
    ngx_http_llm_family_t     *f;
    ngx_http_llm_srv_conf_t  **lscfp;

    size = 0;

    for (f = ngx_http_llm_families; f->name; f++) {
        size += sizeof("# HELP  \n# TYPE  \n") + 2 * ngx_strlen(f->name)
                + ngx_strlen(f->help) + ngx_strlen(f->type);
    }

    /* a sample: name (< 64), labels, value (< 32), escaping doubles */

    number = 64 + 32 + sizeof("_bucket{le=\"+Inf\",} \n");

    labels = sizeof("model=\"\",upstream=\"\",status=\"5xx\"")
             + 2 * NGX_HTTP_LLM_MODEL_LEN + 2 * NGX_HTTP_LLM_NAME_LEN;

    samples = 5 + 1 + 4
              + (NGX_HTTP_LLM_DURATION_BUCKETS + 3)
              + (NGX_HTTP_LLM_TTFT_BUCKETS + 3);

    size += lmcf->models.nelts * samples * (number + labels);

    lscfp = lmcf->upstreams.elts;

    labels = sizeof("upstream=\"\",peer=\"\"") + 4 * NGX_HTTP_LLM_NAME_LEN;

    for (i = 0; i < lmcf->upstreams.nelts; i++) {
        size += lscfp[i]->npeers * 7 * (number + labels);
    }

    return size;
}


static u_char *
ngx_http_llm_metrics_models(u_char *p, ngx_http_llm_main_conf_t *lmcf)
{
    u_char                      *lp;
    ngx_uint_t                   i, k, f;
    ngx_http_llm_model_t        *models;
    ngx_http_llm_model_stats_t  *st;
    u_char                       labels[2 * NGX_HTTP_LLM_MODEL_LEN
                                        + 2 * NGX_HTTP_LLM_NAME_LEN + 32];

    static const char  *classes[] = { "1xx", "2xx", "3xx", "4xx", "5xx" };

    models = lmcf->models.elts;

    for (f = 0; f < 8; f++) {
        p = ngx_http_llm_metrics_family(p, &ngx_http_llm_families[f]);

        for (i = 0; i < lmcf->models.nelts; i++) {
            st = models[i].stats;

            if (st == NULL) {
                continue;
            }

            /* variants of one name on one upstream share their counters */

            for (k = 0; k < i && models[k].stats != st; k++) { /* void */ }

            if (k < i) {
                continue;
            }

            lp = ngx_cpymem(labels, "model=", 6);
            lp = ngx_http_llm_metrics_label(lp, st->model);
            lp = ngx_cpymem(lp, ",upstream=", 10);
            lp = ngx_http_llm_metrics_label(lp, st->upstream);
            *lp = '\0';

            switch (f) {

            case 0:
                for (k = 0; k < 5; k++) {
                    p = ngx_sprintf(p, "llm_requests_total{%s,status=\"%s\"} "
                                    "%uA\n", labels, classes[k],
                                    st->requests[k]);
                }
                break;

            case 1:
                p = ngx_sprintf(p, "llm_requests_in_flight{%s} %A\n", labels,
                                (ngx_atomic_int_t) st->in_flight);
                break;

            case 2:
                p = ngx_http_llm_metrics_histogram(p,
                        "llm_request_duration_seconds", labels, st->duration,
                        &st->duration_sum, ngx_http_llm_duration_bounds,
                        NGX_HTTP_LLM_DURATION_BUCKETS);
                break;

            case 3:
                p = ngx_http_llm_metrics_histogram(p,
                        "llm_time_to_first_token_seconds", labels, st->ttft,
                        &st->ttft_sum, ngx_http_llm_ttft_bounds,
                        NGX_HTTP_LLM_TTFT_BUCKETS);
                break;

            case 4:
                p = ngx_sprintf(p, "llm_prompt_tokens_total{%s} %uA\n",
                                labels, st->prompt_tokens);
                break;

            case 5:
                p = ngx_sprintf(p, "llm_completion_tokens_total{%s} %uA\n",
                                labels, st->completion_tokens);
                break;

            case 6:
                p = ngx_sprintf(p, "llm_stream_aborts_total{%s} %uA\n",
                                labels, st->stream_aborts);
                break;

            default:
                p = ngx_sprintf(p, "llm_stream_failures_total{%s} %uA\n",
                                labels, st->stream_failures);
                break;
            }
        }
    }

    return p;
}


static u_char *
ngx_http_llm_metrics_peers(u_char *p, ngx_http_llm_main_conf_t *lmcf)
{
    u_char                     *lp;
    ngx_uint_t                  i, k, f;
    ngx_http_llm_srv_conf_t   **lscfp, *lscf;
    ngx_http_llm_peer_state_t  *st;
    u_char                      labels[4 * NGX_HTTP_LLM_NAME_LEN + 32];

    lscfp = lmcf->upstreams.elts;

    for (f = NGX_HTTP_LLM_FAMILY_PEER_UP; ngx_http_llm_families[f].name; f++)
    {
        p = ngx_http_llm_metrics_family(p, &ngx_http_llm_families[f]);

        for (i = 0; i < lmcf->upstreams.nelts; i++) {
            lscf = lscfp[i];

            for (k = 0; k < lscf->npeers; k++) {
                st = lscf->slots[k];

                lp = ngx_cpymem(labels, "upstream=", 9);
                lp = ngx_http_llm_metrics_label(lp, st->upstream);
                lp = ngx_cpymem(lp, ",peer=", 6);
                lp = ngx_http_llm_metrics_label(lp, st->name);
                *lp = '\0';

                p = ngx_sprintf(p, "%s{%s} ", ngx_http_llm_families[f].name,
                                labels);

                switch (f - NGX_HTTP_LLM_FAMILY_PEER_UP) {

                case 0:
                    p = ngx_sprintf(p, "%d\n", st->down ? 0 : 1);
                    continue;

                case 1:
                    p = ngx_sprintf(p, "%A\n",
                                    (ngx_atomic_int_t) st->in_flight);
                    continue;

                case 2:
                    p = ngx_sprintf(p, "%uA\n", st->failed);
                    continue;

                case 3:
                    p = ngx_http_llm_metrics_double(p, st->has_running,
                                                    st->running);
                    break;

                case 4:
                    p = ngx_http_llm_metrics_double(p, st->has_waiting,
                                                    st->waiting);
                    break;

                case 5:
                    p = ngx_http_llm_metrics_double(p, st->has_kv_cache,
                                                    st->kv_cache);
                    break;

                default:
                    p = ngx_http_llm_metrics_seconds(p, st->latency);
                    break;
                }

                *p++ = '\n';
            }
        }
    }

    return p;
}


static u_char *
ngx_http_llm_metrics_family(u_char *p, ngx_http_llm_family_t *f)
{
    return ngx_sprintf(p, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help,
                       f->name, f->type);
}


static u_char *
ngx_http_llm_metrics_histogram(u_char *p, const char *name, u_char *labels,
    ngx_atomic_t *buckets, ngx_atomic_t *sum, const ngx_msec_t *bounds,
    ngx_uint_t n)
{
    ngx_uint_t        i;
    ngx_atomic_uint_t  total;

    total = 0;

    for (i = 0; i < n; i++) {
        total += buckets[i];

        p = ngx_sprintf(p, "%s_bucket{%s,le=\"", name, labels);
        p = ngx_http_llm_metrics_seconds(p, bounds[i]);
        p = ngx_sprintf(p, "\"} %uA\n", total);
    }

    total += buckets[n];

    p = ngx_sprintf(p, "%s_bucket{%s,le=\"+Inf\"} %uA\n", name, labels,
                    total);

    p = ngx_sprintf(p, "%s_sum{%s} ", name, labels);
    p = ngx_http_llm_metrics_seconds(p, *sum);

    return ngx_sprintf(p, "\n%s_count{%s} %uA\n", name, labels, total);
}


/* milliseconds as seconds: 2500 is "2.5", 100 is "0.1" */

static u_char *
ngx_http_llm_metrics_seconds(u_char *p, ngx_msec_t ms)
{
    ngx_uint_t  frac;

    p = ngx_sprintf(p, "%M", ms / 1000);

    frac = ms % 1000;

    if (frac == 0) {
        return p;
    }

    p = ngx_sprintf(p, ".%03ui", frac);

    while (p[-1] == '0') {
        p--;
    }

    return p;
}


/* a scraped gauge, NaN when the engine does not report it; a sum over
 * label sets may be +Inf */

static u_char *
ngx_http_llm_metrics_double(u_char *p, ngx_uint_t has, double v)
{
    if (!has) {
        return ngx_cpymem(p, "NaN", 3);
    }

    return p + ngx_http_llm_prom_number(p, v, 6);
}


/* "value", with \, " and newline escaped */

static u_char *
ngx_http_llm_metrics_label(u_char *p, u_char *value)
{
    *p++ = '"';

    for ( /* void */ ; *value; value++) {
        switch (*value) {

        case '\\':
        case '"':
            *p++ = '\\';
            *p++ = *value;
            break;

        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;

        default:
            *p++ = *value;
        }
    }

    *p++ = '"';

    return p;
}
