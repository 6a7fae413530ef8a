
/*
 * ngx_llm_router: the exact count of a request's prompt, asked of /tokenize.
 * Not here: HTTP (ngx_http_llm_probe.c), the engine's body (engine.c).
 *
 * When a request's estimate lands near the limit of a variant with
 * "tokenize on", routing waits for one POST /tokenize to a peer of that
 * variant (non-blocking, with its own short timeout), then the caller's
 * handler runs again with the engine's count.  Any failure (connect,
 * status, timeout, an answer without a count) lets routing go on with the
 * estimate.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_engine.h"
#include "ngx_http_llm_probe.h"
#include "ngx_http_llm_tokenize.h"
#include "ngx_http_llm_peers.h"


#define NGX_HTTP_LLM_TOKENIZE_MAX  (1024 * 1024)


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_llm_ctx_t             *ctx;
    ngx_http_llm_probe_t            probe;
    ngx_buf_t                      *in;
    ngx_uint_t                      engine;
    ngx_http_llm_tokenize_done_pt   done;
    ngx_http_event_handler_pt       read_handler;
} ngx_http_llm_tokenize_t;


static ngx_http_upstream_rr_peer_t *ngx_http_llm_tokenize_peer(
    ngx_http_llm_srv_conf_t *lscf);
static ngx_int_t ngx_http_llm_tokenize_body(ngx_http_llm_probe_t *p,
    u_char *data, size_t len);
static void ngx_http_llm_tokenize_done(ngx_http_llm_probe_t *p,
    ngx_uint_t result);
static void ngx_http_llm_tokenize_cleanup(void *data);


/* the words of the log for a probe's end */
static const char  *ngx_http_llm_tokenize_errors[] = {
    NULL,                       /* NGX_HTTP_LLM_PROBE_OK */
    "cannot send",
    "cannot send",
    "cannot read",
    "no count in the answer",
    "cannot read",
    "timed out",
    "event error",
    "answer too large",
    "no memory",
    "cannot read"
};


/*
 * Starts POST /tokenize with a body of n pieces (copied once, into the
 * request) to the first usable peer of uscf.  NGX_OK: done(r) runs when
 * it ends; NGX_DECLINED: it could not start, go on with the estimate.
 */

ngx_int_t
ngx_http_llm_tokenize_start(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_upstream_srv_conf_t *uscf, ngx_str_t *body, ngx_uint_t n,
    ngx_msec_t timeout, ngx_http_llm_tokenize_done_pt done)
{
    ngx_str_t                    *uri;
    ngx_pool_cleanup_t           *cln;
    ngx_http_llm_probe_t         *p;
    ngx_http_llm_srv_conf_t      *lscf;
    ngx_http_llm_tokenize_t      *t;
    ngx_http_upstream_rr_peer_t  *peer;

    lscf = ngx_http_conf_upstream_srv_conf(uscf, ngx_http_llm_router_module);

    uri = ngx_http_llm_engine_tokenize_uri(lscf->engine);
    if (uri == NULL) {
        return NGX_DECLINED;
    }

    peer = ngx_http_llm_tokenize_peer(lscf);
    if (peer == NULL) {
        return NGX_DECLINED;
    }

    t = ngx_pcalloc(r->pool, sizeof(ngx_http_llm_tokenize_t));
    if (t == NULL) {
        return NGX_ERROR;
    }

    t->request = r;
    t->ctx = ctx;
    t->engine = lscf->engine;
    t->done = done;

    p = &t->probe;

    if (ngx_http_llm_probe_request(r->pool, &p->request, "POST", uri, body,
                                   n)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    t->in = ngx_create_temp_buf(r->pool, 4096);
    p->buf = ngx_palloc(r->pool, NGX_HTTP_LLM_PROBE_BUF);

    if (t->in == NULL || p->buf == NULL) {
        return NGX_ERROR;
    }

    /* the request ends first: the connection goes with it */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_llm_tokenize_cleanup;
    cln->data = t;

    p->pc.sockaddr = peer->sockaddr;
    p->pc.socklen = peer->socklen;
    p->pc.name = &peer->name;
    p->pc.log = r->connection->log;
    p->pc.log_error = NGX_ERROR_ERR;
    p->timeout = timeout;
    p->pool = r->pool;
    p->body_status = 200;
    p->body = ngx_http_llm_tokenize_body;
    p->done = ngx_http_llm_tokenize_done;
    p->data = t;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm router: POST /tokenize to %V", &peer->name);

    /*
     * a client that goes away ends the request while it waits, and the
     * probe with it (the pool's cleanup); set first, as done() may come
     * before the probe's start returns
     */

    t->read_handler = r->read_event_handler;
    r->read_event_handler = ngx_http_test_reading;

    if (ngx_http_llm_probe_connect(p) != NGX_OK) {
        r->read_event_handler = t->read_handler;
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "llm router: /tokenize of %V cannot connect, the "
                      "estimate is used", &peer->name);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* the first peer neither configured down nor found down by checks */

static ngx_http_upstream_rr_peer_t *
ngx_http_llm_tokenize_peer(ngx_http_llm_srv_conf_t *lscf)
{
    ngx_uint_t                    k;
    ngx_http_upstream_rr_peer_t  *peer;

    for (k = 0; k < lscf->npeers; k++) {
        peer = ngx_http_llm_rr_peer(lscf, k);

        if (peer && !peer->down
            && (lscf->slots == NULL || !lscf->slots[k]->down))
        {
            return peer;
        }
    }

    return NULL;
}


/* the answer's body, kept whole up to NGX_HTTP_LLM_TOKENIZE_MAX */

static ngx_int_t
ngx_http_llm_tokenize_body(ngx_http_llm_probe_t *p, u_char *data, size_t len)
{
    ngx_http_llm_tokenize_t *t = p->data;

    size_t      size, used;
    ngx_buf_t  *b;

    b = t->in;

    if ((size_t) (b->end - b->last) < len) {
        used = b->last - b->pos;
        size = b->end - b->start;

        while (size - used < len) {
            size *= 2;
        }

        if (size > NGX_HTTP_LLM_TOKENIZE_MAX) {
            return NGX_DECLINED;
        }

        b = ngx_create_temp_buf(t->request->pool, size);
        if (b == NULL) {
            return NGX_ERROR;
        }

        b->last = ngx_cpymem(b->last, t->in->pos, used);
        t->in = b;
    }

    b->last = ngx_cpymem(b->last, data, len);

    return NGX_OK;
}


static void
ngx_http_llm_tokenize_done(ngx_http_llm_probe_t *p, ngx_uint_t result)
{
    ngx_http_llm_tokenize_t *t = p->data;

    ngx_int_t            n;
    const char          *error;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = t->request;
    c = r->connection;

    error = ngx_http_llm_tokenize_errors[result];
    n = -1;

    if (result == NGX_HTTP_LLM_PROBE_OK && p->status == 200) {
        n = ngx_http_llm_engine_tokenize_count(t->engine, t->in->pos,
                                               t->in->last - t->in->pos);
    }

    if (n < 0) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "llm router: /tokenize of %V failed (%s), the "
                      "estimate is used", p->pc.name,
                      error ? error : "no count in the answer");
    }

    t->ctx->exact_tokens = n;
    t->ctx->tokenized = 1;

    r->read_event_handler = t->read_handler;

    t->done(r);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_llm_tokenize_cleanup(void *data)
{
    ngx_http_llm_tokenize_t  *t = data;

    ngx_http_llm_probe_close(&t->probe);
}
