
/*
 * ngx_llm_router: running a Lua hook on a document: the state's thread,
 * the arguments, the run under the call's budget, its result, the text.
 * Not here: loading hooks (hook_conf.c), llm and ctx (hook_lib.c), the VM
 * and its limits (lua.c).
 *
 * A call runs in a coroutine; past a limit the count hook yields it away
 * and it is closed, never resumed, so a pcall in the script cannot catch
 * the abort.  llm.reject() ends a call the same way.  All the Lua work of
 * a call runs in a protected C function on the main thread: a Lua error
 * outside the script (no memory, a member that cannot be decoded) fails
 * the call, and the main thread is never suspended where a hook could
 * resume or close it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <time.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_lua.h"
#include "ngx_http_llm_lua_lazy.h"
#include "ngx_http_llm_hook.h"
#include "ngx_http_llm_hook_lib.h"
#include "ngx_http_llm_error.h"
#include "ngx_http_llm_json.h"
#include "ngx_http_llm_lua_json.h"


/* what ngx_http_llm_hook_call() is given, and gives back */

typedef struct {
    ngx_http_request_t        *request;
    ngx_http_llm_ctx_t        *ctx;
    ngx_http_llm_hook_t       *hook;
    const char                *name;
    ngx_str_t                 *doc;
    ngx_str_t                 *out;
    ngx_uint_t                *drop;
    ngx_http_llm_call_t       *call;
    ngx_http_llm_lazy_t       *lazy;      /* the document, while given */
    ngx_int_t                  rc;
    lua_State                 *co;        /* the thread that runs it */
    int                        status;    /* of lua_resume() */
    int                        nres;      /* results */
    int                        doc_idx;   /* a table returned, on co */
} ngx_http_llm_run_t;


static ngx_int_t ngx_http_llm_hook_run(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_hook_t *h, const char *name,
    ngx_str_t *doc, ngx_str_t *out, ngx_uint_t *drop);
static int ngx_http_llm_hook_call(lua_State *L);
static ngx_int_t ngx_http_llm_hook_acquire(lua_State *L,
    ngx_http_llm_run_t *run);
static ngx_int_t ngx_http_llm_hook_push(ngx_http_llm_run_t *run);
static void ngx_http_llm_hook_resume(lua_State *L, ngx_http_llm_run_t *run);
static ngx_int_t ngx_http_llm_hook_interpret(ngx_http_llm_run_t *run);
static ngx_int_t ngx_http_llm_hook_ended(ngx_http_llm_run_t *run);
static ngx_int_t ngx_http_llm_hook_returned(ngx_http_llm_run_t *run);
static ngx_int_t ngx_http_llm_hook_text(ngx_http_llm_run_t *run);
static void ngx_http_llm_hook_encode(ngx_http_llm_run_t *run);
static void ngx_http_llm_hook_release(lua_State *L,
    ngx_http_llm_run_t *run);
static void ngx_http_llm_hook_forget(lua_State *L);
static ngx_int_t ngx_http_llm_hook_failed(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_hook_t *h, const char *name,
    const char *why);


/*
 * the registry slots of a hook state, made in the same order in every
 * state: an integer key is found faster than a pointer one; an empty slot
 * holds false, as a nil would free it for luaL_ref()
 */
static int  ngx_http_llm_hooks_ref;
static int  ngx_http_llm_thread_ref;
static int  ngx_http_llm_doc_ref;       /* the document of the call */


/* the slots of a new state: the hooks' tables, the thread, the document */

void
ngx_http_llm_hook_state_init(lua_State *L)
{
    lua_createtable(L, 0, 0);
    ngx_http_llm_hooks_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_pushboolean(L, 0);
    ngx_http_llm_thread_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_pushboolean(L, 0);
    ngx_http_llm_doc_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}


/* the table a hook file returned (on the top, popped) as hook index */

void
ngx_http_llm_hook_keep(lua_State *L, ngx_uint_t index)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, ngx_http_llm_hooks_ref);
    lua_rotate(L, -2, 1);
    lua_rawseti(L, -2, index);
    lua_pop(L, 1);
}


