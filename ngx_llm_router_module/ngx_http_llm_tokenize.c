
/*
 * ngx_llm_router: exact token counts from an engine's /tokenize.
 *
 * When a request's estimate lands near the limit of a variant with
 * "tokenize on", routing waits for one POST /tokenize to a peer of that
 * variant (non-blocking, with its own short timeout), then runs again with
 * the engine's count.  Any failure (connect, status, timeout, an answer
 * without a count) lets routing go on with the estimate.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_engine.h"


#define NGX_HTTP_LLM_TOKENIZE_MAX  (1024 * 1024)


typedef struct {
    ngx_http_request_t       *request;
    ngx_http_llm_ctx_t       *ctx;
    ngx_peer_connection_t     pc;
    ngx_buf_t                *out;
    ngx_buf_t                *in;
    ngx_uint_t                engine;
    unsigned                  done:1;
} ngx_http_llm_tokenize_t;


static void ngx_http_llm_tokenize_write(ngx_event_t *wev);
static void ngx_http_llm_tokenize_read(ngx_event_t *rev);
static void ngx_http_llm_tokenize_finish(ngx_http_llm_tokenize_t *t,
    const char *error);
static ngx_int_t ngx_http_llm_tokenize_count(ngx_http_llm_tokenize_t *t);
static void ngx_http_llm_tokenize_cleanup(void *data);


/*
 * Starts POST /tokenize with a body of n pieces (copied once, into the
 * request) to the first usable peer of uscf.  NGX_OK: routing resumes
 * when it ends; NGX_DECLINED: it could not start, go on with the estimate.
 */

ngx_int_t
ngx_http_llm_tokenize_start(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_upstream_srv_conf_t *uscf, ngx_str_t *body, ngx_uint_t n,
    ngx_msec_t timeout)
{
    size_t                        len;
    ngx_int_t                     rc;
    ngx_uint_t                    k;
    ngx_connection_t             *c;
    ngx_pool_cleanup_t           *cln;
    ngx_http_llm_srv_conf_t      *lscf;
    ngx_http_llm_tokenize_t      *t;
    ngx_http_upstream_rr_peer_t  *peer;

    lscf = ngx_http_conf_upstream_srv_conf(uscf, ngx_http_llm_router_module);

    peer = NULL;

    for (k = 0; k < lscf->npeers; k++) {
        peer = ngx_http_llm_rr_peer(lscf, k);

        if (peer && !peer->down
            && (lscf->slots == NULL || !lscf->slots[k]->down))
        {
            break;
        }

        peer = NULL;
    }

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

    len = 0;

    for (k = 0; k < n; k++) {
        len += body[k].len;
    }

    t->out = ngx_create_temp_buf(r->pool, len + 256);
    t->in = ngx_create_temp_buf(r->pool, 4096);

    if (t->out == NULL || t->in == NULL) {
        return NGX_ERROR;
    }

    t->out->last = ngx_sprintf(t->out->last,
                               "POST /tokenize HTTP/1.0" CRLF
                               "User-Agent: ngx_llm_router" CRLF
                               "Content-Type: application/json" CRLF
                               "Content-Length: %uz" CRLF
                               "Connection: close" CRLF CRLF,
                               len);

    for (k = 0; k < n; k++) {
        t->out->last = ngx_cpymem(t->out->last, body[k].data, body[k].len);
    }

    t->pc.sockaddr = peer->sockaddr;
    t->pc.socklen = peer->socklen;
    t->pc.name = &peer->name;
    t->pc.get = ngx_event_get_peer;
    t->pc.log = r->connection->log;
    t->pc.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&t->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "llm router: /tokenize of %V cannot connect, the "
                      "estimate is used", &peer->name);

        if (t->pc.connection) {
            ngx_close_connection(t->pc.connection);
        }

        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_close_connection(t->pc.connection);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_llm_tokenize_cleanup;
    cln->data = t;

    c = t->pc.connection;
    c->data = t;
    c->pool = r->pool;
    c->read->handler = ngx_http_llm_tokenize_read;
    c->write->handler = ngx_http_llm_tokenize_write;

    ngx_add_timer(c->read, timeout);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm router: POST /tokenize to %V", &peer->name);

    if (rc == NGX_OK) {
        ngx_http_llm_tokenize_write(c->write);
    }

    return NGX_OK;
}


