
/*
 * ngx_llm_router: the hooks' Lua VM: a state and its sandbox, the budget
 * of a call (instructions, time, memory), the allocators.
 * Not here: hook files and directives (hook_conf.c), the llm library and
 * ctx (hook_lib.c), running a hook (hook.c), opening Lua (lua_api.c).
 *
 * Every thread of a state has a count hook: past the instruction budget
 * or the deadline, or when an allocation would pass the memory cap, the
 * hook yields the coroutine away and it is closed, never resumed, so a
 * pcall in the script cannot catch the abort.  Finalizers (__gc) are
 * refused: they run with hooks off.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <time.h>

#include "ngx_http_llm_lua.h"
#include "ngx_http_llm_lua_lazy.h"


#define NGX_HTTP_LLM_HOOK_COUNT   1000   /* instructions between checks */
#define NGX_HTTP_LLM_HOOK_CALLS   16     /* calls between time checks */
#define NGX_HTTP_LLM_HOOK_MASK    (LUA_MASKCOUNT | LUA_MASKCALL)
#define NGX_HTTP_LLM_CLOSE_DEPTH  100    /* coroutine.close in __close */


/*
 * The encoder's and decoder's own buffers: counted with the state's memory,
 * held to the call's limit even where Lua's cap is off, and listed, so
 * that what a Lua error jumped over is freed when the call ends.
 */

typedef struct ngx_http_llm_tmp_s  ngx_http_llm_tmp_t;

struct ngx_http_llm_tmp_s {
    ngx_http_llm_tmp_t        *next;
    ngx_http_llm_tmp_t        *prev;
    size_t                     size;
    size_t                     align;
};


static void *ngx_http_llm_lua_alloc(void *ud, void *ptr, size_t osize,
    size_t nsize);
static void *ngx_http_llm_lua_block(size_t size);
static void ngx_http_llm_lua_unblock(void *p, size_t size);
static void *ngx_http_llm_lua_tmp_realloc(void *ud, void *p, size_t size);
static void ngx_http_llm_tmp_unlink(ngx_http_llm_tmp_t *t);
static void ngx_http_llm_tmp_link(ngx_http_llm_tmp_t *t);
static void ngx_http_llm_lua_tmp_free_all(void);
static void ngx_http_llm_lua_sandbox(lua_State *L, const luaL_Reg *lib);
static int ngx_http_llm_lua_load_text(lua_State *L);
static void ngx_http_llm_lua_wrap(lua_State *L, const char *lib,
    const char *name, lua_CFunction f);
static void ngx_http_llm_lua_own(lua_State *L);
static int ngx_http_llm_lua_setmetatable(lua_State *L);
static int ngx_http_llm_lua_xpcall(lua_State *L);
static int ngx_http_llm_lua_xpcall_done(lua_State *L, int status,
    lua_KContext extra);
static int ngx_http_llm_lua_rep(lua_State *L);
static int ngx_http_llm_co_close(lua_State *L);
static void ngx_http_llm_co_charge(lua_State *L);
static int ngx_http_llm_co_create(lua_State *L);
static int ngx_http_llm_co_wrap(lua_State *L);
static int ngx_http_llm_co_wrapped(lua_State *L);
static int ngx_http_llm_lua_panic(lua_State *L);
static void ngx_http_llm_lua_count(lua_State *L, lua_Debug *ar);
static void ngx_http_llm_lua_hook(lua_State *L, int mask, int count);
static ngx_uint_t ngx_http_llm_lua_late(ngx_http_llm_call_t *call);


static ngx_http_llm_tmp_t  ngx_http_llm_tmps = {
    &ngx_http_llm_tmps, &ngx_http_llm_tmps, 0, 0
};


/* what the JSON layers allocate with, and the lazy layer above them */

const ngx_http_llm_lua_json_env_t  ngx_http_llm_lua_tmp_env = {
    ngx_http_llm_lua_tmp_realloc,
    ngx_http_llm_lua_tmp_free,
    NULL,
    ngx_http_llm_lua_json_lazy_all
};


