/* unit-sources: ngx_http_llm_lua_lazy.c ngx_http_llm_jscan.c */
/* unit-libs: -llua5.4 -ldl */

/*
 * Unit tests of JSON documents as Lua values (ngx_http_llm_lua_json.c) and
 * of the object given member by member (ngx_http_llm_lua_lazy.c), without
 * nginx: Lua 5.4 is linked, and the function table of
 * ngx_http_llm_lua_api.h filled from it.  The buffers come from a counting
 * allocator that can fail after N allocations: every failure must be a
 * clean error, and nothing may be left allocated (ASan checks the rest).
 * Built and run by `./build.sh test`; prints "N passed, N failed".
 */


#define _GNU_SOURCE

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <dlfcn.h>

#include "ngx_http_llm_lua_api.h"
#include "ngx_http_llm_lua_json.h"
#include "ngx_http_llm_lua_lazy.h"
#include "ngx_http_llm_jscan.h"
#include "../fuzz/lua_open.h"


static int  passed, failed;


/* counts a check; prints the failed ones with their line */

static void __attribute__((format(printf, 3, 4)))
test_check(int ok, int line, const char *fmt, ...)
{
    va_list  args;

    if (ok) {
        passed++;
        return;
    }

    failed++;
    printf("FAIL lua_json_test.c:%d: ", line);
    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);
    printf("\n");
}

#define CHECK(cond, ...)  test_check((cond) != 0, __LINE__, __VA_ARGS__)


/* the allocator: counts what is live, fails from the Nth allocation on */

typedef struct {
    long    live;
    long    allocs;
    long    fail_after;     /* -1: never */
} test_alloc_t;


static void *
test_realloc(void *ud, void *p, size_t size)
{
    test_alloc_t  *a = ud;

    if (a->fail_after >= 0 && a->allocs >= a->fail_after) {
        return NULL;
    }

    a->allocs++;

    if (p == NULL) {
        a->live++;
    }

    return realloc(p, size ? size : 1);
}


static void
test_free(void *ud, void *p)
{
    test_alloc_t  *a = ud;

    if (p) {
        a->live--;
        free(p);
    }
}


static test_alloc_t                 alloc = { 0, 0, -1 };
static ngx_http_llm_lua_json_env_t  env = {
    test_realloc, test_free, &alloc, ngx_http_llm_lua_json_lazy_all
};


static lua_State *
test_open(void)
{
    lua_State   *L;
    const char  *missing;

    /* linked with -llua5.4: the symbols are the program's */

    if (llm_lua_open(RTLD_DEFAULT, &missing) != 0) {
        printf("no Lua symbol %s\n", missing);
        exit(1);
    }

    L = luaL_newstate();
    if (L == NULL) {
        exit(1);
    }

    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    lua_pop(L, 1);

    ngx_http_llm_lua_json_init(L);
    ngx_http_llm_lua_json_lazy_init(L);

    return L;
}


/* decodes doc, encodes it; the text (to free), or NULL */

static char *
round_trip(lua_State *L, const char *doc, size_t *len, const char **error)
{
    char  *out;

    if (ngx_http_llm_lua_json_decode(L, &env, (const unsigned char *) doc,
                                     strlen(doc), error)
        != 0)
    {
        return NULL;
    }

    if (ngx_http_llm_lua_json_encode(L, &env, -1, 0, &out, len, error) != 0) {
        lua_pop(L, 1);
        return NULL;
    }

    lua_pop(L, 1);

    return out;
}


static void
check_same(lua_State *L, const char *doc, const char *want)
{
    char        *out;
    size_t       len;
    const char  *error;

    error = NULL;
    out = round_trip(L, doc, &len, &error);

    CHECK(out && len == strlen(want) && memcmp(out, want, len) == 0,
          "%s gives %.*s (%s), not %s", doc, out ? (int) len : 0,
          out ? out : "", error ? error : "", want);

    test_free(&alloc, out);
}


static void
test_round_trips(lua_State *L)
{
    check_same(L, "{\"b\":1,\"a\":[1,2.5,\"x\",null,true,false]}",
               "{\"b\":1,\"a\":[1,2.5,\"x\",null,true,false]}");
    check_same(L, " { \"z\" : { } , \"y\" : [ ] } ", "{\"z\":{},\"y\":[]}");
    check_same(L, "[]", "[]");
    check_same(L, "{}", "{}");
    check_same(L, "\"a\\u00e9\\ud83d\\ude00\\n\"",
               "\"a\xc3\xa9\xf0\x9f\x98\x80\\n\"");
    check_same(L, "[0.1,-0,-0.0,1e2,-3]", "[0.1,0,-0.0,100.0,-3]");
    check_same(L, "{\"k\":1,\"k\":2}", "{\"k\":2}");
    check_same(L, "9223372036854775807", "9223372036854775807");
}


/* numbers Lua cannot hold stay llm.number, written back as they came */

