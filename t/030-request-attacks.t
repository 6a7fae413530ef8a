# Issue 15, review of the request path: what a client sends cannot reach a
# header, a log line or an error body unchecked through a hook or an
# engine.  A hook that hands client text to llm.route() gets a name the
# router checks like the body's model (else the hook fails); llm.log(), a
# hook's error and an engine's error message are written into the error
# log with their control bytes escaped, so a newline cannot forge a line.
# A body a hook changed gets the rules of its model and the profile of its
# engine again: llm.route()'s model's were never applied, and a field the
# hook wrote must hold to them too.  A null max_tokens next to a
# max_completion_tokens is no limit to llama.cpp, TGI and Ollama: it gives
# way to the other, and a negative one (no limit either) is clamped.
# llama.cpp's own n_predict is the same field for a llama.cpp upstream.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

$ENV{TEST_NGINX_HOOKS} = "$FindBin::Bin/hooks";

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1");

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
upstream pool { server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}; }
upstream lc {
    llm_engine llamacpp;
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT};
}
upstream tgi {
    llm_engine tgi;
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT};
}
upstream errs {
    llm_engine vllm;
    server 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT};
}
llm_model m { upstream pool; }
llm_model e { upstream errs; }
llm_model lc { upstream lc; clamp max_tokens 10; }
llm_model tgi { upstream tgi; }
llm_model ls { upstream lc; set max_tokens 7; }
llm_model ld { upstream lc; drop max_completion_tokens; }
llm_model tc { upstream tgi; clamp max_tokens 10; }
llm_model c { upstream pool; clamp max_tokens 10; drop logit_bias; }
llm_model default { upstream pool; }
server {
    listen 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT};
    location / {
        default_type application/json;
        return 400 '{"object":"error","message":"bad\\nFORGED [emerg] 1#1: x\\r\\u0000y","type":"BadRequestError"}';
    }
}
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
location /v1/ {
    llm_router on;
    llm_hook $ENV{TEST_NGINX_HOOKS}/attack.lua;
    add_header X-Target \$llm_target_model always;
    proxy_set_header X-Mock-Echo 1;
    proxy_pass http://\$llm_upstream;
}
location /pass/v1/ {
    rewrite ^/pass(/.*)\$ \$1 break;
    llm_router on;
    llm_hook $ENV{TEST_NGINX_HOOKS}/attack.lua;
    llm_hook_on_error pass;
    add_header X-Target \$llm_target_model always;
    proxy_set_header X-Mock-Echo 1;
    proxy_pass http://\$llm_upstream;
}
_EOC_
    }
});

run_tests();

__DATA__

=== TEST 1: llm.route() to a name with CR LF (caught by the default model) fails the hook: it cannot split $llm_target_model's header
--- request
POST /v1/chat/completions
{"model":"m","what":"route","text":"x\r\nX-Injected: 1"}
--- error_code: 500
--- response_body
{"error":{"message":"a hook failed to process the request","type":"server_error","param":null,"code":"hook_error"}}
--- response_headers
X-Injected:
--- error_log
llm.route: the model name is not 1 to 256 bytes of UTF-8 without control characters
--- no_error_log
routed to



=== TEST 2: llm.route() to a name with invalid UTF-8, NUL or over 256 bytes fails the hook; under pass the request goes on to its own model
--- request eval
[map { ("POST /v1/chat/completions\n$_", "POST /pass/v1/chat/completions\n$_") }
 '{"model":"m","what":"route","text":"a' . "\xff" . 'b"}',
 '{"model":"m","what":"route","text":"a\u0000b"}',
 '{"model":"m","what":"route","text":"' . ('x' x 257) . '"}']
--- error_code eval
[(500, 200) x 3]
--- response_headers eval
[("X-Target: m") x 6]
--- error_log
llm.route: the model name is not 1 to 256 bytes of UTF-8 without control characters
--- no_error_log
routed to



