
/*
 * ngx_llm_router: a JSON object handed to a hook member by member.
 * Not here: nginx, decoding a value (lua_json.c), running the hook (hook.c).
 *
 * Most hooks read or change a few top-level fields of a body of many.  The
 * document is scanned once (jscan) and given to the hook as an empty table
 * whose metatable decodes a member the first time it is read; a member the
 * hook assigns or removes is recorded.  Afterwards only the members the
 * hook touched are encoded again, and only those that really changed
 * replace their original bytes: a hook that changed nothing costs a scan
 * and the decoding of what it read, and the original bytes go on.
 *
 * The bytes are the request's or the event's, so the table can be read
 * only during the call it was given to: then it gets the "spent"
 * metatable, whose methods refuse to decode, and its own metatable, with
 * the userdata, serves the next document.  The metatables are protected
 * (__metatable), so a hook cannot keep one.
 */


#include <stdlib.h>
#include <string.h>

#include "ngx_http_llm_lua_api.h"
#include "ngx_http_llm_lua_json.h"
#include "ngx_http_llm_lua_lazy.h"
#include "ngx_http_llm_jscan.h"


#define NGX_HTTP_LLM_LAZY_SEEN     1    /* decoded into the table */
#define NGX_HTTP_LLM_LAZY_REMOVED  2


/*
 * The members, as the scanner found them; the userdata ends with them.  It
 * is an upvalue of its metatable's methods, and is in the metatable too.
 */

struct ngx_http_llm_lazy_s {
    const unsigned char          *data;       /* NULL: spent */
    size_t                        len;
    const ngx_http_llm_lua_json_env_t  *env;  /* the caller's allocator */
    size_t                        room;       /* members it can hold */
    struct {
        size_t                    nmembers;
        ngx_http_llm_jscan_member_t  members[1];
    } scan;
};

#define ngx_http_llm_lazy_state(lz)                                           \
    ((unsigned char *) &(lz)->scan.members[(lz)->scan.nmembers])


typedef struct {
    char                               *data;
    size_t                              len;
    size_t                              size;
    const ngx_http_llm_lua_json_env_t  *env;
} ngx_http_llm_lazy_out_t;


/* the members the hook changed, encoded again */

typedef struct {
    char                               *text[NGX_HTTP_LLM_JSCAN_MAX_MEMBERS];
    size_t                              len[NGX_HTTP_LLM_JSCAN_MAX_MEMBERS];
} ngx_http_llm_lazy_enc_t;


static ngx_http_llm_lazy_t *ngx_http_llm_lazy_metatable(lua_State *L,
    size_t n);
static ngx_http_llm_lazy_t *ngx_http_llm_lazy_of(lua_State *L, int idx);
static int ngx_http_llm_lazy_find(ngx_http_llm_lazy_t *lz, const char *key,
    size_t len);
static int ngx_http_llm_lazy_decode(lua_State *L, ngx_http_llm_lazy_t *lz,
    int table, int i, const char **error);
static int ngx_http_llm_lazy_decode_rest(lua_State *L, ngx_http_llm_lazy_t *lz,
    int idx, const char **error);
static int ngx_http_llm_lazy_decode_error(lua_State *L, const char *error);
static int ngx_http_llm_lazy_index(lua_State *L);
static int ngx_http_llm_lazy_newindex(lua_State *L);
static int ngx_http_llm_lazy_pairs(lua_State *L);
static int ngx_http_llm_lazy_add(ngx_http_llm_lazy_out_t *o, const void *p,
    size_t len);
static int ngx_http_llm_lazy_key_cmp(const void *a, const void *b);
static int ngx_http_llm_lazy_changed(lua_State *L, int idx,
    ngx_http_llm_lazy_t *lz, ngx_http_llm_lazy_enc_t *enc,
    const char **error);
static int ngx_http_llm_lazy_added(lua_State *L, int idx,
    ngx_http_llm_lazy_t *lz, size_t *nkeys, const char **error);
