
/*
 * ngx_llm_router: the counters per model in the zone and the log phase that
 * adds to them.  Not here: any output format (prometheus.c, status.c).
 *
 * Each llm_model block has its counters in the zone, found by model and
 * upstream name like the peers' slots (so a reload keeps them).  The log
 * phase adds to them with atomic operations; histogram buckets are kept
 * apart, not cumulative (the output sums them up).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_response_common.h"
#include "ngx_http_llm_metrics.h"
#include "ngx_http_llm_ctx.h"


static ngx_int_t ngx_http_llm_metrics_log(ngx_http_request_t *r);
static void ngx_http_llm_metrics_add(ngx_atomic_t *counter,
    ngx_atomic_uint_t n);
static void ngx_http_llm_observe(ngx_atomic_t *buckets, ngx_atomic_t *sum,
    const ngx_msec_t *bounds, ngx_uint_t n, ngx_msec_int_t ms);
static ngx_http_llm_model_stats_t *ngx_http_llm_find_stats(
    ngx_http_llm_shctx_t *sh, ngx_slab_pool_t *shpool,
    ngx_http_llm_model_t *model);


const ngx_msec_t  ngx_http_llm_duration_bounds[] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000,
    600000
};

const ngx_msec_t  ngx_http_llm_ttft_bounds[] = {
    25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000
};


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


