
/*
 * ngx_llm_router: one non-blocking HTTP/1.x client (connect, send, read).
 * Not here: what is asked or what an answer means (check.c, tokenize.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_http_llm_probe.h"


static ngx_http_llm_probe_t *ngx_http_llm_probe_event(ngx_event_t *ev);
static void ngx_http_llm_probe_write(ngx_event_t *wev);
static void ngx_http_llm_probe_sent(ngx_event_t *wev);
static void ngx_http_llm_probe_read(ngx_event_t *rev);
static ngx_int_t ngx_http_llm_probe_parse(ngx_http_llm_probe_t *p, u_char *buf,
    size_t n);
static ngx_uint_t ngx_http_llm_probe_eof(ngx_http_llm_probe_t *p,
    ssize_t n);
static void ngx_http_llm_probe_finish(ngx_http_llm_probe_t *p,
    ngx_uint_t result);


/*
 * The whole HTTP/1.0 request: "METHOD URI", and with a body (n pieces,
 * copied) its JSON type and length; the connection closes after it.
 */

ngx_int_t
ngx_http_llm_probe_request(ngx_pool_t *pool, ngx_str_t *request,
    const char *method, ngx_str_t *uri, ngx_str_t *body, ngx_uint_t n)
{
    u_char      *p;
    size_t       len, size;
    ngx_uint_t   k;

    len = 0;

    for (k = 0; k < n; k++) {
        len += body[k].len;
    }

    size = sizeof(" HTTP/1.0" CRLF
                  "User-Agent: ngx_llm_router" CRLF
                  "Connection: close" CRLF CRLF) - 1
           + ngx_strlen(method) + 1 + uri->len;

    if (body) {
        size += sizeof("Content-Type: application/json" CRLF
                       "Content-Length: " CRLF) - 1
                + NGX_SIZE_T_LEN + len;
    }

    p = ngx_pnalloc(pool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    request->data = p;

    p = ngx_sprintf(p, "%s %V HTTP/1.0" CRLF
                       "User-Agent: ngx_llm_router" CRLF, method, uri);

    if (body) {
        p = ngx_sprintf(p, "Content-Type: application/json" CRLF
                           "Content-Length: %uz" CRLF, len);
    }

    p = ngx_cpymem(p, "Connection: close" CRLF CRLF,
                   sizeof("Connection: close" CRLF CRLF) - 1);

    for (k = 0; k < n; k++) {
        p = ngx_cpymem(p, body[k].data, body[k].len);
    }

    request->len = p - request->data;

    return NGX_OK;
}


/*
 * NGX_OK: under way, p->done will be called (maybe before this returns);
 * NGX_DECLINED: the peer cannot be reached; NGX_ERROR: out of connections
 * or sockets here, which says nothing of the peer.
 */

ngx_int_t
ngx_http_llm_probe_connect(ngx_http_llm_probe_t *p)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    p->pc.get = ngx_event_get_peer;
    p->pc.connection = NULL;
    p->status = 0;
    p->sent = 0;
    ngx_http_llm_http1_init(&p->http);

    rc = ngx_event_connect_peer(&p->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_http_llm_probe_close(p);
        return (rc == NGX_ERROR) ? NGX_ERROR : NGX_DECLINED;
    }

    c = p->pc.connection;
    c->data = p;
    c->read->handler = ngx_http_llm_probe_read;
    c->write->handler = ngx_http_llm_probe_write;

    if (p->pool) {
        c->pool = p->pool;
    }

    if (p->idle) {

        /* a reload or a shutdown closes it instead of waiting */

        c->idle = 1;
        c->read->cancelable = 1;
        c->write->cancelable = 1;
    }

    ngx_add_timer(c->read, p->timeout);

    if (rc == NGX_OK) {
        ngx_http_llm_probe_write(c->write);
    }

    return NGX_OK;
}


void
ngx_http_llm_probe_close(ngx_http_llm_probe_t *p)
{
    if (p->pc.connection) {
        ngx_close_connection(p->pc.connection);
        p->pc.connection = NULL;
    }
}


/* the probe of an event, or NULL if the event ended it */

static ngx_http_llm_probe_t *
ngx_http_llm_probe_event(ngx_event_t *ev)
{
    ngx_connection_t      *c;
    ngx_http_llm_probe_t  *p;

    c = ev->data;
    p = c->data;

    if (c->close) {
        ngx_http_llm_probe_finish(p, NGX_HTTP_LLM_PROBE_ABANDONED);
        return NULL;
    }

    if (ev->timedout) {
        ngx_http_llm_probe_finish(p, NGX_HTTP_LLM_PROBE_TIMEDOUT);
        return NULL;
    }

    return p;
}


