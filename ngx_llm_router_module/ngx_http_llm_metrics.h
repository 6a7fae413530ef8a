
/*
 * ngx_llm_router: the counters per model in the zone
 * (ngx_http_llm_metrics.c).
 */


#ifndef _NGX_HTTP_LLM_METRICS_H_INCLUDED_
#define _NGX_HTTP_LLM_METRICS_H_INCLUDED_


#include "ngx_http_llm_router.h"


/* the upper bounds of the histograms' buckets, in milliseconds */
extern const ngx_msec_t  ngx_http_llm_duration_bounds[
                             NGX_HTTP_LLM_DURATION_BUCKETS];
extern const ngx_msec_t  ngx_http_llm_ttft_bounds[NGX_HTTP_LLM_TTFT_BUCKETS];

ngx_int_t ngx_http_llm_metrics_init(ngx_conf_t *cf);
void ngx_http_llm_metrics_start(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
ngx_int_t ngx_http_llm_metrics_bind(ngx_http_llm_main_conf_t *lmcf,
    ngx_http_llm_shctx_t *sh, ngx_slab_pool_t *shpool);


#endif /* _NGX_HTTP_LLM_METRICS_H_INCLUDED_ */
