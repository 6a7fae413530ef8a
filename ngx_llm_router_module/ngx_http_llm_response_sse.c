
/*
 * ngx_llm_router: event-stream answers: events read, rewritten, hooked.
 * Not here: the SSE parser (sse.c), error events (response_fail.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_sse.h"
#include "ngx_http_llm_response_common.h"
#include "ngx_http_llm_response_json.h"
#include "ngx_http_llm_response_sse.h"
#include "ngx_http_llm_response_fail.h"
#include "ngx_http_llm_error.h"
#include "ngx_http_llm_hook.h"
#include "ngx_http_llm_jscan.h"


/*
 * The top-level member m of the document at data is named name: its
 * length is checked first, so memcmp() (inlined) compares as strncmp().
 */
#define ngx_http_llm_member_is(data, m, name)                                 \
    ((m)->key_len == sizeof(name) - 1                                         \
     && ngx_memcmp((data) + (m)->key, name, sizeof(name) - 1) == 0)

/* why a chunk hook cannot see an event */
#define NGX_HTTP_LLM_UNSEEN_SIZE    0    /* over llm_event_max_size */
#define NGX_HTTP_LLM_UNSEEN_LINES   1    /* data on more than one line */

#define NGX_HTTP_LLM_OUT_SIZE       4096
#define NGX_HTTP_LLM_OUT_BUFS       4    /* waiting downstream, at most */
#define NGX_HTTP_LLM_SCRATCH_SIZE   4096 /* a chunk hook's, per event */

#define NGX_HTTP_LLM_EVENT_KEEP     0
#define NGX_HTTP_LLM_EVENT_DROP     1
#define NGX_HTTP_LLM_EVENT_EDIT     2
#define NGX_HTTP_LLM_EVENT_REPLACE  3    /* by resp->replacement */
#define NGX_HTTP_LLM_EVENT_ABORT    4    /* a chunk hook failed */
#define NGX_HTTP_LLM_EVENT_RAW      5    /* resp->replacement, whole */


/* the members of an event's object that the router reads */

typedef struct {
    ngx_http_llm_jscan_member_t    *usage;
    ngx_http_llm_jscan_member_t    *model;
    ngx_http_llm_jscan_member_t    *choices;
    ngx_http_llm_jscan_member_t    *type;
    ngx_http_llm_jscan_member_t    *delta;
} ngx_http_llm_event_members_t;


