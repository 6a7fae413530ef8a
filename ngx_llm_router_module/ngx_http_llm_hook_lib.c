
/*
 * ngx_llm_router: what a hook reaches of the router: the llm library
 * (reject, route, set_header, log, json_encode/json_decode, array) and ctx.
 * Not here: running the hook (hook.c), the sandbox and budget (lua.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_lua.h"
#include "ngx_http_llm_hook_lib.h"
#include "ngx_http_llm_variables.h"
#include "ngx_http_llm_text.h"
#include "ngx_http_llm_json.h"
#include "ngx_http_llm_lua_json.h"


#define NGX_HTTP_LLM_REJECT_CODE_MAX    64     /* llm.reject() code */
#define NGX_HTTP_LLM_REJECT_TEXT_MAX    1024   /* llm.reject() message */
#define NGX_HTTP_LLM_HEADER_NAME_MAX    256    /* llm.set_header() name */


static int ngx_http_llm_lib_reject(lua_State *L);
static size_t ngx_http_llm_reject_text(u_char *dst, const u_char *src,
    size_t len);
static int ngx_http_llm_lib_route(lua_State *L);
static int ngx_http_llm_lib_set_header(lua_State *L);
static int ngx_http_llm_lib_log(lua_State *L);
static int ngx_http_llm_lib_json_encode(lua_State *L);
static int ngx_http_llm_lib_json_decode(lua_State *L);
static int ngx_http_llm_lib_array(lua_State *L);
static int ngx_http_llm_ctx_var(lua_State *L);
static int ngx_http_llm_ctx_index(lua_State *L);
static int ngx_http_llm_ctx_state(lua_State *L, ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static int ngx_http_llm_ctx_headers(lua_State *L, ngx_http_request_t *r);
static void ngx_http_llm_state_cleanup(void *data);


static int  ngx_http_llm_ctx_mt_ref;    /* a registry slot: ctx's metatable */


const luaL_Reg  ngx_http_llm_hook_lib[] = {
    { "reject", ngx_http_llm_lib_reject },
    { "route", ngx_http_llm_lib_route },
    { "set_header", ngx_http_llm_lib_set_header },
    { "log", ngx_http_llm_lib_log },
    { "json_encode", ngx_http_llm_lib_json_encode },
    { "json_decode", ngx_http_llm_lib_json_decode },
    { "array", ngx_http_llm_lib_array },
    { NULL, NULL }
};


/* the registry slot of ctx's metatable, in a new state */

void
ngx_http_llm_hook_lib_init(lua_State *L)
{
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, ngx_http_llm_ctx_index);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");     /* shared: not the hooks' */
    ngx_http_llm_ctx_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}


/*
 * llm.reject(status, message, code).  The code goes into the error body,
 * $llm_error and the log as it is, so it must be a token; the message is
 * made valid UTF-8 (U+FFFD for a bad byte), one line (a control byte
 * becomes a space) and at most NGX_HTTP_LLM_REJECT_TEXT_MAX bytes.  A bad
 * code stops the hook: it failed, and a pcall cannot make it go on.
 */

static int
ngx_http_llm_lib_reject(lua_State *L)
{
    size_t                len, i;
    lua_Integer           status;
    const char           *s, *code;
    ngx_http_llm_call_t  *call;

    call = ngx_http_llm_call;

    if (call == NULL || call->request == NULL) {
        return luaL_error(L, "llm.reject outside a request");
    }

    status = luaL_checkinteger(L, 1);

    if (status < 400 || status > 599) {
        return luaL_error(L, "llm.reject: status %d is not 400 to 599",
                          (int) status);
    }

    s = luaL_optlstring(L, 2, "rejected by a hook", &len);
    code = luaL_optlstring(L, 3, "rejected", &i);

    if (i == 0 || i > NGX_HTTP_LLM_REJECT_CODE_MAX) {
        return ngx_http_llm_lua_abort(L, NGX_HTTP_LLM_ABORT_BAD_REJECT);
    }

    call->reject_code.len = i;

    while (i--) {
        if (!((code[i] >= 'a' && code[i] <= 'z')
              || (code[i] >= 'A' && code[i] <= 'Z')
              || (code[i] >= '0' && code[i] <= '9')
              || code[i] == '_' || code[i] == '.' || code[i] == '-'))
        {
            return ngx_http_llm_lua_abort(L, NGX_HTTP_LLM_ABORT_BAD_REJECT);
        }
    }

    call->reject_code.data = ngx_pnalloc(call->request->pool,
                                         call->reject_code.len + 1);

    /* the cut text, each byte a replacement character at most */

    len = ngx_min(len, NGX_HTTP_LLM_REJECT_TEXT_MAX);
    call->reject_message.data = ngx_pnalloc(call->request->pool, len * 3);

    if (call->reject_code.data == NULL || call->reject_message.data == NULL) {
        return luaL_error(L, "no memory");
    }

    ngx_memcpy(call->reject_code.data, code, call->reject_code.len);
    call->reject_code.data[call->reject_code.len] = '\0';

    call->reject_message.len = ngx_http_llm_reject_text(
                                        call->reject_message.data,
                                        (const u_char *) s, len);

    call->reject_status = (ngx_uint_t) status;

    return ngx_http_llm_lua_abort(L, NGX_HTTP_LLM_ABORT_REJECT);
}


/*
 * A hook's message, as valid UTF-8 on one line: a byte that does not begin
 * a valid sequence is U+FFFD, a control byte a space; a sequence cut by the
 * end of len is dropped.  dst holds 3 * len bytes.
 */

static size_t
ngx_http_llm_reject_text(u_char *dst, const u_char *src, size_t len)
{
    u_char        c, *p;
    size_t        i, n, k;
    unsigned int  lo, hi;

    p = dst;

    for (i = 0; i < len; i += n) {
        c = src[i];
        n = 1;

        if (c < 0x80) {
            *p++ = (c < 0x20 || c == 0x7f) ? ' ' : c;
            continue;
        }

        /* the length of the sequence, and the range of its second byte */

        lo = 0x80;
        hi = 0xbf;

        if (c >= 0xc2 && c <= 0xdf) {
            n = 2;

        } else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            lo = (c == 0xe0) ? 0xa0 : 0x80;
            hi = (c == 0xed) ? 0x9f : 0xbf;

        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            lo = (c == 0xf0) ? 0x90 : 0x80;
            hi = (c == 0xf4) ? 0x8f : 0xbf;
        }

        if (n > 1 && i + n > len) {
            break;
        }

        for (k = 1; k < n; k++) {
            if (src[i + k] < (k == 1 ? lo : 0x80)
                || src[i + k] > (k == 1 ? hi : 0xbf))
            {
                break;
            }
        }

        if (n == 1 || k < n) {
            p = ngx_cpymem(p, "\xef\xbf\xbd", 3);
            n = 1;
            continue;
        }

        p = ngx_cpymem(p, src + i, n);
    }

    return p - dst;
}


/* llm.route(model): serve the request with another configured model */

static int
ngx_http_llm_lib_route(lua_State *L)
{
    size_t                len;
    const char           *s;
    ngx_http_llm_call_t  *call;

    call = ngx_http_llm_call;

    if (call == NULL || call->request == NULL) {
        return luaL_error(L, "llm.route outside a request hook");
    }

    s = luaL_checklstring(L, 1, &len);

    /* it becomes $llm_target_model and goes into log lines: a name */

    if (len == 0
        || ngx_http_llm_text_name((u_char *) s, len) != NGX_HTTP_LLM_NAME_OK)
    {
        return luaL_error(L, "llm.route: the model name is not 1 to 256 "
                          "bytes of UTF-8 without control characters");
    }

    call->route.data = ngx_pnalloc(call->request->pool, len);
    if (call->route.data == NULL) {
        return luaL_error(L, "no memory");
    }

    ngx_memcpy(call->route.data, s, len);
    call->route.len = len;

    return 0;
}


/* llm.set_header(name, value): a header of the request to the engine */

static int
ngx_http_llm_lib_set_header(lua_State *L)
{
    u_char                c;
    size_t                nlen, vlen, i;
    const char           *name, *value;
    ngx_table_elt_t      *h;
    ngx_http_request_t   *r;

    if (ngx_http_llm_call == NULL || ngx_http_llm_call->request == NULL) {
        return luaL_error(L, "llm.set_header outside a request hook");
    }

    r = ngx_http_llm_call->request;

    name = luaL_checklstring(L, 1, &nlen);
    value = luaL_checklstring(L, 2, &vlen);

    /* a name is an HTTP token (RFC 9110 tchar) */

    if (nlen == 0 || nlen > NGX_HTTP_LLM_HEADER_NAME_MAX) {
        return luaL_error(L, "llm.set_header: the name is not 1 to %d bytes",
                          NGX_HTTP_LLM_HEADER_NAME_MAX);
    }

    for (i = 0; i < nlen; i++) {
        c = (u_char) name[i];

        if (c <= 0x20 || c >= 0x7f
            || ngx_strchr("\"(),/:;<=>?@[\\]{}", c) != NULL)
        {
            return luaL_error(L, "llm.set_header: the name is not a token");
        }
    }

    /* a value: visible bytes, spaces and tabs (no NUL, CR, LF, DEL) */

    for (i = 0; i < vlen; i++) {
        c = (u_char) value[i];

        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return luaL_error(L, "llm.set_header: the value has a control "
                              "byte");
        }
    }

    h = ngx_list_push(&r->headers_in.headers);
    if (h == NULL) {
        return luaL_error(L, "no memory");
    }

    h->key.data = ngx_pnalloc(r->pool, nlen + vlen + nlen);
    if (h->key.data == NULL) {
        return luaL_error(L, "no memory");
    }

    ngx_memcpy(h->key.data, name, nlen);
    h->key.len = nlen;
    h->value.data = h->key.data + nlen;
    ngx_memcpy(h->value.data, value, vlen);
    h->value.len = vlen;
    h->lowcase_key = h->value.data + vlen;
    ngx_strlow(h->lowcase_key, h->key.data, nlen);
    h->hash = ngx_hash_key(h->lowcase_key, nlen);
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return 0;
}


static int
ngx_http_llm_lib_log(lua_State *L)
{
    size_t               len;
    ngx_str_t            msg;
    ngx_uint_t           level, i;
    const char          *name;
    ngx_log_t           *log;

    static const char   *levels[] = {
        "", "emerg", "alert", "crit", "error", "warn", "notice", "info",
        "debug", NULL
    };

    name = luaL_checklstring(L, 1, NULL);
    msg.data = (u_char *) luaL_checklstring(L, 2, &len);
    msg.len = len;

    level = NGX_LOG_NOTICE;

    for (i = 1; levels[i]; i++) {
        if (ngx_strcmp(name, levels[i]) == 0) {
            level = i;
            break;
        }
    }

    log = (ngx_http_llm_call && ngx_http_llm_call->request)
          ? ngx_http_llm_call->request->connection->log
          : ngx_cycle->log;

    /* one line whatever the text holds: a newline cannot forge another */

    if (ngx_http_llm_log_text(ngx_http_llm_call && ngx_http_llm_call->request
                              ? ngx_http_llm_call->request->pool
                              : ngx_cycle->pool, &msg, &msg)
        != NGX_OK)
    {
        return luaL_error(L, "no memory");
    }

    ngx_log_error(level, log, 0, "llm hook: %V", &msg);

    return 0;
}


static int
ngx_http_llm_lib_json_encode(lua_State *L)
{
    char        *text;
    size_t       len;
    const char  *error;

    luaL_checkany(L, 1);

    if (ngx_http_llm_lua_json_encode(L, &ngx_http_llm_lua_tmp_env, 1, 0,
                                     &text, &len, &error) != 0) {
        return luaL_error(L, "llm.json_encode: %s", error);
    }

    lua_pushlstring(L, text, len);
    ngx_http_llm_lua_tmp_free(NULL, text);

    return 1;
}


static int
ngx_http_llm_lib_json_decode(lua_State *L)
{
    size_t       len;
    const char  *text, *error;

    text = luaL_checklstring(L, 1, &len);

    if (ngx_http_llm_lua_json_decode_strict(L, &ngx_http_llm_lua_tmp_env,
                                            (const unsigned char *) text,
                                            len, &error)
        != 0)
    {
        return luaL_error(L, "llm.json_decode: %s", error);
    }

    return 1;
}


/* llm.array(t): t is written as a JSON array, even when empty */

static int
ngx_http_llm_lib_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_createtable(L, 0, 0);

    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);

        /* an array already, or a table with no metatable: not a document */

        if (lua_getmetatable(L, 1)) {
            if (!ngx_http_llm_lua_json_is_array_mt(L, -1)) {
                return luaL_error(L, "llm.array: the table has a "
                                  "metatable (a document or an object)");
            }

            lua_pop(L, 1);
        }
    }

    ngx_http_llm_lua_json_mark(L, 1, 1);

    return 1;
}


/* ctx.var(name): an nginx variable of the request, or nil */

