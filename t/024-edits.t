# Edits of the body never overlap (llm_stream_usage yields to a model's
# rule on stream_options: it was a heap overflow), max_tokens and
# max_completion_tokens are one field for set, clamp and drop and keep
# their limit through a hook, and top-level keys are plain and unique.
# The mock's echo shows the exact body the engine got.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

$ENV{TEST_NGINX_HOOKS} = "$FindBin::Bin/hooks";

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1");

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    my $engine = $block->engine // 'vllm';
    my $rules = $block->rules // '';
    my $hook = $block->model_hook
               ? "hook $ENV{TEST_NGINX_HOOKS}/" . $block->model_hook . ";" : '';
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
upstream pool {
    llm_engine $engine;
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT};
}
llm_model m { upstream pool; $rules $hook }
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

our $long = 'A' x 3000;
our $huge = 'A' x 30000;

sub refused {
    my ($param, $message) = @_;
    return qq!{"error":{"message":"$message","type":"invalid_request_error",!
         . qq!"param":"$param","code":"invalid_request"}}\n!;
}

run_tests();

__DATA__

=== TEST 1: drop stream_options with llm_stream_usage: the long member goes, once
--- rules: drop stream_options;
--- location_extra: llm_stream_usage on;
--- request eval
qq!POST /v1/chat/completions\n{"model":"m","stream":true,"stream_options":{"x":"$::long"},"messages":[]}!
--- response_body chomp
{"model":"m","stream":true,"messages":[]}
--- response_headers
X-Mock-Req-Content-Length: 41
--- no_error_log
[alert]



=== TEST 2: the same with a member of 30 000 bytes (the body read from a file)
--- rules: drop stream_options;
--- location_extra: llm_stream_usage on;
--- request eval
qq!POST /v1/chat/completions\n{"model":"m","stream":true,"stream_options":{"x":"$::huge"},"messages":[]}!
--- response_body chomp
{"model":"m","stream":true,"messages":[]}
--- no_error_log
[alert]



=== TEST 3: drop stream_options with llm_stream_usage, stream_options null
--- rules: drop stream_options;
--- location_extra: llm_stream_usage on;
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"stream_options":null,"messages":[]}
--- response_body chomp
{"model":"m","stream":true,"messages":[]}
--- no_error_log
[alert]



=== TEST 4: set stream_options over a null: the rule's value, once
--- rules: set stream_options '{"include_usage":false}';
--- location_extra: llm_stream_usage on;
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"stream_options":null,"messages":[]}
--- response_body chomp
{"model":"m","stream":true,"stream_options":{"include_usage":false},"messages":[]}
--- no_error_log
[alert]



=== TEST 5: set stream_options, none sent: one stream_options, the rule's
--- rules: set stream_options '{"include_usage":false}';
--- location_extra: llm_stream_usage on;
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[]}
--- response_body chomp
{"model":"m","stream":true,"messages":[],"stream_options":{"include_usage":false}}



=== TEST 6: set stream_options, the client's long object: the rule owns it, left as sent
--- rules: set stream_options '{"include_usage":false}';
--- location_extra: llm_stream_usage on;
--- request eval
qq!POST /v1/chat/completions\n{"model":"m","stream":true,"stream_options":{"x":"$::long"},"messages":[]}!
--- response_body eval
qq!{"model":"m","stream":true,"stream_options":{"x":"$::long"},"messages":[]}!



=== TEST 7: no rule on stream_options: llm_stream_usage still rewrites it
--- location_extra: llm_stream_usage on;
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"stream_options":null,"messages":[]}
--- response_body chomp
{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}



=== TEST 8: llamacpp, a hook that changes the body: max_completion_tokens still arrives as max_tokens
--- engine: llamacpp
--- model_hook: touch.lua
--- request
POST /v1/chat/completions
{"model":"m","max_completion_tokens":50,"messages":[]}
--- response_body_like chomp
^\{"model":"m","max_tokens":50,"messages":\[\],"cache_prompt":true,"hooked":true\}$



=== TEST 9: tgi, a hook that changes the body: max_tokens kept
--- engine: tgi
--- model_hook: touch.lua
--- request
POST /v1/chat/completions
{"model":"m","max_completion_tokens":50,"n":4,"messages":[]}
--- response_body_like chomp
^\{"model":"m","max_tokens":50,"n":1,"messages":\[\],"hooked":true\}$



=== TEST 10: ollama, a hook that changes the body: max_tokens kept
--- engine: ollama
--- model_hook: touch.lua
--- request
POST /v1/chat/completions
{"model":"m","max_completion_tokens":50,"messages":[]}
--- response_body_like chomp
^\{"model":"m","max_tokens":50,"messages":\[\],"hooked":true\}$



=== TEST 11: llamacpp, clamp and rename of one member, then a hook
--- engine: llamacpp
--- rules: clamp max_tokens 4096;
--- model_hook: touch.lua
--- request
POST /v1/chat/completions
{"model":"m","max_completion_tokens":100000000,"messages":[]}
--- response_body_like chomp
^\{"model":"m","max_tokens":4096,"messages":\[\],"cache_prompt":true,"hooked":true\}$



=== TEST 12: llamacpp, clamp and rename without a hook
--- engine: llamacpp
--- rules: clamp max_tokens 4096;
--- request
POST /v1/chat/completions
{"model":"m","max_completion_tokens":100000000,"messages":[]}
--- response_body chomp
{"model":"m","max_tokens":4096,"messages":[],"cache_prompt":true}



