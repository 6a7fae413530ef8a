
/*
 * ngx_llm_router: llm_dispatch, an upstream{} block that hands each request
 * to the block the router chose.  Not here: the choice (body.c, route.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_dispatch.h"
#include "ngx_http_llm_ctx.h"


static ngx_int_t ngx_http_llm_dispatch_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_llm_dispatch_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);


/*
 * llm_dispatch: the upstream{} block stands for the block the router
 * chose.  "proxy_pass http://NAME;" reaches it with no variable to
 * evaluate, no URL to parse and no search of the blocks by name, which
 * "proxy_pass http://$llm_upstream;" pays on every request.
 */

char *
ngx_http_llm_dispatch(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_srv_conf_t  *lscf = conf;

    ngx_http_upstream_srv_conf_t  *uscf;

    if (lscf->dispatch) {
        return "is duplicate";
    }

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (lscf->upstream || uscf->peer.init_upstream) {
        return "must be alone in its upstream block";
    }

    /*
     * nginx wants a server in every block: an empty entry stands in,
     * and any real one is refused when the block is initialized
     */

    if (uscf->servers == NULL
        || uscf->servers->nelts
        || ngx_array_push(uscf->servers) == NULL)
    {
        return uscf->servers && uscf->servers->nelts
               ? "must be alone in its upstream block" : NGX_CONF_ERROR;
    }

    ngx_memzero(uscf->servers->elts, sizeof(ngx_http_upstream_server_t));

    lscf->dispatch = 1;
    uscf->peer.init_upstream = ngx_http_llm_dispatch_init_upstream;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_llm_dispatch_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    if (us->servers->nelts != 1) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "upstream \"%V\" has \"llm_dispatch\": it cannot "
                      "have servers, in %s:%ui", &us->host, us->file_name,
                      us->line);
        return NGX_ERROR;
    }

    us->peer.init = ngx_http_llm_dispatch_init_peer;

    return NGX_OK;
}


/* a balancer or keepalive after llm_dispatch would wrap it: refused */

ngx_int_t
ngx_http_llm_check_dispatch(ngx_conf_t *cf)
{
    ngx_uint_t                      i;
    ngx_http_llm_srv_conf_t        *lscf;
    ngx_http_upstream_srv_conf_t  **uscfp;
    ngx_http_upstream_main_conf_t  *umcf;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);
    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        if (uscfp[i]->srv_conf == NULL) {
            continue;       /* an implicit upstream of a proxy_pass */
        }

        lscf = ngx_http_conf_upstream_srv_conf(uscfp[i],
                                               ngx_http_llm_router_module);

        if (lscf->dispatch
            && uscfp[i]->peer.init != ngx_http_llm_dispatch_init_peer)
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "upstream \"%V\" has \"llm_dispatch\": it "
                          "cannot have a balancer or keepalive, in %s:%ui",
                          &uscfp[i]->host, uscfp[i]->file_name,
                          uscfp[i]->line);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the chosen block takes over, as if proxy_pass had named it */

static ngx_int_t
ngx_http_llm_dispatch_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_llm_ctx_t            *ctx;
    ngx_http_upstream_srv_conf_t  *chosen;

    ctx = ngx_http_llm_find_ctx(r);

    if (ctx == NULL || !ctx->routed || ctx->route == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "llm router: upstream \"%V\" has \"llm_dispatch\", "
                      "but the request was not routed (no \"llm_router on\" "
                      "in its location)", &us->host);
        return NGX_ERROR;
    }

    chosen = ctx->route->model->upstream;

    r->upstream->upstream = chosen;
#if (NGX_HTTP_SSL)
    r->upstream->ssl_name = chosen->host;
#endif

    return chosen->peer.init(r, chosen);
}
