
/*
 * ngx_llm_router: the request context (found again after a redirect) and
 * the content handlers' helpers.  Not here: any directive's own logic.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_ctx.h"


static void ngx_http_llm_ctx_cleanup(void *data);


/*
 * An internal redirect clears module contexts, but the request was already
 * routed and its body edited: the context lives in a pool cleanup, where
 * it is found again (as the realip module does).
 */

ngx_http_llm_ctx_t *
ngx_http_llm_find_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_router_module);

    if (ctx || !(r->internal || r->filter_finalize)) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_llm_ctx_cleanup) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_http_llm_router_module);
            break;
        }
    }

    return ctx;
}


ngx_http_llm_ctx_t *
ngx_http_llm_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_find_ctx(r);

    if (ctx) {
        return ctx;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_llm_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_llm_ctx_t));

    ctx->status = NGX_AGAIN;       /* the phase handler has not run */
    ctx->stream = -1;
    ctx->prompt_tokens = -1;
    ctx->completion_tokens = -1;
    ctx->total_tokens = -1;
    ctx->ttft = -1;
    ctx->estimated_tokens = -1;
    ctx->exact_tokens = -1;

    cln->handler = ngx_http_llm_ctx_cleanup;

    ngx_http_set_ctx(r, ctx, ngx_http_llm_router_module);

    return ctx;
}


static void
ngx_http_llm_ctx_cleanup(void *data)
{
    /* nothing to release yet: the handler marks the context's cleanup */
}


/* for the content handlers: llm_models, llm_router_status, _metrics */

char *
ngx_http_llm_set_content_handler(ngx_conf_t *cf, ngx_http_handler_pt handler)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate or conflicts with another content handler";
    }

    clcf->handler = handler;

    return NGX_CONF_OK;
}


/*
 * A GET or HEAD endpoint: NGX_OK with the body discarded and *lmcf set,
 * else the status to return.
 */

ngx_int_t
ngx_http_llm_accept_get(ngx_http_request_t *r,
    ngx_http_llm_main_conf_t **lmcf)
{
    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    *lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_router_module);

    return ngx_http_discard_request_body(r);
}


/* a whole response from one buffer, as the router's handlers send them */

ngx_int_t
ngx_http_llm_send_buffer(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, ngx_buf_t *b)
{
    ngx_int_t    rc;
    ngx_chain_t  out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;

    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
