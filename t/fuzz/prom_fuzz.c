/* fuzz-sources: ngx_http_llm_prom.c */

/*
 * libFuzzer target: the Prometheus text parser (ngx_http_llm_prom.c).
 *
 * Each input is fed whole, byte by byte, in pieces of sizes drawn from a
 * hash of the input (empty pieces among them) and cut once, under a byte
 * limit the hash gives and under one larger than the input.  Every way
 * must give the same sums (bit for bit), the same names seen, the same
 * count of bad lines and the same verdict on the limit; every sum is a
 * finite number.
 * Built and run by `./build.sh fuzz`.
 */


#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_llm_prom.h"

#include "fuzz_split.h"


/* short names, so that the fuzzer finds them, and real ones */

static const char *const  names[] = {
    "a",
    "b_c",
    "x:y",
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "llamacpp:requests_processing",
    "Z9",
};


/* a property does not hold: say which, and let libFuzzer keep the input */

#define fail()  fail_at(__LINE__)

static void
fail_at(int line)
{
    fprintf(stderr, "%s:%d: the check failed\n", __FILE__, line);
    abort();
}


/*
 * how: 0 whole, 1 byte by byte, 2 pieces of random sizes (0 to 16),
 * 3 one cut
 */

static void
run(ngx_http_llm_prom_t *pr, const unsigned char *in, size_t len,
    size_t limit, int how, uint64_t seed)
{
    int     rc, big;
    size_t  off, n, pieces;

    ngx_http_llm_prom_init(pr, names, sizeof(names) / sizeof(names[0]),
                           limit);

    off = 0;
    pieces = 0;
    big = 0;

    while (off < len) {
        n = fuzz_piece(how, &seed, &pieces, off, len);

        rc = ngx_http_llm_prom_feed(pr, in + off, n);
        off += n;

        if (rc != NGX_HTTP_LLM_PROM_OK && rc != NGX_HTTP_LLM_PROM_TOO_BIG) {
            fail();
        }

        /* once over the limit, it stays over */

        if (big && rc != NGX_HTTP_LLM_PROM_TOO_BIG) {
            fail();
        }

        big = (rc == NGX_HTTP_LLM_PROM_TOO_BIG);
    }

    ngx_http_llm_prom_finish(pr);

    if (pr->total > limit || pr->total > len) {
        fail();
    }
}


static void
compare(const ngx_http_llm_prom_t *a, const ngx_http_llm_prom_t *b)
{
    size_t  i;

    if (a->bad_lines != b->bad_lines || a->too_big != b->too_big
        || a->total != b->total)
    {
        fail();
    }

    for (i = 0; i < a->nnames; i++) {
        if (a->seen[i] != b->seen[i]
            || memcmp(&a->sum[i], &b->sum[i], sizeof(double)) != 0)
        {
            fail();
        }
    }
}


static void
check_values(const ngx_http_llm_prom_t *pr)
{
    size_t  i;

    for (i = 0; i < pr->nnames; i++) {
        if (!isfinite(pr->sum[i]) || (!pr->seen[i] && pr->sum[i] != 0)) {
            fail();
        }
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                         how, l;
    size_t                      i, limit;
    uint64_t                    seed;
    static ngx_http_llm_prom_t  whole, part;

    seed = 0xcbf29ce484222325ULL;

    for (i = 0; i < size; i++) {
        seed = (seed ^ data[i]) * 0x100000001b3ULL;
    }

    for (l = 0; l < 2; l++) {
        limit = (l == 0) ? size + 1 : seed % (size + 1);

        run(&whole, data, size, limit, 0, seed);
        check_values(&whole);

        for (how = 1; how <= 3; how++) {
            run(&part, data, size, limit, how, seed);
            compare(&whole, &part);
        }
    }

    return 0;
}
