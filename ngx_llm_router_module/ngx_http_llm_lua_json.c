
/*
 * ngx_llm_router: JSON documents as Lua values, and back.
 * Not here: nginx, the hooks' allocator (the caller's env), lazy objects.
 *
 * Hooks see the body as Lua tables and may change them; what they leave
 * alone must come back the same:
 *   - objects and arrays are marked with metatables, so that an empty
 *     array stays an array and an empty object an object;
 *   - the order of an object's keys is remembered (in its metatable) and
 *     kept on output, new keys after the old, sorted;
 *   - null is llm.null (a light userdata);
 *   - integers are Lua integers (64 bits, exact); an integer literal beyond
 *     them, or a number beyond the range of a double (1e400, 1e-400), comes
 *     as an llm.number userdata that keeps its digits and is written back
 *     as they were; other numbers are floats, written back in the shortest
 *     form that reads back to the same double;
 *   - \u escapes (surrogate pairs too) become UTF-8.
 *
 * A document is decoded whatever the router's scanner (jscan) let through,
 * so that a hook always gets it: nesting up to the scanner's depth limit,
 * any number of the grammar, any bytes in strings, an escape JSON does not
 * know kept as its bytes (the engine refuses such a body anyway), a
 * repeated key taking its last value.  llm.json_decode() is strict on
 * escapes.
 */


#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <math.h>

#include "ngx_http_llm_lua_api.h"
#include "ngx_http_llm_lua_json.h"


/* one limit for the scanner, the decoder and the encoder */
#define NGX_HTTP_LLM_JSON_DEPTH  NGX_HTTP_LLM_JSCAN_MAX_DEPTH


typedef struct {
    const unsigned char  *p;
    const unsigned char  *end;
    const char           *error;
    char                 *scratch;
    size_t                scratch_size;
    unsigned              strict;      /* refuse unknown escapes */
    const ngx_http_llm_lua_json_env_t  *env;
} ngx_http_llm_jdec_t;


typedef struct {
    char                 *data;
    size_t                len;
    size_t                size;
    const char           *error;
    const ngx_http_llm_lua_json_env_t  *env;
} ngx_http_llm_jenc_t;


typedef struct {
    const char           *data;
    size_t                len;
    lua_Integer           index;
} ngx_http_llm_jkey_t;


static int
ngx_http_llm_jkey_cmp(const void *a, const void *b)
{
    int                         rc;
    const ngx_http_llm_jkey_t  *ka = a, *kb = b;

    rc = memcmp(ka->data, kb->data, ka->len < kb->len ? ka->len : kb->len);

    if (rc) {
        return rc;
    }

    return (ka->len > kb->len) - (ka->len < kb->len);
}


static int ngx_http_llm_lua_json_parse(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, const unsigned char *p,
    size_t len, unsigned strict, const char **error);
static int ngx_http_llm_jdec_value(lua_State *L, ngx_http_llm_jdec_t *d,
    int depth);
static int ngx_http_llm_jdec_string(lua_State *L, ngx_http_llm_jdec_t *d);
static int ngx_http_llm_jdec_number(lua_State *L, ngx_http_llm_jdec_t *d);
static void ngx_http_llm_jdec_space(ngx_http_llm_jdec_t *d);
static void ngx_http_llm_jdec_scratch_free(ngx_http_llm_jdec_t *d);
static int ngx_http_llm_lua_json_write(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, int idx, size_t hint, int depth,
    char **out, size_t *len, const char **error);
static int ngx_http_llm_jenc_value(lua_State *L, ngx_http_llm_jenc_t *e,
    int idx, int depth);
static int ngx_http_llm_jenc_table(lua_State *L, ngx_http_llm_jenc_t *e,
    int idx, int depth);
static int ngx_http_llm_jenc_kind(lua_State *L, ngx_http_llm_jenc_t *e,
    int idx, lua_Integer n, int *keys);
static int ngx_http_llm_jenc_array(lua_State *L, ngx_http_llm_jenc_t *e,
    int idx, lua_Integer n, int depth);
static int ngx_http_llm_jenc_object(lua_State *L, ngx_http_llm_jenc_t *e,
    int idx, int keys, int top, int depth);
static int ngx_http_llm_jenc_others(lua_State *L, ngx_http_llm_jenc_t *e,
    int idx, int keys, lua_Integer written, int first, int depth);
