# Self-test of the Test::Nginx::Socket runner (ours in t/compat, or the real
# one when installed) on plain nginx features: one passing block per kind of
# section the project's suites use.  Needs no LLM module.
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET;

# The http2 blocks skip themselves under the real Test::Nginx (0.31 and
# later) with nginx < 1.25.1: it configures "http2 on;", which those nginx
# versions do not know.

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1) or die "no free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

# A free port for the plain HTTP/1.1 server of the http2 body block.
$ENV{TEST_NGINX_H1_PORT} = free_port();

# Used by the env-expansion block.
$ENV{TEST_NGINX_SELFTEST_WORD} = 'hello-env';

# A port on which the "init" block listens without ever answering.
$ENV{TEST_NGINX_HANG_PORT} = free_port();

no_shuffle();
run_tests();

__DATA__

=== TEST 1: response_body (chomp), response_headers with an absent header
--- config
    location = /t {
        add_header X-Selftest yes;
        return 200 "hi";
    }
--- request
GET /t
--- response_body chomp
hi
--- response_headers
Content-Type: text/plain
X-Selftest: yes
!X-Not-There
--- no_error_log
[error]
[alert]



=== TEST 2: error_code, error_log (plain and eval qr//), grep_error_log with env
--- request
GET /missing-selftest.html
--- error_code: 404
--- error_log eval
[qr/\[error\] .*missing-selftest\.html/, "No such file or directory"]
--- grep_error_log eval
qr/open\(\) "[^"]+" failed/
--- grep_error_log_out
open() "$TEST_NGINX_SERVER_ROOT/html/missing-selftest.html" failed



=== TEST 3: $TEST_NGINX_* expanded in config and response_body
--- config
    location = /env {
        return 200 "$TEST_NGINX_SELFTEST_WORD $TEST_NGINX_SERVER_PORT\n";
    }
--- request
GET /env
--- response_body
hello-env $TEST_NGINX_SERVER_PORT



=== TEST 4: request arrays use one connection per request (like the real one)
--- config
    location = /conn {
        return 200 "$connection_requests\n";
    }
--- request eval
["GET /conn", "GET /conn"]
--- response_body eval
["1\n", "1\n"]
--- no_error_log
[error]



=== TEST 5: pipelined_requests share one keep-alive connection
--- config
    location = /conn {
        return 200 "$connection_requests\n";
    }
--- pipelined_requests eval
["GET /conn", "GET /conn"]
--- response_body eval
["1\n", "2\n"]



=== TEST 6: raw_request with a chunked body, read by proxy_pass
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "cl=$content_length te=$http_x_client_te\n";
        }
    }
--- config
    location = /proxy {
        add_header X-Request-Length $request_length;
        proxy_set_header X-Client-TE $http_transfer_encoding;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- raw_request eval
"POST /proxy HTTP/1.1\r
Host: localhost\r
Connection: close\r
Transfer-Encoding: chunked\r
\r
5\r
hello\r
6\r
 world\r
0\r
\r
"
--- response_body
cl=11 te=chunked
--- response_headers
X-Request-Length: 114
--- no_error_log
[error]



=== TEST 7: raw_request as an array of pieces
--- config
    location = /pieces {
        return 200 "$request_method $uri\n";
    }
--- raw_request eval
["GET /pie", "ces HTTP/1.0\r\n", "Host: localhost\r\n\r\n"]
--- response_body
GET /pieces



=== TEST 8: more_headers, and the body gets a Content-Length (trimmed)
--- config
    location = /mh {
        return 200 "x=$http_x_selftest cl=$content_length ct=$content_type\n";
    }
--- more_headers
X-Selftest: yes
# a comment line is ignored
Content-Type: text/x-test
--- request
POST /mh
  hello world  
--- response_body
x=yes cl=11 ct=text/x-test



=== TEST 9: a 5 MiB request body, buffered to the server root's temp dir
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        client_max_body_size 30M;
        location / {
            return 200 "cl=$content_length\n";
        }
    }
