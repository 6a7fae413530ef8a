
/*
 * ngx_llm_router: OpenAI-shaped errors: set, built, sent, and the filter for
 * nginx's own pages.  Not here: an engine's errors (response_error.c).
 *
 * The router's own rejections are sent by ngx_http_llm_send_error().  The
 * pages nginx itself generates in a routed location (413 from
 * client_max_body_size, 502/504 from the proxy, 400 for a broken chunked
 * body, ...) are replaced by the same JSON shape in a header and body
 * filter, so clients never see an HTML page there.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_error.h"
#include "ngx_http_llm_ctx.h"
#include "ngx_http_llm_json.h"
#include "ngx_http_llm_text.h"


typedef struct {
    ngx_uint_t   status;
    const char  *code;
    const char  *message;
} ngx_http_llm_status_error_t;


static void ngx_http_llm_default_error(ngx_uint_t status,
    ngx_http_llm_ctx_t *ctx);
static ngx_int_t ngx_http_llm_error_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_llm_error_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_http_llm_status_error_t  ngx_http_llm_status_errors[] = {
    { NGX_HTTP_BAD_REQUEST, "invalid_request",
      "the request could not be parsed" },
    { NGX_HTTP_UNAUTHORIZED, "unauthorized", "authentication is required" },
    { NGX_HTTP_FORBIDDEN, "forbidden", "access is denied" },
    { NGX_HTTP_NOT_FOUND, "not_found", "not found" },
    { NGX_HTTP_NOT_ALLOWED, "method_not_allowed",
      "the method is not allowed" },
    { NGX_HTTP_REQUEST_TIME_OUT, "request_timeout",
      "the client did not send the request in time" },
    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "request_too_large",
      "the request body is larger than client_max_body_size" },
    { NGX_HTTP_TOO_MANY_REQUESTS, "rate_limit_exceeded",
      "too many requests" },
    { NGX_HTTP_INTERNAL_SERVER_ERROR, "internal_error",
      "the router failed to process the request" },
    { NGX_HTTP_BAD_GATEWAY, "upstream_unreachable",
      "the engine could not be reached or sent an invalid response" },
    { NGX_HTTP_SERVICE_UNAVAILABLE, "service_unavailable",
      "the service is unavailable" },
    { NGX_HTTP_GATEWAY_TIME_OUT, "upstream_timeout",
      "the engine did not answer in time" },
    { 0, NULL, NULL }
};


/*
 * A code or a type from elsewhere (an engine, a hook) is taken only when it
 * is a token (ngx_http_llm_text_token()): $llm_error can go into a header
 * or a log line, and the error body stays valid JSON.
 */

ngx_uint_t
ngx_http_llm_error_token(const char *s)
{
    return ngx_http_llm_text_token((u_char *) s, ngx_strlen(s));
}


void
ngx_http_llm_set_error(ngx_http_llm_ctx_t *ctx, const char *code,
    const char *type, const char *param, ngx_str_t *message)
{
    if (!ngx_http_llm_error_token(code)) {
        code = "server_error";
    }

    if (type && !ngx_http_llm_error_token(type)) {
        type = NULL;            /* the status says which */
    }

    ctx->error.code.data = (u_char *) code;
    ctx->error.code.len = ngx_strlen(code);

    if (type) {
        ctx->error.type.data = (u_char *) type;
        ctx->error.type.len = ngx_strlen(type);

    } else {
        ngx_str_null(&ctx->error.type);
    }

    if (param) {
        ctx->error.param.data = (u_char *) param;
        ctx->error.param.len = ngx_strlen(param);

    } else {
        ngx_str_null(&ctx->error.param);
    }

    ctx->error.message = *message;
}


static void
ngx_http_llm_default_error(ngx_uint_t status, ngx_http_llm_ctx_t *ctx)
{
    ngx_str_t                     message;
    ngx_http_llm_status_error_t  *e;

    for (e = ngx_http_llm_status_errors; e->status; e++) {
        if (e->status == status) {
            break;
        }
    }

    if (e->status == 0) {
        ngx_str_set(&message, "the request failed");
        ngx_http_llm_set_error(ctx, status >= 500 ? "server_error"
                                                  : "invalid_request",
                               NULL, NULL, &message);
        return;
    }

    message.data = (u_char *) e->message;
    message.len = ngx_strlen(e->message);

    ngx_http_llm_set_error(ctx, e->code, NULL, NULL, &message);
}


