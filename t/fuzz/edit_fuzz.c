/* fuzz-sources: ngx_http_llm_jscan.c ngx_http_llm_edit.c */

/*
 * libFuzzer target: the edit planner.  From the input come a request body
 * (the input itself when it is a JSON object, else one built of members
 * the rules look at, with values of every type and whitespace between) and
 * rules: set, clamp or drop on each field, the engine profile's rename of
 * max_completion_tokens, llm_stream_usage.  They are planned the way
 * ngx_http_llm_plan.c plans them, with the module's pure code (the scanner
 * and the edit list), and applied whole and split in pieces.  Checks: the
 * size is what the walk writes, the result is a JSON object, the members
 * no rule touched are byte for byte the input's, the edited ones hold the
 * edit, and in the module's order of planning no edit is ever refused
 * (without it, overlapping edits are refused, never applied).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined \
 *       -I ngx_llm_router_module -o build/edit_fuzz t/fuzz/edit_fuzz.c \
 *       ngx_llm_router_module/ngx_http_llm_jscan.c \
 *       ngx_llm_router_module/ngx_http_llm_edit.c
 *   build/edit_fuzz -runs=1000000 t/fuzz/corpus/edit
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_llm_jscan.h"
#include "ngx_http_llm_edit.h"


#define NFIELDS   8
#define MAXBODY   (64 * 1024)
#define MAXEDITS  (2 * NGX_HTTP_LLM_JSCAN_MAX_MEMBERS + 4)

#define F_STREAM_OPTIONS  2
#define F_MT              3
#define F_MCT             4

#define OP_NONE   0
#define OP_SET    1
#define OP_CLAMP  2
#define OP_DROP   3

#define FAIL(what)                                                            \
    do {                                                                      \
        fprintf(stderr, "edit_fuzz: %s\n", what);                             \
        abort();                                                              \
    } while (0)


static const char  *fields[NFIELDS] = {
    "model", "stream", "stream_options", "max_tokens",
    "max_completion_tokens", "n", "messages", "x"
};

static const char  *values[] = {
    "null", "true", "false", "1", "100000000", "-0.5e+3", "\"s\"",
    "\"\\u0041\\\"\"", "{}", "[]", "[1,{\"a\":[null]}]",
    "{\"include_usage\":false,\"k\":{\"n\":[1,2]}}", NULL /* long */
};

#define NVALUES  (sizeof(values) / sizeof(values[0]))

static const char  *spaces[] = { "", "", " ", "\n\t " };

static const char  set_value[] = "7";
static const char  clamp_value[] = "4096";
static const char  usage_value[] = "{\"include_usage\":true}";
static const char  usage_member[] = "\"stream_options\":{\"include_usage\":true}";
static const char  mt_key[] = "\"max_tokens\"";

static char  long_value[6000];


typedef struct {
    unsigned char  *pos;
    unsigned char  *end;
} out_t;


static int
collect(void *arg, const unsigned char *p, size_t len)
{
    out_t  *o = arg;

    if (len > (size_t) (o->end - o->pos)) {
        FAIL("the walk wrote past the size the list counts");
    }

    memcpy(o->pos, p, len);
    o->pos += len;

    return 0;
}


static size_t
append(char *buf, size_t len, const char *s)
{
    size_t  n;

    n = strlen(s);

    if (len + n >= MAXBODY) {
        return len;
    }

    memcpy(buf + len, s, n);

    return len + n;
}


/* a body of the fields the rules look at, two bytes a member */

static size_t
build_body(const uint8_t *p, size_t n, char *buf)
{
    size_t       len, i;
    const char  *v;

    len = append(buf, 0, spaces[n % 4]);
    len = append(buf, len, "{");

    for (i = 0; i + 1 < n && i < 2 * 40; i += 2) {
        if (i) {
            len = append(buf, len, ",");
        }

        len = append(buf, len, spaces[(p[i] >> 3) & 3]);
        len = append(buf, len, "\"");
        len = append(buf, len, fields[p[i] % NFIELDS]);
        len = append(buf, len, "\"");
        len = append(buf, len, spaces[(p[i] >> 5) & 3]);
        len = append(buf, len, ":");
        len = append(buf, len, spaces[(p[i + 1] >> 4) & 3]);

        v = values[p[i + 1] % NVALUES];
        len = append(buf, len, v ? v : long_value);
        len = append(buf, len, spaces[(p[i + 1] >> 6) & 3]);
    }

    len = append(buf, len, "}");

    return len;
}


static int
scan_doc(ngx_http_llm_jscan_t *s, const unsigned char *p, size_t len)
{
    ngx_http_llm_jscan_init(s);

    if (ngx_http_llm_jscan_feed(s, p, len) == NGX_HTTP_LLM_JSCAN_AGAIN) {
        return ngx_http_llm_jscan_finish(s);
    }

    return ngx_http_llm_jscan_finish(s);
}


static int
key_is(const unsigned char *body, const ngx_http_llm_jscan_member_t *m,
    const char *name)
{
    size_t  n;

    n = strlen(name);

    return m->key_len == n && memcmp(body + m->key, name, n) == 0;
}