static int ngx_http_llm_jenc_string(ngx_http_llm_jenc_t *e, const char *s,
    size_t len);
static int ngx_http_llm_jenc_add(ngx_http_llm_jenc_t *e, const char *s,
    size_t len);


static const char  ngx_http_llm_json_array_key = 'a';
static const char  ngx_http_llm_json_object_key = 'o';   /* in metatables */


/* the array metatable and the object marker, made once per state */

void
ngx_http_llm_lua_json_init(lua_State *L)
{
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__name");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");     /* shared: not the hooks' */
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ngx_http_llm_json_array_key);

    luaL_newmetatable(L, NGX_HTTP_LLM_LUA_NUMBER);
    lua_pushcfunction(L, ngx_http_llm_lua_number_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");     /* shared: not the hooks' */
    lua_pop(L, 1);
}


int
ngx_http_llm_lua_number_tostring(lua_State *L)
{
    const char  *text;

    text = luaL_testudata(L, 1, NGX_HTTP_LLM_LUA_NUMBER);

    if (text == NULL) {
        return luaL_error(L, "not an llm.number");
    }

    lua_pushstring(L, text);

    return 1;
}


/*
 * Marks the table at idx as an array (a shared metatable) or an object:
 * an object's own metatable, named "object", lists its keys in order.  A
 * light userdata key no hook can make marks it (a hook can make a
 * metatable named "object"), and it is protected.
 */

void
ngx_http_llm_lua_json_mark(lua_State *L, int idx, int array)
{
    idx = lua_absindex(L, idx);

    if (array) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &ngx_http_llm_json_array_key);

    } else {
        lua_createtable(L, 4, 3);
        lua_pushliteral(L, "object");
        lua_setfield(L, -2, "__name");
        ngx_http_llm_lua_json_object_mt(L);
    }

    lua_setmetatable(L, idx);
}


/* the value at idx is the shared array metatable */

int
ngx_http_llm_lua_json_is_array_mt(lua_State *L, int idx)
{
    int  same;

    idx = lua_absindex(L, idx);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ngx_http_llm_json_array_key);
    same = lua_rawequal(L, idx, -1);
    lua_pop(L, 1);

    return same;
}


/* marks the metatable on the top of the stack as an object's, protected */

void
ngx_http_llm_lua_json_object_mt(lua_State *L)
{
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pushboolean(L, 1);
    lua_rawsetp(L, -2, &ngx_http_llm_json_object_key);
}


/*
 * Pushes the document [p, p + len) as a Lua value; on error pushes
 * nothing and returns -1 with *error set.
 */

int
ngx_http_llm_lua_json_decode(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, const unsigned char *p,
    size_t len, const char **error)
{
    return ngx_http_llm_lua_json_parse(L, env, p, len, 0, error);
}


/* the same for a text a hook gives (llm.json_decode): escapes are checked */

int
ngx_http_llm_lua_json_decode_strict(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, const unsigned char *p,
    size_t len, const char **error)
{
    return ngx_http_llm_lua_json_parse(L, env, p, len, 1, error);
}


static int
ngx_http_llm_lua_json_parse(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, const unsigned char *p,
    size_t len, unsigned strict, const char **error)
{
    int                  rc;
    ngx_http_llm_jdec_t  d;

    d.p = p;
    d.end = p + len;
    d.error = NULL;
    d.scratch = NULL;
    d.scratch_size = 0;
    d.strict = strict;
    d.env = env;

    rc = ngx_http_llm_jdec_value(L, &d, 0);

    if (rc == 0) {
        ngx_http_llm_jdec_space(&d);

        if (d.p != d.end) {
            lua_pop(L, 1);
            d.error = "text after the document";
            rc = -1;
        }
    }

    ngx_http_llm_jdec_scratch_free(&d);

    if (rc != 0) {
        *error = d.error ? d.error : "invalid JSON";
    }

    return rc;
}


static void
ngx_http_llm_jdec_scratch_free(ngx_http_llm_jdec_t *d)
{
    if (d->scratch) {
        d->env->free(d->env->ud, d->scratch);
        d->scratch = NULL;
    }
}


static void
ngx_http_llm_jdec_space(ngx_http_llm_jdec_t *d)
{
    while (d->p < d->end
           && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n'
               || *d->p == '\r'))
    {
        d->p++;
    }
}


