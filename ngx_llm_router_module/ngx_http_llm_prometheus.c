
/*
 * ngx_llm_router: llm_router_metrics, the zone's counters and peer states
 * in the Prometheus text format.  Not here: the counters (metrics.c).
 *
 * The whole text is sized and written under one hold of the zone's lock.
 * Histogram buckets are kept apart in the zone and summed up here, so that
 * a bucket, its "+Inf" and the count always agree.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_prometheus.h"
#include "ngx_http_llm_metrics.h"
#include "ngx_http_llm_ctx.h"
#include "ngx_http_llm_prom.h"


typedef struct {
    const char  *name;
    const char  *type;
    const char  *help;
} ngx_http_llm_family_t;


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


static ngx_int_t
ngx_http_llm_metrics_handler(ngx_http_request_t *r)
{
    u_char                    *p;
    size_t                     size;
    ngx_int_t                  rc;
    ngx_buf_t                 *b;
    ngx_http_llm_main_conf_t  *lmcf;

    rc = ngx_http_llm_accept_get(r, &lmcf);
    if (rc != NGX_OK) {
        return rc;
    }

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
