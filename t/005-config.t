# nginx -t refuses bad llm_* configuration, naming the directive and place.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->config) {
        $block->set_value("config", "location /v1/ { llm_router on; proxy_pass http://\$llm_upstream; }");
    }
    if (!defined $block->request) {
        $block->set_value("request", "GET /v1/models");
    }
});

run_tests();

__DATA__

=== TEST 1: an llm_model naming no upstream block
--- http_config
llm_model llama3-8b { upstream nowhere; }
--- must_die
--- error_log eval
qr/\[emerg\] .*llm_model "llama3-8b" names upstream "nowhere", which is not an upstream\{\} block, in \S+nginx\.conf:\d+/



=== TEST 2: an implicit upstream (a proxy_pass host) is not an upstream block
--- http_config
llm_model llama3-8b { upstream 127.0.0.1; }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT; location / { proxy_pass http://127.0.0.1; } }
--- must_die
--- error_log
names upstream "127.0.0.1", which is not an upstream{} block



=== TEST 3: the same glob twice
--- http_config
upstream a { server 127.0.0.1:1; }
llm_model "m-*" { upstream a; }
llm_model "m-*" { upstream a; }
--- must_die
--- error_log eval
qr/\[emerg\] .*duplicate llm_model "m-\*", first declared in \S+nginx\.conf:\d+ \(only blocks of one exact name can be variants\) in \S+nginx\.conf:\d+/



=== TEST 4: a model without an upstream
--- http_config
llm_model m { target x; }
--- must_die
--- error_log
no "upstream" in llm_model "m"



=== TEST 5: an unknown directive inside llm_model
--- http_config
upstream a { server 127.0.0.1:1; }
llm_model m { upstream a; temperature 0.5; }
--- must_die
--- error_log
unknown directive "temperature" in llm_model "m"



=== TEST 6: set needs a JSON value
--- http_config
upstream a { server 127.0.0.1:1; }
llm_model m { upstream a; set user anonymous; }
--- must_die
--- error_log
"set" value "anonymous" is not valid JSON



=== TEST 7: clamp needs a number
--- http_config
upstream a { server 127.0.0.1:1; }
llm_model m { upstream a; clamp max_tokens many; }
--- must_die
--- error_log
"clamp" limit "many" is not a number



=== TEST 8: the model field is changed with target only
--- http_config
upstream a { server 127.0.0.1:1; }
llm_model m { upstream a; drop model; }
--- must_die
--- error_log
"drop" cannot change "model", use "target"



=== TEST 9: one rule per field
--- http_config
upstream a { server 127.0.0.1:1; }
llm_model m { upstream a; set n 1; clamp n 2; }
--- must_die
--- error_log
field "n" already has a rule in llm_model "m"



=== TEST 10: wrong argument counts
--- http_config
upstream a { server 127.0.0.1:1; }
llm_model m { upstream a b; }
--- must_die
--- error_log
invalid number of arguments in "upstream" directive of llm_model "m"



=== TEST 11: an alias pointing at nothing
--- http_config
upstream a { server 127.0.0.1:1; }
llm_model m { upstream a; }
llm_alias gpt-4 nothing;
--- must_die
--- error_log eval
qr/llm_alias "gpt-4" points to "nothing", which matches no llm_model, in \S+nginx\.conf:\d+/



=== TEST 12: an alias that is also a model name
--- http_config
upstream a { server 127.0.0.1:1; }
llm_model m { upstream a; }
llm_model n { upstream a; }
llm_alias n m;
--- must_die
--- error_log
llm_alias "n" is also an llm_model name



=== TEST 13: a glob alias makes no sense
--- http_config
upstream a { server 127.0.0.1:1; }
llm_model m { upstream a; }
llm_alias "gpt-*" m;
--- must_die
--- error_log
"llm_alias" directive cannot be a glob



=== TEST 14: llm_router takes on or off only
--- http_config
upstream a { server 127.0.0.1:1; }
llm_model m { upstream a; }
--- config
location /v1/ { llm_router maybe; }
--- must_die
--- error_log
invalid value "maybe" in "llm_router" directive, it must be "on" or "off"



=== TEST 15: a valid configuration starts and serves
--- http_config
upstream a { server 127.0.0.1:1; }
llm_model m { upstream a; target t; set temperature 0.2; set stop '["\n", "###"]'; clamp max_tokens 10; drop x y z; }
llm_model "m-*" { upstream a; }
llm_model default { upstream a; }
llm_alias alias-of-m m;
--- config
location = /v1/models { llm_models; }
--- request
GET /v1/models
--- response_body_like: "id":"m".*"id":"alias-of-m"
--- no_error_log
[error]
[emerg]



=== TEST 16: llm_hook_limits: a state smaller than 1m is refused, naming the parameter
--- http_config
upstream a { server 127.0.0.1:1; }
llm_model m { upstream a; }
--- config
location /v1/ { llm_router on; llm_hook_limits memory=1m state=512k; }
--- must_die
--- error_log
invalid parameter "state=512k" (instructions=N, time=T over 0, memory=SIZE of 64k or more, state=SIZE of 1m or more)



=== TEST 17: llm_hook_limits: an unknown parameter is refused
--- http_config
upstream a { server 127.0.0.1:1; }
llm_model m { upstream a; }
--- config
location /v1/ { llm_router on; llm_hook_limits cpu=1; }
--- must_die
--- error_log
invalid parameter "cpu=1"
