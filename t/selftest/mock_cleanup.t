# Self-test: a mock engine started by t/lib/LLMTest.pm stops however the
# test file that started it ends: die, BAIL_OUT, nginx failing to start
# (the runner bails out), signals it handles (TERM) and those no perl code
# sees (KILL, an unhandled PIPE), POSIX::_exit; a forked child's exit does
# not stop its parent's mock.  Each case is a small script run in a
# subprocess with the same Test::Nginx::Socket as this run would use; the
# mock's port must be free soon after it ended, so that the next run does
# not skip its files with "already in use".
use strict;
use warnings;

use Cwd qw(abs_path);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

# The directories of Test::Nginx::Socket (t/compat without the real one)
# and of LLMTest, without loading either here.
my ($lib) = grep { -f "$_/Test/Nginx/Socket.pm" } grep { !ref } @INC;
plan skip_all => 'Test::Nginx::Socket not found in @INC' if !defined $lib;
$lib = abs_path($lib);
my $tlib = abs_path('t/lib');

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1) or die "no free port: $!";
    return $s->sockport;
}

sub listening {
    my ($port) = @_;
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                 Proto => 'tcp', Timeout => 1) ? 1 : 0;
}

# Own server root and ports, so this can run beside another suite.
my $tmp = tempdir(CLEANUP => 1);
local $ENV{TEST_NGINX_SERVROOT} = "$tmp/servroot";
local $ENV{TEST_NGINX_SERVER_PORT} = free_port();
delete local $ENV{TEST_NGINX_CLIENT_PORT};
delete local $ENV{TEST_NGINX_NO_CLEAN};
delete local $ENV{TEST_NGINX_USE_VALGRIND};

my $head = <<'_EOS_';
use strict;
use warnings;
use Test::Nginx::Socket 'no_plan';
use LLMTest;
my $pid = start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1");
print "mock $pid\n";
STDOUT->flush;
_EOS_

my @cases = (
    [ 'die'       => 'die "on purpose\n";' ],
    [ 'BAIL_OUT'  => 'Test::More::BAIL_OUT("on purpose");' ],
    [ 'TERM'      => 'kill TERM => $$; sleep 5;' ],
    [ 'KILL'      => 'kill KILL => $$; sleep 5;' ],
    [ 'PIPE'      => 'kill PIPE => $$; sleep 5;' ],
    [ '_exit'     => 'POSIX::_exit(3);' ],
    [ 'exec'      => 'exec "true";' ],
    [ 'forked child exits first' => <<'_EOS_' ],
my $child = fork // die "fork: $!";
if (!$child) { exit 0 }                 # runs END blocks, the mock stays
waitpid $child, 0;
sleep 0.3;
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $ENV{TEST_NGINX_MOCK1_PORT});
print $s ? "alive\n" : "gone\n";
exit 0;
_EOS_
    [ 'nginx cannot start' => <<'_EOS_' ],
run_tests();
__DATA__

=== TEST 1: nginx cannot start
--- config
location = /t { no_such_directive; }
--- request
GET /t
--- response_body
never
_EOS_
);

for my $case (@cases) {
    my ($name, $code) = @$case;
    my $script = "$tmp/case.t";
    open my $fh, '>', $script or die "$script: $!";
    print $fh $head, $code, "\n";
    close $fh;

    local $ENV{TEST_NGINX_MOCK1_PORT} = free_port();
    my $port = $ENV{TEST_NGINX_MOCK1_PORT};
    my $out = qx{$^X -I\Q$lib\E -I\Q$tlib\E \Q$script\E 2>&1};
    my ($mock) = $out =~ /^mock (\d+)$/m;
    ok($mock, "$name: the mock started") or diag($out);

    like($out, qr/^alive$/m, "$name: the parent's mock outlived the child")
        if $name =~ /forked/;

    my $deadline = time + 5;
    sleep 0.05 while listening($port) && time < $deadline;
    ok(!listening($port), "$name: the mock's port is free afterwards");

    if ($mock && kill 0, $mock) {        # leave no stale mock behind
        kill KILL => $mock;
        sleep 0.1;
    }
}

# and the next start on that port works, no "already in use"
{
    local $ENV{TEST_NGINX_MOCK1_PORT} = free_port();
    my $script = "$tmp/twice.t";
    open my $fh, '>', $script or die "$script: $!";
    print $fh $head, 'stop_mocks(); start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1"); print "again\n";', "\n";
    close $fh;
    my $out = qx{$^X -I\Q$lib\E -I\Q$tlib\E \Q$script\E 2>&1};
    like($out, qr/^again$/m, 'a mock stopped by stop_mocks frees its port');
}

done_testing();