static int
ngx_http_llm_jdec_literal(ngx_http_llm_jdec_t *d, const char *word)
{
    size_t  n;

    n = strlen(word);

    if ((size_t) (d->end - d->p) < n || memcmp(d->p, word, n) != 0) {
        d->error = "invalid literal";
        return -1;
    }

    d->p += n;

    return 0;
}


static int
ngx_http_llm_jdec_value(lua_State *L, ngx_http_llm_jdec_t *d, int depth)
{
    int         table, n;
    lua_Integer i;

    if (!lua_checkstack(L, 4)) {
        d->error = "out of Lua stack";
        return -1;
    }

    ngx_http_llm_jdec_space(d);

    if (d->p == d->end) {
        d->error = "unexpected end";
        return -1;
    }

    /* depth: the containers around this value, the scanner's count */

    if ((*d->p == '[' || *d->p == '{') && depth >= NGX_HTTP_LLM_JSON_DEPTH) {
        d->error = "nesting too deep";
        return -1;
    }

    switch (*d->p) {

    case '"':
        return ngx_http_llm_jdec_string(L, d);

    case 't':
        if (ngx_http_llm_jdec_literal(d, "true") != 0) {
            return -1;
        }

        lua_pushboolean(L, 1);
        return 0;

    case 'f':
        if (ngx_http_llm_jdec_literal(d, "false") != 0) {
            return -1;
        }

        lua_pushboolean(L, 0);
        return 0;

    case 'n':
        if (ngx_http_llm_jdec_literal(d, "null") != 0) {
            return -1;
        }

        lua_pushlightuserdata(L, NULL);
        return 0;

    case '[':
        d->p++;
        lua_createtable(L, 4, 0);
        table = lua_gettop(L);
        ngx_http_llm_lua_json_mark(L, table, 1);

        ngx_http_llm_jdec_space(d);

        if (d->p < d->end && *d->p == ']') {
            d->p++;
            return 0;
        }

        for (i = 1; /* void */; i++) {
            if (ngx_http_llm_jdec_value(L, d, depth + 1) != 0) {
                lua_settop(L, table - 1);
                return -1;
            }

            lua_rawseti(L, table, i);

            ngx_http_llm_jdec_space(d);

            if (d->p < d->end && *d->p == ',') {
                d->p++;
                continue;
            }

            if (d->p < d->end && *d->p == ']') {
                d->p++;
                return 0;
            }

            d->error = "expected ',' or ']'";
            lua_settop(L, table - 1);
            return -1;
        }

    case '{':
        d->p++;
        lua_createtable(L, 0, 4);
        table = lua_gettop(L);
        ngx_http_llm_lua_json_mark(L, table, 0);

        /* the key list: the object's metatable */

        lua_getmetatable(L, table);     /* table, keys */

        ngx_http_llm_jdec_space(d);

        if (d->p < d->end && *d->p == '}') {
            d->p++;
            lua_pop(L, 1);
            return 0;
        }

        for (n = 1; /* void */; n++) {
            ngx_http_llm_jdec_space(d);

            if (d->p == d->end || *d->p != '"') {
                d->error = "expected a key";
                lua_settop(L, table - 1);
                return -1;
            }

            if (ngx_http_llm_jdec_string(L, d) != 0) {
                lua_settop(L, table - 1);
                return -1;
            }

            ngx_http_llm_jdec_space(d);

            if (d->p == d->end || *d->p != ':') {
                d->error = "expected ':'";
                lua_settop(L, table - 1);
                return -1;
            }

            d->p++;

            /* a repeated key: the last value wins, listed once */

            lua_pushvalue(L, -1);
            lua_rawget(L, table);

            if (lua_isnil(L, -1)) {
                lua_pushvalue(L, -2);
                lua_rawseti(L, table + 1, (lua_Integer) lua_rawlen(L,
                                                                 table + 1)
                                          + 1);
            }

            lua_pop(L, 1);

            if (ngx_http_llm_jdec_value(L, d, depth + 1) != 0) {
                lua_settop(L, table - 1);
                return -1;
            }

            lua_rawset(L, table);

            ngx_http_llm_jdec_space(d);

            if (d->p < d->end && *d->p == ',') {
                d->p++;
                continue;
            }

            if (d->p < d->end && *d->p == '}') {
                d->p++;
                lua_pop(L, 1);          /* the key list */
                return 0;
            }

            d->error = "expected ',' or '}'";
            lua_settop(L, table - 1);
            return -1;
        }

    default:
        return ngx_http_llm_jdec_number(L, d);
    }
}