/* the blocks the allocator keeps: up to 256 bytes, 16-byte classes */
#define NGX_HTTP_LLM_LUA_SMALL  256
#define NGX_HTTP_LLM_LUA_KEEP   512     /* blocks kept per class, at most */


lua_State                   *ngx_http_llm_lua;       /* of this worker */
ngx_http_llm_call_t         *ngx_http_llm_call;
static size_t                ngx_http_llm_lua_memory;
static void                 *ngx_http_llm_lua_free[
                                 NGX_HTTP_LLM_LUA_SMALL / 16 + 1];
static ngx_uint_t            ngx_http_llm_lua_nfree[
                                 NGX_HTTP_LLM_LUA_SMALL / 16 + 1];

static ngx_uint_t  ngx_http_llm_co_depth;   /* coroutine.close nesting */


static const char  *ngx_http_llm_abort_reasons[] = {
    "", "instruction limit", "time limit", "memory limit", "rejected",
    "yield outside a coroutine",
    "llm.reject: the code is not 1 to 64 of A-Z a-z 0-9 _ . -"
};


/*
 * A state for hooks: the count hook, the sandbox with the llm library lib
 * (the caller's), the JSON layers' registry slots
 */

lua_State *
ngx_http_llm_lua_new(const luaL_Reg *lib)
{
    lua_State  *L;

    L = lua_newstate(ngx_http_llm_lua_alloc, NULL);
    if (L == NULL) {
        return NULL;
    }

    (void) lua_atpanic(L, ngx_http_llm_lua_panic);

    /*
     * the count hook is set once: every thread made from here on has it,
     * so a coroutine a hook keeps runs under the limits of whatever call
     * resumes it; out of a call it does nothing
     */

    ngx_http_llm_lua_hook(L, LUA_MASKCOUNT, NGX_HTTP_LLM_HOOK_COUNT);

    ngx_http_llm_lua_sandbox(L, lib);
    ngx_http_llm_lua_json_init(L);
    ngx_http_llm_lua_json_lazy_init(L);

    /* most of what a call makes is garbage at its end */

    (void) lua_gc(L, LUA_GCGEN, 0, 0);

    return L;
}


/*
 * A call starts: budget instructions, time ms, what it may add to the
 * state (memory, and never more than state in all), and what the
 * encoder's buffers may pass that by (tmp_extra).  Counting only.
 */

void
ngx_http_llm_lua_call_begin(lua_State *L, ngx_http_llm_call_t *call,
    ngx_uint_t budget, ngx_msec_t time, size_t memory, size_t state,
    size_t tmp_extra)
{
    call->budget = budget;
    clock_gettime(CLOCK_MONOTONIC, &call->deadline);
    call->deadline.tv_sec += time / 1000;
    call->deadline.tv_nsec += (long) (time % 1000) * 1000000;

    if (call->deadline.tv_nsec >= 1000000000) {
        call->deadline.tv_sec++;
        call->deadline.tv_nsec -= 1000000000;
    }

    call->memory_limit = ngx_min(ngx_http_llm_lua_memory + memory, state);
    call->tmp_limit = call->memory_limit + tmp_extra;

    ngx_http_llm_call = call;
    ngx_http_llm_co_depth = 0;

    ngx_http_llm_lua_hook_reset(L);
}


/* the call is over: what a Lua error jumped over is freed */

void
ngx_http_llm_lua_call_end(void)
{
    ngx_http_llm_call = NULL;
    ngx_http_llm_lua_tmp_free_all();
}


/* stops a thread: every instruction and call from now on fails */

void
ngx_http_llm_lua_stop(lua_State *L)
{
    ngx_http_llm_lua_hook(L, NGX_HTTP_LLM_HOOK_MASK, 1);
}


/* counts the memory of the states; refuses what passes a call's cap */

