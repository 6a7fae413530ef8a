# Variants: llm_model blocks of one name with max_context.  The smallest
# context that holds the estimated prompt plus the completion wins; the
# mock engines say which one served.
#
# Estimate: ceil(text bytes / 4) + 4 per message + 3, plus max_tokens (or
# max_completion_tokens, or default_max_tokens).  One message of 40 bytes:
# 10 + 4 + 3 = 17 tokens of prompt.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=short",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}=long",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK3_PORT}=mid");

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    my $short_extra = $block->short_extra // '';
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
llm_router_zone llm 1m;
upstream short_pool {
    llm_engine vllm;
    $short_extra
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT};
}
upstream long_pool { server 127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}; }
upstream mid_pool { server 127.0.0.1:$ENV{TEST_NGINX_MOCK3_PORT}; }
llm_model llama { upstream long_pool; max_context 1000; target llama-long; }
llm_model llama { upstream short_pool; max_context 100; default_max_tokens 20; }
llm_model llama { upstream mid_pool; max_context 1000; target llama-mid; }
log_format est '\$llm_estimated_tokens';
_EOC_
    }
    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
location /v1/ {
    llm_router on;
    proxy_pass http://\$llm_upstream;
    add_header X-Estimate \$llm_estimated_tokens always;
}
location = /v1/models { llm_models; }
_EOC_
    }
});

our $forty = 'x' x 40;
sub chat { my ($extra) = @_;
    "POST /v1/chat/completions\n{\"model\":\"llama\",\"messages\":[{\"role\":\"user\",\"content\":\"$::forty\"}]$extra}" }

run_tests();

__DATA__

=== TEST 1: just under the short limit: 17 + 82 = 99
--- request eval
::chat(',"max_tokens":82')
--- response_headers
X-Mock-Instance: short
X-Estimate: 99



=== TEST 2: at the limit: 17 + 83 = 100 still fits
--- request eval
::chat(',"max_tokens":83')
--- response_headers
X-Mock-Instance: short
X-Estimate: 100



=== TEST 3: just over: 101 goes to the next larger context, the first declared of two equal ones; the client sees its model name
--- request eval
::chat(',"max_tokens":84')
--- response_headers
X-Mock-Instance: long
X-Estimate: 101
--- response_body_like chomp
"model":"llama"



=== TEST 4: max_completion_tokens counts like max_tokens
--- request eval
::chat(',"max_completion_tokens":84')
--- response_headers
X-Mock-Instance: long



=== TEST 5: without a limit, each variant's default_max_tokens is counted: 17 + 20 for the short one
--- request eval
::chat('')
--- response_headers
X-Mock-Instance: short
X-Estimate: 37



=== TEST 6: tool definitions count: their bytes
--- request eval
::chat(',"max_tokens":60,"tools":[{"type":"function","function":{"name":"a_tool_with_a_long_description","description":"' . ('d' x 100) . '"}}]')
--- response_headers
X-Mock-Instance: long