static void
ngx_http_llm_probe_write(ngx_event_t *wev)
{
    ssize_t                n;
    ngx_connection_t      *c;
    ngx_http_llm_probe_t  *p;

    p = ngx_http_llm_probe_event(wev);
    if (p == NULL) {
        return;
    }

    c = wev->data;

    while (p->sent < p->request.len) {
        n = c->send(c, p->request.data + p->sent, p->request.len - p->sent);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                ngx_http_llm_probe_finish(p, NGX_HTTP_LLM_PROBE_EVENT);
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_http_llm_probe_finish(p, p->sent ? NGX_HTTP_LLM_PROBE_SEND
                                                 : NGX_HTTP_LLM_PROBE_CONNECT);
            return;
        }

        p->sent += n;
    }

    /* all sent: no more write events, wait for the answer */

    wev->handler = ngx_http_llm_probe_sent;

    if (ngx_handle_write_event(wev, 0) != NGX_OK
        || ngx_handle_read_event(c->read, 0) != NGX_OK)
    {
        ngx_http_llm_probe_finish(p, NGX_HTTP_LLM_PROBE_EVENT);
        return;
    }

    if (c->read->ready) {
        ngx_http_llm_probe_read(c->read);
    }
}


static void
ngx_http_llm_probe_sent(ngx_event_t *wev)
{
    (void) ngx_http_llm_probe_event(wev);
}


static void
ngx_http_llm_probe_read(ngx_event_t *rev)
{
    size_t                 total;
    ssize_t                n;
    ngx_int_t              rc;
    ngx_connection_t      *c;
    ngx_http_llm_probe_t  *p;

    p = ngx_http_llm_probe_event(rev);
    if (p == NULL) {
        return;
    }

    c = rev->data;

    for (total = 0; /* void */; total += n) {

        /*
         * An engine faster than the parser (bytes it drops, such as chunk
         * extensions, have no cap) would keep the worker here: past a
         * share, the rest is read on the next cycle, after the timers.
         */

        if (total >= NGX_HTTP_LLM_PROBE_READ_MAX) {
            ngx_post_event(rev, &ngx_posted_next_events);
            return;
        }

        n = c->recv(c, p->buf, NGX_HTTP_LLM_PROBE_BUF);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_http_llm_probe_finish(p, NGX_HTTP_LLM_PROBE_EVENT);
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_http_llm_probe_finish(p, ngx_http_llm_probe_eof(p, n));
            return;
        }

        rc = ngx_http_llm_probe_parse(p, p->buf, n);

        if (rc != NGX_AGAIN) {
            ngx_http_llm_probe_finish(p, rc);
            return;
        }
    }
}


/*
 * NGX_AGAIN, or how the probe ends: at the status line unless its body is
 * wanted, else when the body has ended.
 */

static ngx_int_t
ngx_http_llm_probe_parse(ngx_http_llm_probe_t *p, u_char *buf, size_t n)
{
    size_t          len;
    ngx_int_t       rc;
    const u_char   *pos, *last, *body;

    pos = buf;
    last = buf + n;

    for ( ;; ) {
        switch (ngx_http_llm_http1_parse(&p->http, &pos, last, &body, &len)) {

        case NGX_HTTP_LLM_HTTP1_AGAIN:
            return NGX_AGAIN;

        case NGX_HTTP_LLM_HTTP1_STATUS:
            p->status = p->http.status;

            if (p->body_status == 0 || p->status != p->body_status) {
                return NGX_HTTP_LLM_PROBE_OK;
            }

            break;

        case NGX_HTTP_LLM_HTTP1_BODY:
            rc = p->body(p, (u_char *) body, len);

            if (rc != NGX_OK) {
                return (rc == NGX_DECLINED) ? NGX_HTTP_LLM_PROBE_TOO_LARGE
                                            : NGX_HTTP_LLM_PROBE_NOMEM;
            }

            break;

        case NGX_HTTP_LLM_HTTP1_DONE:
            return NGX_HTTP_LLM_PROBE_OK;

        default:
            return NGX_HTTP_LLM_PROBE_INVALID;
        }
    }
}


/* the connection closed (n 0) or failed (NGX_ERROR) */

static ngx_uint_t
ngx_http_llm_probe_eof(ngx_http_llm_probe_t *p, ssize_t n)
{
    if (p->status == 0) {
        return (n == NGX_ERROR && p->sent == 0) ? NGX_HTTP_LLM_PROBE_CONNECT
               : p->http.received ? NGX_HTTP_LLM_PROBE_INVALID
                                  : NGX_HTTP_LLM_PROBE_CLOSED;
    }

    /* a body up to the close ends there, not on a reset */

    if (n == NGX_ERROR) {
        return NGX_HTTP_LLM_PROBE_RESET;
    }

    return ngx_http_llm_http1_complete_at_close(&p->http)
           ? NGX_HTTP_LLM_PROBE_OK : NGX_HTTP_LLM_PROBE_INVALID;
}


static void
ngx_http_llm_probe_finish(ngx_http_llm_probe_t *p, ngx_uint_t result)
{
    ngx_http_llm_probe_close(p);
    p->done(p, result);
}