--- config
    location = /big {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
"POST /big\n" . ("x" x (5 * 1024 * 1024))
--- response_body
cl=5242880
--- error_log
a client request body is buffered to a temporary file
--- no_error_log
[error]



=== TEST 10: http2 over prior knowledge
--- skip_eval: 3: $Test::Nginx::Util::VERSION && $Test::Nginx::Util::NginxVersion < 1.025001
--- http2
--- config
    location = /h2 {
        return 200 "$server_protocol\n";
    }
--- request
GET /h2
--- response_body
HTTP/2.0
--- response_headers
Content-Type: text/plain



=== TEST 11: http2 with a request body
--- skip_eval: 2: $Test::Nginx::Util::VERSION && $Test::Nginx::Util::NginxVersion < 1.025001
--- http2
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_H1_PORT;
        location = /h2echo {
            return 200 "$http_x_proto cl=$content_length\n";
        }
    }
--- config
    # the body is read (proxied) before the answer: a body nginx leaves
    # unread gets the HTTP/2 stream reset, which curl may report as an error
    location = /h2body {
        proxy_set_header X-Proto $server_protocol;
        proxy_pass http://127.0.0.1:$TEST_NGINX_H1_PORT/h2echo;
    }
--- request
POST /h2body
abc
--- response_body
HTTP/2.0 cl=3



=== TEST 12: must_die, the startup error is matched in error.log
--- config
    bogus_selftest_directive on;
--- must_die
--- error_log
unknown directive "bogus_selftest_directive"
[emerg]



=== TEST 13: response_body_like and response_headers_like
--- config
    location = /like {
        return 200 "answer: 42\n";
    }
--- request
GET /like
--- response_body_like: ^answer: \d+$
--- response_headers_like
Server: nginx/[\d.]+
Content-Length: \d+



=== TEST 14: response_body_unlike
--- config
    location = /unlike {
        return 200 "fine\n";
    }
--- request
GET /unlike
--- response_body_unlike: error



=== TEST 15: HEAD request, empty body despite Content-Length
--- config
    location = /head {
        return 200 "some body\n";
    }
--- request
HEAD /head
--- response_body
--- response_headers
Content-Length: 10



=== TEST 16: init runs before the request; timeout + abort end it quietly
--- init
$main::HangListener = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1', LocalPort => $ENV{TEST_NGINX_HANG_PORT},
    Listen => 5, ReuseAddr => 1) or die "cannot listen: $!";
--- config
    location = /hang {
        proxy_read_timeout 30s;
        proxy_pass http://127.0.0.1:$TEST_NGINX_HANG_PORT;
    }
--- request
GET /hang
--- timeout: 0.5
--- abort
--- error_code eval
""
--- wait: 0.1



=== TEST 17: skip_nginx skips when the version matches
--- skip_nginx
2: < 999.0.0
--- config
    location = /t { return 500; }
--- request
GET /t
--- response_body
never checked



=== TEST 18: skip_nginx runs the block when the version does not match
--- skip_nginx
2: > 999.0.0
--- config
    location = /t { return 200 "ran\n"; }
--- request
GET /t
--- response_body
ran



=== TEST 19: main_config and http_config land in the right contexts
--- main_config
    worker_rlimit_nofile 1024;
--- http_config
    map $uri $selftest_mapped {
        default "mapped";
    }
--- config
    location = /ctx {
        return 200 "$selftest_mapped\n";
    }
--- request
GET /ctx
--- response_body
mapped



=== TEST 20: chunked responses are de-chunked, also when pipelined
--- config
    location = /chunked {
        sub_filter_types *;
        sub_filter 'b' 'B';
        return 200 "abc\n";
    }
--- pipelined_requests eval
["GET /chunked", "GET /chunked"]
--- response_headers eval
["Transfer-Encoding: chunked\n!Content-Length", "Transfer-Encoding: chunked"]
--- response_body eval
["aBc\n", "aBc\n"]