static unsigned
ngx_http_llm_jdec_hex(const unsigned char *p)
{
    unsigned  i, v, c;

    v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            c -= '0';

        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            c = (c | 0x20) - 'a' + 10;

        } else {
            return 0x110000;
        }

        v = v * 16 + c;
    }

    return v;
}


static int
ngx_http_llm_jdec_string(lua_State *L, ngx_http_llm_jdec_t *d)
{
    char                 *o;
    size_t                n;
    unsigned              cp, lo;
    const unsigned char  *p, *s, *q, *bs, *end;

    s = ++d->p;

    /* the closing quote: one not escaped by an odd run of backslashes */

    for (q = s; /* void */; q++) {
        q = memchr(q, '"', d->end - q);

        if (q == NULL) {
            d->error = "unterminated string";
            return -1;
        }

        for (p = q; p > s && p[-1] == '\\'; p--) { /* void */ }

        if ((q - p) % 2 == 0) {
            break;
        }
    }

    end = q;
    bs = memchr(s, '\\', end - s);

    if (bs == NULL) {
        lua_pushlstring(L, (const char *) s, end - s);
        d->p = end + 1;
        return 0;
    }

    /* the unescaped text is never longer than the escaped one */

    if (d->scratch == NULL || d->scratch_size < (size_t) (end - s)) {
        ngx_http_llm_jdec_scratch_free(d);
        d->scratch_size = (end - s) * 2;
        d->scratch = d->env->realloc(d->env->ud, NULL, d->scratch_size);

        if (d->scratch == NULL) {
            d->scratch_size = 0;
            d->error = "out of memory";
            return -1;
        }
    }

    o = d->scratch;
    p = s;

    while (bs) {
        n = bs - p;
        memcpy(o, p, n);
        o += n;
        p = bs + 1;

        switch (*p) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;

        case 'u':
            cp = (end - p < 5) ? 0x110000 : ngx_http_llm_jdec_hex(p + 1);

            if (cp > 0xffff) {
                if (d->strict) {
                    d->error = "bad \\u escape";
                    return -1;
                }

                /* as it is: the scanner let it through */

                *o++ = '\\';
                *o++ = 'u';
                break;
            }

            p += 4;

            if (cp >= 0xd800 && cp <= 0xdbff && end - p > 6
                && p[1] == '\\' && p[2] == 'u')
            {
                lo = ngx_http_llm_jdec_hex(p + 3);

                if (lo >= 0xdc00 && lo <= 0xdfff) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    p += 6;
                }
            }

            /* a lone surrogate is kept as its 3-byte form */

            if (cp < 0x80) {
                *o++ = (char) cp;

            } else if (cp < 0x800) {
                *o++ = (char) (0xc0 | (cp >> 6));
                *o++ = (char) (0x80 | (cp & 0x3f));

            } else if (cp < 0x10000) {
                *o++ = (char) (0xe0 | (cp >> 12));
                *o++ = (char) (0x80 | ((cp >> 6) & 0x3f));
                *o++ = (char) (0x80 | (cp & 0x3f));

            } else {
                *o++ = (char) (0xf0 | (cp >> 18));
                *o++ = (char) (0x80 | ((cp >> 12) & 0x3f));
                *o++ = (char) (0x80 | ((cp >> 6) & 0x3f));
                *o++ = (char) (0x80 | (cp & 0x3f));
            }

            break;

        default:
            if (d->strict) {
                d->error = "bad escape";
                return -1;
            }

            *o++ = '\\';
            *o++ = (char) *p;
            break;
        }

        p++;
        bs = (p < end) ? memchr(p, '\\', end - p) : NULL;
    }

    n = end - p;
    memcpy(o, p, n);
    o += n;

    lua_pushlstring(L, d->scratch, o - d->scratch);
    d->p = end + 1;

    return 0;
}