/*
 * Runs one function of a hook on a document.  *out is the new document
 * when the hook changed it (else empty); *drop is set when the function
 * returned false (chunk).  NGX_DECLINED: the hook rejected the request (the
 * error is in ctx); NGX_ERROR: the hook failed (logged).
 *
 * Everything the call does in Lua, from making the document to encoding
 * what the hook left, runs in ngx_http_llm_hook_call() under lua_pcall():
 * a Lua error there (out of memory) fails the hook, not the worker.  The
 * main thread is then inside a C function, so a hook that kept it
 * (coroutine.running() in the file's chunk) can neither resume nor close
 * it.
 */

static ngx_int_t
ngx_http_llm_hook_run(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_hook_t *h, const char *name, ngx_str_t *doc,
    ngx_str_t *out, ngx_uint_t *drop)
{
    int                       top, status;
    ngx_int_t                 rc;
    const char               *error;
    lua_State                *L;
    ngx_http_llm_run_t        run;
    ngx_http_llm_call_t       call;
    ngx_http_llm_loc_conf_t  *llcf;

    L = ngx_http_llm_lua;
    ngx_str_null(out);
    *drop = 0;

    if (L == NULL) {
        return ngx_http_llm_hook_failed(r, ctx, h, name, "no Lua state");
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    ngx_memzero(&call, sizeof(ngx_http_llm_call_t));
    call.request = r;
    call.ctx = ctx;

    run.request = r;
    run.ctx = ctx;
    run.hook = h;
    run.name = name;
    run.doc = doc;
    run.out = out;
    run.drop = drop;
    run.call = &call;
    run.lazy = NULL;
    run.rc = NGX_OK;

    top = lua_gettop(L);

    /*
     * what the call may add, and never more than the state may hold: from
     * the document's decoding to the encoding of what the hook left (a Lua
     * error there frees the encoder's buffers all the same); the encoder's
     * text may pass it by twice the document
     */

    ngx_http_llm_lua_call_begin(L, &call, llcf->hook_instructions,
                                llcf->hook_time, llcf->hook_memory,
                                llcf->hook_state, 2 * doc->len + 65536);

    lua_pushcfunction(L, ngx_http_llm_hook_call);
    lua_pushlightuserdata(L, &run);
    status = lua_pcall(L, 1, 0, 0);

    ngx_http_llm_lua_call_end();

    if (status == LUA_OK) {
        ngx_http_llm_hook_forget(L);
        lua_settop(L, top);
        return run.rc;
    }

    /* the document may be kept by the hook: its bytes are gone after this */

    if (run.lazy) {
        ngx_http_llm_lua_json_lazy_spend(run.lazy);
    }

    error = ngx_http_llm_lua_call_error(&call, lua_tostring(L, -1));

    ngx_str_null(out);
    *drop = 0;

    rc = ngx_http_llm_hook_failed(r, ctx, h, name, error ? error : "error");

    /* the coroutine may be anywhere: the next call makes a new one */

    lua_pushboolean(L, 0);
    lua_rawseti(L, LUA_REGISTRYINDEX, ngx_http_llm_thread_ref);
    ngx_http_llm_hook_forget(L);
    lua_settop(L, top);

    return rc;
}


/* the end of a call: its document is no longer held */

static void
ngx_http_llm_hook_forget(lua_State *L)
{
    lua_pushboolean(L, 0);
    lua_rawseti(L, LUA_REGISTRYINDEX, ngx_http_llm_doc_ref);
}


/*
 * ngx_http_llm_hook_run(), protected: the run is the light userdata at 1.
 * The steps: the thread and the function (acquire), the document and ctx
 * (push), the run under the call's budget (resume), what it returned
 * (interpret), the new text (encode), the thread after (release).
 */

static int
ngx_http_llm_hook_call(lua_State *L)
{
    ngx_http_llm_run_t  *run;

    run = lua_touserdata(L, 1);

    if (ngx_http_llm_hook_acquire(L, run) != NGX_OK
        || ngx_http_llm_hook_push(run) != NGX_OK)
    {
        return 0;
    }

    ngx_http_llm_hook_resume(L, run);

    if (ngx_http_llm_hook_interpret(run) == NGX_OK) {
        ngx_http_llm_hook_encode(run);
    }

    ngx_http_llm_hook_release(L, run);

    return 0;
}


/*
 * the coroutine of the last call that ended, or a new one, with the
 * function on it; NGX_DECLINED: the hook failed (run->rc)
 */

static ngx_int_t
ngx_http_llm_hook_acquire(lua_State *L, ngx_http_llm_run_t *run)
{
    lua_State  *co;

    if (lua_rawgeti(L, LUA_REGISTRYINDEX, ngx_http_llm_thread_ref)
        == LUA_TTHREAD)
    {
        co = lua_tothread(L, -1);
        lua_settop(co, 0);

    } else {
        lua_pop(L, 1);
        co = lua_newthread(L);
        lua_pushvalue(L, -1);
        lua_rawseti(L, LUA_REGISTRYINDEX, ngx_http_llm_thread_ref);
    }

    run->co = co;

    ngx_http_llm_lua_hook_reset(co);

    /* the function */

    lua_rawgeti(co, LUA_REGISTRYINDEX, ngx_http_llm_hooks_ref);
    lua_rawgeti(co, -1, run->hook->index);

    lua_pushstring(co, run->name);

    if (lua_rawget(co, -2) != LUA_TFUNCTION) {

        /* the hook's own table lost the function: never skipped silently */

        lua_settop(co, 0);
        run->rc = ngx_http_llm_hook_failed(run->request, run->ctx, run->hook,
                                           run->name,
                                           "the function is gone from the "
                                           "table the file returned");
        return NGX_DECLINED;
    }

    lua_replace(co, 1);
    lua_settop(co, 1);

    return NGX_OK;
}


/*
 * the arguments: the document, member by member when it is an object,
 * and ctx; NGX_DECLINED: the hook failed (run->rc)
 */

static ngx_int_t
ngx_http_llm_hook_push(ngx_http_llm_run_t *run)
{
    int                   doc_idx;
    lua_State            *co;
    ngx_str_t            *doc;
    const char           *error;
    ngx_http_llm_ctx_t   *ctx;
    ngx_http_llm_lazy_t  *lazy;
    u_char                why[128];

    co = run->co;
    ctx = run->ctx;
    doc = run->doc;

    /*
     * an object member by member; anything else whole.  The first request
     * hook gets the members the router found, not a second scan
     */

    if (ctx->body_scan) {
        lazy = ngx_http_llm_lua_json_lazy_scanned(co,
                                                  &ngx_http_llm_lua_tmp_env,
                                                  doc->data, doc->len,
                                                  ctx->body_scan);
        ctx->body_scan = NULL;

    } else {
        lazy = ngx_http_llm_lua_json_lazy(co, &ngx_http_llm_lua_tmp_env,
                                          doc->data, doc->len);
    }

    if (lazy == NULL
        && ngx_http_llm_lua_json_decode(co, &ngx_http_llm_lua_tmp_env,
                                        doc->data, doc->len, &error)
           != 0)
    {
        lua_settop(co, 0);

        /*
         * the memory cap, or a document that is not JSON (an engine's
         * broken answer: what the router let through, the decoder takes):
         * a hook that cannot run fails, or passes by the operator's choice
         */

        if (run->call->abort == NGX_HTTP_LLM_ABORT_NONE) {
            *ngx_snprintf(why, sizeof(why) - 1,
                          "not called, the document is not JSON: %s",
                          error) = '\0';
            error = (const char *) why;
        }

        run->rc = ngx_http_llm_hook_failed(run->request, ctx, run->hook,
                                           run->name,
                                           ngx_http_llm_lua_call_error(
                                               run->call, error));
        return NGX_DECLINED;
    }

    run->lazy = lazy;
    doc_idx = lua_gettop(co);

    /*
     * the coroutine's stack must hold just the function and its arguments
     * (its results are all it holds after); the document is kept in the
     * registry meanwhile, out of the hook's reach, until hook_run() is
     * done with it, even after a Lua error
     */

    lua_pushvalue(co, doc_idx);
    lua_rawseti(co, LUA_REGISTRYINDEX, ngx_http_llm_doc_ref);

    ngx_http_llm_push_ctx(co, run->request, ctx);

    return NGX_OK;
}


/* the run: under the count hook, which stops it past the call's budget */

static void
ngx_http_llm_hook_resume(lua_State *L, ngx_http_llm_run_t *run)
{
    run->nres = 0;
    run->status = lua_resume(run->co, L, 2, &run->nres);

    if (run->status == LUA_YIELD
        && run->call->abort == NGX_HTTP_LLM_ABORT_NONE)
    {
        run->call->abort = NGX_HTTP_LLM_ABORT_YIELD;
    }
}


/*
 * What the run came to: rejected, stopped, failed, or what it returned.
 * NGX_OK: the document (run->doc_idx on the coroutine) is to be encoded;
 * NGX_DONE: the call's result is in run already.
 */

static ngx_int_t
ngx_http_llm_hook_interpret(ngx_http_llm_run_t *run)
{
    if (ngx_http_llm_hook_ended(run) != NGX_OK) {
        return NGX_DONE;
    }

    if (ngx_http_llm_hook_returned(run) != NGX_OK) {
        return NGX_DONE;
    }

    if (run->call->route.len) {
        run->ctx->hook_route = run->call->route;
    }

    /* room, past what the hook returned, for the document and encoding */

    if (!lua_checkstack(run->co, LUA_MINSTACK)) {
        run->rc = ngx_http_llm_hook_failed(run->request, run->ctx, run->hook,
                                           run->name, "no stack left");
        return NGX_DONE;
    }

    return NGX_OK;
}


/*
 * How the call ended: rejected, stopped or failed (NGX_DONE, the result
 * in run), or returned (NGX_OK).
 */

static ngx_int_t
ngx_http_llm_hook_ended(ngx_http_llm_run_t *run)
{
    const char           *error, *name;
    ngx_http_request_t   *r;
    ngx_http_llm_ctx_t   *ctx;
    ngx_http_llm_call_t  *call;
    ngx_http_llm_hook_t  *h;

    r = run->request;
    ctx = run->ctx;
    h = run->hook;
    name = run->name;
    call = run->call;

    if (call->abort == NGX_HTTP_LLM_ABORT_REJECT) {
        ngx_http_llm_set_error(ctx, (char *) call->reject_code.data,
                               NULL, NULL, &call->reject_message);
        ctx->hook_status = call->reject_status;

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "llm hook: %V %s() rejected the request: %ui %V",
                      &h->file, name, call->reject_status,
                      &call->reject_code);
        run->rc = NGX_DECLINED;
        return NGX_DONE;
    }

    if (call->abort != NGX_HTTP_LLM_ABORT_NONE) {
        run->rc = ngx_http_llm_hook_failed(r, ctx, h, name,
                                     ngx_http_llm_lua_call_error(call, NULL));
        return NGX_DONE;
    }

    if (run->status != LUA_OK) {
        error = lua_tostring(run->co, -1);
        run->rc = ngx_http_llm_hook_failed(r, ctx, h, name,
                                           error ? error : "error");
        return NGX_DONE;
    }

    return NGX_OK;
}


