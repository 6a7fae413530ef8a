
/*
 * ngx_llm_router: from the model a client asked for to a route, or a fallback.
 * Not here: variants (variant.c), peers' health (upstream.c, check.c).
 *
 * Precedence: aliases and exact names (one hash), then the longest
 * matching glob, then "llm_model default".
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_route.h"
#include "ngx_http_llm_upstream.h"


ngx_http_llm_route_t *
ngx_http_llm_find_route(ngx_http_llm_main_conf_t *lmcf, ngx_str_t *name)
{
    ngx_uint_t             i, key;
    ngx_http_llm_route_t  *route, *globs;

    key = ngx_hash_key(name->data, name->len);

    route = ngx_hash_find(&lmcf->names, key, name->data, name->len);
    if (route) {
        return route;
    }

    globs = lmcf->globs.elts;

    for (i = 0; i < lmcf->globs.nelts; i++) {
        if (ngx_http_llm_glob_match(&globs[i].model->name, name)) {
            return &globs[i];
        }
    }

    return lmcf->default_route;
}


/* '*' matches any run of bytes, '?' exactly one; iterative backtracking */

ngx_uint_t
ngx_http_llm_glob_match(ngx_str_t *pattern, ngx_str_t *name)
{
    u_char  *p, *pend, *n, *nend, *star_p, *star_n;

    p = pattern->data;
    pend = p + pattern->len;
    n = name->data;
    nend = n + name->len;
    star_p = NULL;
    star_n = NULL;

    while (n < nend) {
        if (p < pend && *p == '*') {
            star_p = ++p;
            star_n = n;
            continue;
        }

        if (p < pend && (*p == '?' || *p == *n)) {
            p++;
            n++;
            continue;
        }

        if (star_p == NULL) {
            return 0;
        }

        p = star_p;
        n = ++star_n;
    }

    while (p < pend && *p == '*') {
        p++;
    }

    return p == pend;
}


/* the route itself, or the first fallback whose upstream has a usable peer */

ngx_http_llm_route_t *
ngx_http_llm_healthy_route(ngx_http_llm_main_conf_t *lmcf,
    ngx_http_llm_route_t *route)
{
    ngx_uint_t  n;
    ngx_msec_t  retry;

    for (n = 0; route && n <= lmcf->models.nelts; n++) {
        if (ngx_http_llm_upstream_usable(lmcf, route->model->upstream,
                                         &retry))
        {
            return route;
        }

        route = route->model->fallback_route;
    }

    return NULL;
}
