
/*
 * ngx_llm_router: the precontent phase handler.  Reads the whole request
 * body after the access checks, finds the model, picks the route and edits
 * the raw body in place: unchanged spans are passed on without a copy.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"


static void ngx_http_llm_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_llm_route_body(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_int_t ngx_http_llm_flatten_body(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_http_llm_read_fields(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_json_doc_t *doc,
    ngx_http_llm_json_member_t **model);
static ngx_int_t ngx_http_llm_plan_edits(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_json_doc_t *doc,
    ngx_http_llm_json_member_t *model, ngx_array_t *edits);
static ngx_int_t ngx_http_llm_plan_drops(ngx_http_llm_json_doc_t *doc,
    u_char *dropped, ngx_array_t *edits, ngx_uint_t *kept);
static ngx_int_t ngx_http_llm_add_edit(ngx_array_t *edits, u_char *start,
    u_char *end, ngx_str_t *data);
static ngx_int_t ngx_http_llm_apply_edits(ngx_http_request_t *r,
    ngx_str_t *body, ngx_array_t *edits);
static ngx_chain_t *ngx_http_llm_body_link(ngx_pool_t *pool, u_char *start,
    u_char *end);
static ngx_int_t ngx_http_llm_reject(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_uint_t status, const char *code,
    const char *param, const char *fmt, ...);


static ngx_str_t  ngx_http_llm_key_model = ngx_string("model");
static ngx_str_t  ngx_http_llm_key_stream = ngx_string("stream");


ngx_int_t
ngx_http_llm_router_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_table_elt_t          *allow;
    ngx_http_llm_ctx_t       *ctx;
    ngx_http_llm_loc_conf_t  *llcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    if (!llcf->enable) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_llm_find_ctx(r);

    if (ctx && ctx->status != NGX_AGAIN) {
        return ctx->status;
    }

    ctx = ngx_http_llm_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->status = NGX_DONE;

    if (!(r->method & NGX_HTTP_POST)) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        allow = ngx_list_push(&r->headers_out.headers);
        if (allow == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        allow->hash = 1;
#if (nginx_version >= 1023000)
        allow->next = NULL;
#endif
        ngx_str_set(&allow->key, "Allow");
        ngx_str_set(&allow->value, "POST");

        rc = ngx_http_llm_reject(r, ctx, NGX_HTTP_NOT_ALLOWED,
                                 "method_not_allowed", NULL,
                                 "method %V is not allowed, use POST",
                                 &r->method_name);

        ngx_http_finalize_request(r, ngx_http_llm_send_error(r, rc, ctx));
        return NGX_DONE;
    }

    rc = ngx_http_read_client_request_body(r, ngx_http_llm_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


static void
ngx_http_llm_body_handler(ngx_http_request_t *r)
{
    ngx_int_t            rc;
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_find_ctx(r);

    rc = ngx_http_llm_route_body(r, ctx);

    if (rc == NGX_OK) {
        ctx->status = NGX_DECLINED;

        r->preserve_body = 1;

        r->write_event_handler = ngx_http_core_run_phases;
        ngx_http_core_run_phases(r);
        return;
    }

    if (rc == NGX_ERROR) {
        rc = ngx_http_llm_reject(r, ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal_error", NULL,
                                 "the router failed to process the request");
    }

    ngx_http_finalize_request(r, ngx_http_llm_send_error(r, rc, ctx));
}


/* NGX_OK: routed; NGX_ERROR; or the HTTP status of a rejection */

