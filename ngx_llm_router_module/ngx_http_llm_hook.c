
/*
 * ngx_llm_router: Lua 5.4 hooks.
 *
 * A hook file returns a table with optional request(req, ctx),
 * response(resp, ctx) and chunk(ev, ctx).  Files are read and compiled
 * when the configuration loads (a syntax error fails nginx -t with the
 * file and line); each worker runs them in its own lua_State, every file in
 * an environment of its own with a reduced standard library.
 *
 * A call runs in a coroutine, and every thread of the state has a count
 * hook: past the instruction budget or the deadline, or when an allocation
 * would pass the memory cap, the hook yields the coroutine away and it is
 * closed, never resumed, so a pcall in the script cannot catch the abort.
 * llm.reject() ends a call the same way.  All the Lua work of a call runs
 * in a protected C function on the main thread: a Lua error outside the
 * script (no memory, a member that cannot be decoded) fails the call, and
 * the main thread is never suspended where a hook could resume or close
 * it.  Finalizers (__gc) are refused: they run with hooks off.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <time.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_lua.h"
#include "ngx_http_llm_lua_lazy.h"
#include "ngx_http_llm_text.h"


#define NGX_HTTP_LLM_REJECT_CODE_MAX    64     /* llm.reject() code */
#define NGX_HTTP_LLM_REJECT_TEXT_MAX    1024   /* llm.reject() message */
#define NGX_HTTP_LLM_HEADER_NAME_MAX    256    /* llm.set_header() name */


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
} ngx_http_llm_run_t;


static ssize_t ngx_http_llm_hook_limit_size(ngx_str_t *value, size_t skip,
    size_t min);
static char *ngx_http_llm_hook_read(ngx_conf_t *cf, ngx_str_t *name,
    ngx_http_llm_hook_t **hookp);
static ngx_int_t ngx_http_llm_lua_load(lua_State *L, ngx_http_llm_hook_t *h,
    ngx_log_t *log, ngx_uint_t run);
static lua_State *ngx_http_llm_hook_state(void);
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
static void ngx_http_llm_push_ctx(lua_State *L, ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static void ngx_http_llm_state_cleanup(void *data);
static int ngx_http_llm_ctx_index(lua_State *L);
static ngx_int_t ngx_http_llm_hook_run(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_hook_t *h, const char *name,
    ngx_str_t *doc, ngx_str_t *out, ngx_uint_t *drop);
static int ngx_http_llm_hook_call(lua_State *L);
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
static int  ngx_http_llm_ctx_mt_ref;
static int  ngx_http_llm_thread_ref;
static int  ngx_http_llm_doc_ref;       /* the document of the call */



/* a state for hooks: the VM's, with the llm library, ctx and the slots */

static lua_State *
ngx_http_llm_hook_state(void)
{
    lua_State  *L;

    static const luaL_Reg  lib[] = {
        { "reject", ngx_http_llm_lib_reject },
        { "route", ngx_http_llm_lib_route },
        { "set_header", ngx_http_llm_lib_set_header },
        { "log", ngx_http_llm_lib_log },
        { "json_encode", ngx_http_llm_lib_json_encode },
        { "json_decode", ngx_http_llm_lib_json_decode },
        { "array", ngx_http_llm_lib_array },
        { NULL, NULL }
    };

    L = ngx_http_llm_lua_new(lib);
    if (L == NULL) {
        return NULL;
    }

    lua_createtable(L, 0, 0);
    ngx_http_llm_hooks_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, ngx_http_llm_ctx_index);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");     /* shared: not the hooks' */
    ngx_http_llm_ctx_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_pushboolean(L, 0);
    ngx_http_llm_thread_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_pushboolean(L, 0);
    ngx_http_llm_doc_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    return L;
}


/* the size after "name=" (skip bytes), at least min; NGX_ERROR if not */

static ssize_t
ngx_http_llm_hook_limit_size(ngx_str_t *value, size_t skip, size_t min)
{
    ssize_t    size;
    ngx_str_t  v;

    v.data = value->data + skip;
    v.len = value->len - skip;
    size = ngx_parse_size(&v);

    if (size == NGX_ERROR || (size_t) size < min) {
        return NGX_ERROR;
    }

    return size;
}