static void
test_big_numbers(lua_State *L)
{
    size_t        i;
    const char   *error, *doc;
    const char   *big[] = {
        "9223372036854775808", "-9223372036854775809",
        "123456789012345678901234567890", "1e400", "-1e-400",
        "[1e400,{\"n\":123456789012345678901234567890}]"
    };

    for (i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        check_same(L, big[i], big[i]);
    }

    doc = "123456789012345678901234567890";
    CHECK(ngx_http_llm_lua_json_decode(L, &env, (const unsigned char *) doc,
                                       strlen(doc), &error) == 0
          && luaL_testudata(L, -1, NGX_HTTP_LLM_LUA_NUMBER) != NULL,
          "%s is not an llm.number", doc);
    lua_settop(L, 0);
}


static void
check_refused(lua_State *L, const char *doc, int strict)
{
    int          rc;
    const char  *error;

    error = NULL;
    rc = strict
         ? ngx_http_llm_lua_json_decode_strict(L, &env,
                                               (const unsigned char *) doc,
                                               strlen(doc), &error)
         : ngx_http_llm_lua_json_decode(L, &env,
                                        (const unsigned char *) doc,
                                        strlen(doc), &error);

    CHECK(rc == -1 && error && lua_gettop(L) == 0,
          "%s%s is taken", strict ? "strict " : "", doc);
    lua_settop(L, 0);
}


/* bytes and escapes: documents keep what the scanner let through */

static void
test_escapes(lua_State *L)
{
    check_same(L, "\"\xff\xfe\"", "\"\xff\xfe\"");
    check_same(L, "\"\\q\"", "\"\\\\q\"");
    check_same(L, "\"\\ud800\"", "\"\xed\xa0\x80\"");

    check_refused(L, "\"\\q\"", 1);
    check_refused(L, "\"\\u12\"", 1);
    check_refused(L, "\"\\uzzzz\"", 1);
    check_refused(L, "\"abc", 0);
    check_refused(L, "[1,]", 0);
    check_refused(L, "{\"a\" 1}", 0);
    check_refused(L, "01", 0);
    check_refused(L, "1.", 0);
    check_refused(L, "[1] x", 0);
    check_refused(L, "", 0);
}


/* nesting up to the scanner's limit, and not one level more */

static void
test_depth(lua_State *L)
{
    int          rc;
    char        *doc, *out;
    size_t       len, n;
    const char  *error;

    for (n = NGX_HTTP_LLM_JSCAN_MAX_DEPTH;
         n <= NGX_HTTP_LLM_JSCAN_MAX_DEPTH + 1;
         n++)
    {
        doc = malloc(2 * n + 1);
        memset(doc, '[', n);
        memset(doc + n, ']', n);
        doc[2 * n] = '\0';

        rc = ngx_http_llm_lua_json_decode(L, &env, (const unsigned char *) doc,
                                          2 * n, &error);

        if (n == NGX_HTTP_LLM_JSCAN_MAX_DEPTH) {
            CHECK(rc == 0, "depth %zu refused", n);

            rc = ngx_http_llm_lua_json_encode(L, &env, -1, 0, &out, &len,
                                              &error);
            CHECK(rc == 0 && len == 2 * n && memcmp(out, doc, len) == 0,
                  "depth %zu does not encode back", n);
            if (rc == 0) {
                test_free(&alloc, out);
            }

        } else {
            CHECK(rc == -1, "depth %zu taken", n);
        }

        lua_settop(L, 0);
        free(doc);
    }

    /* a table made deeper than the limit is not encoded */

    lua_createtable(L, 0, 0);
    lua_pushvalue(L, -1);

    for (n = 0; n < NGX_HTTP_LLM_JSCAN_MAX_DEPTH + 1; n++) {
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, 1);
        lua_remove(L, -2);
    }

    lua_pop(L, 1);

    rc = ngx_http_llm_lua_json_encode(L, &env, -1, 0, &out, &len, &error);
    CHECK(rc == -1, "a table nested too deep is encoded");
    lua_settop(L, 0);
}


/* the object member by member: untouched, read, changed */

static void
test_lazy(lua_State *L)
{
    char                 *out;
    size_t                len;
    const char           *doc, *error, *want;
    ngx_http_llm_lazy_t  *lz;

    doc = "{\"model\":\"m\",\"n\":1,\"messages\":[{\"x\":\"y\"}]}";

    lz = ngx_http_llm_lua_json_lazy(L, &env, (const unsigned char *) doc,
                                    strlen(doc));
    CHECK(lz != NULL, "no lazy table");
    if (lz == NULL) {
        return;
    }

    lua_getfield(L, -1, "model");
    CHECK(lua_type(L, -1) == LUA_TSTRING
          && strcmp(lua_tostring(L, -1), "m") == 0, "model is not \"m\"");
    lua_pop(L, 1);

    CHECK(ngx_http_llm_lua_json_lazy_encode(L, -1, lz, &out, &len, &error)
          == 0 && out == NULL, "a read member changed the document");

    lua_pushinteger(L, 2);
    lua_setfield(L, -2, "n");
    lua_pushliteral(L, "new");
    lua_setfield(L, -2, "added");

    want = "{\"model\":\"m\",\"n\":2,\"messages\":[{\"x\":\"y\"}],"
           "\"added\":\"new\"}";

    CHECK(ngx_http_llm_lua_json_lazy_encode(L, -1, lz, &out, &len, &error)
          == 0 && out && len == strlen(want) && memcmp(out, want, len) == 0,
          "lazy encode gives %.*s", out ? (int) len : 0, out ? out : "");
    test_free(&alloc, out);

    /* encoded whole (the layer above, through env.expand) */

    want = "{\"model\":\"m\",\"n\":2,\"messages\":[{\"x\":\"y\"}],"
           "\"added\":\"new\"}";

    CHECK(ngx_http_llm_lua_json_encode(L, &env, -1, 0, &out, &len, &error)
          == 0 && len == strlen(want) && memcmp(out, want, len) == 0,
          "whole encode gives %.*s", out ? (int) len : 0, out ? out : "");
    test_free(&alloc, out);

    ngx_http_llm_lua_json_lazy_done(L, -1, lz);
    lua_settop(L, 0);
}


