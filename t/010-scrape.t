# Engine metrics scraping (llm_scrape): each engine's metric names, sums
# over label sets, malformed and oversized metrics, stale values.  The
# status request waits (auth_request to a slow mock) so scrapes can run.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK3_PORT}=m3");

# more metrics than the 1 MiB cap, written once for the whole file
our $big = "/tmp/llm-router-test-big-metrics.txt";
open my $fh, '>', $big or die "$big: $!";
print $fh "vllm:num_requests_running 1\n" x 50000;
close $fh;

our $small = "/tmp/llm-router-test-small-metrics.txt";
open $fh, '>', $small or die "$small: $!";
print $fh "vllm:num_requests_running 4\n";
close $fh;

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
location = /llm/status {
    auth_request /wait;
    llm_router_status;
}
location = /wait {
    internal;
    proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK3_PORT}/health;
    proxy_set_header X-Mock-Delay-Ms 600;
}
location = /m1/control {
    proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}/mock/control;
}
_EOC_
    }
    if (!defined $block->request) {
        $block->set_value("request", "GET /llm/status");
    }
});

run_tests();

__DATA__

=== TEST 1: vLLM names from the mock engine
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine vllm;
    llm_scrape interval=100ms;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
--- request eval
["POST /m1/control\n{\"waiting\":7,\"kv\":0.25,\"running_extra\":3}",
 "GET /llm/status",
 "POST /m1/control\n{\"waiting\":0,\"kv\":0.0,\"running_extra\":0}"]
--- response_body_like eval
["waiting",
 qr/"check":null,"peers":\[\{"name":"127\.0\.0\.1:\d+","up":true,[^{]*"metrics":\{"running":3\.0000,"waiting":7\.0000,"kv_cache":0\.2500,"age_ms":\d+,"stale":false,"scrapes":\d+,"malformed_lines":0,"last_error":null\}\}/,
 "waiting"]



=== TEST 2: llama.cpp names; llama.cpp has no KV-cache gauge
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine llamacpp;
    llm_scrape interval=100ms;
    server 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
}
server {
    listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
    location = /metrics {
        return 200 "# HELP llamacpp:requests_processing Number of requests processing.\n# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 2\nllamacpp:requests_deferred 5\nllamacpp:kv_cache_usage_ratio 0.9\n";
    }
}
--- response_body_like chomp
"metrics":\{"running":2\.0000,"waiting":5\.0000,"kv_cache":null,"age_ms":\d+,"stale":false
--- no_error_log
[warn]



=== TEST 3: SGLang names, summed over label sets (several models)
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine sglang;
    llm_scrape interval=100ms;
    server 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
}
server {
    listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
    location = /metrics {
        return 200 "sglang:num_running_reqs{model_name=\"a\"} 2\nsglang:num_running_reqs{model_name=\"b\",tp_rank=\"0\"} 3\nsglang:num_queue_reqs{model_name=\"a\"} 4\nsglang:token_usage{model_name=\"a\"} 0.5\n";
    }
}
--- response_body_like chomp
"metrics":\{"running":5\.0000,"waiting":4\.0000,"kv_cache":0\.5000,



=== TEST 4: TGI names, with a custom metrics URI
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine tgi;
    llm_scrape interval=100ms uri=/custom/metrics;
    server 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
}
server {
    listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
    location = /custom/metrics {
        return 200 "tgi_queue_size 6\ntgi_batch_current_size 2\n";
    }
}
--- response_body_like chomp
"metrics":\{"running":2\.0000,"waiting":6\.0000,"kv_cache":null,



=== TEST 5: an older vLLM's gpu_cache_usage_perc stands in for kv_cache
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine vllm;
    llm_scrape interval=100ms;
    server 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
}
server {
    listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
    location = /metrics {
        return 200 "vllm:num_requests_running 1\r\nvllm:num_requests_waiting 0\r\nvllm:gpu_cache_usage_perc 0.75\r\n";
    }
}
--- response_body_like chomp
"metrics":\{"running":1\.0000,"waiting":0\.0000,"kv_cache":0\.7500,



=== TEST 6: malformed metrics: good lines kept, bad ones counted, logged once
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine vllm;
    llm_scrape interval=100ms;
    server 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
}
server {
    listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
    location = /metrics {
        return 200 "<html>oops</html>\nvllm:num_requests_running NaN\nvllm:num_requests_running +Inf\nvllm:num_requests_running 1e999\nvllm:num_requests_waiting{x=\"unterminated} 1\nvllm:num_requests_waiting 3\nvllm:kv_cache_usage_perc 0.5";
    }
}
--- response_body_like chomp
"metrics":\{"running":null,"waiting":3\.0000,"kv_cache":0\.5000,"age_ms":\d+,"stale":false,"scrapes":\d+,"malformed_lines":5,"last_error":null\}
--- grep_error_log eval: qr/llm router: the metrics of peer \S+ of upstream "pool_a" have \d+ malformed lines/
--- grep_error_log_out eval
qr/\Allm router: the metrics of peer 127\.0\.0\.1:\d+ of upstream "pool_a" have 5 malformed lines\n\z/



=== TEST 7: metrics over the 1 MiB cap are refused, not read on
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine vllm;
    llm_scrape interval=2s;
    server 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
}
server {
    listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
    location = /metrics {
        default_type text/plain;
        alias /tmp/llm-router-test-big-metrics.txt;
    }
}
--- response_body_like chomp
"metrics":\{"running":null,"waiting":null,"kv_cache":null,"age_ms":null,"stale":true,"scrapes":0,"malformed_lines":0,"last_error":"metrics too large"\}
--- no_error_log
[alert]