static void *
ngx_http_llm_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    void    *p;
    size_t   old;

    old = ptr ? osize : 0;

    if (nsize == 0) {
        if (ptr) {
            ngx_http_llm_lua_unblock(ptr, old);
        }

        ngx_http_llm_lua_memory -= old;
        return NULL;
    }

    if (ngx_http_llm_call && ngx_http_llm_call->memory_limit
        && nsize > old
        && ngx_http_llm_lua_memory + (nsize - old)
           > ngx_http_llm_call->memory_limit)
    {
        if (ngx_http_llm_call->abort == NGX_HTTP_LLM_ABORT_NONE) {
            ngx_http_llm_call->abort = NGX_HTTP_LLM_ABORT_MEMORY;
        }

        return NULL;
    }

    if (ptr == NULL) {
        p = ngx_http_llm_lua_block(nsize);

    } else if (old > NGX_HTTP_LLM_LUA_SMALL
               && nsize > NGX_HTTP_LLM_LUA_SMALL)
    {
        p = realloc(ptr, nsize);

    } else if (old <= NGX_HTTP_LLM_LUA_SMALL && nsize <= NGX_HTTP_LLM_LUA_SMALL
               && (old + 15) >> 4 == (nsize + 15) >> 4)
    {
        p = ptr;                /* the block has room already */

    } else {
        p = ngx_http_llm_lua_block(nsize);

        if (p) {
            memcpy(p, ptr, ngx_min(old, nsize));
            ngx_http_llm_lua_unblock(ptr, old);
        }
    }

    if (p) {
        ngx_http_llm_lua_memory += nsize - old;
    }

    return p;
}


/*
 * A call makes and drops the same small objects (tables, strings, the
 * document's userdata) every time: blocks of up to NGX_HTTP_LLM_LUA_SMALL
 * bytes, in 16-byte classes, are kept on free lists for the next call
 * instead of going back to malloc().  One state per worker, one thread:
 * the lists need no lock.  They are emptied when a state is closed.
 */

static void *
ngx_http_llm_lua_block(size_t size)
{
    void        *p;
    ngx_uint_t   c;

    if (size > NGX_HTTP_LLM_LUA_SMALL) {
        return malloc(size);
    }

    c = (size + 15) >> 4;
    p = ngx_http_llm_lua_free[c];

    if (p) {
        ngx_http_llm_lua_free[c] = *(void **) p;
        ngx_http_llm_lua_nfree[c]--;
        return p;
    }

    return malloc(c << 4);
}


static void
ngx_http_llm_lua_unblock(void *p, size_t size)
{
    ngx_uint_t  c;

    c = (size + 15) >> 4;

    if (size > NGX_HTTP_LLM_LUA_SMALL
        || ngx_http_llm_lua_nfree[c] >= NGX_HTTP_LLM_LUA_KEEP)
    {
        free(p);
        return;
    }

    *(void **) p = ngx_http_llm_lua_free[c];
    ngx_http_llm_lua_free[c] = p;
    ngx_http_llm_lua_nfree[c]++;
}


static void *
ngx_http_llm_lua_tmp_realloc(void *ud, void *p, size_t size)
{
    size_t               old;
    ngx_http_llm_tmp_t  *t, *n;

    t = p ? (ngx_http_llm_tmp_t *) p - 1 : NULL;
    old = t ? t->size : 0;

    if (size > old && ngx_http_llm_call && ngx_http_llm_call->tmp_limit
        && (size > ngx_http_llm_call->tmp_limit
            || ngx_http_llm_lua_memory + (size - old)
               > ngx_http_llm_call->tmp_limit))
    {
        return NULL;
    }

    if (t) {
        ngx_http_llm_tmp_unlink(t);
    }

    n = realloc(t, sizeof(ngx_http_llm_tmp_t) + size);

    if (n == NULL) {
        if (t) {
            ngx_http_llm_tmp_link(t);   /* as it was, as realloc() leaves it */
        }

        return NULL;
    }

    n->size = size;
    ngx_http_llm_tmp_link(n);

    ngx_http_llm_lua_memory += size;
    ngx_http_llm_lua_memory -= old;

    return n + 1;
}


static void
ngx_http_llm_tmp_unlink(ngx_http_llm_tmp_t *t)
{
    t->prev->next = t->next;
    t->next->prev = t->prev;
}


