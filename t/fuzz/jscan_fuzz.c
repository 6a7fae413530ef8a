/* fuzz-sources: ngx_http_llm_jscan.c */

/*
 * libFuzzer target: the resumable JSON scanner (ngx_http_llm_jscan.c).
 *
 * Each input is scanned whole, byte by byte, in pieces of sizes drawn from
 * a hash of the input (empty pieces among them) and cut once at a point
 * the hash gives; every way must agree on the result, the error and its
 * offset, the members and their offsets.  A small recursive validator of
 * the same grammar (string contents skipped as the scanner skips them) is
 * the reference: result, error offset and members must match it too, and
 * ngx_http_llm_jscan_is_number() must agree with its number grammar.
 * Built and run by `./build.sh fuzz`.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_llm_jscan.h"

#include "fuzz_split.h"


#define MAX_MEMBERS  NGX_HTTP_LLM_JSCAN_MAX_MEMBERS


typedef struct {
    const unsigned char          *p;
    size_t                        len;
    size_t                        pos;
    off_t                         error_offset;
    int                           result;
    size_t                        nmembers;
    ngx_http_llm_jscan_member_t   members[MAX_MEMBERS];
} ref_t;


/* a property does not hold: say which, and let libFuzzer keep the input */

#define fail()  fail_at(__LINE__)

static void
fail_at(int line)
{
    fprintf(stderr, "%s:%d: the check failed\n", __FILE__, line);
    abort();
}


/* the reference: returns -1 with r->error_offset and r->result on failure */

static int ref_value(ref_t *r, size_t depth, int top);


static int
ref_error(ref_t *r, size_t at, int result)
{
    r->error_offset = (off_t) at;
    r->result = result;
    return -1;
}


static void
ref_space(ref_t *r)
{
    while (r->pos < r->len
           && (r->p[r->pos] == ' ' || r->p[r->pos] == '\n'
               || r->p[r->pos] == '\r' || r->p[r->pos] == '\t'))
    {
        r->pos++;
    }
}


/* r->pos is past the opening quote; a backslash escapes any byte */

static int
ref_string(ref_t *r)
{
    while (r->pos < r->len) {
        if (r->p[r->pos] == '\\') {
            r->pos += 2;
            continue;
        }

        if (r->p[r->pos++] == '"') {
            return 0;
        }
    }

    return ref_error(r, r->len, NGX_HTTP_LLM_JSCAN_INVALID);
}


static int
ref_digits(ref_t *r)
{
    size_t  start;

    start = r->pos;

    while (r->pos < r->len && r->p[r->pos] >= '0' && r->p[r->pos] <= '9') {
        r->pos++;
    }

    if (r->pos == start) {
        return ref_error(r, r->pos, NGX_HTTP_LLM_JSCAN_INVALID);
    }

    return 0;
}


static int
ref_number(ref_t *r)
{
    if (r->p[r->pos] == '-') {
        r->pos++;
    }

    if (r->pos < r->len && r->p[r->pos] == '0') {
        r->pos++;

    } else if (ref_digits(r) != 0) {
        return -1;
    }

    if (r->pos < r->len && r->p[r->pos] == '.') {
        r->pos++;

        if (ref_digits(r) != 0) {
            return -1;
        }
    }

    if (r->pos < r->len && (r->p[r->pos] == 'e' || r->p[r->pos] == 'E')) {
        r->pos++;

        if (r->pos < r->len
            && (r->p[r->pos] == '+' || r->p[r->pos] == '-'))
        {
            r->pos++;
        }

        if (ref_digits(r) != 0) {
            return -1;
        }
    }

    return 0;
}