=== TEST 8: values that stop coming are flagged stale after two intervals
The metrics answer once a minute (limit_req); the first scrape succeeds,
the next ones get 503.
--- http_config
llm_router_zone llm 1m;
limit_req_zone $server_addr zone=once:1m rate=1r/m;
upstream pool_a {
    llm_engine vllm;
    llm_scrape interval=100ms;
    server 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
}
server {
    listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
    location = /metrics {
        limit_req zone=once nodelay;
        limit_req_status 503;
        default_type text/plain;
        alias /tmp/llm-router-test-small-metrics.txt;
    }
}
--- response_body_like chomp
"metrics":\{"running":4\.0000,"waiting":null,"kv_cache":null,"age_ms":\d{3,},"stale":true,"scrapes":1,"malformed_lines":0,"last_error":"status 503"\}



=== TEST 9: llm_scrape needs an engine with metrics
--- http_config
llm_router_zone llm 1m;
upstream pool_a { llm_engine openai; llm_scrape; server 127.0.0.1:1; }
--- config
--- request
GET /
--- must_die
--- error_log
llm_scrape in upstream "pool_a" needs an llm_engine with metrics (vllm, llamacpp, sglang, tgi)



=== TEST 10: llm_scrape needs llm_router_zone
--- http_config
upstream pool_a { llm_engine vllm; llm_scrape interval=1s; server 127.0.0.1:1; }
--- config
--- request
GET /
--- must_die
--- error_log
llm_scrape in upstream "pool_a" needs "llm_router_zone"



=== TEST 11: a browser gets a self-contained HTML page that refreshes
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine vllm;
    llm_check interval=100ms timeout=100ms;
    llm_scrape interval=100ms;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
    server 127.0.0.1:1;
}
--- more_headers
Accept: text/html,application/xhtml+xml,*/*;q=0.8
--- response_headers
Content-Type: text/html
--- response_body_like chomp
\A<!DOCTYPE html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">.*<h2>pool_a <small>\(vllm\)</small></h2><table>.*<tr><td>127\.0\.0\.1:\d+</td><td class="up">up</td>.*<td>0\.00</td><td>0\.00</td><td>0\.00</td><td class="fresh">\d+</td></tr><tr><td>127\.0\.0\.1:1</td><td class="down">down</td>.*<td>connect failed</td><td></td><td></td><td></td><td></td></tr></table></body></html>\n\z
--- no_error_log
[alert]