static int
ngx_http_llm_ctx_var(lua_State *L)
{
    size_t                      len;
    u_char                     *low;
    ngx_str_t                   name;
    ngx_uint_t                  key;
    ngx_http_request_t         *r;
    ngx_http_variable_value_t  *vv;

    if (ngx_http_llm_call == NULL || ngx_http_llm_call->request == NULL) {
        return luaL_error(L, "ctx.var outside a request");
    }

    r = ngx_http_llm_call->request;

    name.data = (u_char *) luaL_checklstring(L, 1, &len);
    name.len = len;

    low = ngx_pnalloc(r->pool, len);
    if (low == NULL) {
        return luaL_error(L, "no memory");
    }

    key = ngx_hash_strlow(low, name.data, len);
    name.data = low;

    vv = ngx_http_get_variable(r, &name, key);

    if (vv == NULL || vv->not_found) {
        lua_pushnil(L);
        return 1;
    }

    lua_pushlstring(L, (const char *) vv->data, vv->len);

    return 1;
}


/* ctx: model, target, upstream, engine, stream, headers, var() */

void
ngx_http_llm_push_ctx(lua_State *L, ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx)
{
    /* every field is made when a hook first reads it */

    lua_createtable(L, 0, 4);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ngx_http_llm_ctx_mt_ref);
    lua_setmetatable(L, -2);
}


/*
 * ctx's __index: model, target, upstream, engine, stream, var, headers
 * (the request's) and state (one table for the request's calls), each
 * made on first use and kept in ctx
 */

static int
ngx_http_llm_ctx_index(lua_State *L)
{
    size_t                       len;
    ngx_str_t                    value;
    const char                  *key;
    ngx_http_llm_ctx_t          *ctx;
    ngx_http_request_t          *r;
    const ngx_http_llm_field_t  *f;

    key = lua_tolstring(L, 2, &len);

    if (key == NULL || ngx_http_llm_call == NULL
        || ngx_http_llm_call->request == NULL)
    {
        return 0;
    }

    r = ngx_http_llm_call->request;
    ctx = ngx_http_llm_call->ctx;

    /* the request's fields, as the $llm_* variables read them */

    f = ngx_http_llm_field(key, len);

    if (f) {
        if (f->get(r, ctx, f, &value) != NGX_OK) {
            ngx_str_null(&value);       /* unknown: "" or false */
        }

        if (f->flag) {
            lua_pushboolean(L, value.len == 1 && value.data[0] == '1');

        } else {
            lua_pushlstring(L, (char *) value.data, value.len);
        }

        goto cache;
    }

    if (len == 3 && ngx_strncmp(key, "var", 3) == 0) {
        lua_pushcfunction(L, ngx_http_llm_ctx_var);
        goto cache;
    }

    /* ctx.state: one table for all the calls of this request */

    if (len == 5 && ngx_strncmp(key, "state", 5) == 0) {
        return ngx_http_llm_ctx_state(L, r, ctx);
    }

    if (len != 7 || ngx_strncmp(key, "headers", 7) != 0) {
        return 0;
    }

    return ngx_http_llm_ctx_headers(L, r);

cache:

    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);

    return 1;
}


/* ctx.state, made and kept in the registry on first use, and in ctx */

static int
ngx_http_llm_ctx_state(lua_State *L, ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx)
{
    ngx_pool_cleanup_t  *cln;

    if (ctx->lua_state_ref == 0) {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return luaL_error(L, "no memory");
        }

        lua_createtable(L, 0, 4);
        ctx->lua_state_ref = luaL_ref(L, LUA_REGISTRYINDEX);

        cln->handler = ngx_http_llm_state_cleanup;
        cln->data = ctx;
    }

    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->lua_state_ref);
    lua_pushvalue(L, -1);
    lua_setfield(L, 1, "state");

    return 1;
}


/* ctx.headers: the request's, by lowercase name, kept in ctx */

static int
ngx_http_llm_ctx_headers(lua_State *L, ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    lua_createtable(L, 0, 16);

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0) {
            continue;
        }

        lua_pushlstring(L, (char *) h[i].lowcase_key, h[i].key.len);
        lua_pushlstring(L, (char *) h[i].value.data, h[i].value.len);
        lua_rawset(L, -3);
    }

    lua_pushvalue(L, -1);
    lua_setfield(L, 1, "headers");

    return 1;
}


static void
ngx_http_llm_state_cleanup(void *data)
{
    ngx_http_llm_ctx_t *ctx = data;

    if (ngx_http_llm_lua && ctx->lua_state_ref > 0) {
        luaL_unref(ngx_http_llm_lua, LUA_REGISTRYINDEX, ctx->lua_state_ref);
        ctx->lua_state_ref = 0;
    }
}