static void
ngx_http_llm_tokenize_write(ngx_event_t *wev)
{
    ssize_t                   n;
    ngx_connection_t         *c;
    ngx_http_llm_tokenize_t  *t;

    c = wev->data;
    t = c->data;

    if (c->read->timedout) {
        ngx_http_llm_tokenize_finish(t, "timed out");
        return;
    }

    while (t->out->pos < t->out->last) {
        n = c->send(c, t->out->pos, t->out->last - t->out->pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                ngx_http_llm_tokenize_finish(t, "event error");
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_llm_tokenize_finish(t, "cannot send");
            return;
        }

        t->out->pos += n;
    }

    /* sent: wait for the answer */

    wev->handler = ngx_http_llm_tokenize_write;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_llm_tokenize_finish(t, "event error");
        return;
    }

    if (c->read->ready) {
        ngx_http_llm_tokenize_read(c->read);
    }
}


static void
ngx_http_llm_tokenize_read(ngx_event_t *rev)
{
    size_t                    size;
    ssize_t                   n;
    ngx_buf_t                *b;
    ngx_connection_t         *c;
    ngx_http_llm_tokenize_t  *t;

    c = rev->data;
    t = c->data;

    if (rev->timedout) {
        ngx_http_llm_tokenize_finish(t, "timed out");
        return;
    }

    if (t->out->pos < t->out->last) {
        return;     /* still sending */
    }

    for ( ;; ) {
        b = t->in;

        if (b->last == b->end) {
            size = 2 * (b->end - b->start);

            if (size > NGX_HTTP_LLM_TOKENIZE_MAX) {
                ngx_http_llm_tokenize_finish(t, "answer too large");
                return;
            }

            b = ngx_create_temp_buf(t->request->pool, size);
            if (b == NULL) {
                ngx_http_llm_tokenize_finish(t, "no memory");
                return;
            }

            b->last = ngx_cpymem(b->last, t->in->pos, t->in->last - t->in->pos);
            t->in = b;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_http_llm_tokenize_finish(t, "event error");
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_llm_tokenize_finish(t, "cannot read");
            return;
        }

        if (n == 0) {
            ngx_http_llm_tokenize_finish(t, NULL);
            return;
        }

        b->last += n;
    }
}


/* the count in the answer, or -1 */

static ngx_int_t
ngx_http_llm_tokenize_count(ngx_http_llm_tokenize_t *t)
{
    u_char  *p, *last;

    p = t->in->pos;
    last = t->in->last;

    if (last - p < 12 || ngx_strncmp(p, "HTTP/1.", 7) != 0
        || ngx_strncmp(p + 8, " 200", 4) != 0)
    {
        return -1;
    }

    p = ngx_strlcasestrn(p, last, (u_char *) "\r\n\r\n", 4 - 1);
    if (p == NULL) {
        return -1;
    }

    p += 4;

    return ngx_http_llm_engine_tokenize_count(t->engine, p, last - p);
}


static void
ngx_http_llm_tokenize_finish(ngx_http_llm_tokenize_t *t, const char *error)
{
    ngx_int_t            n;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = t->request;
    c = r->connection;

    n = error ? -1 : ngx_http_llm_tokenize_count(t);

    ngx_close_connection(t->pc.connection);
    t->pc.connection = NULL;
    t->done = 1;

    if (n < 0) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "llm router: /tokenize of %V failed (%s), the "
                      "estimate is used", t->pc.name,
                      error ? error : "no count in the answer");
    }

    t->ctx->exact_tokens = n;
    t->ctx->tokenized = 1;

    ngx_http_llm_resume_routing(r);
    ngx_http_run_posted_requests(c);
}


/* the request ends first: the connection goes with it */

static void
ngx_http_llm_tokenize_cleanup(void *data)
{
    ngx_http_llm_tokenize_t  *t = data;

    if (t->pc.connection) {
        ngx_close_connection(t->pc.connection);
        t->pc.connection = NULL;
    }
}
