# Memory per request stays bounded whatever the client's members hold
# (issue 15, 4): the estimate of "messages" for variants, the /tokenize
# request built from them and stream_options are read where they lie, not
# parsed into a cJSON tree (a 4 MB [0,0,...] cost +164 MB of RSS).
#
# nginx runs as one process (Test::Nginx's default, master off): GET /pid
# gives its pid, and the body filter reads VmHWM (the peak resident size)
# from /proc/PID/status; the second GET /pid says whether the peak grew by
# less than 16 MB over the big request in between (the body itself is
# 4 MB and is proxied to the backend).  Memory, not time.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

no_shuffle();

# under valgrind (whose own memory is what /proc shows) the bodies are small
# and the bound is not checked: the run is for valgrind's findings
our $Valgrind = $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 0;
our $Bound = $Valgrind ? 1e12 : $ENV{RSS_BOUND} // 16 * 1024;        # kB
my $hwm;

sub vm_hwm {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/status" or return undef;
    while (<$fh>) {
        return $1 if /^VmHWM:\s+(\d+)\s+kB/;
    }
    return undef;
}

# /pid answers become "peak" (the first) and "peak grew less than 16 MB"
# (the next), other answers pass
sub peak {
    my ($body) = @_;
    return $body if $body !~ /^pid=(\d+)$/;
    my $now = vm_hwm($1) // return "no VmHWM for pid $1\n";
    if (!defined $hwm) {
        $hwm = $now;
        return "peak\n";
    }
    my $grew = $now - $hwm;
    undef $hwm;
    return $grew < $Bound ? "peak grew less than 16 MB\n"
                          : "peak grew by $grew kB\n";
}

add_block_preprocessor(sub {
    my $block = shift;
    my $models = $block->models;
    $block->set_value("http_config", <<"_EOC_");
upstream pool { server 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT}; }
upstream tok { llm_engine llamacpp; server 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT}; }
upstream vtok { llm_engine vllm; server 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT}; }
$models
server {
    listen 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT};
    client_max_body_size 16m;
    location = /tokenize { return 200 '{"tokens":[1,2,3]}'; }
    location / { return 200 "ok\\n"; }
}
_EOC_
    $block->set_value("config", <<"_EOC_");
location /v1/ {
    llm_router on;
    llm_stream_usage on;
    client_max_body_size 16m;
    client_body_buffer_size 16m;
    proxy_pass http://\$llm_upstream;
    add_header X-Estimate \$llm_estimated_tokens always;
}
location = /pid { return 200 "pid=\$pid"; }
_EOC_
    $block->set_value("response_body_filters", \&main::peak);
});

# 2 000 000 zeros: 4 MB
our $zeros = '[' . join(',', (0) x ($Valgrind ? 20_000 : 2_000_000)) . ']';
# 1 000 000 one-byte texts: 4 MB, an estimate of 250 003 tokens
our $texts = '[' . join(',', ('"a"') x ($Valgrind ? 10_000 : 1_000_000)) . ']';

sub big { return ["GET /pid", "POST /v1/chat/completions\n$_[0]", "GET /pid"] }

run_tests();

__DATA__

=== TEST 1: variants: the estimate of a 4 MB [0,0,...] "messages"
--- models
llm_model m { upstream pool; max_context 1000; }
llm_model m { upstream pool; max_context 100000; }
--- request eval
::big("{\"model\":\"m\",\"max_tokens\":10,\"messages\":$::zeros}")
--- response_body eval
["peak\n", "ok\n", "peak grew less than 16 MB\n"]



=== TEST 2: variants: 4 MB of "prompt" texts
--- models
llm_model m { upstream pool; max_context 1000; }
llm_model m { upstream pool; max_context 1000000; }
--- request eval
::big("{\"model\":\"m\",\"max_tokens\":10,\"prompt\":$::texts}")
--- response_body eval
["peak\n", "ok\n", "peak grew less than 16 MB\n"]
--- response_headers eval
["", "X-Estimate: " . ($::Valgrind ? 2513 : 250013), ""]



=== TEST 3: tokenize on (llama.cpp): the /tokenize request built from 4 MB of texts
--- models eval
"llm_model t { upstream tok; max_context " . ($::Valgrind ? 2510 : 250010)
. "; tokenize on; }\nllm_model t { upstream pool; max_context 1000000; }\n"
--- request eval
::big("{\"model\":\"t\",\"max_tokens\":7,\"messages\":$::texts}")
--- response_body eval
["peak\n", "ok\n", "peak grew less than 16 MB\n"]
--- response_headers eval
["", "X-Estimate: 10", ""]



=== TEST 4: tokenize on (llama.cpp) with a 4 MB [0,0,...]
--- models
llm_model t { upstream tok; max_context 10; tokenize on; }
llm_model t { upstream pool; max_context 1000000; }
--- request eval
::big("{\"model\":\"t\",\"max_tokens\":7,\"messages\":$::zeros}")
--- response_body eval
["peak\n", "ok\n", "peak grew less than 16 MB\n"]



=== TEST 5: tokenize on (vLLM) with a 4 MB [0,0,...]
--- models
llm_model t { upstream vtok; max_context 10; tokenize on; }
llm_model t { upstream pool; max_context 1000000; }
--- request eval
::big("{\"model\":\"t\",\"max_tokens\":7,\"messages\":$::zeros}")
--- response_body eval
["peak\n", "ok\n", "peak grew less than 16 MB\n"]



=== TEST 6: stream_options with 4 MB in it, llm_stream_usage on
--- models
llm_model m { upstream pool; }
--- request eval
::big("{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"x\":$::zeros},\"messages\":[]}")
--- response_body eval
["peak\n", "ok\n", "peak grew less than 16 MB\n"]