/*
 * What the hook returned: a table replaces the document (run->doc_idx),
 * nil keeps it (NGX_OK); false drops it, a text replaces the event (chunk,
 * done), anything else fails the call (NGX_DONE).
 */

static ngx_int_t
ngx_http_llm_hook_returned(ngx_http_llm_run_t *run)
{
    int         nres;
    lua_State  *co;

    co = run->co;
    nres = run->nres;

    run->doc_idx = 0;

    if (nres <= 0) {
        return NGX_OK;
    }

    switch (lua_type(co, -nres)) {

    case LUA_TTABLE:
        run->doc_idx = lua_gettop(co) - nres + 1;
        return NGX_OK;

    case LUA_TBOOLEAN:
        if (!lua_toboolean(co, -nres)) {
            *run->drop = 1;
            return NGX_DONE;
        }

        return NGX_OK;

    case LUA_TNIL:
        return NGX_OK;

    case LUA_TSTRING:
        if (ngx_strcmp(run->name, "chunk") == 0
            || ngx_strcmp(run->name, "done") == 0)
        {
            return ngx_http_llm_hook_text(run);
        }

        /* fall through */

    default:
        run->rc = ngx_http_llm_hook_failed(run->request, run->ctx, run->hook,
                                           run->name, "it returned neither a "
                                           "table, nil nor false");
        return NGX_DONE;
    }
}


