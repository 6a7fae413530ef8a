# In-flight counts live in the shared zone: two workers see each other's
# requests (least_conn), and every way a request can end gives its count
# back (client abort, mid-stream abort, upstream timeout).
#
# The router listens on its own port with reuseport, so the kernel spreads
# the connections the front location opens to it over both workers.  A
# front location that gives up early (proxy_read_timeout) plays the client
# who goes away; with proxy_ignore_client_abort the router keeps the
# request, and so its peer, busy after the front has gone.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}=m2",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK3_PORT}=m3");

master_on();
workers(2);
no_shuffle();

our $router = "127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT}";

add_block_preprocessor(sub {
    my $block = shift;
    my $ignore = $block->ignore_abort ? 'on' : 'off';
    my $read = $block->read_timeout // '10s';
    $block->set_value("http_config", <<"_EOC_");
llm_router_zone llm 1m;
upstream pool {
    llm_balance least_conn;
    llm_engine vllm;
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT};
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT};
}
llm_model m { upstream pool; }
server {
    listen $::router reuseport;
    location /v1/ {
        llm_router on;
        proxy_pass http://\$llm_upstream;
        proxy_read_timeout $read;
        proxy_ignore_client_abort $ignore;
        add_header X-Worker \$pid;
    }
}
_EOC_
    $block->set_value("config", <<"_EOC_");
location /v1/ {
    proxy_pass http://$::router;
}
location = /hold {
    proxy_pass http://$::router/v1/chat/completions;
    proxy_method POST;
    proxy_set_body '{"model":"m"}';
    proxy_set_header Content-Type application/json;
    proxy_set_header X-Mock-Delay-Ms 3000;
    proxy_read_timeout 50ms;
}
location = /page {
    mirror /stream_abort;
    proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK3_PORT}/health;
    proxy_set_header X-Mock-Delay-Ms 400;
}
location = /stream_abort {
    internal;
    proxy_pass http://$::router/v1/chat/completions;
    proxy_method POST;
    proxy_set_body '{"model":"m","stream":true}';
    proxy_set_header Content-Type application/json;
    proxy_set_header X-Mock-Pace-Ms 1000;
    proxy_read_timeout 100ms;
}
location = /reset1 { proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}/mock/reset; }
location = /reset2 { proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}/mock/reset; }
location = /both {
    ssi on;
    default_type text/html;
    return 200 '<!--# include virtual="/stats1" -->|<!--# include virtual="/stats2" -->';
}
location = /stats1 { proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}/mock/stats; }
location = /stats2 { proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}/mock/stats; }
location = /wait {
    proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK3_PORT}/health;
    proxy_set_header X-Mock-Delay-Ms 300;
}
location = /llm/status { llm_router_status; }
_EOC_
});

our $chat = "POST /v1/chat/completions\n{\"model\":\"m\"}";
our $zero = qr/"name":"pool".*"in_flight":0,.*"in_flight":0,/;

run_tests();

__DATA__

=== TEST 1: least_conn counts across workers: while one peer holds a request, 12 quick ones all go to the other
The held request stays on its peer for 3 s after the front gave up on it;
the quick requests reach both workers.
--- ignore_abort: 1
--- request eval
["POST /reset1\n{}", "POST /reset2\n{}", "GET /hold",
 ($::chat) x 12, "GET /both"]
--- error_code eval
[200, 200, 504, (200) x 12, 200]
--- response_body_like eval
["", "", "", ("chat.completion") x 12,
 qr/"requests":1,.*\|.*"requests":12,|"requests":12,.*\|.*"requests":1,/]



=== TEST 2: a client that goes away before the answer gives the count back
--- request eval
["GET /hold", "GET /wait", "GET /llm/status"]
--- error_code eval
[504, 200, 200]
--- response_body_like eval
["", "ok", $::zero]



=== TEST 3: a client that goes away in the middle of a stream gives the count back
The mirror reads the role event, then gives up while the engine paces.
--- request eval
["GET /page", "GET /wait", "GET /llm/status"]
--- response_body_like eval
["ok", "ok", $::zero]



=== TEST 4: an engine that never answers: 504, and the count comes back
--- read_timeout: 300ms
--- more_headers
X-Mock-Hang: 1
--- request eval
[$::chat, "GET /llm/status"]
--- error_code eval
[504, 200]
--- response_body_like eval
["upstream_timeout", $::zero]