static int ngx_http_llm_lazy_members(ngx_http_llm_lazy_out_t *o,
    ngx_http_llm_lazy_t *lz, ngx_http_llm_lazy_enc_t *enc);
static int ngx_http_llm_lazy_write_added(lua_State *L, int idx,
    ngx_http_llm_lazy_t *lz, ngx_http_llm_lazy_out_t *o, size_t nkeys,
    const char **error);
static int ngx_http_llm_lazy_same_string(lua_State *L, int idx,
    const unsigned char *raw, size_t len);


static const char            ngx_http_llm_lazy_key = 'z';
static int                   ngx_http_llm_lazy_spare_ref;  /* registry */
static int                   ngx_http_llm_lazy_spent_ref;
static ngx_http_llm_lazy_t  *ngx_http_llm_lazy_spare;      /* its userdata */


/*
 * Pushes the object [p, p + len) as a lazy table; NULL (nothing pushed)
 * when it is not an object of distinct, escape-free keys the scanner can
 * hold: then the caller decodes it whole.  The caller gives what this
 * returns to lazy_encode() and lazy_done() with the table.
 */

ngx_http_llm_lazy_t *
ngx_http_llm_lua_json_lazy(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, const unsigned char *p,
    size_t len)
{
    ngx_http_llm_jscan_t  scan;

    ngx_http_llm_jscan_init(&scan);
    (void) ngx_http_llm_jscan_feed(&scan, p, len);

    if (ngx_http_llm_jscan_finish(&scan) != NGX_HTTP_LLM_JSCAN_OK) {
        return NULL;
    }

    return ngx_http_llm_lua_json_lazy_scanned(L, env, p, len, &scan);
}


/* the same, for an object whose members are known already */

ngx_http_llm_lazy_t *
ngx_http_llm_lua_json_lazy_scanned(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, const unsigned char *p,
    size_t len, const ngx_http_llm_jscan_t *scan)
{
    size_t                 i, j, n;
    ngx_http_llm_lazy_t   *lz;

    n = scan->nmembers;

    for (i = 0; i < n; i++) {
        if (memchr(p + scan->members[i].key, '\\',
                   scan->members[i].key_len))
        {
            return NULL;
        }

        for (j = 0; j < i; j++) {
            if (scan->members[i].key_len == scan->members[j].key_len
                && memcmp(p + scan->members[i].key, p + scan->members[j].key,
                          scan->members[i].key_len) == 0)
            {
                return NULL;
            }
        }
    }

    /* the metatable and the userdata of an earlier document, or new ones */

    lz = ngx_http_llm_lazy_spare;

    if (lz && lz->room >= n) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ngx_http_llm_lazy_spare_ref);

    } else {
        lz = ngx_http_llm_lazy_metatable(L, n);
    }

    if (ngx_http_llm_lazy_spare) {
        ngx_http_llm_lazy_spare = NULL;
        lua_pushboolean(L, 0);
        lua_rawseti(L, LUA_REGISTRYINDEX, ngx_http_llm_lazy_spare_ref);
    }

    lz->data = p;
    lz->len = len;
    lz->env = env;
    lz->scan.nmembers = n;
    memcpy(lz->scan.members, scan->members,
           n * sizeof(ngx_http_llm_jscan_member_t));
    memset(ngx_http_llm_lazy_state(lz), 0, n + 1);

    lua_createtable(L, 0, 4);
    lua_insert(L, -2);
    lua_setmetatable(L, -2);

    return lz;
}


/*
 * A document's metatable: the methods, whose upvalue is the userdata, the
 * userdata (for lazy_all) and the object's keys in order, listed only when
 * the whole object is encoded (lazy_all).  The userdata holds n members, a
 * state byte each, and room for those of later documents.
 */