/* chunk, done: the text returned replaces the whole event, framing and all */

static ngx_int_t
ngx_http_llm_hook_text(ngx_http_llm_run_t *run)
{
    size_t       len;
    ngx_pool_t  *pool;
    const char  *s;

    pool = run->ctx->event_pool ? run->ctx->event_pool : run->request->pool;

    s = lua_tolstring(run->co, -run->nres, &len);

    run->out->data = ngx_pnalloc(pool, len);
    if (run->out->data == NULL) {
        run->rc = NGX_ERROR;
        return NGX_DONE;
    }

    ngx_memcpy(run->out->data, s, len);
    run->out->len = len;
    *run->drop = 2;

    return NGX_DONE;
}


/*
 * The document after the hook, as text into run->out, which stays empty
 * when it did not change.  A table the hook returned is encoded whole;
 * the document it was given, member by member when it was so given.
 */

static void
ngx_http_llm_hook_encode(ngx_http_llm_run_t *run)
{
    int                   doc_idx, rc;
    char                 *after;
    size_t                after_len;
    lua_State            *co;
    ngx_str_t            *doc;
    const char           *error;
    ngx_http_llm_lazy_t  *lazy;

    co = run->co;
    doc = run->doc;
    doc_idx = run->doc_idx;
    lazy = run->lazy;

    if (doc_idx == 0) {
        lua_rawgeti(co, LUA_REGISTRYINDEX, ngx_http_llm_doc_ref);
        doc_idx = lua_gettop(co);

    } else {
        lazy = NULL;    /* a table the hook returned is encoded whole */
    }

    /* the new text, or NULL when the document did not change */

    if (lazy) {
        rc = ngx_http_llm_lua_json_lazy_encode(co, doc_idx, lazy, &after,
                                               &after_len, &error);

    } else {
        rc = ngx_http_llm_lua_json_encode(co, &ngx_http_llm_lua_tmp_env,
                                          doc_idx, doc->len + 256, &after,
                                          &after_len, &error);

        if (rc == 0
            && ngx_http_llm_lua_json_same(co, &ngx_http_llm_lua_tmp_env,
                                          after, after_len, doc->data,
                                          doc->len))
        {
            ngx_http_llm_lua_tmp_free(NULL, after);
            after = NULL;
        }
    }

    if (rc != 0) {
        run->rc = ngx_http_llm_hook_failed(run->request, run->ctx,
                                           run->hook, run->name,
                                           ngx_http_llm_lua_call_error(
                                               run->call, error));
        return;
    }

    if (after == NULL) {
        return;
    }

    /* an event's text lives until the event is sent: not the request */

    run->out->data = ngx_pnalloc(run->ctx->event_pool
                                 ? run->ctx->event_pool : run->request->pool,
                                 after_len);

    if (run->out->data == NULL) {
        ngx_http_llm_lua_tmp_free(NULL, after);
        run->rc = NGX_ERROR;
        return;
    }

    ngx_memcpy(run->out->data, after, after_len);
    run->out->len = after_len;
    ngx_http_llm_lua_tmp_free(NULL, after);
}