static ngx_int_t
ngx_http_llm_route_body(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_str_t                    body;
    ngx_uint_t                   rc;
    ngx_array_t                  edits;
    ngx_http_llm_route_t        *route;
    ngx_http_llm_json_doc_t      doc;
    ngx_http_llm_main_conf_t    *lmcf;
    ngx_http_llm_json_member_t  *model;

    if (ngx_http_llm_flatten_body(r, &body) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&doc, sizeof(ngx_http_llm_json_doc_t));

    if (ngx_array_init(&doc.members, r->pool, 16,
                       sizeof(ngx_http_llm_json_member_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_llm_json_scan(&doc, body.data, body.data + body.len);

    switch (rc) {

    case NGX_HTTP_LLM_JSON_OK:
        break;

    case NGX_HTTP_LLM_JSON_NOT_OBJECT:
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request", NULL,
                                   "the request body must be a JSON object");

    case NGX_HTTP_LLM_JSON_INVALID:
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_json", NULL,
                                   "the request body is not valid JSON: "
                                   "%s at byte %uz", doc.error,
                                   doc.error_offset);

    default:
        return NGX_ERROR;
    }

    model = NULL;

    rc = ngx_http_llm_read_fields(r, ctx, &doc, &model);
    if (rc != NGX_OK) {
        return rc;
    }

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_router_module);

    route = ngx_http_llm_find_route(lmcf, &ctx->model);

    if (route == NULL) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_NOT_FOUND,
                                   "model_not_found", "model",
                                   "the model \"%V\" does not exist",
                                   &ctx->model);
    }

    ctx->route = route;
    ctx->upstream = route->model->upstream->host;
    ctx->target = route->send.len ? route->send : ctx->model;

    if (ngx_array_init(&edits, r->pool, 4, sizeof(ngx_http_llm_edit_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_llm_plan_edits(r, ctx, &doc, model, &edits);
    if (rc != NGX_OK) {
        return rc;
    }

    if (edits.nelts && ngx_http_llm_apply_edits(r, &body, &edits) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->routed = 1;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm router: model \"%V\" -> \"%V\" upstream \"%V\", "
                   "%ui edits", &ctx->model, &ctx->target, &ctx->upstream,
                   edits.nelts);

    return NGX_OK;
}


/* the body as one contiguous piece of memory */

static ngx_int_t
ngx_http_llm_flatten_body(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char       *p;
    off_t         len, size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    body->len = 0;
    body->data = (u_char *) "";

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    cl = r->request_body->bufs;

    if (cl->next == NULL && !cl->buf->in_file) {
        body->data = cl->buf->pos;
        body->len = cl->buf->last - cl->buf->pos;
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? b->file_last - b->file_pos : b->last - b->pos;
    }

    if (len == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, (size_t) len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;
    body->len = (size_t) len;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (!b->in_file) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
            continue;
        }

        size = b->file_last - b->file_pos;

        n = ngx_read_file(b->file, p, (size_t) size, b->file_pos);

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (n != size) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          ngx_read_file_n " \"%V\" returned only %z bytes "
                          "instead of %O", &b->file->name, n, size);
            return NGX_ERROR;
        }

        p += n;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_read_fields(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_json_doc_t *doc, ngx_http_llm_json_member_t **model)
{
    ngx_int_t                    rc;
    ngx_uint_t                   count;
    ngx_http_llm_json_member_t  *m;

    m = ngx_http_llm_json_find(doc, &ngx_http_llm_key_stream, &count);

    if (count > 1) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request", "stream",
                                   "the field \"stream\" appears %ui times",
                                   count);
    }

    if (m == NULL || m->type == NGX_HTTP_LLM_JSON_NULL) {
        ctx->stream = 0;

    } else if (m->type == NGX_HTTP_LLM_JSON_TRUE
               || m->type == NGX_HTTP_LLM_JSON_FALSE)
    {
        ctx->stream = (m->type == NGX_HTTP_LLM_JSON_TRUE);

    } else {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request", "stream",
                                   "the field \"stream\" must be a boolean");
    }

    m = ngx_http_llm_json_find(doc, &ngx_http_llm_key_model, &count);

    if (count > 1) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request", "model",
                                   "the field \"model\" appears %ui times",
                                   count);
    }

    if (m == NULL) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "model_required", "model",
                                   "you must provide a model parameter");
    }

    if (m->type != NGX_HTTP_LLM_JSON_STRING) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request", "model",
                                   "the field \"model\" must be a string");
    }

    rc = ngx_http_llm_json_string_value(r->pool, m, &ctx->model);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_json", "model",
                                   "the field \"model\" is not a valid "
                                   "JSON string");
    }

    if (ctx->model.len == 0) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "model_required", "model",
                                   "you must provide a model parameter");
    }

    *model = m;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_plan_edits(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_json_doc_t *doc, ngx_http_llm_json_member_t *model,
    ngx_array_t *edits)
{
    u_char                      *p, *dropped;
    double                       number;
    size_t                       len;
    ngx_str_t                    insert;
    ngx_uint_t                   i, count, kept, ninserts;
    ngx_http_llm_rule_t         *rule;
    ngx_http_llm_route_t        *route;
    ngx_http_llm_json_member_t  *m, *members;

    route = ctx->route;
    members = doc->members.elts;

    if (route->send_json.len
        && (ctx->model.len != route->send.len
            || ngx_strncmp(ctx->model.data, route->send.data,
                           route->send.len) != 0))
    {
        if (ngx_http_llm_add_edit(edits, model->value, model->value_end,
                                  &route->send_json)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    rule = route->model->rules.elts;

    if (route->model->rules.nelts == 0) {
        return NGX_OK;
    }

    dropped = ngx_pcalloc(r->pool, doc->members.nelts + 1);
    if (dropped == NULL) {
        return NGX_ERROR;
    }

    len = 0;
    ninserts = 0;

    for (i = 0; i < route->model->rules.nelts; i++) {

        m = ngx_http_llm_json_find(doc, &rule[i].field, &count);

        if (count > 1) {
            return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                       "invalid_request", NULL,
                                       "the field \"%V\" appears %ui times",
                                       &rule[i].field, count);
        }

        switch (rule[i].op) {

        case NGX_HTTP_LLM_RULE_SET:
            if (m == NULL) {
                len += rule[i].field.len + rule[i].value.len + 8;
                ninserts++;
                break;
            }

            if (m->type == NGX_HTTP_LLM_JSON_NULL
                && ngx_http_llm_add_edit(edits, m->value, m->value_end,
                                         &rule[i].value)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            break;

        case NGX_HTTP_LLM_RULE_CLAMP:
            if (m == NULL || m->type == NGX_HTTP_LLM_JSON_NULL) {
                break;
            }

            if (m->type != NGX_HTTP_LLM_JSON_NUMBER
                || ngx_http_llm_json_number(m->value, m->value_end, &number)
                   != NGX_OK)
            {
                return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                           "invalid_request", NULL,
                                           "the field \"%V\" must be "
                                           "a number", &rule[i].field);
            }

            if (number > rule[i].limit
                && ngx_http_llm_add_edit(edits, m->value, m->value_end,
                                         &rule[i].value)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            break;

        default: /* NGX_HTTP_LLM_RULE_DROP */
            if (m) {
                dropped[m - members] = 1;
            }

            break;
        }
    }

    if (ngx_http_llm_plan_drops(doc, dropped, edits, &kept) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ninserts == 0) {
        return NGX_OK;
    }

    /* defaults go before the closing brace: ,"field":value ... */

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    insert.data = p;

    for (i = 0; i < route->model->rules.nelts; i++) {
        if (rule[i].op != NGX_HTTP_LLM_RULE_SET
            || ngx_http_llm_json_find(doc, &rule[i].field, &count) != NULL)
        {
            continue;
        }

        if (kept || p != insert.data) {
            *p++ = ',';
        }

        p = ngx_sprintf(p, "\"%V\":%V", &rule[i].field, &rule[i].value);
    }

    insert.len = p - insert.data;

    return ngx_http_llm_add_edit(edits, doc->end - 1, doc->end - 1, &insert);
}


/*
 * Removes dropped members with their commas.  Before the first kept member
 * a member goes with the comma after it, after it with the comma before.
 */

static ngx_int_t
ngx_http_llm_plan_drops(ngx_http_llm_json_doc_t *doc, u_char *dropped,
    ngx_array_t *edits, ngx_uint_t *kept)
{
    ngx_uint_t                   i, first, n;
    ngx_http_llm_json_member_t  *m;

    m = doc->members.elts;
    n = doc->members.nelts;

    for (first = 0; first < n && dropped[first]; first++) { /* void */ }

    *kept = 0;

    for (i = 0; i < n; i++) {
        *kept += !dropped[i];
    }

    if (first == n) {
        return n ? ngx_http_llm_add_edit(edits, m[0].start,
                                         m[n - 1].value_end, NULL)
                 : NGX_OK;
    }

    for (i = 0; i < n; i++) {
        if (!dropped[i]) {
            continue;
        }

        if (i < first) {
            if (ngx_http_llm_add_edit(edits, m[i].start, m[i + 1].start, NULL)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_http_llm_add_edit(edits, m[i - 1].value_end,
                                         m[i].value_end, NULL)
                   != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_add_edit(ngx_array_t *edits, u_char *start, u_char *end,
    ngx_str_t *data)
{
    ngx_uint_t            i;
    ngx_http_llm_edit_t  *e, *elts;

    e = ngx_array_push(edits);
    if (e == NULL) {
        return NGX_ERROR;
    }

    /* keep the list ordered by position */

    elts = edits->elts;

    for (i = edits->nelts - 1; i > 0 && elts[i - 1].start > start; i--) {
        elts[i] = elts[i - 1];
    }

    e = &elts[i];
    e->start = start;
    e->end = end;

    if (data) {
        e->data = *data;

    } else {
        ngx_str_null(&e->data);
    }

    return NGX_OK;
}


/* replaces the request body with a chain of original spans and edits */

static ngx_int_t
ngx_http_llm_apply_edits(ngx_http_request_t *r, ngx_str_t *body,
    ngx_array_t *edits)
{
    u_char               *pos, *end;
    off_t                 len;
    ngx_uint_t            i;
    ngx_chain_t          *out, **ll;
    ngx_table_elt_t      *h;
    ngx_http_llm_edit_t  *e;

    e = edits->elts;
    pos = body->data;
    end = body->data + body->len;
    out = NULL;
    ll = &out;

    for (i = 0; i < edits->nelts; i++) {

        if (pos < e[i].start) {
            *ll = ngx_http_llm_body_link(r->pool, pos, e[i].start);
            if (*ll == NULL) {
                return NGX_ERROR;
            }

            ll = &(*ll)->next;
        }

        if (e[i].data.len) {
            *ll = ngx_http_llm_body_link(r->pool, e[i].data.data,
                                         e[i].data.data + e[i].data.len);
            if (*ll == NULL) {
                return NGX_ERROR;
            }

            ll = &(*ll)->next;
        }

        pos = e[i].end;
    }

    if (pos < end) {
        *ll = ngx_http_llm_body_link(r->pool, pos, end);
        if (*ll == NULL) {
            return NGX_ERROR;
        }
    }

    len = 0;

    for (ll = &out; (*ll)->next; ll = &(*ll)->next) {
        len += (*ll)->buf->last - (*ll)->buf->pos;
    }

    len += (*ll)->buf->last - (*ll)->buf->pos;
    (*ll)->buf->last_buf = 1;
    (*ll)->buf->last_in_chain = 1;

    r->request_body->bufs = out;
    r->headers_in.content_length_n = len;

    /* $content_length and anything else reading the header stay right */

    h = r->headers_in.content_length;

    if (h) {
        h->value.data = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
        if (h->value.data == NULL) {
            return NGX_ERROR;
        }

        h->value.len = ngx_sprintf(h->value.data, "%O", len)
                       - h->value.data;
    }

    return NGX_OK;
}


/* upstream retries reset pos to start, so both mark the span */

static ngx_chain_t *
ngx_http_llm_body_link(ngx_pool_t *pool, u_char *start, u_char *end)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = ngx_calloc_buf(pool);
    if (b == NULL) {
        return NULL;
    }

    b->memory = 1;
    b->start = start;
    b->pos = start;
    b->end = end;
    b->last = end;

    cl = ngx_alloc_chain_link(pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;

    return cl;
}


/* records the error for $llm_error, returns the status to answer with */

static ngx_int_t
ngx_http_llm_reject(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_uint_t status, const char *code, const char *param,
    const char *fmt, ...)
{
    u_char     *p, buf[NGX_MAX_ERROR_STR];
    va_list     args;
    ngx_str_t   message;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    message.len = p - buf;
    message.data = ngx_pnalloc(r->pool, message.len);

    if (message.data == NULL) {
        ngx_str_set(&message, "out of memory");
    } else {
        ngx_memcpy(message.data, buf, message.len);
    }

    ngx_http_llm_set_error(ctx, code, NULL, param, &message);

    return status;
}