/* llm_hook_limits instructions=N time=T memory=SIZE state=SIZE */

char *
ngx_http_llm_hook_limits(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_loc_conf_t *llcf = conf;

    ngx_str_t   *value, v;
    ngx_int_t    n;
    ngx_uint_t   i;
    ngx_msec_t   ms;
    ssize_t      size;

    if (llcf->hook_instructions != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    llcf->hook_instructions = 1000000;
    llcf->hook_time = 50;
    llcf->hook_memory = 32 * 1024 * 1024;
    llcf->hook_state = 256 * 1024 * 1024;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "instructions=", 13) == 0) {
            n = ngx_atoi(value[i].data + 13, value[i].len - 13);
            if (n <= 0) {
                goto invalid;
            }

            llcf->hook_instructions = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "time=", 5) == 0) {
            v.data = value[i].data + 5;
            v.len = value[i].len - 5;
            ms = ngx_parse_time(&v, 0);
            if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
                goto invalid;
            }

            llcf->hook_time = ms;
            continue;
        }

        if (ngx_strncmp(value[i].data, "memory=", 7) == 0) {
            size = ngx_http_llm_hook_limit_size(&value[i], 7, 64 * 1024);
            if (size == NGX_ERROR) {
                goto invalid;
            }

            llcf->hook_memory = size;
            continue;
        }

        if (ngx_strncmp(value[i].data, "state=", 6) == 0) {
            size = ngx_http_llm_hook_limit_size(&value[i], 6, 1024 * 1024);
            if (size == NGX_ERROR) {
                goto invalid;
            }

            llcf->hook_state = size;
            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" (instructions=N, time=T "
                       "over 0, memory=SIZE of 64k or more, state=SIZE of "
                       "1m or more)", &value[i]);
    return NGX_CONF_ERROR;
}


/* llm_hook FILE (http, server, location) */

char *
ngx_http_llm_hook_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_loc_conf_t *llcf = conf;

    ngx_str_t  *value;

    if (llcf->hook != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    return ngx_http_llm_hook_read(cf, &value[1], &llcf->hook);
}


/* "hook FILE" inside llm_model */

char *
ngx_http_llm_model_hook(ngx_conf_t *cf, ngx_http_llm_model_t *model)
{
    ngx_str_t  *value;

    if (model->hook) {
        return "\"hook\" directive is duplicate";
    }

    value = cf->args->elts;

    return ngx_http_llm_hook_read(cf, &value[1], &model->hook);
}


/*
 * Reads and compiles a hook file, runs it once in a scratch state to see
 * which functions it has; the same file named twice is one hook.
 */