static int
add(ngx_http_llm_edits_t *l, off_t start, off_t end, const char *data,
    int *refused)
{
    int  rc;

    rc = ngx_http_llm_edits_add(l, start, end, (const unsigned char *) data,
                                data ? strlen(data) : 0);

    if (rc == NGX_HTTP_LLM_EDIT_OVERLAP) {
        *refused = 1;

    } else if (rc != NGX_HTTP_LLM_EDIT_OK) {
        FAIL("an edit of the planner is invalid or one too many");
    }

    return rc;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                           refused, module, usage, rename, j;
    char                         *text, insert[512];
    size_t                        len, i, k, kept, ins, ninserted, cut;
    ssize_t                       got;
    unsigned                      ops, flags;
    const char                   *vedit[NGX_HTTP_LLM_JSCAN_MAX_MEMBERS];
    unsigned char                *body, *out, *out2;
    unsigned char                 dropped[NGX_HTTP_LLM_JSCAN_MAX_MEMBERS];
    unsigned char                 renamed[NGX_HTTP_LLM_JSCAN_MAX_MEMBERS];
    int                           idx[NFIELDS];
    ngx_http_llm_edit_t           elts[MAXEDITS];
    ngx_http_llm_edits_t          edits;
    ngx_http_llm_edits_walk_t     walk;
    out_t                         o;
    ngx_http_llm_jscan_member_t  *m, *om;
    static ngx_http_llm_jscan_t   scan, oscan;
    static char                   built[MAXBODY];

    if (long_value[0] == '\0') {
        memset(long_value, 'A', sizeof(long_value) - 1);
        long_value[0] = '"';
        long_value[sizeof(long_value) - 2] = '"';
    }

    if (size < 3) {
        return 0;
    }

    ops = data[0] | (data[1] << 8);   /* 2 bits a field */
    flags = data[2];
    data += 3;
    size -= 3;

    usage = flags & 1;
    rename = (flags >> 1) & 1;
    module = (flags >> 2) & 1;        /* the module's order: no refusal */

    if ((flags >> 3) & 1) {
        body = (unsigned char *) data;        /* the input as the body */
        len = size;

    } else {
        len = build_body(data, size, built);
        body = (unsigned char *) built;
    }

    if (scan_doc(&scan, body, len) != NGX_HTTP_LLM_JSCAN_OK) {
        return 0;
    }

    /* the router refuses escaped and duplicated top-level keys */

    for (i = 0; i < scan.nmembers; i++) {
        m = &scan.members[i];

        if (memchr(body + m->key, '\\', m->key_len)) {
            return 0;
        }

        for (k = 0; k < i; k++) {
            if (scan.members[k].key_len == m->key_len
                && memcmp(body + scan.members[k].key, body + m->key,
                          m->key_len) == 0)
            {
                return 0;
            }
        }
    }

    for (j = 0; j < NFIELDS; j++) {
        idx[j] = -1;

        for (i = 0; i < scan.nmembers; i++) {
            if (key_is(body, &scan.members[i], fields[j])) {
                idx[j] = (int) i;
            }
        }
    }

    memset(dropped, 0, sizeof(dropped));
    memset(renamed, 0, sizeof(renamed));
    memset(vedit, 0, sizeof(vedit));

    ngx_http_llm_edits_init(&edits, elts, MAXEDITS);
    refused = 0;
    ins = 0;
    ninserted = 0;
    insert[0] = '\0';

    /* the model's rules: one for a field */

    for (j = 0; j < NFIELDS; j++) {
        unsigned  op = (ops >> (2 * j)) & 3;

        if (op == OP_NONE) {
            continue;
        }

        if (idx[j] < 0) {
            if (op == OP_SET) {
                ins += snprintf(insert + ins, sizeof(insert) - ins,
                                "%s\"%s\":%s", ins ? "," : "", fields[j],
                                set_value);
                ninserted++;
            }

            continue;
        }

        m = &scan.members[idx[j]];

        switch (op) {

        case OP_SET:
            if (m->type == NGX_HTTP_LLM_JSON_NULL
                && add(&edits, m->value, m->value_end, set_value, &refused)
                   == 0)
            {
                vedit[idx[j]] = set_value;
            }

            break;

        case OP_CLAMP:
            if (m->type == NGX_HTTP_LLM_JSON_NUMBER
                && add(&edits, m->value, m->value_end, clamp_value,
                       &refused)
                   == 0)
            {
                vedit[idx[j]] = clamp_value;
            }

            break;

        default:
            dropped[idx[j]] = 1;
            break;
        }
    }

    /* the profile: max_completion_tokens renamed, or dropped next to one */

    if (rename && idx[F_MCT] >= 0 && !dropped[idx[F_MCT]]) {
        m = &scan.members[idx[F_MCT]];

        if (idx[F_MT] >= 0) {
            if (vedit[idx[F_MCT]] == NULL) {
                dropped[idx[F_MCT]] = 1;
            }

        } else if (add(&edits, m->key - 1, m->key + m->key_len + 1, mt_key,
                       &refused)
                   == 0)
        {
            renamed[idx[F_MCT]] = 1;
        }
    }

    switch (ngx_http_llm_edits_drop(&edits, scan.members, scan.nmembers,
                                    dropped, &kept))
    {
    case NGX_HTTP_LLM_EDIT_OK:
        break;

    case NGX_HTTP_LLM_EDIT_OVERLAP:
        refused = 1;
        break;

    default:
        FAIL("a drop is invalid or one too many");
    }

    /* llm_stream_usage: in the module's order it yields to an owner */

    if (usage) {
        j = F_STREAM_OPTIONS;
        m = (idx[j] >= 0) ? &scan.members[idx[j]] : NULL;

        if (module
            && (((ops >> (2 * j)) & 3) != OP_NONE
                || (m && ngx_http_llm_edits_covered(&edits, m->key - 1,
                                                    m->value_end))))
        {
            /* owned */

        } else if (m == NULL) {
            ins += snprintf(insert + ins, sizeof(insert) - ins, "%s%s",
                            ins ? "," : "", usage_member);
            ninserted++;

        } else if ((m->type == NGX_HTTP_LLM_JSON_NULL
                    || m->type == NGX_HTTP_LLM_JSON_OBJECT)
                   && add(&edits, m->value, m->value_end, usage_value,
                          &refused)
                      == 0)
        {
            vedit[idx[j]] = usage_value;
        }
    }

    if (ins) {
        text = malloc(ins + 2);
        if (text == NULL) {
            return 0;
        }

        snprintf(text, ins + 2, "%s%s", kept ? "," : "", insert);

        if (add(&edits, scan.obj_end - 1, scan.obj_end - 1, text, &refused)
            != 0)
        {
            ninserted = 0;
        }

    } else {
        text = NULL;
    }

    if (module && refused) {
        FAIL("the module's order of planning had an edit refused");
    }

    /* apply: whole, then walked in two pieces and bytes */

    out = malloc(len + edits.delta + 1);
    out2 = malloc(len + edits.delta + 1);

    if (out == NULL || out2 == NULL) {
        FAIL("out of memory");
    }

    got = ngx_http_llm_edits_apply(&edits, body, len, out, len + edits.delta);

    if (got != (ssize_t) (len + edits.delta)) {
        FAIL("the edited body is not the size the list counts");
    }

    cut = len ? (flags >> 4) * len / 15 : 0;

    o.pos = out2;
    o.end = out2 + len + edits.delta;
    ngx_http_llm_edits_walk_init(&walk, &edits, collect, &o);

    if (ngx_http_llm_edits_walk_feed(&walk, body, cut) != 0) {
        FAIL("walk");
    }

    for (i = cut; i < len; i += k) {
        k = (len - i > 7) ? 7 : len - i;

        if (ngx_http_llm_edits_walk_feed(&walk, body + i, k) != 0) {
            FAIL("walk");
        }
    }

    if (ngx_http_llm_edits_walk_finish(&walk) != 0
        || o.pos != o.end || memcmp(out, out2, got) != 0)
    {
        FAIL("the body in pieces does not give the same edited body");
    }

    if (refused) {
        goto done;      /* the module would fail the request: no 2nd edit */
    }

    /* the result: a JSON object, untouched members byte for byte */

    j = scan_doc(&oscan, out, got);

    if (j == NGX_HTTP_LLM_JSCAN_TOO_MANY
        && scan.nmembers + ninserted > NGX_HTTP_LLM_JSCAN_MAX_MEMBERS)
    {
        goto done;      /* the defaults took it past the scanner's limit */
    }

    if (j != NGX_HTTP_LLM_JSCAN_OK) {
        fprintf(stderr, "%.*s\n-> %.*s\n", (int) len, body, (int) got, out);
        FAIL("the edited body is not a JSON object");
    }

    k = 0;

    for (i = 0; i < scan.nmembers; i++) {
        m = &scan.members[i];

        if (dropped[i]) {
            continue;
        }

        if (k == oscan.nmembers) {
            FAIL("a kept member is missing");
        }

        om = &oscan.members[k++];

        if (renamed[i]) {
            if (!key_is(out, om, "max_tokens")) {
                FAIL("a renamed key is not max_tokens");
            }

        } else if (om->key_len != m->key_len
                   || memcmp(out + om->key, body + m->key, m->key_len) != 0)
        {
            FAIL("a kept key changed");
        }

        if (vedit[i]) {
            if ((size_t) (om->value_end - om->value) != strlen(vedit[i])
                || memcmp(out + om->value, vedit[i], strlen(vedit[i])) != 0)
            {
                FAIL("an edited value is not the edit's");
            }

        } else if (om->value_end - om->value != m->value_end - m->value
                   || memcmp(out + om->value, body + m->value,
                             m->value_end - m->value) != 0)
        {
            FAIL("an untouched value changed");
        }
    }

    if (oscan.nmembers - k != ninserted) {
        FAIL("an insertion is not one member a default");
    }

done:

    free(text);
    free(out);
    free(out2);

    return 0;
}