=== TEST 13: clamp max_tokens holds max_completion_tokens (vllm)
--- rules: clamp max_tokens 4096;
--- request
POST /v1/chat/completions
{"model":"m","max_completion_tokens":100000000,"messages":[]}
--- response_body chomp
{"model":"m","max_completion_tokens":4096,"messages":[]}



=== TEST 14: clamp max_completion_tokens holds max_tokens
--- rules: clamp max_completion_tokens 4096;
--- request
POST /v1/chat/completions
{"model":"m","max_tokens":100000000,"messages":[]}
--- response_body chomp
{"model":"m","max_tokens":4096,"messages":[]}



=== TEST 15: clamp, both names sent: both clamped
--- rules: clamp max_tokens 4096;
--- request
POST /v1/chat/completions
{"model":"m","max_tokens":10,"max_completion_tokens":100000000}
--- response_body chomp
{"model":"m","max_tokens":10,"max_completion_tokens":4096}



=== TEST 16: clamp, a non-number under the other name is refused
--- rules: clamp max_tokens 4096;
--- request
POST /v1/chat/completions
{"model":"m","max_completion_tokens":"lots"}
--- error_code: 400
--- response_body
{"error":{"message":"the field \"max_completion_tokens\" must be a number","type":"invalid_request_error","param":null,"code":"invalid_request"}}



=== TEST 17: drop max_tokens drops both names
--- rules: drop max_tokens;
--- request
POST /v1/chat/completions
{"model":"m","max_completion_tokens":5,"messages":[],"max_tokens":7}
--- response_body chomp
{"model":"m","messages":[]}



=== TEST 18: set max_tokens: a max_completion_tokens sent is the field given
--- rules: set max_tokens 256;
--- request
POST /v1/chat/completions
{"model":"m","max_completion_tokens":10}
--- response_body chomp
{"model":"m","max_completion_tokens":10}



=== TEST 19: set max_tokens: a null under the other name gets the default
--- rules: set max_tokens 256;
--- request
POST /v1/chat/completions
{"model":"m","max_completion_tokens":null}
--- response_body chomp
{"model":"m","max_completion_tokens":256}



=== TEST 20: set max_tokens: neither sent, the default is added
--- rules: set max_tokens 256;
--- request
POST /v1/chat/completions
{"model":"m"}
--- response_body chomp
{"model":"m","max_tokens":256}



=== TEST 21: set max_completion_tokens on llamacpp: added under the name it reads
--- engine: llamacpp skip=cache_prompt
--- rules: set max_completion_tokens 256;
--- request
POST /v1/chat/completions
{"model":"m"}
--- response_body chomp
{"model":"m","max_tokens":256}



=== TEST 22: a second rule on the field under its other name fails nginx -t
--- rules: clamp max_tokens 10; drop max_completion_tokens;
--- request
GET /
--- must_die
--- error_log eval
qr/\[emerg\] .*field "max_completion_tokens" already has a rule in llm_model "m" \(as "max_tokens": they are one field\)/



=== TEST 23: drop of both names in one directive is fine
--- rules: drop max_tokens max_completion_tokens;
--- request
POST /v1/chat/completions
{"model":"m","max_tokens":1,"max_completion_tokens":2}
--- response_body chomp
{"model":"m"}



=== TEST 24: any duplicated top-level field is refused
--- request
POST /v1/chat/completions
{"model":"m","messages":[],"temperature":1,"temperature":2}
--- error_code: 400
--- response_body eval
main::refused("temperature", 'the field \"temperature\" appears 2 times')



=== TEST 25: the issue's body that skipped hooks: refused before the hook
--- model_hook: touch.lua
--- request
POST /v1/chat/completions
{"model":"m","messages":[],"x":1,"x":1e400}
--- error_code: 400
--- response_body eval
main::refused("x", 'the field \"x\" appears 2 times')



=== TEST 26: a duplicated max_tokens under a clamp is refused (engines take the last)
--- rules: clamp max_tokens 4096;
--- request
POST /v1/chat/completions
{"model":"m","max_tokens":1,"max_tokens":100000000}
--- error_code: 400
--- response_body eval
main::refused("max_tokens", 'the field \"max_tokens\" appears 2 times')



=== TEST 27: a key with an escape is refused: it would dodge the clamp
--- rules: clamp max_tokens 4096;
--- request
POST /v1/chat/completions
{"model":"m","\u006dax_tokens":100000000}
--- error_code: 400
--- response_body eval
main::refused('\\\\u006dax_tokens', 'the top-level key \"\\\\u006dax_tokens\" is written with a JSON escape')



=== TEST 28: an escaped model key is refused too
--- request
POST /v1/chat/completions
{"m\u006fdel":"m"}
--- error_code: 400
--- response_body eval
main::refused('m\\\\u006fdel', 'the top-level key \"m\\\\u006fdel\" is written with a JSON escape')



=== TEST 29: escapes inside values and nested keys are left alone
--- request
POST /v1/chat/completions
{"model":"\u006d","o":{"\u0061":1,"a":2},"s":"\u0041"}
--- response_body chomp
{"model":"\u006d","o":{"\u0061":1,"a":2},"s":"\u0041"}