static void
ngx_http_llm_tmp_link(ngx_http_llm_tmp_t *t)
{
    t->next = ngx_http_llm_tmps.next;
    t->prev = &ngx_http_llm_tmps;
    t->next->prev = t;
    ngx_http_llm_tmps.next = t;
}


void
ngx_http_llm_lua_tmp_free(void *ud, void *p)
{
    ngx_http_llm_tmp_t  *t;

    if (p == NULL) {
        return;
    }

    t = (ngx_http_llm_tmp_t *) p - 1;
    ngx_http_llm_tmp_unlink(t);
    ngx_http_llm_lua_memory -= t->size;
    free(t);
}


/* the end of a call: what a Lua error jumped over */

static void
ngx_http_llm_lua_tmp_free_all(void)
{
    ngx_http_llm_tmp_t  *t, *next;

    for (t = ngx_http_llm_tmps.next; t != &ngx_http_llm_tmps; t = next) {
        next = t->next;
        ngx_http_llm_lua_tmp_free(NULL, t + 1);
    }
}


/* closes a state, and gives its kept blocks back */

void
ngx_http_llm_lua_close(lua_State *L)
{
    void        *p;
    ngx_uint_t   c;

    lua_close(L);

    for (c = 0; c <= NGX_HTTP_LLM_LUA_SMALL >> 4; c++) {
        while (ngx_http_llm_lua_free[c]) {
            p = ngx_http_llm_lua_free[c];
            ngx_http_llm_lua_free[c] = *(void **) p;
            free(p);
        }

        ngx_http_llm_lua_nfree[c] = 0;
    }
}


/*
 * The global table keeps only what hooks may use; each hook file gets its
 * own environment built from it (ngx_http_llm_lua_load).
 */

static void
ngx_http_llm_lua_sandbox(lua_State *L, const luaL_Reg *lib)
{
    ngx_uint_t  i;

    static const char  *removed[] = {
        "dofile", "loadfile", "load", "require", "collectgarbage", "print",
        "io", "os", "package", "debug", NULL
    };

    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
    luaL_requiref(L, LUA_COLIBNAME, luaopen_coroutine, 1);
    lua_settop(L, 0);

    for (i = 0; removed[i]; i++) {
        lua_pushnil(L);
        lua_setglobal(L, removed[i]);
    }

    /* no bytecode out, and the string metatable is not reachable */

    lua_getglobal(L, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);

    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);

    /* load: text only, into the environment given or an empty one */

    lua_pushcfunction(L, ngx_http_llm_lua_load_text);
    lua_setglobal(L, "load");

    lua_pushcfunction(L, ngx_http_llm_lua_setmetatable);
    lua_setglobal(L, "setmetatable");

    lua_pushcfunction(L, ngx_http_llm_lua_xpcall);
    lua_setglobal(L, "xpcall");

    ngx_http_llm_lua_wrap(L, LUA_STRLIBNAME, "rep", ngx_http_llm_lua_rep);

    /* coroutines that died by an error are never closed (co_close) */

    ngx_http_llm_lua_wrap(L, LUA_COLIBNAME, "close", ngx_http_llm_co_close);
    ngx_http_llm_lua_wrap(L, LUA_COLIBNAME, "create",
                          ngx_http_llm_co_create);
    ngx_http_llm_lua_wrap(L, LUA_COLIBNAME, "wrap", ngx_http_llm_co_wrap);

    lua_createtable(L, 0, 8);

    for (i = 0; lib[i].name; i++) {
        lua_pushcfunction(L, lib[i].func);
        lua_setfield(L, -2, lib[i].name);
    }

    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");

    lua_setglobal(L, "llm");
}


static int
ngx_http_llm_lua_load_text(lua_State *L)
{
    size_t       len;
    const char  *text, *name;

    text = luaL_checklstring(L, 1, &len);
    name = luaL_optlstring(L, 2, "=(load)", NULL);

    if (luaL_loadbufferx(L, text, len, name, "t") != LUA_OK) {
        lua_pushnil(L);
        lua_rotate(L, -2, 1);
        return 2;
    }

    /* the environment: the 4th argument, else an empty table */

    if (lua_type(L, 4) == LUA_TTABLE) {
        lua_pushvalue(L, 4);

    } else {
        lua_createtable(L, 0, 0);
    }

    if (lua_setupvalue(L, -2, 1) == NULL) {
        lua_pop(L, 1);
    }

    return 1;
}


