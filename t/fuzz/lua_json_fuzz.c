/* fuzz-sources: ngx_http_llm_lua_json.c ngx_http_llm_lua_lazy.c ngx_http_llm_jscan.c */
/* fuzz-libs: -llua5.4 -ldl */
/* fuzz-runs: 10000 */

/*
 * libFuzzer target: JSON documents as Lua values (ngx_http_llm_lua_json.c,
 * ngx_http_llm_lua_lazy.c), on a real Lua 5.4 state opened as the module
 * opens it (liblua5.4.so.0 through the function table of
 * ngx_http_llm_lua_api.h).
 *
 *   - Every input the router's scanner (jscan) accepts, the decoder
 *     accepts: a hook always gets the document the router let through.
 *   - Decoded, encoded, decoded again and encoded again, the two encodings
 *     are equal; the first one decodes in strict mode (llm.json_decode).
 *   - What strict decoding accepts, document decoding accepts the same.
 *   - An object given member by member (the lazy table), encoded whole,
 *     is the same text as the object decoded whole; left untouched, the
 *     lazy encoder says that nothing changed.
 *
 * Built and run by `./build.sh fuzz`; by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined \
 *     -I ngx_llm_router_module -I /usr/include/lua5.4 \
 *     -o build/lua_json_fuzz t/fuzz/lua_json_fuzz.c \
 *     ngx_llm_router_module/ngx_http_llm_lua_json.c \
 *     ngx_llm_router_module/ngx_http_llm_lua_lazy.c \
 *     ngx_llm_router_module/ngx_http_llm_jscan.c -llua5.4 -ldl -lm
 *   build/lua_json_fuzz t/fuzz/corpus/lua_json
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>

#include "ngx_http_llm_lua_api.h"
#include "ngx_http_llm_lua_json.h"
#include "ngx_http_llm_lua_lazy.h"
#include "ngx_http_llm_jscan.h"
#include "lua_open.h"

static lua_State       *fuzz_L;
static unsigned long    fuzz_runs;


/* the module's buffers come from its hooks' allocator: plain malloc here */

static void *
fuzz_realloc(void *ud, void *p, size_t size)
{
    (void) ud;
    return realloc(p, size ? size : 1);
}


static void
fuzz_free(void *ud, void *p)
{
    (void) ud;
    free(p);
}


static const ngx_http_llm_lua_json_env_t  fuzz_env = {
    fuzz_realloc, fuzz_free, NULL, ngx_http_llm_lua_json_lazy_all
};


static void
fuzz_die(const char *what, const uint8_t *data, size_t size)
{
    fprintf(stderr, "lua_json_fuzz: %s (input of %zu bytes: %.*s)\n", what,
            size, (int) (size < 200 ? size : 200), (const char *) data);
    abort();
}


static void
fuzz_open(void)
{
    void        *handle;
    const char  *missing;

    handle = dlopen("liblua5.4.so.0", RTLD_NOW|RTLD_LOCAL);
    if (handle == NULL) {
        fprintf(stderr, "lua_json_fuzz: %s\n", dlerror());
        exit(1);
    }

    if (llm_lua_open(handle, &missing) != 0) {
        fprintf(stderr, "lua_json_fuzz: no %s\n", missing);
        exit(1);
    }

    fuzz_L = luaL_newstate();
    if (fuzz_L == NULL) {
        exit(1);
    }

    ngx_http_llm_lua_json_init(fuzz_L);
    ngx_http_llm_lua_json_lazy_init(fuzz_L);
}


/* encodes the value on the top; NULL if it cannot be */