static ngx_http_llm_lazy_t *
ngx_http_llm_lazy_metatable(lua_State *L, size_t n)
{
    size_t                room;
    ngx_http_llm_lazy_t  *lz;

    lua_createtable(L, 0, 7);

    lua_pushliteral(L, "object");
    lua_setfield(L, -2, "__name");

    ngx_http_llm_lua_json_object_mt(L);        /* and __metatable */

    room = (n < 16) ? 16 : n;

    lz = lua_newuserdatauv(L, sizeof(ngx_http_llm_lazy_t)
                              + room * sizeof(ngx_http_llm_jscan_member_t)
                              + room + 1, 0);
    lz->data = NULL;
    lz->len = 0;
    lz->env = NULL;
    lz->room = room;
    lz->scan.nmembers = 0;

    lua_pushvalue(L, -1);
    lua_rawsetp(L, -3, &ngx_http_llm_lazy_key);

    lua_pushvalue(L, -1);
    lua_pushcclosure(L, ngx_http_llm_lazy_index, 1);
    lua_setfield(L, -3, "__index");

    lua_pushvalue(L, -1);
    lua_pushcclosure(L, ngx_http_llm_lazy_newindex, 1);
    lua_setfield(L, -3, "__newindex");

    lua_pushcclosure(L, ngx_http_llm_lazy_pairs, 1);
    lua_setfield(L, -2, "__pairs");

    return lz;
}


/*
 * The call the lazy table at idx (whose state is lz) was given to is over:
 * the table keeps what the hook read or set, and gets the spent metatable;
 * its own metatable is kept for the next document.
 */

void
ngx_http_llm_lua_json_lazy_done(lua_State *L, int idx, ngx_http_llm_lazy_t *lz)
{
    lua_Integer  i;

    if (lz->data == NULL) {
        return;
    }

    idx = lua_absindex(L, idx);
    lz->data = NULL;

    /*
     * no hook can give a document another metatable (they are protected,
     * llm.array refuses them); were it to happen, the one it has is not
     * lz's to keep as the spare
     */

    if (!lua_getmetatable(L, idx)) {
        return;
    }

    if (lua_rawgetp(L, -1, &ngx_http_llm_lazy_key) != LUA_TUSERDATA
        || lua_touserdata(L, -1) != lz)
    {
        lua_pop(L, 2);
        return;
    }

    lua_pop(L, 1);

    for (i = (lua_Integer) lua_rawlen(L, -1); i > 0; i--) {
        lua_pushnil(L);
        lua_rawseti(L, -2, i);          /* the key list of lazy_all */
    }

    lua_rawseti(L, LUA_REGISTRYINDEX, ngx_http_llm_lazy_spare_ref);
    ngx_http_llm_lazy_spare = lz;

    lua_rawgeti(L, LUA_REGISTRYINDEX, ngx_http_llm_lazy_spent_ref);
    lua_setmetatable(L, idx);
}


/*
 * The same where the Lua API cannot be used (the call failed in the middle
 * of a Lua error): the table keeps its own metatable, which refuses to
 * decode from now on, and the next document gets a new one.
 */

void
ngx_http_llm_lua_json_lazy_spend(ngx_http_llm_lazy_t *lz)
{
    lz->data = NULL;
}


/*
 * the registry slots of a state: for the spare metatable, and the spent
 * one (its userdata holds no bytes: lazy_index refuses to read)
 */

void
ngx_http_llm_lua_json_lazy_init(lua_State *L)
{
    lua_pushboolean(L, 0);
    ngx_http_llm_lazy_spare_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ngx_http_llm_lazy_spare = NULL;

    (void) ngx_http_llm_lazy_metatable(L, 0);
    ngx_http_llm_lazy_spent_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}


/* the lazy state of the table at idx, or NULL */

static ngx_http_llm_lazy_t *
ngx_http_llm_lazy_of(lua_State *L, int idx)
{
    ngx_http_llm_lazy_t  *lz;

    if (!lua_getmetatable(L, idx)) {
        return NULL;
    }

    lua_rawgetp(L, -1, &ngx_http_llm_lazy_key);
    lz = lua_touserdata(L, -1);
    lua_pop(L, 2);

    return lz;
}