/*
 * The end of a run: the document is spent, and the thread is kept for
 * the next call, reset, or dropped.
 */

static void
ngx_http_llm_hook_release(lua_State *L, ngx_http_llm_run_t *run)
{
    int         status;
    lua_State  *co;

    co = run->co;
    status = run->status;

    /* the document's bytes are the request's or the event's: no later read */

    if (run->lazy) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ngx_http_llm_doc_ref);
        ngx_http_llm_lua_json_lazy_done(L, -1, run->lazy);
        lua_pop(L, 1);
        run->lazy = NULL;
    }

    /*
     * A coroutine that returned is ready again.  One that was stopped (it
     * yielded) is closed, and is dead to a hook that kept it: its pending
     * __close handlers fail at their call, the call being stopped.  One
     * that failed is dropped unclosed: the error may have come from the
     * count hook, which leaves the thread's hooks off (see co_close).
     */

    if (status == LUA_OK) {
        lua_settop(co, 0);
        return;
    }

    if (status == LUA_YIELD) {

        ngx_http_llm_lua_stop(co);
        status = lua_resetthread(co);
    }

    if (status != LUA_OK) {
        lua_pushboolean(L, 0);
        lua_rawseti(L, LUA_REGISTRYINDEX, ngx_http_llm_thread_ref);
    }
}


