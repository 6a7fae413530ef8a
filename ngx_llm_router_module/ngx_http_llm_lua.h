
/*
 * ngx_llm_router: the hooks' Lua VM (ngx_http_llm_lua.c): a state with
 * its sandbox, the budget of a call, the allocators.
 */


#ifndef _NGX_HTTP_LLM_LUA_H_INCLUDED_
#define _NGX_HTTP_LLM_LUA_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <time.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_lua_api.h"
#include "ngx_http_llm_lua_json.h"


#define NGX_HTTP_LLM_ABORT_NONE         0
#define NGX_HTTP_LLM_ABORT_INSTRUCTIONS 1
#define NGX_HTTP_LLM_ABORT_TIME         2
#define NGX_HTTP_LLM_ABORT_MEMORY       3
#define NGX_HTTP_LLM_ABORT_REJECT       4
#define NGX_HTTP_LLM_ABORT_YIELD        5
#define NGX_HTTP_LLM_ABORT_BAD_REJECT   6


/* the call in progress: a worker runs one at a time */

typedef struct {
    ngx_http_request_t        *request;
    ngx_http_llm_ctx_t        *ctx;
    ngx_uint_t                 instructions;
    ngx_uint_t                 calls;
    ngx_uint_t                 budget;
    struct timespec            deadline;
    size_t                     memory_limit;   /* absolute, 0: none */
    size_t                     tmp_limit;      /* the same, for tmp_env */
    ngx_uint_t                 abort;
    ngx_uint_t                 reject_status;
    ngx_str_t                  reject_message;
    ngx_str_t                  reject_code;
    ngx_str_t                  route;
} ngx_http_llm_call_t;


extern lua_State                          *ngx_http_llm_lua;  /* worker's */
extern ngx_http_llm_call_t                *ngx_http_llm_call;
extern const ngx_http_llm_lua_json_env_t   ngx_http_llm_lua_tmp_env;


lua_State *ngx_http_llm_lua_new(const luaL_Reg *lib);
void ngx_http_llm_lua_close(lua_State *L);
void ngx_http_llm_lua_call_begin(lua_State *L, ngx_http_llm_call_t *call,
    ngx_uint_t budget, ngx_msec_t time, size_t memory, size_t state,
    size_t tmp_extra);
void ngx_http_llm_lua_call_end(void);
const char *ngx_http_llm_lua_call_error(ngx_http_llm_call_t *call,
    const char *error);
int ngx_http_llm_lua_abort(lua_State *L, ngx_uint_t why);
void ngx_http_llm_lua_hook_reset(lua_State *L);
void ngx_http_llm_lua_stop(lua_State *L);
void ngx_http_llm_lua_tmp_free(void *ud, void *p);


#endif /* _NGX_HTTP_LLM_LUA_H_INCLUDED_ */