static void ngx_http_llm_scratch_cleanup(void *data);
static ngx_int_t ngx_http_llm_sse_observe(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_llm_sse_observe_end(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in, ngx_chain_t *cl);
static ngx_int_t ngx_http_llm_sse_rewrite(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_llm_sse_read(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_uint_t *flush, ngx_uint_t *last_buf);
static ngx_int_t ngx_http_llm_sse_hold(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, u_char *p, size_t n);
static ngx_int_t ngx_http_llm_sse_read_end(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_int_t ngx_http_llm_sse_emit(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_inline ngx_int_t ngx_http_llm_out_spliced(ngx_http_request_t *r,
    ngx_http_llm_response_t *resp, u_char *start, size_t len, size_t from,
    size_t to, ngx_str_t *with);
static ngx_uint_t ngx_http_llm_sse_event(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, size_t *model_start, size_t *model_end);
static ngx_uint_t ngx_http_llm_event_object(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_jscan_t *scan, size_t *ms,
    size_t *me);
static void ngx_http_llm_event_members(u_char *data,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_event_members_t *em);
static ngx_uint_t ngx_http_llm_event_choices(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, u_char *data,
    ngx_http_llm_jscan_member_t *choices);
static ngx_uint_t ngx_http_llm_choices_content(u_char *p, size_t len);
static ngx_uint_t ngx_http_llm_delta_content(u_char *p, size_t len);
static ngx_uint_t ngx_http_llm_stream_end(ngx_uint_t api, u_char *name,
    size_t len);
static ngx_uint_t ngx_http_llm_event_hooked(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_uint_t what, size_t ms, size_t me);
static ngx_uint_t ngx_http_llm_chunk_hook(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_uint_t what, size_t ms, size_t me);
static ngx_uint_t ngx_http_llm_done_hook(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_uint_t ngx_http_llm_event_hooks(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_uint_t kind, ngx_str_t *doc);
static ngx_uint_t ngx_http_llm_event_unseen(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_uint_t why);
static ngx_int_t ngx_http_llm_out(ngx_http_request_t *r,
    ngx_http_llm_response_t *resp, u_char *p, size_t n);
static ngx_int_t ngx_http_llm_out_flush(ngx_http_request_t *r,
    ngx_http_llm_response_t *resp, ngx_uint_t flush, ngx_uint_t last);
static ngx_int_t ngx_http_llm_hook_abort_stream(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static void ngx_http_llm_sse_end_rewritten(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_buf_t *event);
static ngx_buf_t *ngx_http_llm_sse_error_buf(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_int_t rc);


/*
 * An event stream: read, or rewritten event by event (a model to restore,
 * a usage event to drop, chunk or done hooks), by the incremental parser.
 */

ngx_int_t
ngx_http_llm_sse_start(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    size_t                    size;
    ngx_pool_cleanup_t       *cln;
    ngx_http_llm_response_t  *resp;
    ngx_http_llm_loc_conf_t  *llcf;

    resp = ctx->response;
    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    resp->mode = NGX_HTTP_LLM_MODE_SSE;
    ctx->sse = 1;

    resp->rewrite = (resp->model_json.len || ctx->strip_usage
                     || (resp->hooks & ((1 << NGX_HTTP_LLM_HOOK_CHUNK)
                                        | (1 << NGX_HTTP_LLM_HOOK_DONE))));

    size = llcf->event_max_size;
    resp->event_max = size;
    ngx_http_llm_sse_init(&resp->sse, ngx_pnalloc(r->pool, size), size);

    if (resp->sse.data == NULL) {
        return NGX_ERROR;
    }

    /* an error event may be added: the engine's length would lie */

    ngx_http_clear_content_length(r);
    ngx_http_clear_accept_ranges(r);

    /* what a chunk hook makes of an event lives until it is sent */

    if (resp->hooks & ((1 << NGX_HTTP_LLM_HOOK_CHUNK)
                       | (1 << NGX_HTTP_LLM_HOOK_DONE)))
    {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        resp->scratch = ngx_create_pool(NGX_HTTP_LLM_SCRATCH_SIZE,
                                        r->connection->log);
        if (resp->scratch == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_http_llm_scratch_cleanup;
        cln->data = resp->scratch;
    }

    return NGX_OK;
}


/* the scratch pool goes with the request */

static void
ngx_http_llm_scratch_cleanup(void *data)
{
    ngx_pool_t  *pool = data;

    ngx_destroy_pool(pool);
}


/* the body filter of an event stream */

ngx_int_t
ngx_http_llm_sse_body(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *in)
{
    if (ctx->response->rewrite) {
        return ngx_http_llm_sse_rewrite(r, ctx, in);
    }

    return ngx_http_llm_sse_observe(r, ctx, in);
}


/* events read as they pass; the buffers go on untouched */

static ngx_int_t
ngx_http_llm_sse_observe(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *in)
{
    int                       event;
    u_char                   *p, *last;
    size_t                    n, ms, me;
    ngx_chain_t              *cl;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    for (cl = in; cl; cl = cl->next) {

        if (ngx_buf_in_memory(cl->buf)) {
            p = cl->buf->pos;
            last = cl->buf->last;

            while (p < last) {
                n = ngx_http_llm_sse_feed(&resp->sse, p, last - p, &event);
                p += n;

                if (event) {
                    (void) ngx_http_llm_sse_event(r, ctx, &ms, &me);
                    ngx_http_llm_sse_next(&resp->sse);
                }
            }
        }

        if (cl->buf->last_buf && !ctx->stream_done) {
            return ngx_http_llm_sse_observe_end(r, ctx, in, cl);
        }
    }

    return ngx_http_llm_next_body_filter(r, in);
}


/*
 * The stream ends without its last event ([DONE]): the error event goes
 * before an empty last buffer cl, or after the last bytes, taking the end
 * of the stream over from them.
 */

static ngx_int_t
ngx_http_llm_sse_observe_end(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *in, ngx_chain_t *cl)
{
    ngx_buf_t     *b;
    ngx_uint_t     data;
    ngx_chain_t   *tail, **ll, *out;

    b = ngx_http_llm_sse_error_buf(r, ctx, 0);
    if (b == NULL) {
        return NGX_ERROR;
    }

    data = (cl->buf->last > cl->buf->pos);

    out = NULL;
    ll = &out;

    for (tail = in; tail; tail = tail->next) {
        if (tail == cl && !data) {
            break;
        }

        *ll = ngx_alloc_chain_link(r->pool);
        if (*ll == NULL) {
            return NGX_ERROR;
        }

        (*ll)->buf = tail->buf;
        ll = &(*ll)->next;

        if (tail == cl) {
            break;
        }
    }

    *ll = ngx_alloc_chain_link(r->pool);
    if (*ll == NULL) {
        return NGX_ERROR;
    }

    (*ll)->buf = b;
    (*ll)->next = NULL;

    if (data) {
        cl->buf->last_buf = 0;
        b->last_buf = 1;
        b->last_in_chain = 1;

    } else {
        (*ll)->next = cl;
    }

    return ngx_http_llm_next_body_filter(r, out);
}


/*
 * Events copied out one by one, changed or dropped where needed.
 *
 * The engine's buffers are read only as far as the client takes the
 * output: while NGX_HTTP_LLM_OUT_BUFS of our buffers wait downstream, the
 * rest stays unread in resp->in (its buffers not consumed), and so the
 * upstream module reads no more of the engine (with proxy_buffering off
 * it reuses its one buffer only once that is consumed; with it on, the
 * pipe's buffers stay busy).  Nginx calls the filter again as the client
 * drains.  The last buffer is read whole: what is left then is no more
 * than the upstream's buffers hold.
 */

static ngx_int_t
ngx_http_llm_sse_rewrite(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *in)
{
    ngx_int_t                 rc;
    ngx_uint_t                flush, last;
    ngx_chain_t              *cl;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    if (in) {
        for (cl = in; cl; cl = cl->next) {
            if (cl->buf->last_buf) {
                resp->in_last = 1;
            }
        }

        if (ngx_chain_add_copy(r->pool, &resp->in, in) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    for ( ;; ) {
        flush = 0;
        last = 0;

        if (ngx_http_llm_sse_read(r, ctx, &flush, &last) != NGX_OK) {
            return NGX_ERROR;
        }

        if (resp->hook_abort) {
            return ngx_http_llm_hook_abort_stream(r, ctx);
        }

        /* bytes left unread: the client must get what is out now */

        if (resp->in) {
            flush = 1;
        }

        rc = ngx_http_llm_out_flush(r, resp, flush, last);

        if (rc == NGX_ERROR || resp->in == NULL
            || resp->nbusy >= NGX_HTTP_LLM_OUT_BUFS)
        {
            return rc;
        }

        /* the client took some: read on */
    }
}


/* reads resp->in until the output waiting downstream reaches the bound */

static ngx_int_t
ngx_http_llm_sse_read(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_uint_t *flush, ngx_uint_t *last_buf)
{
    int                       event;
    u_char                   *p;
    size_t                    n;
    ngx_int_t                 rc;
    ngx_buf_t                *b;
    ngx_chain_t              *cl;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    while (resp->in) {
        cl = resp->in;
        b = cl->buf;

        if (b->flush) {
            *flush = 1;
        }

        while (ngx_buf_in_memory(b) && b->pos < b->last) {

            if (!resp->in_last
                && resp->nbusy + resp->nout >= NGX_HTTP_LLM_OUT_BUFS)
            {
                return NGX_OK;          /* the rest when the client drains */
            }

            p = b->pos;

            n = ngx_http_llm_sse_feed(&resp->sse, p, b->last - p, &event);

            rc = ngx_http_llm_sse_hold(r, ctx, p, n);

            if (rc != NGX_OK) {
                return (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
            }

            /* copied: these bytes of the engine's buffer are done with */

            b->pos = p + n;

            if (event) {
                if (ngx_http_llm_sse_emit(r, ctx) != NGX_OK) {
                    return NGX_ERROR;
                }

                if (resp->scratch) {
                    ngx_reset_pool(resp->scratch);      /* copied out */
                }

                if (resp->hook_abort) {
                    return NGX_OK;
                }
            }
        }

        resp->in = cl->next;
        ngx_free_chain(r->pool, cl);

        if (!b->last_buf) {
            continue;
        }

        *last_buf = 1;

        if (ngx_http_llm_sse_read_end(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The event's raw bytes, held until its end; one too big to hold goes out
 * as it is.  NGX_DONE: a chunk hook cannot see it, the stream is aborted.
 */

static ngx_int_t
ngx_http_llm_sse_hold(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    u_char *p, size_t n)
{
    size_t                    size;
    ngx_buf_t                *raw;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;
    raw = resp->raw;

    if (resp->raw_pass) {
        return ngx_http_llm_out(r, resp, p, n);
    }

    if (raw && (size_t) (raw->end - raw->last) >= n) {
        raw->last = ngx_cpymem(raw->last, p, n);
        return NGX_OK;
    }

    size = raw ? (size_t) (raw->last - raw->pos) : 0;

    if (size + n > resp->event_max) {

        if (ngx_http_llm_event_unseen(r, ctx, NGX_HTTP_LLM_UNSEEN_SIZE)) {
            if (raw) {
                raw->last = raw->pos;
            }

            resp->hook_abort = 1;
            return NGX_DONE;
        }

        /* too big to hold: out as it is */

        if ((size && ngx_http_llm_out(r, resp, raw->pos, size) != NGX_OK)
            || ngx_http_llm_out(r, resp, p, n) != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (raw) {
            raw->last = raw->pos;
        }

        resp->raw_pass = 1;

        return NGX_OK;
    }

    raw = ngx_create_temp_buf(r->pool, ngx_max(2 * size + n, 1024));
    if (raw == NULL) {
        return NGX_ERROR;
    }

    if (size) {
        raw->last = ngx_cpymem(raw->last, resp->raw->pos, size);
    }

    raw->last = ngx_cpymem(raw->last, p, n);
    resp->raw = raw;

    return NGX_OK;
}


/* the engine's last buffer is read: an unfinished event, an error event */

static ngx_int_t
ngx_http_llm_sse_read_end(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_buf_t                *raw;
    ngx_str_t                 text;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    /* an unfinished event goes out as it is */

    raw = resp->raw;

    if (raw && raw->last > raw->pos) {
        if (ngx_http_llm_out(r, resp, raw->pos, raw->last - raw->pos)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        raw->last = raw->pos;
    }

    if (!ctx->stream_done) {
        ngx_http_llm_stream_failed(r, ctx, 0);

        if (ngx_http_llm_stream_error_text(r, ctx, &text) != NGX_OK
            || ngx_http_llm_out(r, resp, text.data, text.len) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* a whole event is in resp->raw: out it goes, changed, or not at all */

static ngx_int_t
ngx_http_llm_sse_emit(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    u_char                   *start;
    size_t                    ms, me, vs, len, data_len;
    ngx_buf_t                *raw;
    ngx_uint_t                what;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    what = ngx_http_llm_sse_event(r, ctx, &ms, &me);

    raw = resp->raw;
    vs = resp->sse.value_start;
    data_len = resp->sse.data_len;

    ngx_http_llm_sse_next(&resp->sse);

    if (resp->raw_pass) {
        resp->raw_pass = 0;
        return NGX_OK;
    }

    if (raw == NULL) {
        return NGX_OK;
    }

    start = raw->pos;
    len = raw->last - raw->pos;
    raw->last = raw->pos;     /* the bytes stay valid until the next feed */

    switch (what) {

    case NGX_HTTP_LLM_EVENT_DROP:
        /* a '\n' ending the event before, after its "\r\n\r" */
        if (len && start[0] == '\n') {
            return ngx_http_llm_out(r, resp, start, 1);
        }

        return NGX_OK;

    case NGX_HTTP_LLM_EVENT_EDIT:
        return ngx_http_llm_out_spliced(r, resp, start, len, vs + ms,
                                        vs + me, &resp->model_json);

    case NGX_HTTP_LLM_EVENT_REPLACE:
        return ngx_http_llm_out_spliced(r, resp, start, len, vs,
                                        vs + data_len, &resp->replacement);

    case NGX_HTTP_LLM_EVENT_RAW:
        /* keep a '\n' ending the event before, as for DROP */
        if (len && start[0] == '\n'
            && ngx_http_llm_out(r, resp, start, 1) != NGX_OK)
        {
            return NGX_ERROR;
        }

        return ngx_http_llm_out(r, resp, resp->replacement.data,
                                resp->replacement.len);

    case NGX_HTTP_LLM_EVENT_ABORT:
        /* the hook's error ends the stream here */
        resp->hook_abort = 1;
        return NGX_OK;

    default: /* NGX_HTTP_LLM_EVENT_KEEP */
        return ngx_http_llm_out(r, resp, start, len);
    }
}


/* an event out with its bytes [from, to) replaced by with */

static ngx_inline ngx_int_t
ngx_http_llm_out_spliced(ngx_http_request_t *r, ngx_http_llm_response_t *resp,
    u_char *start, size_t len, size_t from, size_t to, ngx_str_t *with)
{
    if (ngx_http_llm_out(r, resp, start, from) != NGX_OK
        || ngx_http_llm_out(r, resp, with->data, with->len) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_llm_out(r, resp, start + to, len - to);
}


/*
 * What an event says: [DONE], usage, the first content; and what to do
 * with it.  *ms, *me: the "model" value in the event's data, for EDIT.
 */

static ngx_uint_t
ngx_http_llm_sse_event(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    size_t *ms, size_t *me)
{
    ngx_http_llm_sse_t       *sse;
    ngx_http_llm_jscan_t      scan;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;
    sse = &resp->sse;

    *ms = 0;
    *me = 0;

    if (sse->data_lines == 0) {
        return NGX_HTTP_LLM_EVENT_KEEP;     /* a comment, a heartbeat */
    }

    if (sse->data_len == 6 && ngx_strncmp(sse->data, "[DONE]", 6) == 0) {
        ctx->stream_done = 1;

        if (resp->hooks & (1 << NGX_HTTP_LLM_HOOK_DONE)) {
            return ngx_http_llm_done_hook(r, ctx);
        }

        return NGX_HTTP_LLM_EVENT_KEEP;
    }

    ctx->events++;

    /* the Responses and Messages APIs end with an event of their own */

    if (resp->api != NGX_HTTP_LLM_API_CHAT && sse->name_len
        && ngx_http_llm_stream_end(resp->api, sse->name, sse->name_len))
    {
        ctx->stream_done = 1;
    }

    if (sse->truncated) {
        if (!resp->raw_pass
            && ngx_http_llm_event_unseen(r, ctx, NGX_HTTP_LLM_UNSEEN_SIZE))
        {
            return NGX_HTTP_LLM_EVENT_ABORT;
        }

        return NGX_HTTP_LLM_EVENT_KEEP;
    }

    ngx_http_llm_jscan_init(&scan);
    (void) ngx_http_llm_jscan_feed(&scan, sse->data, sse->data_len);

    if (ngx_http_llm_jscan_finish(&scan) != NGX_HTTP_LLM_JSCAN_OK) {

        /* not an object the router reads: a chunk hook still judges it */

        return ngx_http_llm_event_hooked(r, ctx, NGX_HTTP_LLM_EVENT_KEEP, 0,
                                         0);
    }

    return ngx_http_llm_event_object(r, ctx, &scan, ms, me);
}


/* an event whose data is an object: its members, read */

static ngx_uint_t
ngx_http_llm_event_object(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_jscan_t *scan, size_t *ms, size_t *me)
{
    u_char                       *data;
    ngx_uint_t                    what, empty_choices;
    ngx_http_llm_sse_t           *sse;
    ngx_http_llm_response_t      *resp;
    ngx_http_llm_event_members_t  em;

    resp = ctx->response;
    sse = &resp->sse;
    data = sse->data;

    ngx_http_llm_event_members(data, scan, &em);

    if (resp->api != NGX_HTTP_LLM_API_CHAT && em.type && !ctx->stream_done
        && em.type->type == NGX_HTTP_LLM_JSON_STRING
        && ngx_http_llm_stream_end(resp->api, data + em.type->value + 1,
                                   em.type->value_end - em.type->value - 2))
    {
        ctx->stream_done = 1;
    }

    /* Responses: "delta":"text"; Messages: "delta":{"text":"..."} */

    if (ctx->ttft < 0 && em.delta
        && ((em.delta->type == NGX_HTTP_LLM_JSON_STRING
             && em.delta->value_end - em.delta->value > 2)
            || (em.delta->type == NGX_HTTP_LLM_JSON_OBJECT
                && ngx_http_llm_delta_content(data + em.delta->value,
                                              em.delta->value_end
                                              - em.delta->value))))
    {
        ctx->ttft = ngx_http_llm_elapsed(r);
    }

    empty_choices = 0;

    if (em.choices && em.choices->type == NGX_HTTP_LLM_JSON_ARRAY) {
        empty_choices = ngx_http_llm_event_choices(r, ctx, data, em.choices);
    }

    if (em.usage && em.usage->type == NGX_HTTP_LLM_JSON_OBJECT) {
        (void) ngx_http_llm_read_usage(ctx, data + em.usage->value,
                                       em.usage->value_end - em.usage->value);

        if (ctx->strip_usage && empty_choices) {
            return NGX_HTTP_LLM_EVENT_DROP;
        }
    }

    what = NGX_HTTP_LLM_EVENT_KEEP;

    if (resp->model_json.len && em.model
        && em.model->type == NGX_HTTP_LLM_JSON_STRING
        && sse->data_lines == 1
        && sse->value_end - sse->value_start == sse->data_len)
    {
        *ms = em.model->value;
        *me = em.model->value_end;
        what = NGX_HTTP_LLM_EVENT_EDIT;
    }

    return ngx_http_llm_event_hooked(r, ctx, what, *ms, *me);
}


/* the top-level members of an event's object that the router reads */

static void
ngx_http_llm_event_members(u_char *data, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_event_members_t *em)
{
    size_t                        i;
    ngx_http_llm_jscan_member_t  *m;

    em->usage = NULL;
    em->model = NULL;
    em->choices = NULL;
    em->type = NULL;
    em->delta = NULL;

    for (i = 0; i < scan->nmembers; i++) {
        m = &scan->members[i];

        if (ngx_http_llm_member_is(data, m, "usage")) {
            em->usage = m;

        } else if (ngx_http_llm_member_is(data, m, "model")) {
            em->model = m;

        } else if (ngx_http_llm_member_is(data, m, "choices")) {
            em->choices = m;

        } else if (ngx_http_llm_member_is(data, m, "type")) {
            em->type = m;

        } else if (ngx_http_llm_member_is(data, m, "delta")) {
            em->delta = m;
        }
    }
}


/* "choices": 1 if empty (a usage event); the first content is timed */

static ngx_uint_t
ngx_http_llm_event_choices(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    u_char *data, ngx_http_llm_jscan_member_t *choices)
{
    size_t  i;

    for (i = choices->value + 1; i < (size_t) choices->value_end; i++) {
        if (data[i] != ' ' && data[i] != '\t' && data[i] != '\n'
            && data[i] != '\r')
        {
            break;
        }
    }

    if (data[i] == ']') {
        return 1;
    }

    if (ctx->ttft < 0
        && ngx_http_llm_choices_content(data + choices->value,
                                        choices->value_end - choices->value))
    {
        ctx->ttft = ngx_http_llm_elapsed(r);
    }

    return 0;
}


/*
 * A choice that carries generated text, reasoning or a tool call: the
 * choices are walked with the skimmer, whatever spaces the engine writes
 * ("content": "x" as Python's json module writes it).
 */

static ngx_uint_t
ngx_http_llm_choices_content(u_char *p, size_t len)
{
    int                    rc;
    u_char                *last;
    ngx_http_llm_jskim_t   k;

    last = p + len - 1;     /* the ']' */
    p++;

    for ( ;; ) {
        while (p < last && (ngx_http_llm_is_space(*p) || *p == ',')) {
            p++;
        }

        if (p >= last || *p != '{'
            || !ngx_http_llm_jskim_open(&k, p, last - p))
        {
            return 0;
        }

        while ((rc = ngx_http_llm_jskim_next(&k))
               == NGX_HTTP_LLM_JSKIM_MEMBER)
        {
            if (k.key_len == 5 && ngx_strncmp(k.key, "delta", 5) == 0
                && *k.value == '{'
                && ngx_http_llm_delta_content((u_char *) k.value,
                                              k.value_end - k.value))
            {
                return 1;
            }

            /* completions: the choice's own "text" */

            if (k.key_len == 4 && ngx_strncmp(k.key, "text", 4) == 0
                && *k.value == '"' && k.value_end - k.value > 2)
            {
                return 1;
            }
        }

        if (rc != NGX_HTTP_LLM_JSKIM_END) {
            return 0;
        }

        p = (u_char *) k.pos + 1;       /* past the choice's '}' */
    }
}


/* a delta with text: a non-empty string, or a tool call */

static ngx_uint_t
ngx_http_llm_delta_content(u_char *p, size_t len)
{
    ngx_uint_t             i;
    ngx_http_llm_jskim_t   k;

    static ngx_str_t  keys[] = {
        ngx_string("content"),              /* chat */
        ngx_string("reasoning_content"),
        ngx_string("reasoning"),
        ngx_string("text"),                 /* Messages: text_delta */
        ngx_string("thinking"),
        ngx_string("partial_json"),
        ngx_null_string
    };

    if (!ngx_http_llm_jskim_open(&k, p, len)) {
        return 0;
    }

    while (ngx_http_llm_jskim_next(&k) == NGX_HTTP_LLM_JSKIM_MEMBER) {

        if (*k.value == '"') {
            if (k.value_end - k.value <= 2) {
                continue;
            }

            for (i = 0; keys[i].len; i++) {
                if (k.key_len == keys[i].len
                    && ngx_strncmp(k.key, keys[i].data, keys[i].len) == 0)
                {
                    return 1;
                }
            }

        } else if (*k.value == '[' && k.key_len == 10
                   && ngx_strncmp(k.key, "tool_calls", 10) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* the last event of a Responses or Messages stream, by its name or type */

static ngx_uint_t
ngx_http_llm_stream_end(ngx_uint_t api, u_char *name, size_t len)
{
    if (len == 5 && ngx_strncmp(name, "error", 5) == 0) {
        return 1;       /* the engine's own error event ends it */
    }

    if (api == NGX_HTTP_LLM_API_MESSAGES) {
        return len == 12 && ngx_strncmp(name, "message_stop", 12) == 0;
    }

    if (len < 15 || ngx_strncmp(name, "response.", 9) != 0) {
        return 0;
    }

    name += 9;
    len -= 9;

    return (len == 9 && ngx_strncmp(name, "completed", 9) == 0)
           || (len == 6 && ngx_strncmp(name, "failed", 6) == 0)
           || (len == 10 && ngx_strncmp(name, "incomplete", 10) == 0);
}


/*
 * An event with data goes through the chunk hooks, whatever it holds (a
 * document they cannot read fails them), unless it passed out unread; one
 * whose data is on more than one line (clients join them) cannot be
 * spliced back and is refused, as an event too large is.
 */

static ngx_uint_t
ngx_http_llm_event_hooked(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_uint_t what, size_t ms, size_t me)
{
    ngx_http_llm_sse_t       *sse;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;
    sse = &resp->sse;

    if (!(resp->hooks & (1 << NGX_HTTP_LLM_HOOK_CHUNK)) || resp->raw_pass
        || sse->data_len == 0)
    {
        return what;
    }

    if (sse->data_lines != 1
        || sse->value_end - sse->value_start != sse->data_len)
    {
        return ngx_http_llm_event_unseen(r, ctx, NGX_HTTP_LLM_UNSEEN_LINES)
               ? NGX_HTTP_LLM_EVENT_ABORT : what;
    }

    return ngx_http_llm_chunk_hook(r, ctx, what, ms, me);
}


/*
 * The Lua chunk hooks on one event's data (with the model restored when
 * it is): keep, drop, replace, or abort the stream when a hook fails.
 */

static ngx_uint_t
ngx_http_llm_chunk_hook(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_uint_t what, size_t ms, size_t me)
{
    u_char                   *p, *data;
    size_t                    len;
    ngx_str_t                 doc;
    ngx_uint_t                rc;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;
    data = resp->sse.data;
    len = resp->sse.data_len;

    doc.data = data;
    doc.len = len;

    if (what == NGX_HTTP_LLM_EVENT_EDIT) {
        doc.len = len - (me - ms) + resp->model_json.len;
        doc.data = ngx_pnalloc(resp->scratch, doc.len);
        if (doc.data == NULL) {
            return NGX_HTTP_LLM_EVENT_ABORT;
        }

        p = ngx_cpymem(doc.data, data, ms);
        p = ngx_cpymem(p, resp->model_json.data, resp->model_json.len);
        ngx_memcpy(p, data + me, len - me);
    }

    rc = ngx_http_llm_event_hooks(r, ctx, NGX_HTTP_LLM_HOOK_CHUNK, &doc);

    if (rc != NGX_HTTP_LLM_EVENT_KEEP) {
        return rc;
    }

    if (doc.data == data) {
        return what;
    }

    resp->replacement = doc;

    return NGX_HTTP_LLM_EVENT_REPLACE;
}


/* done(ev, ctx) hooks see the end of the stream, ev being "[DONE]" */

static ngx_uint_t
ngx_http_llm_done_hook(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_str_t  doc;

    ngx_str_set(&doc, "\"[DONE]\"");

    return ngx_http_llm_event_hooks(r, ctx, NGX_HTTP_LLM_HOOK_DONE, &doc);
}


/*
 * The chunk or done hooks on doc, with the scratch pool for what they
 * make: ABORT when one failed, RAW (the whole event replaced), DROP, else
 * KEEP, doc as the hooks left it.
 */

static ngx_uint_t
ngx_http_llm_event_hooks(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_uint_t kind, ngx_str_t *doc)
{
    ngx_int_t                 rc;
    ngx_uint_t                drop;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    ctx->event_pool = resp->scratch;
    rc = ngx_http_llm_hooks(r, ctx, kind, doc, &drop);
    ctx->event_pool = NULL;

    if (rc != NGX_OK) {
        return NGX_HTTP_LLM_EVENT_ABORT;
    }

    if (drop == 2) {
        resp->replacement = *doc;
        return NGX_HTTP_LLM_EVENT_RAW;
    }

    return drop ? NGX_HTTP_LLM_EVENT_DROP : NGX_HTTP_LLM_EVENT_KEEP;
}


/*
 * An event a chunk hook cannot see: over llm_event_max_size, or its data
 * on more than one line (clients join them; the hook's event could not be
 * spliced back).  1: the stream is ended with an error (ctx->hook_status,
 * ctx->error), unless llm_hook_on_error is pass.
 */

static ngx_uint_t
ngx_http_llm_event_unseen(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_uint_t why)
{
    size_t                    size;
    ngx_str_t                 message;
    ngx_http_llm_loc_conf_t  *llcf;
    ngx_http_llm_response_t  *resp;

    static ngx_str_t  what[] = {
        ngx_string("over llm_event_max_size"),
        ngx_string("with more than one data line")
    };

    static ngx_str_t  messages[] = {
        ngx_string("an event of the engine's stream is over "
                   "llm_event_max_size, the chunk hook cannot see it"),
        ngx_string("an event of the engine's stream has more than one data "
                   "line, the chunk hook cannot see it")
    };

    static const char  *codes[] = {
        "response_too_large",
        "unsupported_event"
    };

    resp = ctx->response;

    if (!(resp->hooks & (1 << NGX_HTTP_LLM_HOOK_CHUNK))) {
        return 0;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    size = (why == NGX_HTTP_LLM_UNSEEN_SIZE) ? resp->event_max
                                             : resp->sse.data_len;

    if (llcf->hook_on_error) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "llm router: an event %V (%uz bytes) passed on "
                      "without the chunk hook (llm_hook_on_error pass)",
                      &what[why], size);
        return 0;
    }

    message = messages[why];
    ngx_http_llm_set_error(ctx, codes[why], "server_error", NULL, &message);
    ctx->hook_status = NGX_HTTP_BAD_GATEWAY;

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "llm router: %V (%uz bytes), the stream ends with an "
                  "error event", &message, size);

    return 1;
}


/* appends n bytes to the output of this call */

static ngx_int_t
ngx_http_llm_out(ngx_http_request_t *r, ngx_http_llm_response_t *resp,
    u_char *p, size_t n)
{
    size_t        room;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    while (n) {
        b = resp->out_last ? resp->out_last->buf : NULL;

        if (b == NULL || b->last == b->end) {

            /* a buffer the client took, or a new one */

            cl = ngx_chain_get_free_buf(r->pool, &resp->free);
            if (cl == NULL) {
                return NGX_ERROR;
            }

            b = cl->buf;

            if (b->start == NULL) {
                b->start = ngx_palloc(r->pool, NGX_HTTP_LLM_OUT_SIZE);
                if (b->start == NULL) {
                    return NGX_ERROR;
                }

                b->end = b->start + NGX_HTTP_LLM_OUT_SIZE;
            }

            b->pos = b->start;
            b->last = b->start;
            b->temporary = 1;
            b->flush = 0;
            b->last_buf = 0;
            b->last_in_chain = 0;
            b->sync = 0;
            b->tag = (ngx_buf_tag_t) &ngx_http_llm_router_module;

            if (resp->out_last) {
                resp->out_last->next = cl;

            } else {
                resp->out = cl;
            }

            resp->out_last = cl;
            resp->nout++;
        }

        room = ngx_min((size_t) (b->end - b->last), n);
        b->last = ngx_cpymem(b->last, p, room);
        p += room;
        n -= room;
    }

    return NGX_OK;
}


/* sends this call's output on, and takes back the buffers already sent */

static ngx_int_t
ngx_http_llm_out_flush(ngx_http_request_t *r, ngx_http_llm_response_t *resp,
    ngx_uint_t flush, ngx_uint_t last)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    /* a flush with bytes waiting downstream: the call itself pushes them */

    if (resp->out == NULL && (last || (flush && resp->busy == NULL))) {
        cl = ngx_chain_get_free_buf(r->pool, &resp->free);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        b = cl->buf;
        b->pos = b->start;
        b->last = b->start;
        b->temporary = 0;     /* special: no bytes */
        b->memory = 0;
        b->tag = (ngx_buf_tag_t) &ngx_http_llm_router_module;
        resp->out = cl;
        resp->out_last = cl;
    }

    if (resp->out == NULL && resp->busy == NULL) {
        return NGX_OK;
    }

    if (resp->out_last) {
        b = resp->out_last->buf;
        b->flush = flush;
        b->last_buf = last;
        b->last_in_chain = 1;
        b->sync = (b->pos == b->last && !flush && !last);
    }

    if (last) {
        resp->ended = 1;
    }

    rc = ngx_http_llm_next_body_filter(r, resp->out);

    ngx_chain_update_chains(r->pool, &resp->free, &resp->busy, &resp->out,
                            (ngx_buf_tag_t) &ngx_http_llm_router_module);

    resp->out_last = NULL;
    resp->nout = 0;

    /* what waits downstream: the bound on reading the engine */

    resp->nbusy = 0;

    for (cl = resp->busy; cl; cl = cl->next) {
        if (ngx_buf_size(cl->buf)) {
            resp->nbusy++;
        }
    }

    return rc;
}


/* a chunk hook rejected or failed: an error event, [DONE], the end */

static ngx_int_t
ngx_http_llm_hook_abort_stream(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_str_t                 text;
    ngx_chain_t              *cl;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    /* the rest of the engine's bytes go nowhere */

    while (resp->in) {
        cl = resp->in;
        cl->buf->pos = cl->buf->last;
        resp->in = cl->next;
        ngx_free_chain(r->pool, cl);
    }

    if (ngx_http_llm_error_event(r, ctx, ctx->hook_status, &text) != NGX_OK
        || ngx_http_llm_out(r, resp, text.data, text.len) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->stream_done = 1;

    ngx_http_llm_upstream_stop(r);

    return ngx_http_llm_out_flush(r, resp, 1, 1);
}


/*
 * The engine broke the stream off (closed, timed out; rc: 502 or 504):
 * what is still unread or held of its bytes goes first, then the error
 * event that ends the stream (ngx_http_llm_upstream_finalize()).
 */

void
ngx_http_llm_sse_broken(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_int_t rc)
{
    ngx_buf_t                *b;
    ngx_chain_t               out;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    b = ngx_http_llm_sse_error_buf(r, ctx, rc);
    if (b == NULL) {
        return;
    }

    if (resp->rewrite) {
        ngx_http_llm_sse_end_rewritten(r, ctx, b);
        return;
    }

    /* the buffers passed untouched: the event goes after them */

    b->flush = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    resp->injecting = 1;
    (void) ngx_http_output_filter(r, &out);
    resp->injecting = 0;
    resp->ended = 1;
}


/* a rewritten stream broken off: the engine's bytes, then the error event */

static void
ngx_http_llm_sse_end_rewritten(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_buf_t *event)
{
    ngx_uint_t                flush, last;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    /* the engine's bytes not read yet go first, all of them */

    if (resp->in) {
        resp->in_last = 1;
        flush = 0;
        last = 0;

        if (ngx_http_llm_sse_read(r, ctx, &flush, &last) != NGX_OK) {
            return;
        }

        if (resp->hook_abort) {
            (void) ngx_http_llm_hook_abort_stream(r, ctx);
            return;
        }

        if (last) {
            (void) ngx_http_llm_out_flush(r, resp, 1, 1);
            return;
        }
    }

    /* whatever was held of an unfinished event goes first */

    if (resp->raw && resp->raw->last > resp->raw->pos) {
        if (ngx_http_llm_out(r, resp, resp->raw->pos,
                             resp->raw->last - resp->raw->pos)
            != NGX_OK)
        {
            return;
        }

        resp->raw->last = resp->raw->pos;
    }

    if (ngx_http_llm_out(r, resp, event->pos, event->last - event->pos)
        != NGX_OK)
    {
        return;
    }

    (void) ngx_http_llm_out_flush(r, resp, 1, 1);
}


/* the stream failed (rc: 0, or nginx's 502 or 504): its error event */

static ngx_buf_t *
ngx_http_llm_sse_error_buf(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_int_t rc)
{
    ngx_buf_t  *b;
    ngx_str_t   text;

    ngx_http_llm_stream_failed(r, ctx, rc);

    if (ngx_http_llm_stream_error_text(r, ctx, &text) != NGX_OK) {
        return NULL;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NULL;
    }

    b->pos = text.data;
    b->last = text.data + text.len;
    b->memory = 1;

    return b;
}