static int
ngx_http_llm_jdec_number(lua_State *L, ngx_http_llm_jdec_t *d)
{
    char                 *text, *buf, *end;
    size_t                n;
    double                v;
    unsigned              integer, nonzero;
    long long             ll;
    const unsigned char  *p;
    char                  small[64];

    p = d->p;
    integer = 1;
    nonzero = 0;

    if (p < d->end && *p == '-') {
        p++;
    }

    if (p == d->end || *p < '0' || *p > '9') {
        d->error = "unexpected character";
        return -1;
    }

    if (*p == '0' && p + 1 < d->end && p[1] >= '0' && p[1] <= '9') {
        d->error = "leading zero";
        return -1;
    }

    while (p < d->end && *p >= '0' && *p <= '9') {
        nonzero |= (*p != '0');
        p++;
    }

    if (p < d->end && *p == '.') {
        integer = 0;
        p++;

        if (p == d->end || *p < '0' || *p > '9') {
            d->error = "bad number";
            return -1;
        }

        while (p < d->end && *p >= '0' && *p <= '9') {
            nonzero |= (*p != '0');
            p++;
        }
    }

    if (p < d->end && (*p == 'e' || *p == 'E')) {
        integer = 0;
        p++;

        if (p < d->end && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == d->end || *p < '0' || *p > '9') {
            d->error = "bad number";
            return -1;
        }

        while (p < d->end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    n = p - d->p;

    if (integer && n >= sizeof(small)) {
        goto big;
    }

    /* a long text (many digits) goes through the scratch buffer */

    buf = small;

    if (n >= sizeof(small)) {
        if (d->scratch == NULL || d->scratch_size <= n) {
            ngx_http_llm_jdec_scratch_free(d);
            d->scratch_size = n + 1;
            d->scratch = d->env->realloc(d->env->ud, NULL, d->scratch_size);

            if (d->scratch == NULL) {
                d->scratch_size = 0;
                d->error = "out of memory";
                return -1;
            }
        }

        buf = d->scratch;
    }

    memcpy(buf, d->p, n);
    buf[n] = '\0';

    if (integer) {
        errno = 0;
        ll = strtoll(buf, &end, 10);

        if (errno == ERANGE) {
            goto big;
        }

        lua_pushinteger(L, (lua_Integer) ll);
        d->p = p;
        return 0;
    }

    v = strtod(buf, &end);

    /* beyond a double (1e400, or 1e-400 that would read as 0): its text */

    if (isinf(v) || (v == 0 && nonzero)) {
        goto big;
    }

    lua_pushnumber(L, v);
    d->p = p;

    return 0;

big:

    /* an llm.number keeping its text */

    text = lua_newuserdatauv(L, n + 1, 0);
    memcpy(text, d->p, n);
    text[n] = '\0';
    luaL_setmetatable(L, NGX_HTTP_LLM_LUA_NUMBER);

    d->p = p;

    return 0;
}


/*
 * Encodes the value at idx; on success *out is a text to give to
 * env->free() and 0 is returned, else -1 with *error set.
 */

int
ngx_http_llm_lua_json_encode(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, int idx, size_t hint,
    char **out, size_t *len, const char **error)
{
    return ngx_http_llm_lua_json_write(L, env, idx, hint, 0, out, len,
                                       error);
}


/* the same for a member of a document: it is one level down already */

int
ngx_http_llm_lua_json_encode_member(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, int idx, char **out,
    size_t *len, const char **error)
{
    return ngx_http_llm_lua_json_write(L, env, idx, 0, 1, out, len, error);
}


static int
ngx_http_llm_lua_json_write(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, int idx, size_t hint, int depth,
    char **out, size_t *len, const char **error)
{
    ngx_http_llm_jenc_t  e;

    e.data = NULL;
    e.len = 0;
    e.size = 0;
    e.error = NULL;
    e.env = env;

    /* the size the text will likely have: one allocation, no copies */

    if (hint) {
        e.data = env->realloc(env->ud, NULL, hint);
        if (e.data) {
            e.size = hint;
        }
    }

    if (ngx_http_llm_jenc_value(L, &e, lua_absindex(L, idx), depth) != 0) {
        if (e.data) {
            env->free(env->ud, e.data);
        }

        *error = e.error ? e.error : "cannot encode";
        return -1;
    }

    *out = e.data;
    *len = e.len;

    return 0;
}


static int
ngx_http_llm_jenc_add(ngx_http_llm_jenc_t *e, const char *s, size_t len)
{
    char    *p;
    size_t   size;

    if (e->size - e->len < len) {
        size = e->size ? e->size : 256;

        while (size - e->len < len) {
            size *= 2;
        }

        p = e->env->realloc(e->env->ud, e->data, size);
        if (p == NULL) {
            e->error = "out of memory";
            return -1;
        }

        e->data = p;
        e->size = size;
    }

    memcpy(e->data + e->len, s, len);
    e->len += len;

    return 0;
}


/* bytes a JSON string must escape: control characters, '"' and '\\' */

static const unsigned char  ngx_http_llm_jenc_escape[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
};


static int
ngx_http_llm_jenc_string(ngx_http_llm_jenc_t *e, const char *s, size_t len)
{
    size_t                i, from;
    char                  esc[8];
    uint64_t              w, q, b;
    const unsigned char  *u;

    u = (const unsigned char *) s;

    if (ngx_http_llm_jenc_add(e, "\"", 1) != 0) {
        return -1;
    }

    from = 0;

    for (i = 0; /* void */; i++) {

        /* 8 bytes at a time while none is below 0x20, '"' or '\\' */

        while (i + 8 <= len) {
            memcpy(&w, u + i, 8);

            q = w ^ 0x2222222222222222ULL;
            b = w ^ 0x5c5c5c5c5c5c5c5cULL;

            if ((((w - 0x2020202020202020ULL) & ~w)
                 | ((q - 0x0101010101010101ULL) & ~q)
                 | ((b - 0x0101010101010101ULL) & ~b))
                & 0x8080808080808080ULL)
            {
                break;
            }

            i += 8;
        }

        while (i < len && !ngx_http_llm_jenc_escape[u[i]]) {
            i++;
        }

        if (i == len) {
            break;
        }

        if (ngx_http_llm_jenc_add(e, s + from, i - from) != 0) {
            return -1;
        }

        switch (u[i]) {
        case '"': memcpy(esc, "\\\"", 3); break;
        case '\\': memcpy(esc, "\\\\", 3); break;
        case '\n': memcpy(esc, "\\n", 3); break;
        case '\r': memcpy(esc, "\\r", 3); break;
        case '\t': memcpy(esc, "\\t", 3); break;
        default: snprintf(esc, sizeof(esc), "\\u%04x", u[i]); break;
        }

        if (ngx_http_llm_jenc_add(e, esc, strlen(esc)) != 0) {
            return -1;
        }

        from = i + 1;
    }

    if (ngx_http_llm_jenc_add(e, s + from, len - from) != 0) {
        return -1;
    }

    return ngx_http_llm_jenc_add(e, "\"", 1);
}


static int
ngx_http_llm_jenc_value(lua_State *L, ngx_http_llm_jenc_t *e, int idx,
    int depth)
{
    int          prec;
    char         buf[64];
    double       v;
    size_t       len;
    const char  *s;

    switch (lua_type(L, idx)) {

    case LUA_TNIL:
        return ngx_http_llm_jenc_add(e, "null", 4);

    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) {
            return ngx_http_llm_jenc_add(e, "null", 4);
        }

        break;

    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? ngx_http_llm_jenc_add(e, "true", 4)
                                     : ngx_http_llm_jenc_add(e, "false", 5);

    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            len = snprintf(buf, sizeof(buf), "%lld",
                           (long long) lua_tointeger(L, idx));
            return ngx_http_llm_jenc_add(e, buf, len);
        }

        v = lua_tonumber(L, idx);

        if (isnan(v) || isinf(v)) {
            e->error = "NaN and infinity are not JSON";
            return -1;
        }

        /* the shortest text that reads back to the same double */

        for (prec = 15; prec <= 17; prec++) {
            len = snprintf(buf, sizeof(buf), "%.*g", prec, v);

            if (strtod(buf, NULL) == v) {
                break;
            }
        }

        /* keep it a float: 2.0 stays 2.0, not 2 */

        if (strpbrk(buf, ".eEn") == NULL && len + 2 < sizeof(buf)) {
            memcpy(buf + len, ".0", 3);
            len += 2;
        }

        return ngx_http_llm_jenc_add(e, buf, len);

    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        return ngx_http_llm_jenc_string(e, s, len);

    case LUA_TUSERDATA:
        s = luaL_testudata(L, idx, NGX_HTTP_LLM_LUA_NUMBER);

        if (s) {
            return ngx_http_llm_jenc_add(e, s, strlen(s));
        }

        break;

    case LUA_TTABLE:
        return ngx_http_llm_jenc_table(L, e, idx, depth);

    default:
        break;
    }

    e->error = "a value of this type is not JSON";

    return -1;
}