static int
ngx_http_llm_lazy_find(ngx_http_llm_lazy_t *lz, const char *key, size_t len)
{
    size_t  i;

    for (i = 0; i < lz->scan.nmembers; i++) {
        if (lz->scan.members[i].key_len == len
            && memcmp(lz->data + lz->scan.members[i].key, key, len) == 0)
        {
            return (int) i;
        }
    }

    return -1;
}


/*
 * decodes member i into the table; leaves the value on the stack and
 * returns 0, or -1 with *error set (a value nested deeper than hooks take)
 */

static int
ngx_http_llm_lazy_decode(lua_State *L, ngx_http_llm_lazy_t *lz, int table,
    int i, const char **error)
{
    ngx_http_llm_jscan_member_t  *m;

    m = &lz->scan.members[i];

    if (ngx_http_llm_lua_json_decode(L, lz->env, lz->data + m->value,
                                     m->value_end - m->value, error)
        != 0)
    {
        return -1;
    }

    ngx_http_llm_lazy_state(lz)[i] = NGX_HTTP_LLM_LAZY_SEEN;

    lua_pushlstring(L, (const char *) lz->data + m->key, m->key_len);
    lua_pushvalue(L, -2);
    lua_rawset(L, table);

    return 0;
}


/* every member not read yet, into the table at idx */

static int
ngx_http_llm_lazy_decode_rest(lua_State *L, ngx_http_llm_lazy_t *lz, int idx,
    const char **error)
{
    size_t  i;

    for (i = 0; i < lz->scan.nmembers; i++) {
        if (ngx_http_llm_lazy_state(lz)[i] == 0) {
            if (ngx_http_llm_lazy_decode(L, lz, idx, (int) i, error) != 0) {
                return -1;
            }

            lua_pop(L, 1);
        }
    }

    return 0;
}


/* in the hook's call: its error */

static int
ngx_http_llm_lazy_decode_error(lua_State *L, const char *error)
{
    return luaL_error(L, "cannot decode a member: %s", error);
}


static int
ngx_http_llm_lazy_index(lua_State *L)
{
    int                   i;
    size_t                len;
    const char           *key, *error;
    ngx_http_llm_lazy_t  *lz;

    lz = lua_touserdata(L, lua_upvalueindex(1));

    if (lz->data == NULL) {
        return luaL_error(L, "%s", NGX_HTTP_LLM_LAZY_SPENT);
    }

    if (lua_type(L, 2) != LUA_TSTRING) {
        return 0;
    }

    key = lua_tolstring(L, 2, &len);
    i = ngx_http_llm_lazy_find(lz, key, len);

    if (i < 0 || ngx_http_llm_lazy_state(lz)[i]) {
        return 0;       /* not in the document, read already, or removed */
    }

    if (ngx_http_llm_lazy_decode(L, lz, 1, i, &error) != 0) {
        return ngx_http_llm_lazy_decode_error(L, error);
    }

    return 1;
}


static int
ngx_http_llm_lazy_newindex(lua_State *L)
{
    int                   i;
    size_t                len;
    const char           *key;
    ngx_http_llm_lazy_t  *lz;

    lz = lua_touserdata(L, lua_upvalueindex(1));

    if (lz->data && lua_type(L, 2) == LUA_TSTRING) {
        key = lua_tolstring(L, 2, &len);
        i = ngx_http_llm_lazy_find(lz, key, len);

        if (i >= 0) {
            ngx_http_llm_lazy_state(lz)[i] = lua_isnil(L, 3)
                                             ? NGX_HTTP_LLM_LAZY_REMOVED
                                             : NGX_HTTP_LLM_LAZY_SEEN;
        }
    }

    if (!lua_isnil(L, 3)) {
        lua_rawset(L, 1);
    }

    return 0;
}


/* pairs(): every member, decoded first */

