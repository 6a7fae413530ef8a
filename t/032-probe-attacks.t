# The router's own client (checks, scrapes, limits, /tokenize) against a
# hostile engine: answers that never end, drip, flood, lie about their
# framing, or are cut anywhere (t/lib/probe_engine.py answers each path
# with the raw bytes set for it below).
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;
use MIME::Base64 qw(encode_base64);

{
    local $ENV{TEST_NGINX_MOCK} = "$FindBin::Bin/lib/probe_engine.py";
    start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=raw");
}

# answer(PATH, MODE, RAW[, MORE]): how the engine answers PATH
sub answer {
    my ($path, $mode, $raw, $more) = @_;
    LLMTest::mock_control($ENV{TEST_NGINX_MOCK1_PORT}, {
        path => $path, mode => $mode, raw => encode_base64($raw, ''),
        more => encode_base64($more // '', '') });
}

my $ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
my $chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

# about half a second for the request that lets the probes run
answer('/pause', 'split', "HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n"
                          . ('p' x 300));

# engines that never stop sending
answer('/flood-reason', 'flood', "HTTP/1.1 200 ", 'a');
answer('/flood-ext', 'flood', "${chunked}1;", 'a');
answer('/flood-trailer', 'flood', "${chunked}0\r\nX-T: ", 'a');
answer('/flood-zeros', 'flood', $chunked, '0');

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
location = /pause {
    proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}/pause;
}
location = /alive {
    return 200 "alive\\n";
}
location = /llm/status {
    llm_router_status;
}
_EOC_
    }
    if (!defined $block->request) {
        $block->set_value("request", ["GET /pause", "GET /alive"]);
    }
    if (!defined $block->response_body
        && !defined $block->response_body_like)
    {
        $block->set_value("response_body", ["p" x 300, "alive\n"]);
    }
});

run_tests();

__DATA__

=== TEST 1: a status line that never ends: cut at the headers' cap, the worker serves on
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_check interval=1s timeout=900ms fall=1 uri=/flood-reason;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
--- request eval
["GET /pause", "GET /llm/status"]
--- response_body_like eval
["p", qr/"up":false,[^}]*"last_error":"invalid response"/]



=== TEST 2: a chunk extension that never ends: the timeout ends it, the worker serves on
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine vllm;
    llm_scrape interval=400ms uri=/flood-ext;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
--- request eval
["GET /pause", "GET /pause", "GET /llm/status"]
--- response_body_like eval
["p", "p", qr/"last_error":"timed out"/]



=== TEST 3: a trailer that never ends: cut at the headers' cap
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine vllm;
    llm_scrape interval=400ms uri=/flood-trailer;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
--- request eval
["GET /pause", "GET /llm/status"]
--- response_body_like eval
["p", qr/"last_error":"invalid response"/]
