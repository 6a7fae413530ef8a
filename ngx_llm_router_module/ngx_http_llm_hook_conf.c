
/*
 * ngx_llm_router: the hook directives (llm_hook, llm_hook_limits, a
 * model's hook), the hook files read, compiled and loaded into each
 * worker's state.  Not here: running a hook (hook.c), the VM (lua.c).
 *
 * A hook file returns a table with optional request(req, ctx),
 * response(resp, ctx), chunk(ev, ctx) and done(ev, ctx).  Files are read
 * and compiled when the configuration loads (a syntax error fails nginx -t
 * with the file and line); each worker runs them in its own lua_State,
 * every file in an environment of its own with a reduced standard library.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_lua.h"
#include "ngx_http_llm_hook.h"
#include "ngx_http_llm_hook_conf.h"
#include "ngx_http_llm_hook_lib.h"
#include "ngx_http_llm_lua_api.h"


static lua_State *ngx_http_llm_hook_state(void);
static ssize_t ngx_http_llm_hook_limit_size(ngx_str_t *value, size_t skip,
    size_t min);
static char *ngx_http_llm_hook_read(ngx_conf_t *cf, ngx_str_t *name,
    ngx_http_llm_hook_t **hookp);
static char *ngx_http_llm_hook_slurp(ngx_conf_t *cf, ngx_file_t *file,
    ngx_str_t *text);
static ngx_int_t ngx_http_llm_lua_load(lua_State *L, ngx_http_llm_hook_t *h,
    ngx_log_t *log, ngx_uint_t run);
static ngx_int_t ngx_http_llm_lua_compile(lua_State *L, ngx_http_llm_hook_t *h,
    ngx_log_t *log);
static void ngx_http_llm_lua_env(lua_State *L);
static void ngx_http_llm_lua_functions(lua_State *L, ngx_http_llm_hook_t *h);


/* a state for hooks: the VM's, with the llm library, ctx and the slots */

static lua_State *
ngx_http_llm_hook_state(void)
{
    lua_State  *L;

    L = ngx_http_llm_lua_new(ngx_http_llm_hook_lib);
    if (L == NULL) {
        return NULL;
    }

    ngx_http_llm_hook_state_init(L);
    ngx_http_llm_hook_lib_init(L);

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
    ngx_str_t                  text;
    ngx_uint_t                 i;
    ngx_file_t                 file;
    lua_State                 *L;
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

    if (ngx_http_llm_hook_slurp(cf, &file, &text) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    h = ngx_pcalloc(cf->pool, sizeof(ngx_http_llm_hook_t));
    if (h == NULL) {
        return NGX_CONF_ERROR;
    }

    h->file = file.name;
    h->text = text;
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


/* the whole hook file, read into the configuration's pool */

static char *
ngx_http_llm_hook_slurp(ngx_conf_t *cf, ngx_file_t *file, ngx_str_t *text)
{
    u_char           *data;
    ssize_t           n;
    ngx_file_info_t   fi;

    file->fd = ngx_open_file(file->name.data, NGX_FILE_RDONLY,
                             NGX_FILE_OPEN, 0);

    if (file->fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot open hook \"%V\"", &file->name);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(file->fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 16 * 1024 * 1024)
    {
        ngx_close_file(file->fd);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "hook \"%V\" cannot be read or is over 16m",
                           &file->name);
        return NGX_CONF_ERROR;
    }

    data = ngx_pnalloc(cf->pool, ngx_file_size(&fi) + 1);
    if (data == NULL) {
        ngx_close_file(file->fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_file(file, data, ngx_file_size(&fi), 0);

    ngx_close_file(file->fd);

    if (n != (ssize_t) ngx_file_size(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "cannot read hook \"%V\"",
                           &file->name);
        return NGX_CONF_ERROR;
    }

    text->data = data;
    text->len = n;

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
    const char           *msg;
    ngx_http_llm_call_t   call;

    if (ngx_http_llm_lua_compile(L, h, log) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_llm_lua_env(L);

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

    ngx_http_llm_lua_functions(L, h);

    if (check && !h->has_request && !h->has_response && !h->has_chunk
        && !h->has_done)
    {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "llm hook: %V has no request, response, chunk or "
                      "done function", &h->file);
        lua_pop(L, 1);
        return NGX_ERROR;
    }

    ngx_http_llm_hook_keep(L, h->index);

    return NGX_OK;
}


/* the hook's text as a chunk on the stack, named "@file" in messages */

static ngx_int_t
ngx_http_llm_lua_compile(lua_State *L, ngx_http_llm_hook_t *h,
    ngx_log_t *log)
{
    int          rc;
    char        *name;
    const char  *msg;

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

    return NGX_OK;
}


/*
 * The chunk on top of the stack gets its environment: a copy of the
 * globals, with copies of the library tables, and _G the copy itself.
 */

static void
ngx_http_llm_lua_env(lua_State *L)
{
    ngx_uint_t  i;

    static const char  *copied[] = {
        LUA_TABLIBNAME, LUA_STRLIBNAME, LUA_MATHLIBNAME, LUA_UTF8LIBNAME,
        LUA_COLIBNAME, "llm", NULL
    };

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
}


/*
 * Which of request, response, chunk and done the table on top of the stack
 * has; raw: no metamethod of the hook's runs out of a call.
 */

static void
ngx_http_llm_lua_functions(lua_State *L, ngx_http_llm_hook_t *h)
{
    lua_pushliteral(L, "request");
    h->has_request = (lua_rawget(L, -2) == LUA_TFUNCTION);
    lua_pushliteral(L, "response");
    h->has_response = (lua_rawget(L, -3) == LUA_TFUNCTION);
    lua_pushliteral(L, "chunk");
    h->has_chunk = (lua_rawget(L, -4) == LUA_TFUNCTION);
    lua_pushliteral(L, "done");
    h->has_done = (lua_rawget(L, -5) == LUA_TFUNCTION);
    lua_pop(L, 4);
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