=== TEST 3: llm.route() to a name of 256 bytes, multibyte at the end, is taken (the default model serves it under that name)
--- request eval
"POST /v1/chat/completions\n" . '{"model":"m","what":"route","text":"' . ('x' x 253) . "\xc3\xa9" . 'y"}'
--- error_code: 200
--- response_headers eval
"X-Target: " . ('x' x 253) . "\xc3\xa9y"
--- response_body_like eval
'^\{"model":"' . ('x' x 253) . "\xc3\xa9" . 'y","what":"route"'
--- error_log
routed to



=== TEST 4: llm.log() with a newline writes one line, the control bytes escaped
--- request
POST /v1/chat/completions
{"model":"m","what":"log","text":"one\nFORGED [emerg] 1#1: two\r\u0000\u007f\tend"}
--- error_code: 200
--- error_log
llm hook: one\x0AFORGED [emerg] 1#1: two\x0D\x00\x7F\x09end
--- no_error_log eval
qr/^FORGED/



=== TEST 5: a hook's error message with a newline is logged on one line
--- request eval
["POST /v1/chat/completions\n" . '{"model":"m","what":"error","text":"boom\nFORGED [emerg] x"}',
 "POST /pass/v1/chat/completions\n" . '{"model":"m","what":"error","text":"boom\nFORGED [emerg] x"}']
--- error_code eval
[500, 200]
--- error_log
request() failed: boom\x0AFORGED [emerg] x
--- no_error_log eval
qr/^FORGED/



=== TEST 6: an engine's error message with a newline is logged on one line, and comes back escaped in the body
--- request
POST /v1/chat/completions
{"model":"e"}
--- error_code: 400
--- response_body
{"error":{"message":"bad\u000aFORGED [emerg] 1#1: x\u000d","type":"BadRequestError","param":null,"code":"upstream_error"}}
--- error_log
engine error 400 rewritten as upstream_error: bad\x0AFORGED [emerg] 1#1: x\x0D
--- no_error_log eval
qr/^FORGED/



=== TEST 7: a top-level key with a raw newline, twice: the 400's log line stays one line
--- request eval
"POST /v1/chat/completions\n" . qq({"model":"m","a\nFORGED [emerg] y":1,"a\nFORGED [emerg] y":2})
--- error_code: 400
--- response_body
{"error":{"message":"the field \"a\u000aFORGED [emerg] y\" appears 2 times","type":"invalid_request_error","param":"a\u000aFORGED [emerg] y","code":"invalid_request"}}
--- error_log
400 invalid_request: the field "a\x0AFORGED [emerg] y" appears 2 times
--- no_error_log eval
qr/^FORGED/



=== TEST 8: llm.route() to a llama.cpp model with a clamp: its profile and its rule hold (max_completion_tokens renamed max_tokens and clamped)
--- request
POST /v1/chat/completions
{"model":"m","what":"route","text":"lc","max_completion_tokens":100000}
--- response_body chomp
{"model":"lc","what":"route","text":"lc","max_tokens":10,"cache_prompt":true}
--- error_log
routed to "lc"



=== TEST 9: llm.route() to a TGI model: stream_options removed and n made 1, as for a client that asked for it
--- request
POST /v1/chat/completions
{"model":"m","what":"route","text":"tgi","stream_options":{"include_usage":true},"n":5}
--- response_body chomp
{"model":"tgi","what":"route","text":"tgi","n":1}



=== TEST 10: fields a hook writes hold to the model's rules and the engine's profile (a hook that builds the body, like anthropic.lua)
--- request eval
["POST /v1/chat/completions\n" . '{"model":"lc","what":"write","fields":{"max_completion_tokens":100000}}',
 "POST /v1/chat/completions\n" . '{"model":"c","what":"write","fields":{"max_completion_tokens":1e400,"logit_bias":{"1":100}}}',
 "POST /v1/chat/completions\n" . '{"model":"tgi","what":"write","fields":{"stream_options":{"include_usage":true}}}']
