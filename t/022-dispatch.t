# llm_dispatch: "proxy_pass http://NAME;" to an upstream{} block that
# stands for the one the router chose, without $llm_upstream.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}=m2");

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
upstream pool_a { server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}; keepalive 4; }
upstream pool_b {
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT};
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT};
}
upstream llm_chosen { llm_dispatch; }
llm_model llama3-8b { upstream pool_a; target served-8b; }
llm_model qwen-7b { upstream pool_b; }
_EOC_
    }
    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
location /v1/ {
    llm_router on;
    proxy_pass http://llm_chosen;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    add_header X-Upstream $llm_upstream;
    add_header X-Addr $upstream_addr;
}
_EOC_
    }
});

run_tests();

__DATA__

=== TEST 1: each model reaches its own block; the body is edited as usual
--- request eval
["POST /v1/chat/completions\n{\"model\":\"llama3-8b\",\"n\":12345678901234567}",
 "POST /v1/chat/completions\n{\"model\":\"qwen-7b\"}"]
--- more_headers
X-Mock-Echo: 1
--- response_headers eval
["X-Upstream: pool_a\nX-Addr: 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}",
 "X-Upstream: pool_b"]
--- response_body eval
["{\"model\":\"served-8b\",\"n\":12345678901234567}",
 "{\"model\":\"qwen-7b\"}"]
--- no_error_log
[error]



=== TEST 2: the chosen block's round robin picks the peers in turn
--- request eval
["POST /v1/chat/completions\n{\"model\":\"qwen-7b\"}",
 "POST /v1/chat/completions\n{\"model\":\"qwen-7b\"}"]
--- response_headers eval
["X-Mock-Instance: m1", "X-Mock-Instance: m2"]
--- no_error_log
[error]



=== TEST 3: the chosen block's keepalive connections are reused
--- request eval
["POST /v1/chat/completions\n{\"model\":\"llama3-8b\"}",
 "POST /v1/chat/completions\n{\"model\":\"llama3-8b\"}"]
--- response_headers eval
["X-Mock-Conn-Requests: 1", "X-Mock-Conn-Requests: 2"]



=== TEST 4: the chosen block's next upstream is tried when a peer is down
--- http_config
upstream pool_a {
    server 127.0.0.1:1;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
upstream llm_chosen { llm_dispatch; }
llm_model llama3-8b { upstream pool_a; }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://llm_chosen;
    proxy_next_upstream error non_idempotent;
}
--- request
POST /v1/chat/completions
{"model":"llama3-8b"}
--- response_headers
X-Mock-Instance: m1
--- error_log
connect() failed (111: Connection refused) while connecting to upstream



=== TEST 5: a request that was not routed gets a 500 and a log line
--- config
location /v1/ {
    proxy_pass http://llm_chosen;
}
--- request
POST /v1/chat/completions
{"model":"llama3-8b"}
--- error_code: 500
--- response_body_like: 500 Internal Server Error
--- error_log
llm router: upstream "llm_chosen" has "llm_dispatch", but the request was not routed (no "llm_router on" in its location)



=== TEST 6: an llm_dispatch block cannot have servers
--- http_config
upstream llm_chosen { llm_dispatch; server 127.0.0.1:1; }
--- must_die
--- error_log eval
qr/\[emerg\] .*upstream "llm_chosen" has "llm_dispatch": it cannot have servers, in \S+nginx\.conf:\d+/



=== TEST 7: llm_dispatch is alone in its block
--- http_config
upstream llm_chosen { least_conn; llm_dispatch; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_dispatch" directive must be alone in its upstream block in \S+nginx\.conf:\d+/



=== TEST 8: a model cannot route to an llm_dispatch block
--- http_config
upstream llm_chosen { llm_dispatch; }
llm_model llama3-8b { upstream llm_chosen; }
--- must_die
--- error_log eval
qr/\[emerg\] .*llm_model "llama3-8b" cannot use upstream "llm_chosen": it has "llm_dispatch", in \S+nginx\.conf:\d+/



=== TEST 9: nothing may wrap llm_dispatch: keepalive after it
--- http_config
upstream llm_chosen { llm_dispatch; keepalive 4; }
--- must_die
--- error_log eval
qr/\[emerg\] .*upstream "llm_chosen" has "llm_dispatch": it cannot have a balancer or keepalive, in \S+nginx\.conf:\d+/



=== TEST 10: nor an llm_* directive of an upstream
--- http_config
upstream llm_chosen { llm_dispatch; llm_balance least_conn; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_balance" directive cannot be in an "llm_dispatch" block in \S+nginx\.conf:\d+/
