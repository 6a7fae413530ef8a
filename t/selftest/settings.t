# Self-test of the runner's global settings: an exact plan computed from
# repeat_each() and blocks(), a master process with two workers, no default
# "location /", a global log level.  Needs no LLM module.
use Test::Nginx::Socket;

repeat_each(2);
master_on();
workers(2);
no_root_location();
log_level('info');

# Every block checks the status and the body, once per repetition; the last
# one also checks error.log.
plan tests => repeat_each() * (2 * blocks() + 1);

run_tests();

__DATA__

=== TEST 1: the block may define "location /" itself (no_root_location)
--- config
    location / {
        return 200 "own root location\n";
    }
--- request
GET /
--- response_body
own root location



=== TEST 2: master_on() with two workers serves requests
--- config
    location = /pid {
        return 200 "worker $pid\n";
    }
--- request
GET /pid
--- response_body_like: ^worker \d+$



=== TEST 3: log_level('info') keeps debug lines out of error.log
--- config
    location = /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- response_body
ok
--- no_error_log
[debug]
