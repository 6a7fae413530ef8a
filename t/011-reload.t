# The shared zone across "nginx -s reload" (HUP) and a clean shutdown with
# checks in flight.  Test::Nginx restarts nginx for every block and has no
# reload step, so this file drives a master-process nginx itself.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);
use LLMTest;

my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $port = $ENV{TEST_NGINX_MOCK_PORT_BASE} ? $ENV{TEST_NGINX_MOCK_PORT_BASE} + 20
                                           : 19020;
my $mock = $ENV{TEST_NGINX_MOCK1_PORT};
my $prefix = tempdir('llm-reload-XXXXXX', TMPDIR => 1, CLEANUP => 1);
mkdir "$prefix/$_" for qw(conf logs);

start_mock("127.0.0.1:$mock=m1");

open my $fh, '>', "$prefix/conf/nginx.conf" or die $!;
print $fh <<"_EOC_";
load_module $ENV{TEST_NGINX_LLM_MODULE};
worker_processes 2;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $prefix;
    proxy_temp_path $prefix;
    llm_router_zone llm 1m;
    upstream pool_a {
        llm_engine vllm;
        llm_check interval=100ms timeout=100ms fall=1 rise=3;
        llm_scrape interval=100ms;
        server 127.0.0.1:$mock;
        server 127.0.0.1:1;
    }
    server {
        listen 127.0.0.1:$port;
        location = /llm/status { llm_router_status; }
    }
}
_EOC_
close $fh;

sub status {
    my (undef, $body) = eval { http_get($port, '/llm/status') };
    return $body // '';
}

sub wait_for {
    my ($what, $cond) = @_;
    my $deadline = time + 5;
    while (time < $deadline) {
        my $s = status();
        return $s if $cond->($s);
        sleep 0.05;
    }
    fail("$what: not seen in 5 s");
    return status();
}

is(system($nginx, '-p', "$prefix/", '-c', 'conf/nginx.conf'), 0,
   'nginx starts with a master and two workers');

my $before = wait_for('the dead peer down', sub {
    $_[0] =~ /"127\.0\.0\.1:1","up":false.*"checks":(\d+)/ && $1 >= 3 });
my ($checks) = $before =~ /"127\.0\.0\.1:1","up":false,"configured_down":false,"in_flight":\d+,"failed_tries":\d+,"fails":\d+,"successes":0,"checks":(\d+)/;
ok($checks, "the dead peer is down after $checks checks");

my $pid = do { local (@ARGV, $/) = "$prefix/logs/nginx.pid"; <> };
chomp $pid;
kill 'HUP', $pid;

my $after = wait_for('new workers', sub {
    my $log = do { local (@ARGV, $/) = "$prefix/logs/error.log"; <> };
    my @started = $log =~ /start worker process/g;
    @started >= 4 && sleep(0.2) });
like($after, qr/"127\.0\.0\.1:1","up":false,"configured_down":false,"in_flight":\d+,"failed_tries":\d+,"fails":\d+,"successes":0,"checks":(\d+)/,
     'after the reload the dead peer is still down');
my ($checks_after) = $after =~ /"127\.0\.0\.1:1","up":false[^}]*"checks":(\d+)/;
cmp_ok($checks_after // 0, '>=', $checks, 'its check count went on, not reset');
like($after, qr/"name":"127\.0\.0\.1:$mock","up":true,[^{]*"metrics":\{"running":0\.0000,[^}]*"scrapes":[1-9]/,
     'the live peer keeps its scraped values');

kill 'QUIT', $pid;
my $deadline = time + 5;
sleep 0.05 while kill(0, $pid) && time < $deadline;
ok(!kill(0, $pid), 'a graceful shutdown does not wait for checks');

my $log = do { local (@ARGV, $/) = "$prefix/logs/error.log"; <> };
unlike($log, qr/\[(?:alert|crit|emerg)\]/, 'no alert, crit or emerg in the log');
unlike($log, qr/open socket|left in connection/, 'no socket left behind');

# (With master_process off nginx itself does not support reloads: a stock
# nginx 1.22 answers garbage after a HUP there, so that is not tested.)

done_testing();
