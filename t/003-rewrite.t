# Body rewrites edit the raw bytes: untouched fields reach the engine byte
# for byte.  The mock engine's echo mode returns the exact body it got.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}=m2");

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
}
_EOC_
    }
    if (!defined $block->more_headers) {
        $block->set_value("more_headers", "X-Mock-Echo: 1");
    }
});

run_tests();

__DATA__

=== TEST 1: with no rule the client's bytes are forwarded as they came
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model llama3-8b { upstream pool_a; }
--- request eval
"POST /v1/chat/completions\n" . qq!{ "n" : 12345678901234567, "a":[], "o":{}, "s":"a\\/b \\u00e9 \\"q\\" \xc3\xa9\xe2\x82\xac",\n\t"z":-0.5e+10 , "model" : "llama3-8b" ,"last":null }!
--- response_headers
X-Mock-Req-Content-Length: 126
--- response_body eval
qq!{ "n" : 12345678901234567, "a":[], "o":{}, "s":"a\\/b \\u00e9 \\"q\\" \xc3\xa9\xe2\x82\xac",\n\t"z":-0.5e+10 , "model" : "llama3-8b" ,"last":null }!
--- no_error_log
[error]



=== TEST 2: target replaces only the model value
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model llama3-8b { upstream pool_a; target "meta-llama/Meta-Llama-3-8B \"x\""; }
--- request eval
"POST /v1/chat/completions\n" . qq!{"messages":[{"role":"user","content":"\\u00e9 \xc3\xa9"}], "model" :  "llama3-8b" , "n":12345678901234567}!
--- response_headers
X-Mock-Req-Content-Length: 123
--- response_body eval
qq!{"messages":[{"role":"user","content":"\\u00e9 \xc3\xa9"}], "model" :  "meta-llama/Meta-Llama-3-8B \\"x\\"" , "n":12345678901234567}!



=== TEST 3: set adds a default before the closing brace when absent
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model llama3-8b { upstream pool_a; set temperature 0.7; set stop '["\n"]'; }
--- request
POST /v1/chat/completions
{"model":"llama3-8b", "top_p": 1 }
--- response_body chomp
{"model":"llama3-8b", "top_p": 1 ,"temperature":0.7,"stop":["\n"]}



=== TEST 4: set keeps a value the client sent and fills a null
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model llama3-8b { upstream pool_a; set temperature 0.7; set user '"anon"'; }
--- request
POST /v1/chat/completions
{"temperature":0,"model":"llama3-8b","user":null}
--- response_body chomp
{"temperature":0,"model":"llama3-8b","user":"anon"}



=== TEST 5: clamp lowers a larger number and keeps a smaller one
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model llama3-8b { upstream pool_a; clamp max_tokens 4096; clamp n 2; }
--- request eval
["POST /v1/chat/completions\n{\"model\":\"llama3-8b\",\"max_tokens\":1e6,\"n\":2}",
 "POST /v1/chat/completions\n{\"model\":\"llama3-8b\",\"max_tokens\":100,\"n\":3.5}",
 "POST /v1/chat/completions\n{\"model\":\"llama3-8b\",\"max_tokens\":null}"]
--- response_body eval
["{\"model\":\"llama3-8b\",\"max_tokens\":4096,\"n\":2}",
 "{\"model\":\"llama3-8b\",\"max_tokens\":100,\"n\":2}",
 "{\"model\":\"llama3-8b\",\"max_tokens\":null}"]



=== TEST 6: drop removes a member and its comma wherever it stands
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model llama3-8b { upstream pool_a; drop logit_bias; }
--- request eval
["POST /v1/chat/completions\n{\"logit_bias\":{\"1\":2}, \"model\":\"llama3-8b\"}",
 "POST /v1/chat/completions\n{\"model\":\"llama3-8b\" , \"logit_bias\":{\"1\":[2,{}]} , \"n\":1}",
 "POST /v1/chat/completions\n{\"model\":\"llama3-8b\",\"logit_bias\":null}",
 "POST /v1/chat/completions\n{\"model\":\"llama3-8b\"}"]