/* lib.name becomes f, with Lua's own lib.name as its upvalue */

static void
ngx_http_llm_lua_wrap(lua_State *L, const char *lib, const char *name,
    lua_CFunction f)
{
    lua_getglobal(L, lib);
    lua_getfield(L, -1, name);
    lua_pushcclosure(L, f, 1);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}


/* Lua's own function of a wrapper (its upvalue) before the arguments */

static void
ngx_http_llm_lua_own(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
}


/*
 * setmetatable(t, mt) as in Lua, but a metatable with __gc is refused: a
 * finalizer runs with the count hook off, so no limit could stop it
 */

static int
ngx_http_llm_lua_setmetatable(lua_State *L)
{
    int  t;

    t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);

    if (t != LUA_TNIL && t != LUA_TTABLE) {
        return luaL_error(L, "bad argument #2 to 'setmetatable' "
                          "(nil or table expected)");
    }

    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");

        if (lua_rawget(L, 2) != LUA_TNIL) {
            return luaL_error(L, "setmetatable: __gc metamethods are not "
                              "allowed in hooks");
        }

        lua_pop(L, 1);
    }

    if (lua_getmetatable(L, 1)) {
        lua_pushliteral(L, "__metatable");

        if (lua_rawget(L, -2) != LUA_TNIL) {
            return luaL_error(L, "cannot change a protected metatable");
        }

        lua_pop(L, 2);
    }

    lua_settop(L, 2);
    lua_setmetatable(L, 1);

    return 1;
}


/*
 * xpcall(f, handler, ...) with the handler called after the error has
 * unwound, not where it was raised: Lua calls a message handler with the
 * hooks of the thread off when the error comes from the count hook (an
 * abort where the thread cannot yield), so it would run beyond every
 * limit.  What the handler returns is the error, as in Lua.
 */

static int
ngx_http_llm_lua_xpcall(lua_State *L)
{
    int  n, status;

    n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);

    lua_pushboolean(L, 1);              /* the first result on success */
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2);                /* f, handler, true, f, args */

    status = lua_pcallk(L, n - 2, LUA_MULTRET, 0, 2,
                        ngx_http_llm_lua_xpcall_done);

    return ngx_http_llm_lua_xpcall_done(L, status, 2);
}


static int
ngx_http_llm_lua_xpcall_done(lua_State *L, int status, lua_KContext extra)
{
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushvalue(L, 2);            /* the handler, the error */
        lua_insert(L, -2);
        lua_call(L, 1, 1);
        lua_pushboolean(L, 0);
        lua_insert(L, -2);

        return 2;
    }

    return lua_gettop(L) - (int) extra;
}


/*
 * string.rep(s, n, sep) as in Lua, but an empty result is made at once:
 * Lua loops n times even when s and sep are empty, and n may be 2^63
 */

static int
ngx_http_llm_lua_rep(lua_State *L)
{
    size_t  len, seplen;

    (void) luaL_checklstring(L, 1, &len);
    (void) luaL_checkinteger(L, 2);
    (void) luaL_optlstring(L, 3, "", &seplen);

    if (len + seplen == 0) {
        lua_pushliteral(L, "");
        return 1;
    }

    ngx_http_llm_lua_own(L);
    lua_call(L, lua_gettop(L) - 1, 1);

    return 1;
}


/*
 * coroutine.close(co) as in Lua, except for a coroutine that died by an
 * error: that error may have been the count hook's abort, raised inside
 * the hook, which leaves the thread's hooks off for good, and closing it
 * would run its to-be-closed variables beyond every limit.  Such a
 * coroutine keeps them: false and a message.
 */