--- response_body eval
['{"model":"lc","what":"write","cache_prompt":true,"max_tokens":10}',
 '{"model":"c","what":"write","max_completion_tokens":10}',
 '{"model":"tgi","what":"write"}']
--- no_error_log
[error]



=== TEST 11: "max_tokens":null with max_completion_tokens for llama.cpp and TGI: the limit the client gave (clamped) is the max_tokens they read, not null (uncapped)
--- request eval
["POST /v1/chat/completions\n" . '{"model":"lc","max_tokens":null,"max_completion_tokens":100000}',
 "POST /v1/chat/completions\n" . '{"model":"lc","max_completion_tokens":100000,"max_tokens":null,"x":1}',
 "POST /v1/chat/completions\n" . '{"model":"ls","max_tokens":null,"max_completion_tokens":5}',
 "POST /v1/chat/completions\n" . '{"model":"tc","max_tokens":null,"max_completion_tokens":1e400}',
 "POST /v1/chat/completions\n" . '{"model":"ls","max_tokens":null,"max_completion_tokens":null}',
 "POST /v1/chat/completions\n" . '{"model":"lc","max_tokens":5,"max_completion_tokens":null}']
--- response_body eval
['{"model":"lc","max_tokens":10,"cache_prompt":true}',
 '{"model":"lc","max_tokens":10,"x":1,"cache_prompt":true}',
 '{"model":"ls","max_tokens":5,"cache_prompt":true}',
 '{"model":"tc","max_tokens":10}',
 '{"model":"ls","max_tokens":7,"max_completion_tokens":7,"cache_prompt":true}',
 '{"model":"lc","max_tokens":5,"cache_prompt":true}']
--- no_error_log
[error]



=== TEST 12: clamp max_tokens holds a negative max_tokens or max_completion_tokens (-1 is no limit to llama.cpp and Ollama); other negative fields are left alone
--- request eval
["POST /v1/chat/completions\n" . '{"model":"lc","max_tokens":-1}',
 "POST /v1/chat/completions\n" . '{"model":"lc","max_completion_tokens":-2}',
 "POST /v1/chat/completions\n" . '{"model":"c","max_tokens":-1e400,"max_completion_tokens":-0.5}',
 "POST /v1/chat/completions\n" . '{"model":"c","max_tokens":0,"max_completion_tokens":-0}']
--- response_body eval
['{"model":"lc","max_tokens":10,"cache_prompt":true}',
 '{"model":"lc","max_tokens":10,"cache_prompt":true}',
 '{"model":"c","max_tokens":10,"max_completion_tokens":10}',
 '{"model":"c","max_tokens":0,"max_completion_tokens":-0}']
--- no_error_log
[error]



=== TEST 13: for llama.cpp, n_predict (read before max_tokens) is the max tokens field too: clamped, a null one given set's default, dropped with it; other engines leave it alone
--- request eval
["POST /v1/chat/completions\n" . '{"model":"lc","max_tokens":5,"n_predict":-1}',
 "POST /v1/chat/completions\n" . '{"model":"lc","n_predict":100000}',
 "POST /v1/chat/completions\n" . '{"model":"lc","n_predict":"x"}',
 "POST /v1/chat/completions\n" . '{"model":"ls","n_predict":null}',
 "POST /v1/chat/completions\n" . '{"model":"ld","n_predict":-1,"max_tokens":3}',
 "POST /v1/chat/completions\n" . '{"model":"c","n_predict":-1}']
--- error_code eval
[200, 200, 400, 200, 200, 200]
--- response_body eval
['{"model":"lc","max_tokens":5,"n_predict":10,"cache_prompt":true}',
 '{"model":"lc","n_predict":10,"cache_prompt":true}',
 '{"error":{"message":"the field \"n_predict\" must be a number","type":"invalid_request_error","param":null,"code":"invalid_request"}}' . "\n",
 '{"model":"ls","n_predict":7,"cache_prompt":true}',
 '{"model":"ld","cache_prompt":true}',
 '{"model":"c","n_predict":-1}']