static char *
fuzz_encode(lua_State *L, size_t *len)
{
    char        *out;
    const char  *error;

    if (ngx_http_llm_lua_json_encode(L, &fuzz_env, -1, 0, &out, len, &error)
        != 0)
    {
        return NULL;
    }

    return out;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                    rc, strict, scanned;
    char                  *e1, *e2, *e3, *out;
    size_t                 l1, l2, l3, olen;
    lua_State             *L;
    const char            *error;
    ngx_http_llm_lazy_t   *lz;
    ngx_http_llm_jscan_t   scan;

    if (fuzz_L == NULL) {
        fuzz_open();
    }

    L = fuzz_L;
    lua_settop(L, 0);

    ngx_http_llm_jscan_init(&scan);
    (void) ngx_http_llm_jscan_feed(&scan, data, size);
    scanned = ngx_http_llm_jscan_finish(&scan);

    rc = ngx_http_llm_lua_json_decode(L, &fuzz_env, data, size, &error);

    if (rc != 0 && (scanned == NGX_HTTP_LLM_JSCAN_OK
                    || scanned == NGX_HTTP_LLM_JSCAN_NOT_OBJECT))
    {
        fprintf(stderr, "decoder: %s\n", error);
        fuzz_die("the scanner accepts what the decoder refuses", data, size);
    }

    /* strict decoding accepts less, and gives the same */

    strict = ngx_http_llm_lua_json_decode_strict(L, &fuzz_env, data, size,
                                                 &error);

    if (strict == 0 && rc != 0) {
        fuzz_die("strict decoding accepts what documents refuse", data, size);
    }

    if (rc != 0) {
        goto done;
    }

    /* the round trip: the stack holds [document, strict?] */

    e1 = NULL;
    e2 = NULL;
    e3 = NULL;

    if (strict == 0) {
        e3 = fuzz_encode(L, &l3);
        lua_pop(L, 1);
    }

    e1 = fuzz_encode(L, &l1);
    if (e1 == NULL) {
        fuzz_die("a decoded document cannot be encoded", data, size);
    }

    if (e3 && (l3 != l1 || memcmp(e1, e3, l1) != 0)) {
        fuzz_die("strict and document decoding differ", data, size);
    }

    if (ngx_http_llm_lua_json_decode_strict(L, &fuzz_env,
                                            (const unsigned char *) e1, l1,
                                            &error)
        != 0)
    {
        fprintf(stderr, "strict: %s, text: %.*s\n", error, (int) l1, e1);
        fuzz_die("an encoding does not decode", data, size);
    }

    e2 = fuzz_encode(L, &l2);
    if (e2 == NULL || l1 != l2 || memcmp(e1, e2, l1) != 0) {
        fprintf(stderr, "first:  %.*s\nsecond: %.*s\n", (int) l1, e1,
                e2 ? (int) l2 : 0, e2 ? e2 : "");
        fuzz_die("two encodings differ", data, size);
    }

    lua_settop(L, 0);
    free(e2);

    /* member by member: the same text, and untouched nothing changed */

    if (scanned == NGX_HTTP_LLM_JSCAN_OK) {
        lz = ngx_http_llm_lua_json_lazy_scanned(L, &fuzz_env, data, size,
                                                &scan);

        if (lz) {
            if (ngx_http_llm_lua_json_lazy_encode(L, -1, lz, &out, &olen,
                                                  &error)
                != 0 || out != NULL)
            {
                fuzz_die("an untouched document changed", data, size);
            }

            e2 = fuzz_encode(L, &l2);

            if (e2 == NULL || l1 != l2 || memcmp(e1, e2, l1) != 0) {
                fprintf(stderr, "whole: %.*s\nlazy:  %.*s\n", (int) l1, e1,
                        e2 ? (int) l2 : 0, e2 ? e2 : "");
                fuzz_die("member by member differs", data, size);
            }

            free(e2);
            ngx_http_llm_lua_json_lazy_done(L, -1, lz);
        }
    }

    free(e1);
    free(e3);

done:

    lua_settop(L, 0);

    if (++fuzz_runs % 4096 == 0) {
        lua_gc(L, LUA_GCCOLLECT);
    }

    return 0;
}
