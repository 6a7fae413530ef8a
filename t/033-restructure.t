# Behaviour kept through the restructuring of issue 16: what a reading of
# the moved code found changed, each pinned to the behaviour before.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

$ENV{TEST_NGINX_HOOKS} = "$FindBin::Bin/hooks";

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1");

no_shuffle();
run_tests();

__DATA__

=== TEST 1: ctx[""] is no field of the request (nor are $llm_error's and $llm_session's)
--- http_config
upstream pool { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model m { upstream pool; hook $TEST_NGINX_HOOKS/restructure.lua; }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
    proxy_set_header X-Mock-Echo 1;
}
--- request
POST /v1/chat/completions
{"model":"m"}
--- response_body chomp
{"model":"m","seen":{"empty":"nil","error":"nil","session":"nil"}}
--- no_error_log
[error]
