/* fuzz-sources: ngx_http_llm_sse.c */

/*
 * libFuzzer target: the server-sent events parser (ngx_http_llm_sse.c).
 *
 * Each input is fed whole, byte by byte, in pieces of sizes drawn from a
 * hash of the input (empty pieces among them) and cut once, into a data
 * buffer of a size the hash gives and into one larger than the input.
 * Every way must report the same events (data, data lines, truncation,
 * raw length, the first data line's value offsets) and leave the same
 * unfinished event.  A line-by-line reading of the stream is the
 * reference for the events, and the offsets of the first data line's
 * value must point at that value in the event's raw bytes.
 * Built and run by `./build.sh fuzz`.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_llm_sse.h"

#include "fuzz_split.h"


#define MAX_EVENTS  256


typedef struct {
    size_t          data_len;
    size_t          data_lines;
    unsigned        truncated;
    size_t          raw_len;
    size_t          value_start;
    size_t          value_end;
    uint64_t        data_hash;
} event_t;


typedef struct {
    size_t          n;              /* events, also past MAX_EVENTS */
    event_t         ev[MAX_EVENTS];
    event_t         rest;           /* the unfinished event */
} result_t;


/* a property does not hold: say which, and let libFuzzer keep the input */

#define fail()  fail_at(__LINE__)

static void
fail_at(int line)
{
    fprintf(stderr, "%s:%d: the check failed\n", __FILE__, line);
    abort();
}


static uint64_t
hash(const unsigned char *p, size_t len)
{
    size_t    i;
    uint64_t  h;

    h = 0xcbf29ce484222325ULL;

    for (i = 0; i < len; i++) {
        h = (h ^ p[i]) * 0x100000001b3ULL;
    }

    return h;
}


static void
keep(const ngx_http_llm_sse_t *p, event_t *e)
{
    e->data_len = p->data_len;
    e->data_lines = p->data_lines;
    e->truncated = p->truncated;
    e->raw_len = p->raw_len;
    e->value_start = p->value_start;
    e->value_end = p->value_end;
    e->data_hash = hash(p->data, p->data_len);
}


/*
 * how: 0 whole, 1 byte by byte, 2 pieces of random sizes (0 to 16),
 * 3 one cut
 */

static void
run(const unsigned char *in, size_t len, size_t cap, int how, uint64_t seed,
    result_t *res)
{
    int                  event;
    size_t               off, end, n, used, start, pieces;
    unsigned char       *data;
    ngx_http_llm_sse_t   p;

    /* its own allocation of its exact size: ASan sees any overrun */

    data = malloc(cap ? cap : 1);
    if (data == NULL) {
        abort();
    }

    ngx_http_llm_sse_init(&p, data, cap);

    res->n = 0;
    off = 0;
    pieces = 0;
    start = 0;

    while (off < len || how == 2) {
        n = fuzz_piece(how, &seed, &pieces, off, len);

        end = off + n;

        do {
            used = ngx_http_llm_sse_feed(&p, in + off, end - off, &event);

            if (used > end - off || (!event && used != end - off)) {
                fail();
            }

            off += used;

            if (!event) {
                continue;
            }

            if (p.data_len > cap || p.value_start > p.value_end
                || p.value_end > p.raw_len || start + p.raw_len != off)
            {
                fail();
            }

            if (res->n < MAX_EVENTS) {
                keep(&p, &res->ev[res->n]);
            }

            res->n++;
            start = off;
            ngx_http_llm_sse_next(&p);

        } while (off < end);

        if (how == 2 && off == len) {
            break;
        }
    }

    if (start + p.raw_len != len || p.data_len > cap) {
        fail();
    }

    keep(&p, &res->rest);

    free(data);
}


static int
same_event(const event_t *a, const event_t *b)
{
    return a->data_len == b->data_len && a->data_lines == b->data_lines
           && a->truncated == b->truncated && a->raw_len == b->raw_len
           && a->value_start == b->value_start
           && a->value_end == b->value_end
           && a->data_hash == b->data_hash;
}


static void
compare(const result_t *a, const result_t *b)
{
    size_t  i;

    if (a->n != b->n || !same_event(&a->rest, &b->rest)) {
        fail();
    }

    for (i = 0; i < a->n && i < MAX_EVENTS; i++) {
        if (!same_event(&a->ev[i], &b->ev[i])) {
            fail();
        }
    }
}


/* the reference: the stream read line by line */

typedef struct {
    unsigned char  *data;
    size_t          cap;
    event_t         e;
    size_t          len;
} ref_t;


static void
ref_append(ref_t *r, const unsigned char *s, size_t n)
{
    if (r->e.truncated) {
        return;
    }

    if (r->cap - r->len < n) {
        n = r->cap - r->len;
        r->e.truncated = 1;
    }

    memcpy(r->data + r->len, s, n);
    r->len += n;
}


static void
reference(const unsigned char *in, size_t len, size_t cap,
    const result_t *res)
{
    size_t                i, ls, le, start, colon, n;
    ref_t                 r;
    const unsigned char  *v;

    r.data = malloc(cap ? cap : 1);
    if (r.data == NULL) {
        abort();
    }

    r.cap = cap;
    memset(&r.e, 0, sizeof(event_t));
    r.len = 0;

    n = 0;
    start = 0;
    i = 0;

    for ( ;; ) {
        ls = i;

        while (i < len && in[i] != '\n' && in[i] != '\r') {
            i++;
        }

        if (i == len) {
            break;                      /* an unfinished line */
        }

        le = i++;

        if (le == ls) {

            /* a blank line: the event ends at its first line end byte */

            r.e.raw_len = i - start;
            r.e.data_len = r.len;
            r.e.data_hash = hash(r.data, r.len);

            if (n < res->n && n < MAX_EVENTS
                && !same_event(&r.e, &res->ev[n]))
            {
                fail();
            }

            n++;
            start = i;
            memset(&r.e, 0, sizeof(event_t));
            r.len = 0;

            if (in[le] == '\r' && i < len && in[i] == '\n') {
                i++;                    /* counted in the next event */
            }

            continue;
        }

        if (in[le] == '\r' && i < len && in[i] == '\n') {
            i++;
        }

        for (colon = ls; colon < le && in[colon] != ':'; colon++) {
            /* void */
        }

        if (colon - ls != 4 || memcmp(in + ls, "data", 4) != 0) {
            continue;
        }

        v = in + le;

        if (colon < le) {
            v = in + colon + 1;

            if (v < in + le && *v == ' ') {
                v++;
            }
        }

        if (r.e.data_lines++) {
            ref_append(&r, (const unsigned char *) "\n", 1);
        }

        if (r.e.data_lines == 1) {
            r.e.value_start = (v - in) - start;
            r.e.value_end = le - start;
        }

        ref_append(&r, v, (in + le) - v);
    }

    if (n != res->n) {
        fail();
    }

    free(r.data);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int              how, c;
    size_t           cap, caps[2];
    uint64_t         seed;
    static result_t  whole, part;

    seed = hash(data, size);

    caps[0] = seed % 40;
    caps[1] = size + 1;

    for (c = 0; c < 2; c++) {
        cap = caps[c];

        run(data, size, cap, 0, seed, &whole);
        reference(data, size, cap, &whole);

        for (how = 1; how <= 3; how++) {
            run(data, size, cap, how, seed, &part);
            compare(&whole, &part);
        }
    }

    return 0;
}