static char *
ngx_http_llm_hook_read(ngx_conf_t *cf, ngx_str_t *name,
    ngx_http_llm_hook_t **hookp)
{
    u_char                    *text;
    ssize_t                    n;
    ngx_uint_t                 i;
    ngx_file_t                 file;
    lua_State                 *L;
    ngx_file_info_t            fi;
    ngx_http_llm_hook_t       *h, **hooks;
    ngx_http_llm_main_conf_t  *lmcf;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_llm_router_module);

    /* the runtime is opened once per process, here at the latest */

    if (ngx_http_llm_lua_check_runtime(cf->log) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = *name;
    file.log = cf->log;

    if (ngx_conf_full_name(cf->cycle, &file.name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    hooks = lmcf->hooks.elts;

    for (i = 0; i < lmcf->hooks.nelts; i++) {
        if (hooks[i]->file.len == file.name.len
            && ngx_strncmp(hooks[i]->file.data, file.name.data,
                           file.name.len) == 0)
        {
            *hookp = hooks[i];
            return NGX_CONF_OK;
        }
    }

    file.fd = ngx_open_file(file.name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot open hook \"%V\"", &file.name);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 16 * 1024 * 1024)
    {
        ngx_close_file(file.fd);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "hook \"%V\" cannot be read or is over 16m",
                           &file.name);
        return NGX_CONF_ERROR;
    }

    text = ngx_pnalloc(cf->pool, ngx_file_size(&fi) + 1);
    if (text == NULL) {
        ngx_close_file(file.fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_file(&file, text, ngx_file_size(&fi), 0);

    ngx_close_file(file.fd);

    if (n != (ssize_t) ngx_file_size(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "cannot read hook \"%V\"",
                           &file.name);
        return NGX_CONF_ERROR;
    }

    h = ngx_pcalloc(cf->pool, sizeof(ngx_http_llm_hook_t));
    if (h == NULL) {
        return NGX_CONF_ERROR;
    }

    h->file = file.name;
    h->text.data = text;
    h->text.len = n;
    h->index = lmcf->hooks.nelts + 1;

    /* compile and run it once: syntax errors and a bad table fail here */

    L = ngx_http_llm_hook_state();
    if (L == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot create a Lua state");
        return NGX_CONF_ERROR;
    }

    if (ngx_http_llm_lua_load(L, h, cf->log, 1) != NGX_OK) {
        ngx_http_llm_lua_close(L);
        return NGX_CONF_ERROR;
    }

    ngx_http_llm_lua_close(L);

    hooks = ngx_array_push(&lmcf->hooks);
    if (hooks == NULL) {
        return NGX_CONF_ERROR;
    }

    *hooks = h;
    *hookp = h;

    return NGX_CONF_OK;
}


/*
 * Compiles a hook in its own environment (a copy of the globals, with
 * copies of the library tables), runs it, keeps the returned table in the
 * registry under h->index.
 */

static ngx_int_t
ngx_http_llm_lua_load(lua_State *L, ngx_http_llm_hook_t *h, ngx_log_t *log,
    ngx_uint_t check)
{
    int                   rc;
    char                 *name;
    const char           *msg;
    ngx_uint_t            i;
    ngx_http_llm_call_t   call;

    static const char  *copied[] = {
        LUA_TABLIBNAME, LUA_STRLIBNAME, LUA_MATHLIBNAME, LUA_UTF8LIBNAME,
        LUA_COLIBNAME, "llm", NULL
    };

    name = ngx_alloc(h->file.len + 2, log);
    if (name == NULL) {
        return NGX_ERROR;
    }

    name[0] = '@';
    ngx_memcpy(name + 1, h->file.data, h->file.len);
    name[h->file.len + 1] = '\0';

    rc = luaL_loadbufferx(L, (char *) h->text.data, h->text.len, name, "t");

    ngx_free(name);

    if (rc != LUA_OK) {
        msg = lua_tostring(L, -1);
        ngx_log_error(NGX_LOG_EMERG, log, 0, "llm hook: %s",
                      msg ? msg : "cannot compile");
        lua_pop(L, 1);
        return NGX_ERROR;
    }

    /* the environment */

    lua_createtable(L, 0, 32);
    lua_pushglobaltable(L);
    lua_pushnil(L);

    while (lua_next(L, -2)) {
        lua_pushvalue(L, -2);
        lua_rotate(L, -2, 1);
        lua_rawset(L, -5);
    }

    lua_pop(L, 1);

    for (i = 0; copied[i]; i++) {
        lua_getglobal(L, copied[i]);
        lua_createtable(L, 0, 32);
        lua_pushnil(L);

        while (lua_next(L, -3)) {
            lua_pushvalue(L, -2);
            lua_rotate(L, -2, 1);
            lua_rawset(L, -4);
        }

        lua_setfield(L, -3, copied[i]);
        lua_pop(L, 1);
    }

    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "_G");

    lua_setupvalue(L, -2, 1);

    /* run it, with the default limits */

    ngx_memzero(&call, sizeof(ngx_http_llm_call_t));
    ngx_http_llm_lua_call_begin(L, &call, 10000000, 1000, 64 * 1024 * 1024,
                                (size_t) -1, 0);
    rc = lua_pcall(L, 0, 1, 0);
    ngx_http_llm_lua_call_end();

    if (rc != LUA_OK) {
        msg = lua_tostring(L, -1);
        ngx_log_error(NGX_LOG_EMERG, log, 0, "llm hook: %V: %s", &h->file,
                      msg ? msg : "failed");
        lua_pop(L, 1);
        return NGX_ERROR;
    }

    if (lua_type(L, -1) != LUA_TTABLE) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "llm hook: %V does not return a table", &h->file);
        lua_pop(L, 1);
        return NGX_ERROR;
    }

    /* raw: no metamethod of the hook's runs out of a call */

    lua_pushliteral(L, "request");
    h->has_request = (lua_rawget(L, -2) == LUA_TFUNCTION);
    lua_pushliteral(L, "response");
    h->has_response = (lua_rawget(L, -3) == LUA_TFUNCTION);
    lua_pushliteral(L, "chunk");
    h->has_chunk = (lua_rawget(L, -4) == LUA_TFUNCTION);
    lua_pushliteral(L, "done");
    h->has_done = (lua_rawget(L, -5) == LUA_TFUNCTION);
    lua_pop(L, 4);

    if (check && !h->has_request && !h->has_response && !h->has_chunk
        && !h->has_done)
    {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "llm hook: %V has no request, response, chunk or "
                      "done function", &h->file);
        lua_pop(L, 1);
        return NGX_ERROR;
    }

    lua_rawgeti(L, LUA_REGISTRYINDEX, ngx_http_llm_hooks_ref);
    lua_rotate(L, -2, 1);
    lua_rawseti(L, -2, h->index);
    lua_pop(L, 1);

    return NGX_OK;
}