--- response_body eval
["{\"model\":\"llama3-8b\"}",
 "{\"model\":\"llama3-8b\" , \"n\":1}",
 "{\"model\":\"llama3-8b\"}",
 "{\"model\":\"llama3-8b\"}"]



=== TEST 7: several dropped neighbours, before and after the model
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model llama3-8b { upstream pool_a; drop a b c d; }
--- request
POST /v1/chat/completions
{"a":1,"b":2,"model":"llama3-8b","c":3,"keep":true,"d":4}
--- response_body chomp
{"model":"llama3-8b","keep":true}



=== TEST 8: all rules together with a target
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model llama3-8b {
    upstream pool_a;
    target   meta-llama-3;
    set      temperature 0.7;
    clamp    max_tokens 4096;
    drop     logit_bias;
}
--- request
POST /v1/chat/completions
{"logit_bias":{},"messages":[{"role":"user","content":"hi"}],"max_tokens":99999,"model":"llama3-8b"}
--- response_headers
X-Mock-Req-Content-Length: 104
--- response_body chomp
{"messages":[{"role":"user","content":"hi"}],"max_tokens":4096,"model":"meta-llama-3","temperature":0.7}



=== TEST 9: a glob route with a target rewrites, one without does not
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model "qwen-*" { upstream pool_a; target qwen-served; }
llm_model "phi-*" { upstream pool_a; }
--- request eval
["POST /v1/chat/completions\n{\"model\":\"qwen-7b\"}",
 "POST /v1/chat/completions\n{\"model\":\"phi-3\"}"]
--- response_body eval
["{\"model\":\"qwen-served\"}", "{\"model\":\"phi-3\"}"]



=== TEST 10: rules of one model do not touch another's requests
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model llama3-8b { upstream pool_a; drop seed; }
llm_model mistral { upstream pool_a; }
--- request
POST /v1/chat/completions
{"model":"mistral","seed":7}
--- response_body chomp
{"model":"mistral","seed":7}



=== TEST 11: the edited body is resent after an upstream retry
--- http_config
upstream pool_a {
    server 127.0.0.1:1;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
llm_model llama3-8b { upstream pool_a; target served-name; drop x; }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
    proxy_next_upstream error non_idempotent;
}
--- request eval
["POST /v1/chat/completions\n{\"x\":1,\"model\":\"llama3-8b\",\"y\":2}",
 "POST /v1/chat/completions\n{\"x\":1,\"model\":\"llama3-8b\",\"y\":2}"]
--- response_body eval
["{\"model\":\"served-name\",\"y\":2}", "{\"model\":\"served-name\",\"y\":2}"]



=== TEST 12: an edited body of one page is copied, one byte more is linked: both exact
Up to 4096 bytes the edited body is copied into one buffer; past that the
kept spans of the client's buffers are linked.  Both sides of the line,
with edits at the start and at the end.
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model llama3-8b { upstream pool_a; target served; set temperature 0.7; }
--- request eval
my $head = '{"model":"llama3-8b","messages":[{"role":"user","content":"';
my $fill = 4096 - length('{"model":"served","messages":[{"role":"user",'
    . '"content":""}],"temperature":0.7}');
[map { "POST /v1/chat/completions\n" . $head . ("\\\"" x 5) . ("x" x $_)
       . '"}]}' } ($fill - 10, $fill - 9)]
--- response_headers eval
["X-Mock-Req-Content-Length: 4096", "X-Mock-Req-Content-Length: 4097"]
--- response_body eval
my $fill = 4096 - length('{"model":"served","messages":[{"role":"user",'
    . '"content":""}],"temperature":0.7}');
[map { '{"model":"served","messages":[{"role":"user","content":"'
       . ("\\\"" x 5) . ("x" x $_) . '"}],"temperature":0.7}' }
     ($fill - 10, $fill - 9)]
--- no_error_log
[error]
