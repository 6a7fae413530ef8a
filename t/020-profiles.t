# Engine profiles: what llm_engine changes in the body for each engine,
# shown byte for byte by the mock's echo; skip= turns rules off.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1");

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    my $engine = $block->engine // 'vllm';
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
upstream pool {
    llm_engine $engine;
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT};
}
llm_model m { upstream pool; }
llm_model r { upstream pool; drop max_completion_tokens; clamp n 3; }
_EOC_
    }
    if (!defined $block->config) {
        my $extra = $block->location_extra // '';
        $block->set_value("config", <<"_EOC_");
location /v1/ {
    llm_router on;
    proxy_pass http://\$llm_upstream;
    proxy_set_header X-Mock-Echo 1;
    $extra
}
_EOC_
    }
});

our $body = '{"model":"m","max_completion_tokens":50,"n":2,"stream":true,"stream_options":{"include_usage":true},"messages":[]}';

run_tests();

__DATA__

=== TEST 1: vllm: the body as it came
--- engine: vllm
--- request eval
"POST /v1/chat/completions\n$::body"
--- response_body eval
$::body



=== TEST 2: openai: the body as it came
--- engine: openai
--- request eval
"POST /v1/chat/completions\n$::body"
--- response_body eval
$::body



=== TEST 3: llamacpp: max_tokens, and cache_prompt added
--- engine: llamacpp
--- request eval
"POST /v1/chat/completions\n$::body"
--- response_body chomp
{"model":"m","max_tokens":50,"n":2,"stream":true,"stream_options":{"include_usage":true},"messages":[],"cache_prompt":true}



=== TEST 4: llamacpp: a client's cache_prompt is kept
--- engine: llamacpp
--- request
POST /v1/chat/completions
{"model":"m","cache_prompt":false}
--- response_body chomp
{"model":"m","cache_prompt":false}



=== TEST 5: tgi: max_tokens, n 1, no stream_options
--- engine: tgi
--- request eval
"POST /v1/chat/completions\n$::body"
--- response_body chomp
{"model":"m","max_tokens":50,"n":1,"stream":true,"messages":[]}



=== TEST 6: tgi with llm_stream_usage: stream_options is not added
--- engine: tgi
--- location_extra: llm_stream_usage on;
--- request
POST /v1/chat/completions
{"model":"m","stream":true}
--- response_body chomp
{"model":"m","stream":true}



=== TEST 7: ollama: max_tokens only
--- engine: ollama
--- request eval
"POST /v1/chat/completions\n$::body"
--- response_body chomp
{"model":"m","max_tokens":50,"n":2,"stream":true,"stream_options":{"include_usage":true},"messages":[]}



=== TEST 8: both max_tokens and max_completion_tokens: the engine gets max_tokens
--- engine: tgi
--- request
POST /v1/chat/completions
{"model":"m","max_completion_tokens":50,"max_tokens":10}
--- response_body chomp
{"model":"m","max_tokens":10}



=== TEST 9: skip= turns rules off
--- engine: tgi skip=n,stream_options
--- request eval
"POST /v1/chat/completions\n$::body"
--- response_body chomp
{"model":"m","max_tokens":50,"n":2,"stream":true,"stream_options":{"include_usage":true},"messages":[]}



=== TEST 10: skip=all
--- engine: llamacpp skip=all
--- request eval
"POST /v1/chat/completions\n$::body"
--- response_body eval
$::body



=== TEST 11: a model's own rules come first: what they touch the profile leaves
--- engine: tgi
--- request
POST /v1/chat/completions
{"model":"r","max_completion_tokens":50,"n":5}
--- response_body chomp
{"model":"r","n":3}



=== TEST 12: an unknown rule fails nginx -t
--- engine: tgi skip=temperature
--- request
GET /
--- must_die
--- error_log
invalid parameter "skip=temperature", use skip= with max_tokens, stream_options, n, cache_prompt or all