/* per worker: one state with every hook file loaded */

ngx_int_t
ngx_http_llm_hook_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                 i;
    lua_State                 *L;
    ngx_http_llm_hook_t      **hooks;
    ngx_http_llm_main_conf_t  *lmcf;

    lmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_llm_router_module);

    if (lmcf == NULL || lmcf->hooks.nelts == 0) {
        return NGX_OK;
    }

    L = ngx_http_llm_hook_state();
    if (L == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "llm hook: cannot create a Lua state");
        return NGX_ERROR;
    }

    hooks = lmcf->hooks.elts;

    for (i = 0; i < lmcf->hooks.nelts; i++) {
        if (ngx_http_llm_lua_load(L, hooks[i], cycle->log, 0) != NGX_OK) {
            ngx_http_llm_lua_close(L);
            return NGX_ERROR;
        }
    }

    ngx_http_llm_lua = L;

    return NGX_OK;
}


void
ngx_http_llm_hook_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_http_llm_lua) {
        ngx_http_llm_lua_close(ngx_http_llm_lua);
        ngx_http_llm_lua = NULL;
    }
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

static void
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
    size_t               len;
    ngx_uint_t           i;
    const char          *key;
    ngx_list_part_t     *part;
    ngx_table_elt_t     *h;
    ngx_http_llm_ctx_t       *ctx;
    ngx_pool_cleanup_t       *cln;
    ngx_http_request_t       *r;
    ngx_http_llm_srv_conf_t  *lscf;

    key = lua_tolstring(L, 2, &len);

    if (key == NULL || ngx_http_llm_call == NULL
        || ngx_http_llm_call->request == NULL)
    {
        return 0;
    }

    r = ngx_http_llm_call->request;
    ctx = ngx_http_llm_call->ctx;

    if (len == 5 && ngx_strncmp(key, "model", 5) == 0) {
        lua_pushlstring(L, (char *) ctx->model.data, ctx->model.len);
        goto cache;
    }

    if (len == 6 && ngx_strncmp(key, "target", 6) == 0) {
        lua_pushlstring(L, (char *) ctx->target.data, ctx->target.len);
        goto cache;
    }

    if (len == 8 && ngx_strncmp(key, "upstream", 8) == 0) {
        lua_pushlstring(L, (char *) ctx->upstream.data, ctx->upstream.len);
        goto cache;
    }

    if (len == 6 && ngx_strncmp(key, "engine", 6) == 0) {
        lscf = ngx_http_conf_upstream_srv_conf(ctx->route->model->upstream,
                                               ngx_http_llm_router_module);
        lua_pushstring(L, (lscf && lscf->engine)
                          ? ngx_http_llm_engine_name(lscf->engine) : "");
        goto cache;
    }

    if (len == 6 && ngx_strncmp(key, "stream", 6) == 0) {
        lua_pushboolean(L, ctx->stream == 1);
        goto cache;
    }

    if (len == 3 && ngx_strncmp(key, "var", 3) == 0) {
        lua_pushcfunction(L, ngx_http_llm_ctx_var);
        goto cache;
    }

    /* ctx.state: one table for all the calls of this request */

    if (len == 5 && ngx_strncmp(key, "state", 5) == 0) {
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

    if (len != 7 || ngx_strncmp(key, "headers", 7) != 0) {
        return 0;
    }

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

cache:

    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);

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


/* ngx_http_llm_hook_run(), protected: the run is the light userdata at 1 */

static int
ngx_http_llm_hook_call(lua_State *L)
{
    int                   status, nres, doc_idx;
    char                 *after;
    size_t                after_len, len;
    const char           *s, *name;
    lua_State            *co;
    const char           *error;
    ngx_str_t            *doc, *out;
    ngx_http_request_t   *r;
    ngx_http_llm_ctx_t   *ctx;
    ngx_http_llm_run_t   *run;
    ngx_http_llm_hook_t  *h;
    ngx_http_llm_call_t  *call;
    ngx_http_llm_lazy_t  *lazy;
    u_char                why[128];

    run = lua_touserdata(L, 1);
    r = run->request;
    ctx = run->ctx;
    h = run->hook;
    name = run->name;
    doc = run->doc;
    out = run->out;
    call = run->call;

    /* the coroutine of the last call that ended, or a new one */

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

    ngx_http_llm_lua_hook_reset(co);

    /* the function */

    lua_rawgeti(co, LUA_REGISTRYINDEX, ngx_http_llm_hooks_ref);
    lua_rawgeti(co, -1, h->index);

    lua_pushstring(co, name);

    if (lua_rawget(co, -2) != LUA_TFUNCTION) {

        /* the hook's own table lost the function: never skipped silently */

        lua_settop(co, 0);
        run->rc = ngx_http_llm_hook_failed(r, ctx, h, name,
                                           "the function is gone from the "
                                           "table the file returned");
        return 0;
    }

    lua_replace(co, 1);
    lua_settop(co, 1);

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

        if (call->abort == NGX_HTTP_LLM_ABORT_NONE) {
            *ngx_snprintf(why, sizeof(why) - 1,
                          "not called, the document is not JSON: %s",
                          error) = '\0';
            error = (const char *) why;
        }

        run->rc = ngx_http_llm_hook_failed(r, ctx, h, name,
                                           ngx_http_llm_lua_call_error(call,
                                                                   error));
        return 0;
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

    ngx_http_llm_push_ctx(co, r, ctx);

    nres = 0;
    status = lua_resume(co, L, 2, &nres);

    if (status == LUA_YIELD && call->abort == NGX_HTTP_LLM_ABORT_NONE) {
        call->abort = NGX_HTTP_LLM_ABORT_YIELD;
    }

    if (call->abort == NGX_HTTP_LLM_ABORT_REJECT) {
        ngx_http_llm_set_error(ctx, (char *) call->reject_code.data,
                               NULL, NULL, &call->reject_message);
        ctx->hook_status = call->reject_status;

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "llm hook: %V %s() rejected the request: %ui %V",
                      &h->file, name, call->reject_status,
                      &call->reject_code);
        run->rc = NGX_DECLINED;
        goto done;
    }

    if (call->abort != NGX_HTTP_LLM_ABORT_NONE) {
        run->rc = ngx_http_llm_hook_failed(r, ctx, h, name,
                                     ngx_http_llm_lua_call_error(call, NULL));
        goto done;
    }

    if (status != LUA_OK) {
        error = lua_tostring(co, -1);
        run->rc = ngx_http_llm_hook_failed(r, ctx, h, name,
                                           error ? error : "error");
        goto done;
    }

    /* a returned table replaces the document; false drops it (chunk) */

    doc_idx = 0;

    if (nres > 0) {
        switch (lua_type(co, -nres)) {

        case LUA_TTABLE:
            doc_idx = lua_gettop(co) - nres + 1;
            break;

        case LUA_TBOOLEAN:
            if (!lua_toboolean(co, -nres)) {
                *run->drop = 1;
                goto done;
            }

            break;

        case LUA_TNIL:
            break;

        case LUA_TSTRING:

            /* chunk: the text replaces the whole event, framing and all */

            if (ngx_strcmp(name, "chunk") == 0
                || ngx_strcmp(name, "done") == 0)
            {
                s = lua_tolstring(co, -nres, &len);

                out->data = ngx_pnalloc(ctx->event_pool ? ctx->event_pool
                                                        : r->pool, len);
                if (out->data == NULL) {
                    run->rc = NGX_ERROR;
                    goto done;
                }

                ngx_memcpy(out->data, s, len);
                out->len = len;
                *run->drop = 2;
                goto done;
            }

            /* fall through */

        default:
            run->rc = ngx_http_llm_hook_failed(r, ctx, h, name,
                                               "it returned neither a "
                                               "table, nil nor false");
            goto done;
        }
    }

    if (call->route.len) {
        ctx->hook_route = call->route;
    }

    /* room, past what the hook returned, for the document and encoding */

    if (!lua_checkstack(co, LUA_MINSTACK)) {
        run->rc = ngx_http_llm_hook_failed(r, ctx, h, name, "no stack left");
        goto done;
    }

    if (doc_idx == 0) {
        lua_rawgeti(co, LUA_REGISTRYINDEX, ngx_http_llm_doc_ref);
        doc_idx = lua_gettop(co);

    } else {
        lazy = NULL;    /* a table the hook returned is encoded whole */
    }

    /* the new text, or NULL when the document did not change */

    if (lazy) {
        if (ngx_http_llm_lua_json_lazy_encode(co, doc_idx, lazy, &after,
                                              &after_len, &error)
            != 0)
        {
            run->rc = ngx_http_llm_hook_failed(r, ctx, h, name,
                                               ngx_http_llm_lua_call_error(call,
                                                                       error));
            goto done;
        }

    } else {
        if (ngx_http_llm_lua_json_encode(co, &ngx_http_llm_lua_tmp_env,
                                         doc_idx, doc->len + 256, &after,
                                         &after_len, &error)
            != 0)
        {
            run->rc = ngx_http_llm_hook_failed(r, ctx, h, name,
                                               ngx_http_llm_lua_call_error(call,
                                                                       error));
            goto done;
        }

        if (ngx_http_llm_lua_json_same(co, &ngx_http_llm_lua_tmp_env, after,
                                       after_len, doc->data, doc->len))
        {
            ngx_http_llm_lua_tmp_free(NULL, after);
            after = NULL;
        }
    }

    if (after) {
        /* an event's text lives until the event is sent: not the request */
        out->data = ngx_pnalloc(ctx->event_pool ? ctx->event_pool : r->pool,
                                after_len);

        if (out->data == NULL) {
            ngx_http_llm_lua_tmp_free(NULL, after);
            run->rc = NGX_ERROR;
            goto done;
        }

        ngx_memcpy(out->data, after, after_len);
        out->len = after_len;
        ngx_http_llm_lua_tmp_free(NULL, after);
    }

done:

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
        return 0;
    }

    if (status == LUA_YIELD) {

        ngx_http_llm_lua_stop(co);
        status = lua_resetthread(co);
    }

    if (status != LUA_OK) {
        lua_pushboolean(L, 0);
        lua_rawseti(L, LUA_REGISTRYINDEX, ngx_http_llm_thread_ref);
    }

    return 0;
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

