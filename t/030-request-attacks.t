# Issue 15, review of the request path: what a client sends cannot reach a
# header, a log line or an error body unchecked through a hook or an
# engine.  A hook that hands client text to llm.route() gets a name the
# router checks like the body's model (else the hook fails); llm.log(), a
# hook's error and an engine's error message are written into the error
# log with their control bytes escaped, so a newline cannot forge a line.
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
upstream errs {
    llm_engine vllm;
    server 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT};
}
llm_model m { upstream pool; }
llm_model e { upstream errs; }
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