static ngx_int_t
ngx_http_llm_hook_failed(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_hook_t *h, const char *name, const char *why)
{
    ngx_str_t                 message, text;
    ngx_http_llm_loc_conf_t  *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    /* a Lua error's text may hold what the client sent: one line */

    message.data = (u_char *) why;
    message.len = ngx_strlen(why);

    if (ngx_http_llm_log_text(r->pool, &message, &text) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "llm hook: %V %s() failed: %V%s", &h->file, name, &text,
                  llcf->hook_on_error ? ", passed on unchanged" : "");

    if (llcf->hook_on_error) {
        return NGX_OK;
    }

    ngx_str_set(&message, "a hook failed to process the request");
    ngx_http_llm_set_error(ctx, "hook_error", "server_error", NULL,
                           &message);
    ctx->hook_status = NGX_HTTP_INTERNAL_SERVER_ERROR;

    return NGX_DECLINED;
}


/*
 * Runs the model's hook, then the location's, on doc.  Returns NGX_OK
 * (doc replaced when changed, *drop for a dropped chunk), NGX_DECLINED
 * (rejected or failed: ctx->hook_status and ctx->error say how) or
 * NGX_ERROR.
 */

ngx_int_t
ngx_http_llm_hooks(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_uint_t kind, ngx_str_t *doc, ngx_uint_t *drop)
{
    ngx_int_t                 rc;
    ngx_str_t                 out;
    ngx_uint_t                i, has;
    const char               *name;
    ngx_http_llm_hook_t      *hooks[2];
    ngx_http_llm_loc_conf_t  *llcf;

    static const char  *names[] = { "request", "response", "chunk", "done" };

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    hooks[0] = ctx->route ? ctx->route->model->hook : NULL;
    hooks[1] = llcf->hook;
    name = names[kind];
    *drop = 0;

    for (i = 0; i < 2; i++) {
        if (hooks[i] == NULL) {
            continue;
        }

        has = (kind == NGX_HTTP_LLM_HOOK_REQUEST) ? hooks[i]->has_request
              : (kind == NGX_HTTP_LLM_HOOK_RESPONSE) ? hooks[i]->has_response
              : (kind == NGX_HTTP_LLM_HOOK_CHUNK) ? hooks[i]->has_chunk
              : hooks[i]->has_done;

        if (!has) {
            continue;
        }

        rc = ngx_http_llm_hook_run(r, ctx, hooks[i], name, doc, &out, drop);

        if (rc != NGX_OK) {
            return rc;
        }

        if (*drop == 2) {
            *doc = out;           /* a raw event from a chunk hook */
            return NGX_OK;
        }

        if (*drop) {
            return NGX_OK;
        }

        if (out.len) {
            *doc = out;
            ctx->hook_changed = 1;
        }
    }

    return NGX_OK;
}


/* which hook functions a request meets: NGX_HTTP_LLM_HOOK_* bits */

ngx_uint_t
ngx_http_llm_hook_kinds(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_uint_t                i, kinds;
    ngx_http_llm_hook_t      *hooks[2];
    ngx_http_llm_loc_conf_t  *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    hooks[0] = ctx->route ? ctx->route->model->hook : NULL;
    hooks[1] = llcf->hook;
    kinds = 0;

    for (i = 0; i < 2; i++) {
        if (hooks[i]) {
            kinds |= (hooks[i]->has_request ? 1 << NGX_HTTP_LLM_HOOK_REQUEST
                                            : 0)
                     | (hooks[i]->has_response
                        ? 1 << NGX_HTTP_LLM_HOOK_RESPONSE : 0)
                     | (hooks[i]->has_chunk ? 1 << NGX_HTTP_LLM_HOOK_CHUNK
                                            : 0)
                     | (hooks[i]->has_done ? 1 << NGX_HTTP_LLM_HOOK_DONE
                                           : 0);
        }
    }

    return kinds;
}