/*
 * every allocation failing in turn: an error, "out of memory", and no
 * buffer left; then the same work with no failure succeeds
 */

static void
test_alloc_failure(lua_State *L)
{
    int                   rc, ok;
    char                 *out;
    long                  n;
    size_t                len;
    const char           *error;
    ngx_http_llm_lazy_t  *lz;
    const char           *doc;

    doc = "{\"s\":\"a\\nb\",\"n\":1234567890123456789012345678901234567890"
          "12345678901234567890123456789012345678901234567890,"
          "\"o\":{\"y\":1,\"x\":2},\"l\":\"012345678901234567890123456789"
          "01234567890123456789012345678901234567890123456789012345678901"
          "23456789012345678901234567890123456789012345678901234567890123"
          "4567890123456789\"}";

    ok = 0;

    for (n = 0; n < 64 && !ok; n++) {
        alloc.allocs = 0;
        alloc.fail_after = n;
        error = NULL;

        rc = ngx_http_llm_lua_json_decode(L, &env, (const unsigned char *) doc,
                                          strlen(doc), &error);

        if (rc != 0) {
            CHECK(error && strcmp(error, "out of memory") == 0
                  && lua_gettop(L) == 0,
                  "decode fails with %s after %ld", error, n);
            CHECK(alloc.live == 0, "decode leaves %ld", alloc.live);
            continue;
        }

        /* a table with new keys: the encoder sorts them in a buffer */

        lua_pushinteger(L, 1);
        lua_setfield(L, -2, "added2");
        lua_pushinteger(L, 1);
        lua_setfield(L, -2, "added1");

        rc = ngx_http_llm_lua_json_encode(L, &env, -1, 0, &out, &len, &error);
        lua_settop(L, 0);

        if (rc != 0) {
            CHECK(error && strcmp(error, "out of memory") == 0,
                  "encode fails with %s after %ld", error, n);
            CHECK(alloc.live == 0, "encode leaves %ld", alloc.live);
            continue;
        }

        test_free(&alloc, out);
        ok = 1;
    }

    CHECK(ok && n > 3, "never succeeds (%ld)", n);
    CHECK(alloc.live == 0, "%ld buffers left", alloc.live);

    /* the same member by member: a changed member, an added key */

    ok = 0;

    for (n = 0; n < 64 && !ok; n++) {
        alloc.allocs = 0;
        alloc.fail_after = n;
        error = NULL;

        lz = ngx_http_llm_lua_json_lazy(L, &env, (const unsigned char *) doc,
                                        strlen(doc));
        if (lz == NULL) {
            CHECK(0, "no lazy table");
            break;
        }

        lua_pushliteral(L, "b\"c");
        lua_setfield(L, -2, "s");
        lua_pushinteger(L, 1);
        lua_setfield(L, -2, "added");

        rc = ngx_http_llm_lua_json_lazy_encode(L, -1, lz, &out, &len,
                                               &error);
        ngx_http_llm_lua_json_lazy_done(L, -1, lz);
        lua_settop(L, 0);

        if (rc != 0) {
            CHECK(error && strcmp(error, "out of memory") == 0,
                  "lazy encode fails with %s after %ld", error, n);
            CHECK(alloc.live == 0, "lazy encode leaves %ld", alloc.live);
            continue;
        }

        CHECK(out != NULL, "a changed document is not encoded");
        test_free(&alloc, out);
        ok = 1;
    }

    CHECK(ok && n > 2, "lazy encode never succeeds (%ld)", n);
    CHECK(alloc.live == 0, "%ld buffers left", alloc.live);

    alloc.fail_after = -1;
}


int
main(void)
{
    lua_State  *L;

    L = test_open();

    test_round_trips(L);
    test_big_numbers(L);
    test_escapes(L);
    test_depth(L);
    test_lazy(L);
    test_alloc_failure(L);

    CHECK(alloc.live == 0, "%ld buffers left at the end", alloc.live);

    lua_close(L);

    printf("lua_json: %d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