static int
ngx_http_llm_co_close(lua_State *L)
{
    int         status;
    lua_State  *co;

    co = lua_tothread(L, 1);
    if (co == NULL) {
        return luaL_error(L, "bad argument #1 to 'close' "
                          "(coroutine expected)");
    }

    status = lua_status(co);

    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "a coroutine that died by an error is not "
                        "closed in hooks");
        return 2;
    }

    /*
     * its __close may close another, and so on: each level is a C call
     * that Lua 5.4.4 does not count against its C stack limit
     */

    if (ngx_http_llm_co_depth >= NGX_HTTP_LLM_CLOSE_DEPTH) {
        return luaL_error(L, "coroutine.close nested too deep");
    }

    lua_settop(L, 1);
    ngx_http_llm_lua_own(L);

    ngx_http_llm_co_depth++;
    status = lua_pcall(L, 1, LUA_MULTRET, 0);
    ngx_http_llm_co_depth--;

    if (status != LUA_OK) {
        return lua_error(L);
    }

    return lua_gettop(L);
}


/*
 * A new thread starts a count of its own, up to NGX_HTTP_LLM_HOOK_COUNT
 * instructions before the hook first sees it: making one is charged that
 * much, or a loop of short coroutines would run uncounted.
 */

static void
ngx_http_llm_co_charge(lua_State *L)
{
    ngx_http_llm_call_t  *call;

    call = ngx_http_llm_call;

    if (call == NULL || call->abort != NGX_HTTP_LLM_ABORT_NONE) {
        return;
    }

    call->instructions += NGX_HTTP_LLM_HOOK_COUNT;

    if (call->instructions > call->budget) {
        call->abort = NGX_HTTP_LLM_ABORT_INSTRUCTIONS;
        ngx_http_llm_lua_hook(L, NGX_HTTP_LLM_HOOK_MASK, 1);
    }
}


/* coroutine.create(f) as in Lua, charged (co_charge) */

static int
ngx_http_llm_co_create(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    ngx_http_llm_co_charge(L);

    lua_settop(L, 1);
    ngx_http_llm_lua_own(L);
    lua_call(L, 1, 1);

    return 1;
}


/*
 * coroutine.wrap(f) as in Lua, charged (co_charge), and a coroutine that
 * fails is not closed
 */

static int
ngx_http_llm_co_wrap(lua_State *L)
{
    lua_State  *co;

    luaL_checktype(L, 1, LUA_TFUNCTION);
    ngx_http_llm_co_charge(L);

    co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_pushcclosure(L, ngx_http_llm_co_wrapped, 1);

    return 1;
}


static int
ngx_http_llm_co_wrapped(lua_State *L)
{
    int         n, nres, status;
    lua_State  *co;

    co = lua_tothread(L, lua_upvalueindex(1));
    n = lua_gettop(L);

    if (!lua_checkstack(co, n)) {
        return luaL_error(L, "too many arguments to resume");
    }

    lua_xmove(L, co, n);

    nres = 0;
    status = lua_resume(co, L, n, &nres);

    if (status == LUA_OK || status == LUA_YIELD) {
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            return luaL_error(L, "too many results to resume");
        }

        lua_xmove(co, L, nres);
        return nres;
    }

    lua_xmove(co, L, 1);

    if (status != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
        luaL_where(L, 1);
        lua_insert(L, -2);
        lua_concat(L, 2);
    }

    return lua_error(L);
}


/* an error out of every protected call: Lua aborts the process after */

static int
ngx_http_llm_lua_panic(lua_State *L)
{
    const char  *msg;

    msg = lua_tostring(L, -1);

    ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                  "llm hook: Lua error outside a protected call: %s",
                  msg ? msg : "?");

    return 0;
}


