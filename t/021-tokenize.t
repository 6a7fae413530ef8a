# tokenize on: near a variant's limit the router asks the engine's
# /tokenize for the prompt's exact count (non-blocking), and falls back to
# its estimate when the engine fails or is slow.
#
# One message of 40 bytes: estimate 10 + 4 + 3 = 17 tokens.  With
# max_tokens 80 the estimate (97) is within 10% of the short variant (100).
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=short",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}=long");

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    my $engine = $block->engine // 'vllm';
    my $tok = $block->tokenize // 'tokenize on;';
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
upstream short_pool { llm_engine $engine; server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}; }
upstream long_pool { server 127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}; }
llm_model llama { upstream short_pool; max_context 100; target short-model; $tok }
llm_model llama { upstream long_pool; max_context 1000; }
_EOC_
    }
    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
location /v1/ {
    llm_router on;
    proxy_pass http://\$llm_upstream;
    add_header X-Estimate \$llm_estimated_tokens always;
}
location = /c1 { proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}/mock/control; }
location = /r1 { proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}/mock/reset; }
_EOC_
    }
});

our $chat = "POST /v1/chat/completions\n{\"model\":\"llama\",\"max_tokens\":80,\"messages\":[{\"role\":\"user\",\"content\":\"" . ('x' x 40) . "\"}]}";

run_tests();

__DATA__

=== TEST 1: the engine counts more than the estimate: the request no longer fits the short variant
--- request eval
["POST /r1\n{}", "POST /c1\n{\"tokenize_count\":30}", $::chat]
--- response_headers eval
["", "", "X-Mock-Instance: long\nX-Estimate: 110"]



=== TEST 2: the engine counts less (its own count, 11): the short variant
--- request eval
["POST /r1\n{}", $::chat]
--- response_headers eval
["", "X-Mock-Instance: short\nX-Estimate: 91"]



=== TEST 3: far from every limit, no /tokenize
--- request eval
["POST /r1\n{}", "POST /c1\n{\"tokenize_count\":500}",
 "POST /v1/chat/completions\n{\"model\":\"llama\",\"max_tokens\":10,\"messages\":[]}"]
--- response_headers eval
["", "", "X-Mock-Instance: short\nX-Estimate: 13"]



=== TEST 4: a slow /tokenize: the estimate is used after the timeout
--- tokenize: tokenize on timeout=100ms;
--- request eval
["POST /r1\n{}", "POST /c1\n{\"tokenize_count\":30,\"tokenize_delay_ms\":1000}", $::chat]
--- response_headers eval
["", "", "X-Mock-Instance: short\nX-Estimate: 97"]



=== TEST 5: the failure is logged
--- tokenize: tokenize on timeout=100ms;
--- init
LLMTest::mock_control($ENV{TEST_NGINX_MOCK1_PORT}, { tokenize_count => 30, tokenize_delay_ms => 1000 });
--- request eval
$::chat
--- response_headers
X-Mock-Instance: short
--- error_log
/tokenize of 127.0.0.1:
failed (timed out), the estimate is used



=== TEST 6: llama.cpp's /tokenize ({"content"} in, {"tokens"} out)
--- engine: llamacpp
--- request eval
["POST /r1\n{}", "POST /c1\n{\"tokenize_count\":30}", $::chat]
--- response_headers eval
["", "", "X-Mock-Instance: long\nX-Estimate: 110"]



=== TEST 7: tokenize off: the estimate alone
--- tokenize: tokenize off;
--- request eval
["POST /r1\n{}", "POST /c1\n{\"tokenize_count\":30}", $::chat]
--- response_headers eval
["", "", "X-Mock-Instance: short\nX-Estimate: 97"]



=== TEST 8: tokenize needs an engine with /tokenize
--- engine: tgi
--- request
GET /
--- must_die
--- error_log
"tokenize on" of llm_model "llama" needs "llm_engine vllm" or "llm_engine llamacpp"