static int
ngx_http_llm_jenc_table(lua_State *L, ngx_http_llm_jenc_t *e, int idx,
    int depth)
{
    int          array, keys, top;
    lua_Integer  n;

    if (depth >= NGX_HTTP_LLM_JSON_DEPTH) {
        e->error = "nested too deep (or a cycle)";
        return -1;
    }

    if (!lua_checkstack(L, 8)) {
        e->error = "out of Lua stack";
        return -1;
    }

    top = lua_gettop(L);
    n = (lua_Integer) lua_rawlen(L, idx);

    array = ngx_http_llm_jenc_kind(L, e, idx, n, &keys);

    if (array == -1) {
        return -1;
    }

    if (array) {
        return ngx_http_llm_jenc_array(L, e, idx, n, depth);
    }

    return ngx_http_llm_jenc_object(L, e, idx, keys, top, depth);
}


/*
 * 1: the table at idx is an array, 0: an object, -1: it cannot be read.
 * An object of the decoder's leaves its metatable on the stack, its key
 * list: *keys is where, else 0.
 */

static int
ngx_http_llm_jenc_kind(lua_State *L, ngx_http_llm_jenc_t *e, int idx,
    lua_Integer n, int *keys)
{
    int          array, top;
    lua_Integer  count;

    top = lua_gettop(L);

    /* marked by the decoder, or a plain sequence 1..n */

    array = -1;
    *keys = 0;

    if (lua_getmetatable(L, idx)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &ngx_http_llm_json_array_key);

        if (lua_rawequal(L, -2, -1)) {
            array = 1;
            lua_settop(L, top);

        } else {
            lua_pop(L, 1);

            if (lua_rawgetp(L, -1, &ngx_http_llm_json_object_key)
                != LUA_TNIL)
            {
                array = 0;
                lua_pop(L, 1);
                *keys = lua_gettop(L);      /* the key list */

                /* a document given member by member: all of it now */

                if (e->env->expand
                    && e->env->expand(L, idx, &e->error) != 0)
                {
                    lua_settop(L, top);
                    return -1;
                }

            } else {
                lua_settop(L, top);
            }
        }
    }

    if (array == -1) {
        count = 0;
        lua_pushnil(L);

        while (lua_next(L, idx)) {
            count++;
            lua_pop(L, 1);
        }

        array = (n > 0 && count == n);
    }

    return array;
}


static int
ngx_http_llm_jenc_array(lua_State *L, ngx_http_llm_jenc_t *e, int idx,
    lua_Integer n, int depth)
{
    lua_Integer  i;

    if (ngx_http_llm_jenc_add(e, "[", 1) != 0) {
        return -1;
    }

    for (i = 1; i <= n; i++) {
        if (i > 1 && ngx_http_llm_jenc_add(e, ",", 1) != 0) {
            return -1;
        }

        lua_rawgeti(L, idx, i);

        if (ngx_http_llm_jenc_value(L, e, lua_gettop(L), depth + 1)
            != 0)
        {
            return -1;
        }

        lua_pop(L, 1);
    }

    return ngx_http_llm_jenc_add(e, "]", 1);
}


/* an object: the remembered keys first, in their order, then the others */

static int
ngx_http_llm_jenc_object(lua_State *L, ngx_http_llm_jenc_t *e, int idx,
    int keys, int top, int depth)
{
    int           first;
    size_t        len;
    lua_Integer   i, n, count, written;
    const char   *s;

    if (ngx_http_llm_jenc_add(e, "{", 1) != 0) {
        return -1;
    }

    first = 1;

    /* the remembered keys first, in their order */

    written = 0;

    if (keys) {
        n = (lua_Integer) lua_rawlen(L, keys);

        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, keys, i);         /* key */
            lua_pushvalue(L, -1);
            lua_rawget(L, idx);              /* key, value */

            if (lua_isnil(L, -1)) {
                lua_pop(L, 2);
                continue;
            }

            written++;

            s = lua_tolstring(L, -2, &len);

            if ((!first && ngx_http_llm_jenc_add(e, ",", 1) != 0)
                || ngx_http_llm_jenc_string(e, s, len) != 0
                || ngx_http_llm_jenc_add(e, ":", 1) != 0
                || ngx_http_llm_jenc_value(L, e, lua_gettop(L), depth + 1)
                   != 0)
            {
                return -1;
            }

            first = 0;
            lua_pop(L, 2);
        }
    }

    /* then the others, sorted, so that the output does not vary */

    count = 0;
    lua_pushnil(L);

    while (lua_next(L, idx)) {
        count++;
        lua_pop(L, 1);
    }

    if (count != written
        && ngx_http_llm_jenc_others(L, e, idx, keys, written, first, depth)
           != 0)
    {
        return -1;
    }

    lua_settop(L, top);

    return ngx_http_llm_jenc_add(e, "}", 1);
}