static void
ngx_http_llm_lua_count(lua_State *L, lua_Debug *ar)
{
    int                   n;
    ngx_http_llm_call_t  *call;

    call = ngx_http_llm_call;

    if (call == NULL) {
        return;
    }

    if (ar->event != LUA_HOOKCOUNT) {

        /*
         * a call, of a C function too (a __close or a sort comparator that
         * is one runs no instruction the count sees): the deadline is
         * checked every few calls, and after an abort every call fails (a
         * call hook cannot yield)
         */

        if (call->abort == NGX_HTTP_LLM_ABORT_NONE
            && ++call->calls % NGX_HTTP_LLM_HOOK_CALLS == 0
            && ngx_http_llm_lua_late(call))
        {
            call->abort = NGX_HTTP_LLM_ABORT_TIME;
        }

        if (call->abort != NGX_HTTP_LLM_ABORT_NONE) {
            ngx_http_llm_lua_hook(L, NGX_HTTP_LLM_HOOK_MASK, 1);
            (void) luaL_error(L, "llm hook aborted: %s",
                              ngx_http_llm_abort_reasons[call->abort]);
        }

        return;
    }

    n = lua_gethookcount(L);

    if (call->abort == NGX_HTTP_LLM_ABORT_NONE) {

        /*
         * a thread that runs past one count sees calls too (a short hook
         * pays nothing for them); one stopped in an earlier call and
         * resumed in this one counts by the thousand again
         */

        ngx_http_llm_lua_hook(L, NGX_HTTP_LLM_HOOK_MASK,
                              NGX_HTTP_LLM_HOOK_COUNT);

        call->instructions += n;

        if (call->instructions > call->budget) {
            call->abort = NGX_HTTP_LLM_ABORT_INSTRUCTIONS;

        } else if (ngx_http_llm_lua_late(call)) {
            call->abort = NGX_HTTP_LLM_ABORT_TIME;
        }
    }

    if (call->abort != NGX_HTTP_LLM_ABORT_NONE) {

        /*
         * from now on at every instruction: where the thread cannot yield
         * (a metamethod, a gsub callback) the abort is an error, which a
         * pcall there may catch; the first instruction back where it can
         * yield leaves
         */

        (void) ngx_http_llm_lua_abort(L, call->abort);
    }
}


/* what failed a call: its limit when one was passed, else the error */

const char *
ngx_http_llm_lua_call_error(ngx_http_llm_call_t *call, const char *error)
{
    if (call->abort != NGX_HTTP_LLM_ABORT_NONE) {
        return ngx_http_llm_abort_reasons[call->abort];
    }

    return error;
}


/*
 * The count hook of a thread: counts only, by the thousand, while a call
 * is short; calls too once it has run a count; every instruction and
 * call once the call is stopped.  Set only when it changes.
 */

static void
ngx_http_llm_lua_hook(lua_State *L, int mask, int count)
{
    if (lua_gethookmask(L) != mask || lua_gethookcount(L) != count) {
        lua_sethook(L, ngx_http_llm_lua_count, mask, count);
    }
}


/*
 * a call starts counting only: a thread sees calls once it has run a
 * count (the mask alone tells, counting only is always by the thousand)
 */

void
ngx_http_llm_lua_hook_reset(lua_State *L)
{
    if (lua_gethookmask(L) != LUA_MASKCOUNT) {
        lua_sethook(L, ngx_http_llm_lua_count, LUA_MASKCOUNT,
                    NGX_HTTP_LLM_HOOK_COUNT);
    }
}


static ngx_uint_t
ngx_http_llm_lua_late(ngx_http_llm_call_t *call)
{
    struct timespec  now;

    clock_gettime(CLOCK_MONOTONIC, &now);

    return now.tv_sec > call->deadline.tv_sec
           || (now.tv_sec == call->deadline.tv_sec
               && now.tv_nsec > call->deadline.tv_nsec);
}


/* leaves the coroutine for good; where it cannot, raises an error */

int
ngx_http_llm_lua_abort(lua_State *L, ngx_uint_t why)
{
    if (ngx_http_llm_call
        && ngx_http_llm_call->abort == NGX_HTTP_LLM_ABORT_NONE)
    {
        ngx_http_llm_call->abort = why;
    }

    /*
     * from now on at every instruction: where the thread cannot yield (a
     * metamethod, a gsub callback) the abort is an error, which a pcall
     * there may catch; the first instruction back where it can yield
     * leaves
     */

    ngx_http_llm_lua_hook(L, NGX_HTTP_LLM_HOOK_MASK, 1);

    if (lua_isyieldable(L)) {
        return lua_yield(L, 0);
    }

    return luaL_error(L, "llm hook aborted: %s",
                      ngx_http_llm_abort_reasons[why]);
}
