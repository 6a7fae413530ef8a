
/*
 * ngx_llm_router: llm_router_status as a page for a browser, which refreshes
 * itself.  Not here: the snapshot and the JSON (status.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <math.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_status_html.h"
#include "ngx_http_llm_prom.h"
#include "ngx_http_llm_engine.h"


static u_char *ngx_http_llm_status_html_row(u_char *p,
    ngx_http_llm_srv_conf_t *lscf, ngx_uint_t k,
    ngx_http_llm_peer_state_t *st);
static u_char *ngx_http_llm_status_html_value(u_char *p, ngx_uint_t has,
    double value);


/* a browser: text/html named in Accept before any JSON type */

ngx_uint_t
ngx_http_llm_status_wants_html(ngx_http_request_t *r)
{
    u_char           *html, *json, *end;
    ngx_table_elt_t  *h;

    h = r->headers_in.accept;

    if (h == NULL) {
        return 0;
    }

    end = h->value.data + h->value.len;
    html = ngx_strlcasestrn(h->value.data, end, (u_char *) "text/html", 9 - 1);
    json = ngx_strlcasestrn(h->value.data, end, (u_char *) "json", 4 - 1);

    return html && (json == NULL || html < json);
}


#define NGX_HTTP_LLM_HTML_HEAD                                                \
    "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"                    \
    "<meta http-equiv=\"refresh\" content=\"2\">"                           \
    "<title>llm router status</title><style>"                                 \
    "body{font:14px sans-serif;margin:1.5em;color:#222}"                      \
    "table{border-collapse:collapse;margin-bottom:1.5em}"                     \
    "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}"          \
    "th{background:#f3f3f3}.up{color:#080}.down{color:#b00;font-weight:bold}" \
    ".stale{color:#999}</style></head><body><h1>llm router status</h1>"

#define NGX_HTTP_LLM_HTML_TABLE                                               \
    "<table><tr><th>peer</th><th>state</th><th>in flight</th><th>checks</th>" \
    "<th>fails / successes</th><th>latency, ms</th><th>last error</th>"       \
    "<th>running</th><th>waiting</th><th>KV cache</th>"                       \
    "<th>metrics age, ms</th></tr>"

#define NGX_HTTP_LLM_HTML_ROW_LEN                                             \
    (544 + 6 * (NGX_HTTP_LLM_NAME_LEN + 2 * NGX_HTTP_LLM_ERROR_LEN))


ngx_buf_t *
ngx_http_llm_status_html(ngx_http_request_t *r,
    ngx_http_llm_main_conf_t *lmcf, ngx_http_llm_peer_state_t *peers)
{
    u_char                     *p;
    size_t                      len;
    ngx_buf_t                  *b;
    ngx_uint_t                  i, k, base;
    ngx_http_llm_srv_conf_t   **lscfp, *lscf;

    lscfp = lmcf->upstreams.elts;
    len = sizeof(NGX_HTTP_LLM_HTML_HEAD "</body></html>\n");

    for (i = 0; i < lmcf->upstreams.nelts; i++) {
        len += sizeof(NGX_HTTP_LLM_HTML_TABLE "</table>") + 256
               + 6 * NGX_HTTP_LLM_NAME_LEN
               + lscfp[i]->npeers * NGX_HTTP_LLM_HTML_ROW_LEN;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NULL;
    }

    p = ngx_cpymem(b->last, NGX_HTTP_LLM_HTML_HEAD,
                   sizeof(NGX_HTTP_LLM_HTML_HEAD) - 1);

    base = 0;

    for (i = 0; i < lmcf->upstreams.nelts; i++) {
        lscf = lscfp[i];

        p = ngx_cpymem(p, "<h2>", 4);
        p = (u_char *) ngx_escape_html(p, lscf->upstream->host.data,
                                       lscf->upstream->host.len);
        p = ngx_sprintf(p, " <small>(%s)</small></h2>",
                        ngx_http_llm_engine_name(lscf->engine));
        p = ngx_cpymem(p, NGX_HTTP_LLM_HTML_TABLE,
                       sizeof(NGX_HTTP_LLM_HTML_TABLE) - 1);

        for (k = 0; peers && k < lscf->npeers; k++) {
            p = ngx_http_llm_status_html_row(p, lscf, k, &peers[base + k]);
        }

        p = ngx_cpymem(p, "</table>", 8);
        base += lscf->npeers;
    }

    b->last = ngx_cpymem(p, "</body></html>\n",
                         sizeof("</body></html>\n") - 1);

    return b;
}


/* peer k of lscf, in state st: a row of its upstream's table */

static u_char *
ngx_http_llm_status_html_row(u_char *p, ngx_http_llm_srv_conf_t *lscf,
    ngx_uint_t k, ngx_http_llm_peer_state_t *st)
{
    ngx_uint_t  down;
    ngx_msec_t  age;

    down = st->down || lscf->config_down[k];

    p = ngx_cpymem(p, "<tr><td>", 8);
    p = (u_char *) ngx_escape_html(p, st->name, ngx_strlen(st->name));
    p = ngx_sprintf(p, "</td><td class=\"%s\">%s</td><td>%A</td>"
                       "<td>%ui</td><td>%ui / %ui</td><td>",
                    down ? "down" : "up",
                    lscf->config_down[k] ? "down (configured)"
                    : down ? "down" : "up",
                    st->in_flight, st->checks, st->fails,
                    st->successes);

    if (st->last_check) {
        p = ngx_sprintf(p, "%M", st->latency);
    }

    p = ngx_cpymem(p, "</td><td>", 9);
    p = (u_char *) ngx_escape_html(p, st->error, ngx_strlen(st->error));
    p = ngx_cpymem(p, "</td>", 5);

    if (lscf->scrape_interval && st->scrapes) {
        age = ngx_current_msec - st->scraped;

        p = ngx_http_llm_status_html_value(p, st->has_running, st->running);
        p = ngx_http_llm_status_html_value(p, st->has_waiting, st->waiting);
        p = ngx_http_llm_status_html_value(p, st->has_kv_cache,
                                           st->kv_cache);
        p = ngx_sprintf(p, "<td class=\"%s\">%M</td></tr>",
                        age > 2 * lscf->scrape_interval ? "stale"
                                                        : "fresh",
                        age);

    } else {
        p = ngx_cpymem(p, "<td></td><td></td><td></td><td></td></tr>",
                       sizeof("<td></td><td></td><td></td><td></td>"
                              "</tr>") - 1);
    }

    return p;
}


static u_char *
ngx_http_llm_status_html_value(u_char *p, ngx_uint_t has, double value)
{
    if (!has || !isfinite(value)) {
        return ngx_cpymem(p, "<td></td>", 9);
    }

    p = ngx_cpymem(p, "<td>", 4);
    p += ngx_http_llm_prom_number(p, value, 2);

    return ngx_cpymem(p, "</td>", 5);
}
