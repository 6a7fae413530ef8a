# With a master and two workers, every peer is still checked once per
# interval: the workers claim each check in the shared zone.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK3_PORT}=m3");

master_on();
workers(2);
no_shuffle();

run_tests();

__DATA__

=== TEST 1: two workers, one check per interval (about 12 in 1.2 s at 100 ms, 24 if both checked)
The stats are reset, 1.2 s pass, and the mock counts the /health hits.
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine vllm;
    llm_check interval=100ms timeout=100ms;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
llm_model m { upstream pool_a; }
--- config
location = /reset { proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK1_PORT/mock/reset; }
location = /stats { proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK1_PORT/mock/stats; }
location = /wait {
    proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK3_PORT/health;
    proxy_set_header X-Mock-Delay-Ms 1200;
}
--- request eval
["POST /reset\n{}", "GET /wait", "GET /stats"]
--- response_body_like eval
["", "ok", qr/"\/health":(?:[4-9]|1[0-6])[,}]/]
--- no_error_log
[alert]
[crit]