static int
ref_container(ref_t *r, size_t depth, int top)
{
    int                           object;
    unsigned char                 close;
    ngx_http_llm_jscan_member_t  *m;

    if (depth == NGX_HTTP_LLM_JSCAN_MAX_DEPTH) {
        return ref_error(r, r->pos, NGX_HTTP_LLM_JSCAN_INVALID);
    }

    object = (r->p[r->pos] == '{');
    close = object ? '}' : ']';
    r->pos++;

    ref_space(r);

    if (r->pos < r->len && r->p[r->pos] == close) {
        r->pos++;
        return 0;
    }

    for ( ;; ) {
        m = NULL;

        if (object) {
            if (r->pos == r->len || r->p[r->pos] != '"') {
                return ref_error(r, r->pos, NGX_HTTP_LLM_JSCAN_INVALID);
            }

            if (top) {
                if (r->nmembers == MAX_MEMBERS) {
                    return ref_error(r, r->pos, NGX_HTTP_LLM_JSCAN_TOO_MANY);
                }

                m = &r->members[r->nmembers++];
                m->key = (off_t) r->pos + 1;
            }

            r->pos++;

            if (ref_string(r) != 0) {
                return -1;
            }

            if (m) {
                m->key_len = r->pos - 1 - (size_t) m->key;
            }

            ref_space(r);

            if (r->pos == r->len || r->p[r->pos] != ':') {
                return ref_error(r, r->pos, NGX_HTTP_LLM_JSCAN_INVALID);
            }

            r->pos++;
            ref_space(r);
        }

        if (m) {
            m->value = (off_t) r->pos;

            if (r->pos < r->len) {
                m->type = ngx_http_llm_jscan_type(r->p[r->pos]);
            }
        }

        if (ref_value(r, depth + 1, 0) != 0) {
            return -1;
        }

        if (m) {
            m->value_end = (off_t) r->pos;
        }

        ref_space(r);

        if (r->pos < r->len && r->p[r->pos] == ',') {
            r->pos++;
            ref_space(r);
            continue;
        }

        if (r->pos < r->len && r->p[r->pos] == close) {
            r->pos++;
            return 0;
        }

        return ref_error(r, r->pos, NGX_HTTP_LLM_JSCAN_INVALID);
    }
}


static int
ref_value(ref_t *r, size_t depth, int top)
{
    size_t       i;
    const char  *word;

    if (r->pos == r->len) {
        return ref_error(r, r->len, NGX_HTTP_LLM_JSCAN_INVALID);
    }

    switch (r->p[r->pos]) {

    case '"':
        r->pos++;
        return ref_string(r);

    case '{':
    case '[':
        return ref_container(r, depth, top);

    case 't':
    case 'f':
    case 'n':
        word = (r->p[r->pos] == 't') ? "true"
               : (r->p[r->pos] == 'f') ? "false" : "null";

        for (i = 0; word[i]; i++, r->pos++) {
            if (r->pos == r->len || r->p[r->pos] != (unsigned char) word[i]) {
                return ref_error(r, r->pos, NGX_HTTP_LLM_JSCAN_INVALID);
            }
        }

        return 0;

    default:
        if (r->p[r->pos] != '-'
            && (r->p[r->pos] < '0' || r->p[r->pos] > '9'))
        {
            return ref_error(r, r->pos, NGX_HTTP_LLM_JSCAN_INVALID);
        }

        return ref_number(r);
    }
}


static void
ref_document(ref_t *r, const unsigned char *p, size_t len)
{
    int  object;

    memset(r, 0, sizeof(ref_t));
    r->p = p;
    r->len = len;

    ref_space(r);

    if (r->pos == len) {
        ref_error(r, len, NGX_HTTP_LLM_JSCAN_INVALID);
        return;
    }

    object = (p[r->pos] == '{');

    if (ref_value(r, 0, object) != 0) {
        return;
    }

    ref_space(r);

    if (r->pos != len) {
        ref_error(r, r->pos, NGX_HTTP_LLM_JSCAN_INVALID);
        return;
    }

    r->result = object ? NGX_HTTP_LLM_JSCAN_OK : NGX_HTTP_LLM_JSCAN_NOT_OBJECT;
}


/* the whole input is one number, by the reference grammar */

static int
ref_is_number(const unsigned char *p, size_t len)
{
    ref_t  r;

    memset(&r, 0, sizeof(ref_t));
    r.p = p;
    r.len = len;

    if (len == 0 || (p[0] != '-' && (p[0] < '0' || p[0] > '9'))) {
        return 0;
    }

    return ref_number(&r) == 0 && r.pos == len;
}


/*
 * how: 0 whole, 1 byte by byte, 2 pieces of random sizes (0 to 16),
 * 3 one cut; the result of finish() is returned and checked against
 * what feed() said
 */