/*
 * {"error":{"message":...,"type":...,"param":...,"code":...}}: every part
 * quoted, so the body is valid JSON and valid UTF-8 whatever the message
 * holds (a name, an engine's text, a hook's message).
 */

ngx_buf_t *
ngx_http_llm_error_body(ngx_http_request_t *r, ngx_uint_t status,
    ngx_http_llm_ctx_t *ctx)
{
    size_t                 len;
    ngx_buf_t             *b;
    ngx_str_t              message, param, type, qtype, code;
    ngx_http_llm_error_t  *e;

    e = &ctx->error;

    if (e->code.len == 0) {
        ngx_http_llm_default_error(status, ctx);
    }

    if (e->type.len) {
        type = e->type;

    } else if (status >= 500) {
        ngx_str_set(&type, "server_error");

    } else {
        ngx_str_set(&type, "invalid_request_error");
    }

    if (ngx_http_llm_json_quote(r->pool, &e->message, &message) != NGX_OK
        || ngx_http_llm_json_quote(r->pool, &type, &qtype) != NGX_OK
        || ngx_http_llm_json_quote(r->pool, &e->code, &code) != NGX_OK)
    {
        return NULL;
    }

    if (e->param.len) {
        if (ngx_http_llm_json_quote(r->pool, &e->param, &param) != NGX_OK) {
            return NULL;
        }

    } else {
        ngx_str_set(&param, "null");
    }

    len = sizeof("{\"error\":{\"message\":,\"type\":,\"param\":,"
                 "\"code\":}}\n") - 1
          + message.len + qtype.len + param.len + code.len;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NULL;
    }

    b->last = ngx_sprintf(b->last,
                          "{\"error\":{\"message\":%V,\"type\":%V,"
                          "\"param\":%V,\"code\":%V}}\n",
                          &message, &qtype, &param, &code);

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    return b;
}


ngx_int_t
ngx_http_llm_send_error(ngx_http_request_t *r, ngx_uint_t status,
    ngx_http_llm_ctx_t *ctx)
{
    ngx_buf_t   *b;
    ngx_str_t    message;
    ngx_uint_t   level;

    b = ngx_http_llm_error_body(r, status, ctx);
    if (b == NULL) {
        return NGX_ERROR;
    }

    level = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) ? NGX_LOG_ERR
                                                       : NGX_LOG_INFO;

    /* the message may quote the client: one line whatever it holds */

    if (ngx_http_llm_log_text(r->pool, &ctx->error.message, &message)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_log_error(level, r->connection->log, 0,
                  "llm router: %ui %V: %V", status, &ctx->error.code,
                  &message);

    return ngx_http_llm_send_buffer(r, status, "application/json", b);
}


ngx_int_t
ngx_http_llm_error_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_llm_error_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_llm_error_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_error_header_filter(ngx_http_request_t *r)
{
    ngx_buf_t                *b;
    ngx_http_llm_ctx_t       *ctx;
    ngx_http_llm_loc_conf_t  *llcf;

    /* only pages that nginx itself generates have err_status set */

    if (r->err_status < NGX_HTTP_BAD_REQUEST || r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    if (!llcf->enable) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_llm_get_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    b = ngx_http_llm_error_body(r, r->headers_out.status, ctx);
    if (b == NULL) {
        return NGX_ERROR;
    }

    r->headers_out.content_length_n = b->last - b->pos;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    ctx->error_body = b;

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_llm_error_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_uint_t           last;
    ngx_chain_t         *cl, out;
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_find_ctx(r);

    if (ctx == NULL || ctx->error_body == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    /* swallow nginx's HTML page, send the JSON with its last buffer */

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;

        if (cl->buf->last_buf || cl->buf->last_in_chain) {
            last = 1;
        }
    }

    if (!last) {
        return NGX_OK;
    }

    out.buf = ctx->error_body;
    out.next = NULL;

    ctx->error_body = NULL;

    return ngx_http_next_body_filter(r, &out);
}