=== TEST 7: nothing fits: 400 context_length_exceeded with the estimate and the largest limit
--- request eval
::chat(',"max_tokens":5000')
--- error_code: 400
--- response_body
{"error":{"message":"the request needs about 5017 tokens (a prompt of about 17 and 5000 to complete), more than the largest context of model \"llama\", 1000 tokens","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}
--- response_headers
X-Estimate: 5017



=== TEST 8: text parts and several messages count
--- request eval
"POST /v1/chat/completions\n{\"model\":\"llama\",\"max_tokens\":50,\"messages\":[{\"role\":\"system\",\"content\":\"$::forty\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"$::forty\"}]}]}"
--- response_headers
X-Estimate: 81
X-Mock-Instance: short



=== TEST 9: a variant whose peers are down is skipped
--- short_extra: llm_check interval=100ms timeout=100ms fall=1 uri=/nowhere;
--- request eval
["GET /v1/models", ::chat(',"max_tokens":10')]
--- wait: 0.3
--- response_body_like eval
['"id":"llama"', '"system_fingerprint":"long"']



=== TEST 10: /v1/models lists a name with variants once
--- request
GET /v1/models
--- response_body_like chomp
^\{"object":"list","data":\[\{"id":"llama","object":"model","created":\d+,"owned_by":"ngx_llm_router"\}\]\}$



=== TEST 11: a variant without max_context learns it: its upstream needs an llm_engine
--- http_config
upstream p { server 127.0.0.1:1; }
llm_model m { upstream p; }
llm_model m { upstream p; max_context 10; }
--- request
GET /
--- must_die
--- error_log
"max_context auto" of llm_model "m" needs an llm_engine in upstream "p"



=== TEST 12: max_context must be a positive number
--- http_config
upstream p { server 127.0.0.1:1; }
llm_model m { upstream p; max_context lots; }
--- request
GET /
--- must_die
--- error_log
invalid value "lots" in "max_context" of llm_model "m"



=== TEST 13: the chosen variant's target is what the engine gets
--- more_headers
X-Mock-Echo: 1
--- request eval
::chat(',"max_tokens":500')
--- response_body_like chomp
^\{"model":"llama-long","messages":



=== TEST 14: max_context auto (or none, in a variant): learned from each engine's dialect, used, shown in the status
The mocks are told: short (llama.cpp /props) 2 slots of 150, long (TGI
/info) 1200, mid (vLLM /v1/models) 600; the checks every 100 ms ask again.
17 + 100 = 117 fits the short one.
--- http_config
llm_router_zone llm 1m;
upstream short_pool { llm_engine llamacpp; llm_check interval=100ms; server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
upstream long_pool { llm_engine tgi; llm_check interval=100ms; server 127.0.0.1:$TEST_NGINX_MOCK2_PORT; }
upstream mid_pool { llm_engine vllm; llm_check interval=100ms; server 127.0.0.1:$TEST_NGINX_MOCK3_PORT; }
llm_model llama { upstream long_pool; max_context auto; }
llm_model llama { upstream short_pool; }
llm_model llama { upstream mid_pool; max_context auto; }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
    add_header X-Estimate $llm_estimated_tokens always;
}
location = /llm/status { llm_router_status; }
location = /c1 { proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK1_PORT/mock/control; }
location = /c2 { proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK2_PORT/mock/control; }
location = /c3 { proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK3_PORT/mock/control; }
location = /wait {
    proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK3_PORT/health;
    proxy_set_header X-Mock-Delay-Ms 400;
}
--- request eval
["POST /c1\n{\"max_model_len\":150,\"slots\":2}",
 "POST /c2\n{\"max_model_len\":1200}",
 "POST /c3\n{\"max_model_len\":600}",
 "GET /wait", ::chat(',"max_tokens":100'), ::chat(',"max_tokens":300'),
 ::chat(',"max_tokens":1000'), ::chat(',"max_tokens":2000'), "GET /llm/status"]
--- error_code eval
[200, 200, 200, 200, 200, 200, 200, 400, 200]
--- response_headers eval
["", "", "", "", "X-Mock-Instance: short", "X-Mock-Instance: mid", "X-Mock-Instance: long", "X-Estimate: 2017", ""]
--- response_body_like eval
["", "", "", "ok", "chat.completion", "chat.completion", "chat.completion",
 "largest context of model \\\\\"llama\\\\\", 1200 tokens",
 qr/"name":"short_pool".*"max_context":150\}.*"name":"long_pool".*"max_context":1200\}.*"name":"mid_pool".*"max_context":600\}/]



=== TEST 15: max_context auto needs an llm_engine
--- http_config
llm_router_zone llm 1m;
upstream p { server 127.0.0.1:1; }
llm_model m { upstream p; max_context auto; }
--- request
GET /
--- must_die
--- error_log
"max_context auto" of llm_model "m" needs an llm_engine in upstream "p"



=== TEST 16: max_context auto with SGLang's /server_info
--- http_config
llm_router_zone llm 1m;
upstream sg_pool { llm_engine sglang; llm_check interval=100ms; server 127.0.0.1:$TEST_NGINX_MOCK3_PORT; }
llm_model solo { upstream sg_pool; max_context auto; }
llm_model solo { upstream sg_pool; max_context 50; }
--- config
location /v1/ { llm_router on; proxy_pass http://$llm_upstream; }
location = /llm/status { llm_router_status; }
location = /c3 { proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK3_PORT/mock/control; }
location = /wait {
    proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK3_PORT/health;
    proxy_set_header X-Mock-Delay-Ms 400;
}
--- request eval
["POST /c3\n{\"max_model_len\":700}", "GET /wait",
 "POST /v1/chat/completions\n{\"model\":\"solo\",\"max_tokens\":680}",
 "POST /v1/chat/completions\n{\"model\":\"solo\",\"max_tokens\":700}",
 "GET /llm/status"]
--- error_code eval
[200, 200, 200, 400, 200]
--- response_body_like eval
["", "ok", "chat.completion", "700 tokens", qr/"max_context":700\}/]