static int
ngx_http_llm_lazy_pairs(lua_State *L)
{
    const char           *error;
    ngx_http_llm_lazy_t  *lz;

    lz = lua_touserdata(L, lua_upvalueindex(1));

    if (lz->data == NULL) {
        return luaL_error(L, "%s", NGX_HTTP_LLM_LAZY_SPENT);
    }

    if (ngx_http_llm_lazy_decode_rest(L, lz, 1, &error) != 0) {
        return ngx_http_llm_lazy_decode_error(L, error);
    }

    lua_getglobal(L, "next");
    lua_pushvalue(L, 1);
    lua_pushnil(L);

    return 3;
}


/*
 * decodes what was not read yet: before the table is encoded whole; -1
 * with *error set if the document is spent or a member cannot be decoded
 * (no Lua error: the encoder has memory to free)
 */

int
ngx_http_llm_lua_json_lazy_all(lua_State *L, int idx, const char **error)
{
    size_t                i;
    ngx_http_llm_lazy_t  *lz;

    idx = lua_absindex(L, idx);
    lz = ngx_http_llm_lazy_of(L, idx);

    if (lz == NULL) {
        return 0;
    }

    if (lz->data == NULL) {
        *error = NGX_HTTP_LLM_LAZY_SPENT;
        return -1;
    }

    if (ngx_http_llm_lazy_decode_rest(L, lz, idx, error) != 0) {
        return -1;
    }

    /* the key list the encoder writes the members by */

    lua_getmetatable(L, idx);

    if (lua_rawlen(L, -1) == 0) {
        for (i = 0; i < lz->scan.nmembers; i++) {
            lua_pushlstring(L, (const char *) lz->data
                               + lz->scan.members[i].key,
                            lz->scan.members[i].key_len);
            lua_rawseti(L, -2, (lua_Integer) i + 1);
        }
    }

    lua_pop(L, 1);

    return 0;
}


static int
ngx_http_llm_lazy_add(ngx_http_llm_lazy_out_t *o, const void *p, size_t len)
{
    char    *d;
    size_t   size;

    if (o->size - o->len < len) {
        size = o->size ? o->size : 256;

        while (size - o->len < len) {
            size *= 2;
        }

        d = o->env->realloc(o->env->ud, o->data, size);
        if (d == NULL) {
            return -1;
        }

        o->data = d;
        o->size = size;
    }

    memcpy(o->data + o->len, p, len);
    o->len += len;

    return 0;
}


typedef struct {
    const char   *data;
    size_t        len;
} ngx_http_llm_lazy_key_t;


static int
ngx_http_llm_lazy_key_cmp(const void *a, const void *b)
{
    int                             rc;
    const ngx_http_llm_lazy_key_t  *ka = a, *kb = b;

    rc = memcmp(ka->data, kb->data, ka->len < kb->len ? ka->len : kb->len);

    return rc ? rc : (ka->len > kb->len) - (ka->len < kb->len);
}


/*
 * A string member read and left as it was, without encoding it again: its
 * JSON has no escape, and the Lua string has the same bytes.
 */

static int
ngx_http_llm_lazy_same_string(lua_State *L, int idx, const unsigned char *raw,
    size_t len)
{
    size_t       n;
    const char  *s;

    s = lua_tolstring(L, idx, &n);

    return len == n + 2
           && memchr(raw + 1, '\\', n) == NULL
           && memcmp(raw + 1, s, n) == 0;
}


/*
 * The document after the hook.  *out is NULL when nothing changed (the
 * original bytes stand), else a text to give to the free() of the
 * document's env.  -1: cannot encode, *error says why.
 */

int
ngx_http_llm_lua_json_lazy_encode(lua_State *L, int idx,
    ngx_http_llm_lazy_t *lz, char **out, size_t *len, const char **error)
{
    int                       rc, changed;
    size_t                    i, nkeys;
    ngx_http_llm_lazy_out_t   o;
    ngx_http_llm_lazy_enc_t   enc;

    idx = lua_absindex(L, idx);

    *out = NULL;
    *len = 0;

    memset(&o, 0, sizeof(o));
    o.env = lz->env;
    memset(enc.text, 0, sizeof(enc.text));

    /* what changed, and the keys the hook added */

    changed = ngx_http_llm_lazy_changed(L, idx, lz, &enc, error);

    if (changed == -1
        || ngx_http_llm_lazy_added(L, idx, lz, &nkeys, error) != 0)
    {
        rc = -1;
        goto done;
    }

    if (!changed && nkeys == 0) {
        return 0;
    }

    /* then the text: original bytes where nothing changed */

    rc = 0;

    if (ngx_http_llm_lazy_add(&o, "{", 1) != 0
        || ngx_http_llm_lazy_members(&o, lz, &enc) != 0)
    {
        *error = "out of memory";
        rc = -1;
        goto done;
    }

    if (nkeys
        && ngx_http_llm_lazy_write_added(L, idx, lz, &o, nkeys, error) != 0)
    {
        rc = -1;
        goto done;
    }

    if (ngx_http_llm_lazy_add(&o, "}", 1) != 0) {
        *error = "out of memory";
        rc = -1;
        goto done;
    }

    *out = o.data;
    *len = o.len;
    o.data = NULL;

done:

    for (i = 0; i < lz->scan.nmembers; i++) {
        lz->env->free(lz->env->ud, enc.text[i]);
    }

    lz->env->free(lz->env->ud, o.data);

    return rc;
}


/*
 * The members removed, or read and now different: 1 if any, encoded in
 * enc where they changed; 0 if none; -1 with *error set.
 */

static int
ngx_http_llm_lazy_changed(lua_State *L, int idx, ngx_http_llm_lazy_t *lz,
    ngx_http_llm_lazy_enc_t *enc, const char **error)
{
    int                                 changed;
    char                               *v;
    size_t                              i, vlen;
    ngx_http_llm_jscan_member_t        *m;
    const ngx_http_llm_lua_json_env_t  *env;

    env = lz->env;
    changed = 0;

    for (i = 0; i < lz->scan.nmembers; i++) {
        m = &lz->scan.members[i];

        if (ngx_http_llm_lazy_state(lz)[i] == NGX_HTTP_LLM_LAZY_REMOVED) {
            changed = 1;
            continue;
        }

        if (ngx_http_llm_lazy_state(lz)[i] != NGX_HTTP_LLM_LAZY_SEEN) {
            continue;
        }

        lua_pushlstring(L, (const char *) lz->data + m->key, m->key_len);
        lua_rawget(L, idx);

        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            ngx_http_llm_lazy_state(lz)[i] = NGX_HTTP_LLM_LAZY_REMOVED;
            changed = 1;
            continue;
        }

        if (m->type == NGX_HTTP_LLM_JSON_STRING
            && lua_type(L, -1) == LUA_TSTRING
            && ngx_http_llm_lazy_same_string(L, -1, lz->data + m->value,
                                             m->value_end - m->value))
        {
            lua_pop(L, 1);
            continue;
        }

        if (ngx_http_llm_lua_json_encode_member(L, env, -1, &v, &vlen,
                                                error)
            != 0)
        {
            lua_pop(L, 1);
            return -1;
        }

        lua_pop(L, 1);

        if (ngx_http_llm_lua_json_same(L, env, v, vlen, lz->data + m->value,
                                       m->value_end - m->value))
        {
            env->free(env->ud, v);
            continue;
        }

        enc->text[i] = v;
        enc->len[i] = vlen;
        changed = 1;
    }

    return changed;
}


/* how many keys the hook added; -1 with *error set for one not a string */

static int
ngx_http_llm_lazy_added(lua_State *L, int idx, ngx_http_llm_lazy_t *lz,
    size_t *nkeys, const char **error)
{
    size_t       len;
    const char  *s;

    *nkeys = 0;
    lua_pushnil(L);

    while (lua_next(L, idx)) {
        lua_pop(L, 1);

        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            *error = "an object key must be a string";
            return -1;
        }

        s = lua_tolstring(L, -1, &len);

        if (ngx_http_llm_lazy_find(lz, s, len) < 0) {
            (*nkeys)++;
        }
    }

    return 0;
}


