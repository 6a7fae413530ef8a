# Smaller hardening items (issue 15, section 7): scraped sums never
# overflow (the sample that would is malformed), huge values print in the
# exponent form of the Prometheus text format on the metrics page, and as
# JSON numbers on the status page;
# token counters fed by huge usage numbers stop at their top; the
# zone keys state by whole names, so names past its limits fail nginx -t.
# The pages wait (auth_request to a slow mock) so scrapes can run.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;
use PromText ();

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1");

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
location = /llm/status {
    auth_request /wait;
    llm_router_status;
}
location = /metrics {
    auth_request /wait;
    llm_router_metrics;
}
location = /wait {
    internal;
    proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}/health;
    proxy_set_header X-Mock-Delay-Ms 600;
}
_EOC_
    }
});

# the engine gauges of the metrics page as printed, once the strict parser
# of the text format took the whole page
sub gauges {
    my $text = shift;
    my (undef, $errs) = PromText::parse($text);
    return "invalid:\n" . join("\n", @$errs) . "\n" if @$errs;
    my $out = '';
    for my $g (qw(requests_running requests_waiting kv_cache_usage_ratio)) {
        my ($v) = $text =~ /^llm_peer_engine_$g\{[^}]*\} (\S+)$/m;
        $out .= "$g=" . ($v // 'none') . "\n";
    }
    return $out;
}

run_tests();

__DATA__

=== TEST 1: scraped sums never pass double range, huge ones print in exponent form
Two label sets of 1e308 overflowed a sum to +Inf (nginx's "%f" on it was
undefined behaviour); now the second sample is a malformed line.
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
        return 200 "vllm:num_requests_running{a=\"1\"} 1e308\nvllm:num_requests_running{a=\"2\"} 1e308\nvllm:num_requests_waiting 1e300\nvllm:kv_cache_usage_perc{a=\"1\"} -1.7e308\nvllm:kv_cache_usage_perc{a=\"2\"} -1.7e308\n";
    }
}
--- request
GET /metrics
--- response_body_filters eval
\&::gauges
--- response_body
requests_running=1e+308
requests_waiting=1.0000000000000001e+300
kv_cache_usage_ratio=-1.6999999999999999e+308
--- no_error_log
[alert]



=== TEST 2: the status page gives huge values as JSON numbers, an overflowing sample as malformed
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
        return 200 "vllm:num_requests_running{a=\"1\"} 1e308\nvllm:num_requests_running{a=\"2\"} 1e308\nvllm:num_requests_waiting 1e300\nvllm:kv_cache_usage_perc 0.25\n";
    }
}
--- request
GET /llm/status
--- response_body_like chomp
"metrics":\{"running":1e\+308,"waiting":1\.0000000000000001e\+300,"kv_cache":0\.2500,"age_ms":\d+,"stale":false,"scrapes":\d+,"malformed_lines":1,
--- no_error_log
[alert]



=== TEST 3: the HTML status page prints a huge value in exponent form
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
        return 200 "vllm:num_requests_running{a=\"1\"} 1e308\nvllm:num_requests_running{a=\"2\"} 1e308\nvllm:num_requests_waiting 2.5\nvllm:kv_cache_usage_perc 0.25\n";
    }
}
--- request
GET /llm/status
--- more_headers
Accept: text/html
--- response_body_like chomp
<td class="up">up</td>.*<td>1e\+308</td><td>2\.50</td><td>0\.25</td><td class="fresh">
--- no_error_log
[alert]



=== TEST 4: token counters stop at their top, never wrap back
An engine may claim up to 922337203685477580 tokens an answer (19 digits
are refused): 21 such answers passed 2^64 and the counter went back.
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    server 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
}
llm_model m { upstream pool_a; }
server {
    listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
    location / {
        default_type application/json;
        return 200 '{"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":"stop"}],"usage":{"prompt_tokens":922337203685477580,"completion_tokens":1,"total_tokens":922337203685477581}}';
    }
}
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
}
location = /metrics { llm_router_metrics; }
--- request eval
[("POST /v1/chat/completions\n{\"model\":\"m\",\"messages\":[]}") x 21, "GET /metrics"]
--- response_body_like eval
[("chat.completion") x 21,
 qr/^llm_prompt_tokens_total\{model="m",upstream="pool_a"\} 18446744073709551615\n.*^llm_completion_tokens_total\{model="m",upstream="pool_a"\} 21\n/ms]



=== TEST 5: two peers whose names share their first 63 bytes fail nginx -t
The zone keys a peer's state by its name; cut at 63 bytes these two
would share one state.
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine vllm;
    server unix:/tmp/llm-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-a.sock;
    server unix:/tmp/llm-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-b.sock;
}
--- config
--- request
GET /
--- must_die
--- error_log eval
qr{peer name "unix:/tmp/llm-x{70}-a\.sock" in upstream "pool_a" is longer than 63 bytes, in \S+nginx\.conf:\d+}



=== TEST 6: a long peer name fails nginx -t without a zone too
--- http_config
upstream pool_a {
    llm_engine openai;
    server unix:/tmp/llm-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-a.sock;
}
--- config
--- request
GET /
--- must_die
--- error_log
is longer than 63 bytes, in



=== TEST 7: two upstreams whose names share their first 63 bytes fail nginx -t
--- http_config
upstream pool_uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu_a {
    llm_engine vllm;
    server 127.0.0.1:1;
}
upstream pool_uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu_b {
    llm_engine vllm;
    server 127.0.0.1:1;
}
--- config
--- request
GET /
--- must_die
--- error_log eval
qr/upstream name "pool_uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu_a" is longer than 63 bytes, in \S+nginx\.conf:\d+/



=== TEST 8: a model name of 128 bytes or more fails nginx -t
Model counters are keyed by name (at most 127 bytes).
--- http_config
llm_router_zone llm 1m;
upstream pool_a { server 127.0.0.1:1; }
llm_model mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmma { upstream pool_a; }
llm_model mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmb { upstream pool_a; }
--- config
--- request
GET /
--- must_die
--- error_log eval
qr/llm_model name "mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmma" is longer than 127 bytes, in \S+nginx\.conf:\d+/



=== TEST 9: names at the limits are fine
--- http_config
upstream ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp {
    llm_engine openai;
    server unix:/tmp/yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy;
}
llm_model nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn { upstream ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp; }
--- config
location = /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok
