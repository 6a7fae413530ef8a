package LLMTest;

# Shared helper of the ngx_llm_router Test::Nginx suites.  Works with the
# real CPAN Test::Nginx::Socket and with our stand-in in t/compat: it only
# uses add_block_preprocessor(), which both provide.
#
#   use lib 't/lib';
#   use LLMTest;
#   use Test::Nginx::Socket 'no_plan';
#
#   start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1", '--tokens', 4);
#   run_tests();
#
# On import it
#   - sets TEST_NGINX_LLM_MODULE (unless set) to build/ngx_http_llm_router_module.so
#     and TEST_NGINX_MOCK (unless set) to mock/mock_engine.py, both under the
#     repository root;
#   - sets TEST_NGINX_MOCK1_PORT .. TEST_NGINX_MOCK4_PORT (base + 1 .. 4) for
#     mocks, TEST_NGINX_BACKEND_PORT (base + 10) and TEST_NGINX_BACKEND2_PORT ..
#     TEST_NGINX_BACKEND4_PORT (base + 11 .. 13) for backends written as
#     server blocks in a test's own config; base is TEST_NGINX_MOCK_PORT_BASE
#     (default 19000).  Each is left alone when already set;
#   - makes every block load the module: "load_module ...;" is prepended to
#     its main_config unless that already mentions ngx_http_llm_router_module
#     or the TEST_NGINX_LLM_MODULE path (so a block can control the load
#     order itself).

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use File::Spec;
use File::Temp ();
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

require Test::Nginx::Socket;

our @EXPORT = qw(start_mock stop_mocks mock_control mock_stats http_get http_post);

my $Root = dirname(dirname(dirname(File::Spec->rel2abs(__FILE__))));

$ENV{TEST_NGINX_LLM_MODULE} //= "$Root/build/ngx_http_llm_router_module.so";
$ENV{TEST_NGINX_MOCK}       //= "$Root/mock/mock_engine.py";

my $PortBase = $ENV{TEST_NGINX_MOCK_PORT_BASE} || 19000;
$ENV{"TEST_NGINX_MOCK${_}_PORT"} //= $PortBase + $_ for 1 .. 4;
$ENV{TEST_NGINX_BACKEND_PORT} //= $PortBase + 10;
$ENV{"TEST_NGINX_BACKEND${_}_PORT"} //= $PortBase + 9 + $_ for 2 .. 4;

Test::Nginx::Socket::add_block_preprocessor(sub {
    my ($block) = @_;
    my $main = $block->main_config // '';
    my $so = $ENV{TEST_NGINX_LLM_MODULE};
    return if $main =~ /ngx_http_llm_router_module/ || index($main, $so) >= 0;
    die "LLMTest: the module is not built: $so does not exist "
        . "(build it, or point TEST_NGINX_LLM_MODULE at it)\n" if !-f $so;
    $block->set_value(main_config => "load_module $so;\n$main");
});

# ---------------------------------------------------------------------------
# Mock inference engines (mock/mock_engine.py).

my @Mocks;    # { pid, owner, log, guard, guard_w }

# A watchdog per mock stops it when its owner is gone however it went:
# SIGKILL, POSIX::_exit, an unhandled signal such as SIGPIPE, exec, which
# all skip END.  It is a fresh perl (exec'ed: nothing of the test in it)
# reading a pipe whose write end only the owner holds (perl opens pipes
# close-on-exec, so nginx, mocks and other exec'ed children never hold
# it): end of file means the owner is gone, then it stops the mock.  It
# ignores the signals a terminal or a harness sends to a whole process
# group, so it outlives the owner; the owner kills it before stopping the
# mock itself.
my $Watchdog = <<'_EOW_';
$SIG{$_} = 'IGNORE' for qw(INT TERM HUP QUIT PIPE);
my $pid = shift;
1 while !defined sysread(STDIN, my $byte, 1) && $!{EINTR};
kill 'TERM', $pid or exit 0;
for (1 .. 150) {
    exit 0 if !kill 0, $pid;
    select undef, undef, undef, 0.02;
}
kill 'KILL', $pid;
_EOW_

# start_mock(LISTEN..., OPTION...): starts one mock engine process serving
# every "HOST:PORT[=NAME]" spec given first; the remaining arguments (from
# the first one starting with "-") are passed on, e.g. '--tokens', 4.
# Returns once the mock printed "ready" or all its ports accept connections;
# dies after 10 seconds or when the mock exits.  Returns the mock's pid.
sub start_mock {
    my @args = @_;
    my @specs;
    push @specs, shift @args while @args && $args[0] !~ /^-/;
    die "start_mock: no HOST:PORT[=NAME] listen spec given\n" if !@specs;

    my @addrs = map {
        /^\[?([^\]]+?)\]?:(\d+)(?:=.*)?$/ or die "start_mock: bad listen spec '$_'\n";
        [$1, $2];
    } @specs;
    for my $addr (@addrs) {
        die "start_mock: $addr->[0]:$addr->[1] is already in use (a stale mock?)\n"
            if can_connect(@$addr);
    }

    my $log = File::Temp->new(TEMPLATE => 'llmtest-mock-XXXXXX', TMPDIR => 1);
    my @cmd = ('python3', $ENV{TEST_NGINX_MOCK}, (map { ('--listen', $_) } @specs), @args);
    STDOUT->flush;
    STDERR->flush;
    my $pid = fork // die "start_mock: fork failed: $!\n";
    if (!$pid) {
        open STDIN, '<', '/dev/null' or POSIX::_exit(127);
        open STDOUT, '>', $log->filename or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(127);
        exec { $cmd[0] } @cmd or POSIX::_exit(127);    # no END blocks here
    }
    my $mock = { pid => $pid, owner => $$, log => $log };
    push @Mocks, $mock;
    start_watchdog($mock);

    my $deadline = time + 10;
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            my $status = $?;
            stop_watchdog($mock);
            @Mocks = grep { $_ != $mock } @Mocks;
            die "start_mock: the mock exited (status $status) before it was ready:\n"
                . "  @cmd\n" . read_log($mock);
        }
        return $pid if read_log($mock) =~ /^ready$/m
                       || !grep { !can_connect(@$_) } @addrs;
        sleep 0.05;
    }
    my $out = read_log($mock);
    stop_mock($mock);
    die "start_mock: the mock was not ready after 10 s:\n  @cmd\n$out";
}

sub start_watchdog {
    my ($mock) = @_;
    pipe my $r, my $w or die "start_mock: pipe failed: $!\n";
    my $pid = fork // die "start_mock: fork failed: $!\n";
    if (!$pid) {
        open STDIN, '<&', $r or POSIX::_exit(127);
        open STDOUT, '>', '/dev/null' or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(127);
        exec { $^X } $^X, '-e', $Watchdog, $mock->{pid}
            or POSIX::_exit(127);    # no END blocks here
    }
    close $r;
    @$mock{qw(guard guard_w)} = ($pid, $w);
}

sub stop_watchdog {
    my ($mock) = @_;
    my $guard = delete $mock->{guard} or return;
    kill 'KILL', $guard;
    waitpid $guard, 0;
    close delete $mock->{guard_w};
}

sub read_log {
    my ($mock) = @_;
    open my $fh, '<', $mock->{log}->filename or return '';
    local $/;
    return scalar <$fh>;
}

sub can_connect {
    my ($host, $port) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port,
                                     Proto => 'tcp', Timeout => 1);
    return $sock ? 1 : 0;
}

sub stop_mock {
    my ($mock) = @_;
    my $pid = $mock->{pid};
    stop_watchdog($mock);
    kill 'TERM', $pid;
    my $deadline = time + 3;
    while (waitpid($pid, WNOHANG) == 0) {
        if (time > $deadline) {
            kill 'KILL', $pid;
            waitpid $pid, 0;
            last;
        }
        sleep 0.02;
    }
}

# Stops the mocks started by this process (not those of a parent: forked
# children run END blocks too).
sub stop_mocks {
    my @mine = grep { $_->{owner} == $$ } @Mocks;
    @Mocks = grep { $_->{owner} != $$ } @Mocks;
    stop_mock($_) for @mine;
}

# END also runs when the script dies; a $SIG{__DIE__} hook would not do, it
# fires inside every eval.  INT/TERM/HUP would skip END, so exit through it.
my %SigNum = (INT => POSIX::SIGINT(), TERM => POSIX::SIGTERM(), HUP => POSIX::SIGHUP());
for my $sig (sort keys %SigNum) {
    next if defined $SIG{$sig} && $SIG{$sig} ne 'DEFAULT';
    $SIG{$sig} = sub { stop_mocks(); exit 128 + $SigNum{$sig} };
}

END {
    local $?;    # keep the test's exit status
    stop_mocks();
}

# ---------------------------------------------------------------------------
# Tiny HTTP/1.1 client for talking to mocks (or any local server) outside
# the test requests.

# http_request(METHOD, PORT, PATH[, BODY]) on 127.0.0.1.  Returns
# (status, body) in list context, the body in scalar context.  Dies when the
# server cannot be reached or does not answer within 10 seconds.
sub http_request {
    my ($method, $port, $path, $body) = @_;
    $body //= '';

    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                     Proto => 'tcp', Timeout => 5)
        or die "$method 127.0.0.1:$port$path: cannot connect: $!\n";
    print {$sock} "$method $path HTTP/1.1\r\nHost: 127.0.0.1:$port\r\n"
        . "Connection: close\r\n"
        . (length $body ? "Content-Type: application/json\r\n" : '')
        . 'Content-Length: ' . length($body) . "\r\n\r\n$body";

    my $raw = '';
    my $select = IO::Select->new($sock);
    while (1) {
        die "$method 127.0.0.1:$port$path: no answer within 10 s\n"
            if !$select->can_read(10);
        my $n = sysread $sock, my $buf, 65536;
        die "$method 127.0.0.1:$port$path: read failed: $!\n" if !defined $n;
        last if $n == 0;
        $raw .= $buf;
    }
    close $sock;

    my ($head, $content) = split /\r\n\r\n/, $raw, 2;
    my ($status) = ($head // '') =~ m{^HTTP/\S+\s+(\d{3})}
        or die "$method 127.0.0.1:$port$path: bad response: $raw\n";
    $content //= '';
    if ($head =~ /^Transfer-Encoding:\s*chunked\s*$/mi) {
        my $decoded = '';
        while ($content =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $size = hex $1;
            last if $size == 0;
            $decoded .= substr $content, 0, $size, '';
            $content =~ s/^\r\n//;
        }
        $content = $decoded;
    }
    return wantarray ? ($status, $content) : $content;
}

sub http_get  { my ($port, $path) = @_;        return http_request('GET', $port, $path) }
sub http_post { my ($port, $path, $body) = @_; return http_request('POST', $port, $path, $body) }

# mock_control(PORT, JSON text or hash ref): POST /mock/control.  Dies
# unless the mock accepts it; returns the mock's new state (decoded).
sub mock_control {
    my ($port, $state) = @_;
    my $json = ref $state ? JSON::PP->new->canonical->encode($state) : $state;
    my ($status, $body) = http_request('POST', $port, '/mock/control', $json);
    die "mock_control($port): HTTP $status: $body\n" if $status !~ /^2/;
    return JSON::PP::decode_json($body);
}

# mock_stats(PORT): GET /mock/stats, decoded
# ({name, requests, in_flight, by_path}).
sub mock_stats {
    my ($port) = @_;
    my ($status, $body) = http_request('GET', $port, '/mock/stats');
    die "mock_stats($port): HTTP $status: $body\n" if $status !~ /^2/;
    return JSON::PP::decode_json($body);
}

1;