/* the keys not remembered, sorted, so that the output does not vary */

static int
ngx_http_llm_jenc_others(lua_State *L, ngx_http_llm_jenc_t *e, int idx,
    int keys, lua_Integer written, int first, int depth)
{
    int                   seen, others;
    lua_Integer           i, n, count;
    ngx_http_llm_jkey_t  *sorted;

    /* the keys written, to skip them */

    lua_createtable(L, 0, (int) written);
    seen = lua_gettop(L);

    if (keys) {
        n = (lua_Integer) lua_rawlen(L, keys);

        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, keys, i);
            lua_pushboolean(L, 1);
            lua_rawset(L, seen);
        }
    }

    lua_createtable(L, 8, 0);
    others = lua_gettop(L);
    count = 0;

    lua_pushnil(L);

    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawget(L, seen);

        if (lua_toboolean(L, -1)) {
            lua_pop(L, 1);
            continue;
        }

        lua_pop(L, 1);

        if (lua_type(L, -1) != LUA_TSTRING) {
            e->error = "an object key must be a string";
            return -1;
        }

        lua_pushvalue(L, -1);
        lua_rawseti(L, others, ++count);
    }

    if (count) {
        sorted = e->env->realloc(e->env->ud, NULL,
                                 count * sizeof(ngx_http_llm_jkey_t));
        if (sorted == NULL) {
            e->error = "out of memory";
            return -1;
        }

        for (i = 1; i <= count; i++) {
            lua_rawgeti(L, others, i);
            sorted[i - 1].data = lua_tolstring(L, -1, &sorted[i - 1].len);
            sorted[i - 1].index = i;
            lua_pop(L, 1);      /* the string stays in "others" */
        }

        qsort(sorted, count, sizeof(ngx_http_llm_jkey_t),
              ngx_http_llm_jkey_cmp);

        for (i = 0; i < count; i++) {
            lua_rawgeti(L, others, sorted[i].index);
            lua_rawget(L, idx);

            if ((!first && ngx_http_llm_jenc_add(e, ",", 1) != 0)
                || ngx_http_llm_jenc_string(e, sorted[i].data, sorted[i].len)
                   != 0
                || ngx_http_llm_jenc_add(e, ":", 1) != 0
                || ngx_http_llm_jenc_value(L, e, lua_gettop(L), depth + 1)
                   != 0)
            {
                e->env->free(e->env->ud, sorted);
                return -1;
            }

            first = 0;
            lua_pop(L, 1);
        }

        e->env->free(e->env->ud, sorted);
    }

    return 0;
}


/*
 * 1 when the text v is the JSON raw, or what raw gives decoded and encoded
 * again: the document did not change, only its spelling would.
 */

int
ngx_http_llm_lua_json_same(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, const char *v, size_t vlen,
    const unsigned char *raw, size_t rawlen)
{
    int          same;
    char        *c;
    size_t       clen;
    const char  *error;

    if (vlen == rawlen && memcmp(v, raw, vlen) == 0) {
        return 1;
    }

    if (ngx_http_llm_lua_json_decode(L, env, raw, rawlen, &error) != 0) {
        return 0;
    }

    same = 0;

    if (ngx_http_llm_lua_json_encode(L, env, -1, rawlen + 256, &c, &clen,
                                     &error)
        == 0)
    {
        same = (clen == vlen && memcmp(c, v, vlen) == 0);
        env->free(env->ud, c);
    }

    lua_pop(L, 1);

    return same;
}
