
/*
 * Unit tests of the Prometheus text parser (ngx_http_llm_prom.c).
 * Built and run by `./build.sh test`; prints "N passed, N failed".
 */


#include <stdio.h>
#include <string.h>
#include <math.h>

#include "ngx_http_llm_prom.h"


#include "unit_check.h"


static const char *const  names[] = {
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
};


static void
parse_split(ngx_http_llm_prom_t *pr, const char *text, size_t step,
    size_t limit)
{
    size_t  len, off, n;

    ngx_http_llm_prom_init(pr, names, 3, limit);

    len = strlen(text);

    for (off = 0; off < len; off += n) {
        n = (step && len - off > step) ? step : len - off;
        ngx_http_llm_prom_feed(pr, (const unsigned char *) text + off, n);
    }

    ngx_http_llm_prom_finish(pr);
}


static const char  vllm[] =
    "# HELP vllm:num_requests_running Number of requests running.\n"
    "# TYPE vllm:num_requests_running gauge\n"
    "vllm:num_requests_running{model_name=\"a\"} 3.0\n"
    "vllm:num_requests_running{model_name=\"b\",x=\"q\\\"}\"} 2\n"
    "vllm:num_requests_waiting{model_name=\"a\"} 7 1700000000000\r\n"
    "vllm:num_requests_waiting_total 100\n"
    "vllm:kv_cache_usage_perc 0.25\n";


static void
test_every_split(void)
{
    size_t               step;
    ngx_http_llm_prom_t  pr;

    for (step = 0; step < sizeof(vllm); step++) {
        parse_split(&pr, vllm, step, 1 << 20);

        CHECK(pr.seen[0] && pr.sum[0] == 5.0, "running summed over labels");
        CHECK(pr.seen[1] && pr.sum[1] == 7.0, "waiting with a timestamp");
        CHECK(pr.seen[2] && pr.sum[2] == 0.25, "kv usage");
        CHECK(pr.bad_lines == 0, "no bad lines");
    }
}


static void
test_garbage(void)
{
    ngx_http_llm_prom_t  pr;

    parse_split(&pr,
                "<html>not metrics</html>\n"
                "vllm:num_requests_running NaN\n"
                "vllm:num_requests_running +Inf\n"
                "vllm:num_requests_running 1e999\n"
                "vllm:num_requests_running 0x10\n"
                "vllm:num_requests_running{model=\"unterminated} 4\n"
                "vllm:num_requests_running\n"
                "vllm:num_requests_waiting 2\n"
                "vllm:kv_cache_usage_perc 0.5", 0, 1 << 20);

    CHECK(!pr.seen[0], "NaN, Inf, huge and hex values are refused");
    CHECK(pr.bad_lines == 7, "seven bad lines counted");
    CHECK(pr.seen[1] && pr.sum[1] == 2.0, "good lines among bad ones");
    CHECK(pr.seen[2] && pr.sum[2] == 0.5, "last line without a newline");
}


static void
test_missing_and_empty(void)
{
    ngx_http_llm_prom_t  pr;

    parse_split(&pr, "", 0, 1 << 20);
    CHECK(!pr.seen[0] && !pr.seen[1] && !pr.seen[2], "empty body");

    parse_split(&pr, "other_metric 1\n\n   \n# only comments\n", 3, 1 << 20);
    CHECK(!pr.seen[0] && pr.bad_lines == 0, "other metrics ignored");
}


static void
test_limits(void)
{
    char                 big[4096];
    ngx_http_llm_prom_t  pr;

    parse_split(&pr, vllm, 5, 60);
    CHECK(pr.too_big, "a body over the limit is flagged");
    CHECK(!pr.seen[0], "nothing past the limit is read");

    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big + sizeof(big) - 40, "\nvllm:num_requests_waiting 9\n", 30);

    parse_split(&pr, big, 100, 1 << 20);
    CHECK(pr.bad_lines == 1, "an overlong line is one bad line");
    CHECK(pr.seen[1] && pr.sum[1] == 9.0, "parsing resumes after it");
}


static void
test_negative_and_exponent(void)
{
    ngx_http_llm_prom_t  pr;

    parse_split(&pr,
                "vllm:num_requests_running -1\n"
                "vllm:num_requests_running 2.5e1\n", 1, 1 << 20);

    CHECK(pr.seen[0] && fabs(pr.sum[0] - 24.0) < 1e-9, "signs and exponents");
}


/* finite samples whose sum is not finite: the sum stays finite */

static void
test_sum_overflow(void)
{
    ngx_http_llm_prom_t  pr;

    parse_split(&pr,
                "vllm:num_requests_running 1e308\n"
                "vllm:num_requests_running 1e308\n"
                "vllm:num_requests_waiting -1.7e308\n"
                "vllm:num_requests_waiting -1.7e308\n"
                "vllm:num_requests_waiting 1\n", 0, 1 << 20);

    CHECK(pr.seen[0] && pr.sum[0] == 1e308, "a sum never reaches +Inf");
    CHECK(pr.seen[1] && isfinite(pr.sum[1]), "a sum never reaches -Inf");
    CHECK(pr.bad_lines == 2, "the samples that overflow are bad lines");
}


/* the value printer: the text format's spellings, never more than its room */

static void
number_is(double v, int decimals, const char *want)
{
    size_t         n;
    unsigned char  buf[NGX_HTTP_LLM_PROM_NUMBER_LEN + 8];
    char           what[128];

    memset(buf, 'X', sizeof(buf));
    n = ngx_http_llm_prom_number(buf, v, decimals);

    snprintf(what, sizeof(what), "number %g/%d is \"%s\", got \"%.*s\"",
             v, decimals, want, (int) n, buf);
    CHECK(n == strlen(want) && memcmp(buf, want, n) == 0, what);
    CHECK(n < NGX_HTTP_LLM_PROM_NUMBER_LEN && buf[n] == 'X',
          "number: within its room, no NUL");
}


static void
test_number(void)
{
    double               v;
    ngx_http_llm_prom_t  pr;

    number_is(3, 6, "3.000000");
    number_is(0.25, 4, "0.2500");
    number_is(-1.5, 2, "-1.50");
    number_is(999999999999999.0, 6, "999999999999999.000000");
    number_is(-999999999999999.0, 9, "-999999999999999.000000000");
    number_is(1e15, 6, "1000000000000000");
    number_is(1e300, 6, "1.0000000000000001e+300");
    number_is(-1.7976931348623157e308, 6, "-1.7976931348623157e+308");
    number_is(9223372036854775808.0, 4, "9.2233720368547758e+18");
    number_is(HUGE_VAL, 6, "+Inf");
    number_is(-HUGE_VAL, 6, "-Inf");
    number_is(NAN, 6, "NaN");
    number_is(2, 42, "2.000000000");

    /* a sum of finite samples never overflows (test_sum_overflow) */

    parse_split(&pr,
                "vllm:num_requests_running{a=\"1\"} 1e308\n"
                "vllm:num_requests_running{a=\"2\"} 1e308\n", 1, 1 << 20);

    v = pr.sum[0];
    CHECK(pr.seen[0] && v == 1e308, "a sum stays finite");
    number_is(v, 6, "1e+308");
}


int
main(void)
{
    test_every_split();
    test_garbage();
    test_missing_and_empty();
    test_limits();
    test_negative_and_exponent();
    test_sum_overflow();
    test_number();

    printf("prom parser: %d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
