
/*
 * ngx_llm_router: an engine's error answer, normalised into OpenAI's shape.
 * Not here: the error bodies (error.c); anything known of one engine.
 */

/*
 * The error is recognised by its shape, not by the engine configured for
 * the upstream: vLLM's {"object":"error","message":...}, TGI's and
 * Ollama's {"error":"..."}, FastAPI's {"detail":...}, "type" or
 * "error_type" beside them, a text or HTML page.  An upstream without
 * llm_engine gets the same, as does an engine behind another proxy.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <cjson/cJSON.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_response_common.h"
#include "ngx_http_llm_response_error.h"
#include "ngx_http_llm_error.h"
#include "ngx_http_llm_json.h"


/* what an error not in OpenAI's shape says, pointing into its JSON */

typedef struct {
    const char                     *text;
    const char                     *type;
    const char                     *code;
} ngx_http_llm_said_t;


static ngx_int_t ngx_http_llm_error_keep_code(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, cJSON *error);
static void ngx_http_llm_error_said(cJSON *json, cJSON *error,
    ngx_http_llm_said_t *said);
static ngx_int_t ngx_http_llm_error_copy(ngx_http_request_t *r,
    ngx_http_llm_said_t *said, ngx_str_t *message);
static ngx_buf_t *ngx_http_llm_error_rewrite(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_said_t *said,
    ngx_str_t *message);
static char *ngx_http_llm_cstrdup(ngx_pool_t *pool, const char *s);


/*
 * An engine's error (body: what was kept of it, or NULL): body itself when
 * it is in OpenAI's shape already, else an error body in that shape made
 * from what the engine said; NULL: no memory.
 */

ngx_buf_t *
ngx_http_llm_engine_error(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_buf_t *body)
{
    cJSON                *json, *error, *item;
    ngx_int_t             rc;
    ngx_str_t             message;
    ngx_http_llm_said_t   said;

    json = NULL;

    said.text = NULL;
    said.type = NULL;
    said.code = "upstream_error";

    if (body && body->last > body->pos) {
        json = cJSON_ParseWithLength((char *) body->pos,
                                     body->last - body->pos);
    }

    if (cJSON_IsObject(json)) {
        error = cJSON_GetObjectItemCaseSensitive(json, "error");
        item = cJSON_GetObjectItemCaseSensitive(error, "message");

        if (cJSON_IsObject(error) && cJSON_IsString(item)) {

            /* OpenAI's shape: passed on as it is */

            rc = ngx_http_llm_error_keep_code(r, ctx, error);
            cJSON_Delete(json);

            return (rc == NGX_OK) ? body : NULL;
        }

        ngx_http_llm_error_said(json, error, &said);
    }

    /* the error keeps pointers: copies in the pool outlive the JSON */

    rc = ngx_http_llm_error_copy(r, &said, &message);

    cJSON_Delete(json);

    if (rc != NGX_OK) {
        return NULL;
    }

    return ngx_http_llm_error_rewrite(r, ctx, &said, &message);
}


/* OpenAI's shape: $llm_error is its "code", when it is a token */

static ngx_int_t
ngx_http_llm_error_keep_code(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    cJSON *error)
{
    cJSON       *item;
    size_t       len;
    const char  *code;

    code = "upstream_error";

    item = cJSON_GetObjectItemCaseSensitive(error, "code");

    if (cJSON_IsString(item) && ngx_http_llm_error_token(item->valuestring)) {
        code = item->valuestring;
    }

    len = ngx_strlen(code);
    ctx->error.code.data = ngx_pnalloc(r->pool, len);

    if (ctx->error.code.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->error.code.data, code, len);
    ctx->error.code.len = len;

    return NGX_OK;
}


/*
 * The message: "message", else "error" as a string, else "detail"; the
 * type: "type", else "error_type"; the code: "code"; a type or code only
 * when it is a token.
 */

static void
ngx_http_llm_error_said(cJSON *json, cJSON *error, ngx_http_llm_said_t *said)
{
    cJSON  *item;

    item = cJSON_GetObjectItemCaseSensitive(json, "message");

    if (!cJSON_IsString(item)) {
        item = cJSON_IsString(error)
               ? error : cJSON_GetObjectItemCaseSensitive(json, "detail");
    }

    if (cJSON_IsString(item)) {
        said->text = item->valuestring;
    }

    item = cJSON_GetObjectItemCaseSensitive(json, "type");

    if (!cJSON_IsString(item)) {
        item = cJSON_GetObjectItemCaseSensitive(json, "error_type");
    }

    if (cJSON_IsString(item) && ngx_http_llm_error_token(item->valuestring)) {
        said->type = item->valuestring;
    }

    item = cJSON_GetObjectItemCaseSensitive(json, "code");

    if (cJSON_IsString(item) && ngx_http_llm_error_token(item->valuestring)) {
        said->code = item->valuestring;
    }
}


/* the message (the engine's, else its status), code and type, in the pool */

static ngx_int_t
ngx_http_llm_error_copy(ngx_http_request_t *r, ngx_http_llm_said_t *said,
    ngx_str_t *message)
{
    u_char  *copy;

    if (said->text) {
        message->len = ngx_strlen(said->text);
        message->data = (u_char *) said->text;

    } else {
        message->data = ngx_pnalloc(r->pool, 80);
        if (message->data == NULL) {
            return NGX_ERROR;
        }

        message->len = ngx_sprintf(message->data,
                                   "the engine answered with status %ui",
                                   r->headers_out.status)
                       - message->data;
    }

    copy = ngx_pstrdup(r->pool, message);
    if (copy == NULL) {
        return NGX_ERROR;
    }

    message->data = copy;

    said->code = ngx_http_llm_cstrdup(r->pool, said->code);
    said->type = said->type ? ngx_http_llm_cstrdup(r->pool, said->type)
                            : NULL;

    return (said->code == NULL) ? NGX_ERROR : NGX_OK;
}


/* the error in OpenAI's shape, logged on one line, its type JSON's */

static ngx_buf_t *
ngx_http_llm_error_rewrite(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_said_t *said, ngx_str_t *message)
{
    ngx_buf_t  *b;
    ngx_str_t   quoted;

    ngx_http_llm_set_error(ctx, said->code, said->type, NULL, message);

    /* the engine's text on one line: a newline cannot forge another */

    if (ngx_http_llm_log_text(r->pool, message, &quoted) != NGX_OK) {
        return NULL;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "llm router: engine error %ui rewritten as %s: %V",
                  r->headers_out.status, said->code, &quoted);

    b = ngx_http_llm_error_body(r, r->headers_out.status, ctx);
    if (b == NULL) {
        return NULL;
    }

    ngx_http_llm_set_json_type(r);
    r->headers_out.charset.len = 0;

    return b;
}


static char *
ngx_http_llm_cstrdup(ngx_pool_t *pool, const char *s)
{
    char    *d;
    size_t   len;

    len = ngx_strlen(s) + 1;

    d = ngx_pnalloc(pool, len);
    if (d == NULL) {
        return NULL;
    }

    ngx_memcpy(d, s, len);

    return d;
}
