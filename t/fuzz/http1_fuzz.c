/* fuzz-sources: ngx_http_llm_http1.c */

/*
 * libFuzzer target: the HTTP/1.x answer parser (ngx_http_llm_http1.c).
 *
 * Each input is fed whole, byte by byte, in pieces of sizes drawn from a
 * hash of the input (empty pieces among them) and cut once.  Every way
 * must give the same outcome, the same status and the same body (bit for
 * bit, as a hash and a length); the body is never longer than the input,
 * every piece lies inside the piece fed, and nothing follows DONE or
 * ERROR.
 * Built and run by `./build.sh fuzz`.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_llm_http1.h"

#include "fuzz_split.h"


#define fail()  fail_at(__LINE__)

static void
fail_at(int line)
{
    fprintf(stderr, "%s:%d: the check failed\n", __FILE__, line);
    abort();
}


typedef struct {
    int       rc;
    unsigned  status;
    int       complete;
    size_t    len;
    uint64_t  hash;
} outcome_t;


static void
run(const unsigned char *in, size_t size, int how, uint64_t seed,
    outcome_t *o)
{
    int                    rc;
    size_t                 off, n, pieces, blen, i;
    const unsigned char   *p, *last, *body;
    ngx_http_llm_http1_t   h;

    ngx_http_llm_http1_init(&h);

    o->rc = NGX_HTTP_LLM_HTTP1_AGAIN;
    o->status = 0;
    o->len = 0;
    o->hash = 0xcbf29ce484222325ULL;

    off = 0;
    pieces = 0;
    rc = NGX_HTTP_LLM_HTTP1_AGAIN;

    while (off < size && rc == NGX_HTTP_LLM_HTTP1_AGAIN) {
        n = fuzz_piece(how, &seed, &pieces, off, size);
        p = in + off;
        last = p + n;

        for ( ;; ) {
            rc = ngx_http_llm_http1_parse(&h, &p, last, &body, &blen);

            if (p < in + off || p > last) {
                fail();
            }

            if (rc == NGX_HTTP_LLM_HTTP1_STATUS) {
                if (o->status || h.status < 100 || h.status > 999) {
                    fail();
                }

                o->status = h.status;
                continue;
            }

            if (rc == NGX_HTTP_LLM_HTTP1_BODY) {
                if (body < in + off || body + blen > last || blen == 0) {
                    fail();
                }

                for (i = 0; i < blen; i++) {
                    o->hash = (o->hash ^ body[i]) * 0x100000001b3ULL;
                }

                o->len += blen;
                continue;
            }

            break;
        }

        if (rc == NGX_HTTP_LLM_HTTP1_AGAIN && p != last) {
            fail();
        }

        off += n;
    }

    if (o->len > size) {
        fail();
    }

    o->rc = rc;
    o->complete = ngx_http_llm_http1_complete_at_close(&h);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int        how;
    size_t     i;
    uint64_t   seed;
    outcome_t  whole, part;

    seed = 0xcbf29ce484222325ULL;

    for (i = 0; i < size; i++) {
        seed = (seed ^ data[i]) * 0x100000001b3ULL;
    }

    run(data, size, 0, seed, &whole);

    for (how = 1; how <= 3; how++) {
        run(data, size, how, seed, &part);

        if (part.rc != whole.rc || part.status != whole.status
            || part.len != whole.len || part.hash != whole.hash
            || part.complete != whole.complete)
        {
            fail();
        }
    }

    return 0;
}