/* the members in their order: their original bytes, or as encoded */

static int
ngx_http_llm_lazy_members(ngx_http_llm_lazy_out_t *o, ngx_http_llm_lazy_t *lz,
    ngx_http_llm_lazy_enc_t *enc)
{
    size_t                        i;
    ngx_http_llm_jscan_member_t  *m;

    for (i = 0; i < lz->scan.nmembers; i++) {
        m = &lz->scan.members[i];

        if (ngx_http_llm_lazy_state(lz)[i] == NGX_HTTP_LLM_LAZY_REMOVED) {
            continue;
        }

        if (o->len > 1 && ngx_http_llm_lazy_add(o, ",", 1) != 0) {
            return -1;
        }

        if (enc->text[i]) {
            if (ngx_http_llm_lazy_add(o, lz->data + m->key - 1,
                                      m->key_len + 2) != 0
                || ngx_http_llm_lazy_add(o, ":", 1) != 0
                || ngx_http_llm_lazy_add(o, enc->text[i], enc->len[i]) != 0)
            {
                return -1;
            }

            continue;
        }

        /* from the key's quote to the value's end */

        if (ngx_http_llm_lazy_add(o, lz->data + m->key - 1,
                                  m->value_end - (m->key - 1)) != 0)
        {
            return -1;
        }
    }

    return 0;
}


/* the nkeys keys the hook added, sorted; -1 with *error set */

static int
ngx_http_llm_lazy_write_added(lua_State *L, int idx, ngx_http_llm_lazy_t *lz,
    ngx_http_llm_lazy_out_t *o, size_t nkeys, const char **error)
{
    int                                 rc;
    char                               *v, *c;
    void                               *ud;
    size_t                              i, k, vlen, clen;
    const char                         *s;
    ngx_http_llm_lazy_key_t            *keys;
    const ngx_http_llm_lua_json_env_t  *env;

    env = lz->env;
    ud = env->ud;

    keys = env->realloc(ud, NULL, nkeys * sizeof(ngx_http_llm_lazy_key_t));
    if (keys == NULL) {
        *error = "out of memory";
        return -1;
    }

    k = 0;
    lua_pushnil(L);

    /* the strings stay anchored: they are keys of the table */

    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        s = lua_tolstring(L, -1, &vlen);

        if (ngx_http_llm_lazy_find(lz, s, vlen) < 0 && k < nkeys) {
            keys[k].data = s;
            keys[k].len = vlen;
            k++;
        }
    }

    qsort(keys, k, sizeof(ngx_http_llm_lazy_key_t),
          ngx_http_llm_lazy_key_cmp);

    rc = 0;

    for (i = 0; i < k && rc == 0; i++) {
        lua_pushlstring(L, keys[i].data, keys[i].len);
        lua_pushvalue(L, -1);
        lua_rawget(L, idx);

        c = NULL;
        v = NULL;

        if (ngx_http_llm_lua_json_encode(L, env, -2, 0, &c, &clen, error)
            != 0
            || ngx_http_llm_lua_json_encode_member(L, env, -1, &v, &vlen,
                                                   error)
               != 0)
        {
            rc = -1;

        } else if ((o->len > 1 && ngx_http_llm_lazy_add(o, ",", 1) != 0)
                   || ngx_http_llm_lazy_add(o, c, clen) != 0
                   || ngx_http_llm_lazy_add(o, ":", 1) != 0
                   || ngx_http_llm_lazy_add(o, v, vlen) != 0)
        {
            *error = "out of memory";
            rc = -1;
        }

        lua_pop(L, 2);
        env->free(ud, c);
        env->free(ud, v);
    }

    env->free(ud, keys);

    return rc;
}