static int
scan(ngx_http_llm_jscan_t *s, const unsigned char *p, size_t len, int how,
    uint64_t seed)
{
    int     rc, early;
    size_t  off, n, pieces;

    ngx_http_llm_jscan_init(s);

    rc = NGX_HTTP_LLM_JSCAN_AGAIN;
    early = NGX_HTTP_LLM_JSCAN_AGAIN;
    off = 0;
    pieces = 0;

    while (off < len) {
        n = fuzz_piece(how, &seed, &pieces, off, len);

        rc = ngx_http_llm_jscan_feed(s, p + off, n);
        off += n;

        if (rc != NGX_HTTP_LLM_JSCAN_AGAIN) {
            early = rc;

            /* once a result is known, more data changes nothing */

            if (ngx_http_llm_jscan_feed(s, p, len) != rc) {
                fail();
            }

            break;
        }
    }

    rc = ngx_http_llm_jscan_finish(s);

    if (rc == NGX_HTTP_LLM_JSCAN_AGAIN
        || (early != NGX_HTTP_LLM_JSCAN_AGAIN && rc != early)
        || ngx_http_llm_jscan_finish(s) != rc
        || ngx_http_llm_jscan_feed(s, p, len) != rc)
    {
        fail();
    }

    return rc;
}


static int
same_members(const ngx_http_llm_jscan_member_t *a,
    const ngx_http_llm_jscan_member_t *b, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (a[i].key != b[i].key || a[i].key_len != b[i].key_len
            || a[i].value != b[i].value || a[i].value_end != b[i].value_end
            || a[i].type != b[i].type)
        {
            return 0;
        }
    }

    return 1;
}


static void
compare(const ngx_http_llm_jscan_t *a, const ngx_http_llm_jscan_t *b)
{
    if (a->result != b->result || a->nmembers != b->nmembers) {
        fail();
    }

    if (a->result == NGX_HTTP_LLM_JSCAN_INVALID
        || a->result == NGX_HTTP_LLM_JSCAN_TOO_MANY)
    {
        if (a->error_offset != b->error_offset
            || a->error == NULL || b->error == NULL
            || strcmp(a->error, b->error) != 0)
        {
            fail();
        }
    }

    if (a->result == NGX_HTTP_LLM_JSCAN_OK
        && (a->obj_start != b->obj_start || a->obj_end != b->obj_end))
    {
        fail();
    }

    if ((a->result == NGX_HTTP_LLM_JSCAN_OK
         || a->result == NGX_HTTP_LLM_JSCAN_TOO_MANY)
        && !same_members(a->members, b->members, a->nmembers))
    {
        fail();
    }
}


static void
check_reference(const ngx_http_llm_jscan_t *s, const unsigned char *p,
    size_t len)
{
    size_t                              i;
    static ref_t                        r;
    const ngx_http_llm_jscan_member_t  *m;

    ref_document(&r, p, len);

    if (s->result != r.result) {
        fail();
    }

    if (s->result == NGX_HTTP_LLM_JSCAN_INVALID
        || s->result == NGX_HTTP_LLM_JSCAN_TOO_MANY)
    {
        if (s->error_offset != r.error_offset) {
            fail();
        }

        if (s->result == NGX_HTTP_LLM_JSCAN_INVALID) {
            return;
        }
    }

    if (s->nmembers != r.nmembers
        || !same_members(s->members, r.members, s->nmembers))
    {
        fail();
    }

    if (s->result != NGX_HTTP_LLM_JSCAN_OK) {
        return;
    }

    if (s->obj_start < 0 || (size_t) s->obj_end > len
        || p[s->obj_start] != '{' || p[s->obj_end - 1] != '}')
    {
        fail();
    }

    for (i = 0; i < s->nmembers; i++) {
        m = &s->members[i];

        if (m->type == NGX_HTTP_LLM_JSON_NUMBER
            && !ngx_http_llm_jscan_is_number(p + m->value,
                                             m->value_end - m->value))
        {
            fail();
        }
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                            how;
    uint64_t                       seed;
    size_t                         i;
    static ngx_http_llm_jscan_t    whole, part;

    /* FNV-1a of the input: the split points */

    seed = 0xcbf29ce484222325ULL;

    for (i = 0; i < size; i++) {
        seed = (seed ^ data[i]) * 0x100000001b3ULL;
    }

    scan(&whole, data, size, 0, seed);
    check_reference(&whole, data, size);

    for (how = 1; how <= 3; how++) {
        scan(&part, data, size, how, seed);
        compare(&whole, &part);
    }

    if (ngx_http_llm_jscan_is_number(data, size) != ref_is_number(data, size))
    {
        fail();
    }

    return 0;
}
