package Test::Nginx::Socket;

# Our own stand-in for the CPAN module Test::Nginx::Socket, used only when
# the real one is not installed (the test command adds "-I t/compat" after
# `perl -MTest::Nginx::Socket -e1` failed).  It runs the same data-driven
# test files: a Test::Base spec after __DATA__, one nginx per block, TAP out.
#
# It implements the subset of sections and functions this project uses, with
# the semantics of the real module (names of the TAP tests included) so that
# a .t file passes or fails the same way under both.  See t/compat/README
# for the list and the known differences.
#
# Written from the documented behaviour; no code of the real module is used.

use strict;
use warnings;

use File::Path qw(make_path remove_tree);
use File::Spec;
use IO::Handle;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Scalar::Util qw(looks_like_number);
use Test::Base ();
use Test::More ();
use Time::HiRes qw(sleep time);

use Test::Nginx::Compat::HTTP qw(
    build_request exchange parse_response header curl_exchange
);

# Subclassing Test::Base makes `use Test::Nginx::Socket ...` go through
# Test::Base's import: the plan arguments ('no_plan', tests => N) reach
# Test::More, and Test::Base's exports (blocks, plan, is, ok, like, ...) plus
# ours below land in the test script, as with the real module.
our @ISA = ('Test::Base');

our @EXPORT = qw(
    run_tests repeat_each no_shuffle no_long_string no_root_location
    master_on master_off workers worker_connections log_level timeout
    add_block_preprocessor env_to_nginx bail_out
    server_port server_root html_dir
);

# ---------------------------------------------------------------------------
# Settings.  Defaults and environment variables as in the real module.

my $RepeatEach        = 1;
my $Workers           = 1;
my $WorkerConnections = 64;
my $LogLevel          = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
my $MasterProcess     = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
my $NoRootLocation    = 0;
my $Timeout           = $ENV{TEST_NGINX_TIMEOUT} || 3;
my $Sleep             = $ENV{TEST_NGINX_SLEEP} || 0.015;
my $ServerAddr        = '127.0.0.1';
my $ServerName        = 'localhost';
my $ServerPort        = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
my $ClientPort        = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
my $UseValgrind       = $ENV{TEST_NGINX_USE_VALGRIND};
my $NoClean           = $ENV{TEST_NGINX_NO_CLEAN};

my $ServRoot   = $ENV{TEST_NGINX_SERVROOT} || File::Spec->rel2abs('t/servroot');
my $LogDir     = "$ServRoot/logs";
my $ErrLogFile = "$LogDir/error.log";
my $AccLogFile = "$LogDir/access.log";
my $PidFile    = "$LogDir/nginx.pid";
my $HtmlDir    = "$ServRoot/html";
my $ConfDir    = "$ServRoot/conf";
my $ConfFile   = "$ConfDir/nginx.conf";
my $StderrFile = "$LogDir/nginx.stderr";     # what nginx printed on stderr
my $ValgrindLog = "$LogDir/valgrind.log";

# Suppressions for stock nginx's own leaks, shipped next to this module.
my $CompatSuppressions = File::Spec->rel2abs(
    File::Spec->catfile((File::Spec->splitpath(__FILE__))[1], '..', '..', 'valgrind.suppress'));

$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

my @EnvToNginx;
my @BlockPreprocessors;

my $MainPid = $$;          # END blocks of forked children must not clean up
my $NginxBinary;
my $NginxVersion;          # e.g. 1.022001 for 1.22.1
my $NginxConfigure = '';   # output of nginx -V
my $ValgrindPid;           # nginx running in the foreground under valgrind
my $ErrLogPos = 0;         # error.log offset already looked at
my %RandPorts;             # $TEST_NGINX_RAND_PORT_N of the current block
my $ConnectFailures = 0;

# ---------------------------------------------------------------------------
# Exported settings functions (prototypes as in the real module, so that the
# same call syntax compiles under both).

sub repeat_each (@) {
    $RepeatEach = shift if @_;
    return $RepeatEach;
}

sub workers (@) {
    $Workers = shift if @_;
    return $Workers;
}

sub worker_connections (@) {
    $WorkerConnections = shift if @_;
    return $WorkerConnections;
}

sub log_level (@) {
    $LogLevel = shift if @_;
    return $LogLevel;
}

sub timeout (@) {
    $Timeout = shift if @_;
    return $Timeout;
}

# Like the real one, setting it changes where nginx listens, not where the
# client connects (TEST_NGINX_CLIENT_PORT / the initial port).
sub server_port (@) {
    $ServerPort = shift if @_;
    return $ServerPort;
}

sub server_root () { return $ServRoot }
sub html_dir ()    { return $HtmlDir }

sub master_on ()        { $MasterProcess = 'on' }
sub master_off ()       { $MasterProcess = 'off' }
sub no_root_location () { $NoRootLocation = 1 }

# Blocks always run in file order here; the real module shuffles them unless
# this is called, so tests must not depend on the order anyway.
sub no_shuffle () { return }

# The real module then compares long strings with is() instead of
# Test::LongString's is_string(); we always use is(), so nothing to switch.
sub no_long_string () { return }

sub add_block_preprocessor (&) {
    unshift @BlockPreprocessors, shift;
}

sub env_to_nginx (@) {
    die "env_to_nginx: no arguments specified\n" if !@_;
    for my $v (@_) {
        die "env_to_nginx: bad argument value: $v\n"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

# The reason goes on the TAP "Bail out!" line, so only its first line shows;
# the rest is printed as diagnostics first.
sub bail_out (@) {
    my ($first, $rest) = split /\n/, join('', @_), 2;
    Test::More::diag($rest) if defined $rest && $rest =~ /\S/;
    cleanup();
    Test::More::BAIL_OUT($first // '');
}

# ---------------------------------------------------------------------------
# Main loop.

sub run_tests () {
    $NginxBinary = find_nginx();
    ($NginxVersion, $NginxConfigure) = nginx_version();
    $ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;

    for my $block (Test::Base::blocks()) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value(name => "$0 " . $block->name);
        run_block($block);
    }
}

sub run_block {
    my ($block) = @_;
    my $name = $block->name;

    if (my ($count, $reason) = skip_spec($block)) {
        for (1 .. $RepeatEach) {
            SKIP: { Test::More::skip("$name - $reason", $count) }
        }
        return;
    }

    %RandPorts = ();
    my $must_die = $block->must_die;
    my $valgrind = defined $must_die ? undef : $UseValgrind;

    stop_nginx($name);
    setup_server_root();
    write_config($block, $valgrind);

    if (defined $must_die) {
        run_must_die($block, $must_die);
        return;
    }

    start_nginx($block, $valgrind);

    if (defined(my $init = $block->init)) {
        eval $init;
        bail_out("$name - init failed: $@") if $@;
    }

    $ErrLogPos = 0;
    for my $rep (0 .. $RepeatEach - 1) {
        run_requests($block, $rep);
    }

    if ($ValgrindPid) {
        stop_nginx($name);
        check_valgrind($name);
    }
}

# "--- skip_nginx: N: OP X.Y.Z[: reason]" and "--- skip_eval: N: perl code".
# Returns (number of tests to skip, reason) when the block must be skipped.
sub skip_spec {
    my ($block) = @_;
    my $name = $block->name;

    if (defined(my $spec = $block->skip_nginx)) {
        my ($count, $op, @ver) = $spec =~
            /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*?))?\s*$/
            or bail_out("$name - Invalid --- skip_nginx spec: $spec");
        my $reason = pop(@ver) || "nginx version $op " . join('.', @ver);
        my $want = canon_version(@ver);
        my %cmp = ('<'  => sub { $_[0] < $_[1] },  '<=' => sub { $_[0] <= $_[1] },
                   '>'  => sub { $_[0] > $_[1] },  '>=' => sub { $_[0] >= $_[1] });
        return ($count, $reason) if $cmp{$op}->($NginxVersion, $want);
    }

    if (defined(my $spec = $block->skip_eval)) {
        my ($count, $code) = $spec =~ /^\s*(\d+)\s*:\s*(.*)/s
            or bail_out("$name - Invalid --- skip_eval spec: $spec");
        my $skip = eval $code;
        bail_out("$name - skip_eval - failed to eval the Perl code \"$code\": $@")
            if $@;
        return ($count, 'skip_eval') if $skip;
    }

    return;
}

# ---------------------------------------------------------------------------
# nginx binary, server root, configuration.

sub find_nginx {
    my $bin = $ENV{TEST_NGINX_BINARY} || 'nginx';
    if ($bin =~ m{/}) {
        return $bin if -f $bin && -x _;
    } else {
        # Debian keeps nginx in /usr/sbin, which a normal user's PATH lacks.
        for my $dir (split(/:/, $ENV{PATH} // ''), '/usr/sbin', '/usr/local/sbin') {
            next if $dir eq '';
            return "$dir/$bin" if -f "$dir/$bin" && -x _;
        }
    }
    bail_out("Cannot find the nginx executable \"$bin\" (PATH, /usr/sbin)");
}

sub canon_version { return sprintf '%d.%03d%03d', @_ }

sub nginx_version {
    my $out = qx{\Q$NginxBinary\E -V 2>&1};
    bail_out("Failed to run \"$NginxBinary -V\": $out") if $? != 0;
    my @ver = $out =~ m{nginx version: \S+?/(\d+)\.(\d+)\.(\d+)}
        or bail_out("Failed to parse the output of \"nginx -V\": $out");
    return (canon_version(@ver), $out);
}

# A fresh server root for every block: conf/, logs/ (so error.log only holds
# this block's lines), html/ with the index page of the default location.
sub setup_server_root {
    remove_tree($ConfDir, $LogDir, $HtmlDir, "$ServRoot/cache",
                glob("$ServRoot/*_temp"), glob("$ServRoot/*_cache"));
    make_path($ConfDir, $LogDir, $HtmlDir);
    write_file("$HtmlDir/index.html",
        '<html><head><title>It works!</title></head><body>It works!</body></html>');
}

sub write_file {
    my ($path, $text) = @_;
    open my $fh, '>', $path or bail_out("Can't open $path for writing: $!");
    print {$fh} $text;
    close $fh or bail_out("Can't write $path: $!");
}

# Replaces $TEST_NGINX_FOO by the environment variable of that name (the
# test bails out when it is not set) and $TEST_NGINX_RAND_PORT_N by a free
# port, the same one everywhere in the block.
sub expand_env {
    my ($text, $name) = @_;
    return $text if !defined $text || ref $text;

    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        if ($var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
            $RandPorts{$var} = free_port($name) if !$RandPorts{$var};
            $RandPorts{$var};
        } else {
            bail_out("$name - No environment $var defined.\n")
                if !defined $ENV{$var};
            $ENV{$var};
        }
    }ge;
    return $text;
}

sub free_port {
    my ($name) = @_;
    my %used = map { $_ => 1 } $ServerPort, values %RandPorts;
    for (1 .. 1000) {
        my $port = 1988 + int rand(65535 - 1988);
        next if $used{$port};
        my $sock = IO::Socket::INET->new(
            LocalAddr => $ServerAddr, LocalPort => $port,
            Proto => 'tcp', Listen => 1, ReuseAddr => 1,
        ) or next;
        close $sock;
        return $port;
    }
    bail_out("$name - Cannot find an available listening port number.\n");
}

# Writes conf/nginx.conf with the layout of the real module: the block's
# main_config at top level, http_config inside http {}, config inside the
# one test server {} (listening on the test port, with a 30M body limit and
# a "location /" serving html/ unless no_root_location() was called).
sub write_config {
    my ($block, $valgrind) = @_;
    my $name = $block->name;

    my %sec = map { $_ => expand_env($block->$_ // '', $name) }
              qw(main_config http_config config post_main_config);
    my $log_level = $block->log_level || $LogLevel;
    chomp $log_level;
    my $daemon = $valgrind ? 'off' : 'on';

    # Debian's nginx has its temp paths compiled in under /var/lib/nginx;
    # keep them inside the server root unless the test sets its own.
    my $temp_paths = '';
    for my $kind (qw(client_body proxy fastcgi uwsgi scgi)) {
        next if $kind ne 'client_body' && $kind ne 'proxy'
                && $NginxConfigure =~ /--without-http_${kind}_module/;
        next if $sec{http_config} =~ /\b${kind}_temp_path\b/;
        $temp_paths .= " ${kind}_temp_path $ServRoot/${kind}_temp;";
    }

    # HTTP/2 for "--- http2": "http2 on;" exists since nginx 1.25.1, older
    # versions take the "http2" listen parameter.
    my ($listen, $http2_on) = ($ServerPort, '');
    if (defined $block->http2) {
        if ($NginxVersion >= 1.025001) {
            $http2_on = ' http2 on;';
        } else {
            $listen .= ' http2';
        }
    }

    my $env = join '', map { my $v = /\s/ ? "'$_'" : $_; "env $v;\n" } @EnvToNginx;
    my $root_location = $NoRootLocation ? '' : <<"EOC";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
EOC
    my $user = $> == 0 ? "user root;\n" : '';

    write_file($ConfFile, <<"EOC");
worker_processes  $Workers;
daemon $daemon;
master_process $MasterProcess;
error_log $ErrLogFile $log_level;
pid       $PidFile;
$env
$sec{main_config}

http {
    access_log $AccLogFile;$temp_paths

    default_type text/plain;
    keepalive_timeout  68000ms;

$sec{http_config}

    server {
        listen          $listen;$http2_on
        server_name     '$ServerName';
        client_max_body_size 30M;

        # Begin test case config...
$sec{config}
        # End test case config.

$root_location    }
}

$sec{post_main_config}

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
}
$user
EOC
}

# ---------------------------------------------------------------------------
# Starting and stopping nginx.

sub nginx_command {
    my @cmd = ($NginxBinary);
    push @cmd, '-e', $ErrLogFile if $NginxVersion >= 1.019005;
    return (@cmd, '-p', "$ServRoot/", '-c', $ConfFile);
}

# Forks and runs @$cmd with stdin/stdout on /dev/null and stderr into
# $err_file; in its own process group when $own_group.  Returns the pid.
sub spawn {
    my ($cmd, $err_file, $own_group) = @_;
    STDOUT->flush;
    STDERR->flush;
    my $pid = fork // bail_out("fork() failed: $!");
    if (!$pid) {
        setpgrp(0, 0) if $own_group;
        open STDIN,  '<', '/dev/null' or POSIX::_exit(127);
        open STDOUT, '>', '/dev/null' or POSIX::_exit(127);
        open STDERR, '>', $err_file   or POSIX::_exit(127);
        exec { $cmd->[0] } @$cmd or POSIX::_exit(127);    # no END blocks here
    }
    return $pid;
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return scalar <$fh>;
}

sub start_nginx {
    my ($block, $valgrind) = @_;
    my $name = $block->name;
    my @cmd = nginx_command();

    if ($valgrind) {
        my @vg = $valgrind =~ /^\d+$/
            ? ('--tool=memcheck', '--leak-check=full', '--keep-debuginfo=yes',
               '--show-possibly-lost=no', '--num-callers=100',
               '--gen-suppressions=all', "--log-file=$ValgrindLog",
               "--suppressions=$CompatSuppressions",
               (-f 'valgrind.suppress' ? '--suppressions=valgrind.suppress' : ()))
            : split(' ', $valgrind);
        warn "$name\n";
        $ValgrindPid = spawn(['valgrind', '-q', @vg, @cmd], $StderrFile, 1);
        sleep $Sleep;
        return;
    }

    # nginx daemonizes once its sockets are bound, so the command returns
    # when the server is ready.  A bind error may be a previous nginx still
    # on its way out: retry those for a while, bail out on anything else.
    my $waited = 0;
    for (my $try = 1; ; $try++) {
        waitpid spawn(\@cmd, $StderrFile), 0;
        my $status = $?;
        if ($status == 0) {
            sleep $Sleep;
            return;
        }
        my $stderr = slurp($StderrFile);
        if ($stderr =~ /Address already in use/ && $waited < 10) {
            my $delay = $try * 0.1 > 1 ? 1 : $try * 0.1;
            sleep $delay;
            $waited += $delay;
            next;
        }
        my ($why) = $stderr =~ /^(nginx: \[\w+\].*)$/m;
        bail_out("$name - Cannot start nginx using command \"@cmd\" "
                 . "(status code $status)" . ($why ? ": $why" : '') . "\n$stderr");
    }
}

# "--- must_die": nginx must refuse to start.  The error_log patterns are
# then matched against error.log, where nginx (-e) writes the startup error.
sub run_must_die {
    my ($block, $must_die) = @_;
    my $name = $block->name;
    my @cmd = nginx_command();

    $ErrLogPos = 0;
    for my $rep (0 .. $RepeatEach - 1) {
        waitpid spawn(\@cmd, $StderrFile), 0;
        my $status = $?;

        if ($status == -1) {
            Test::More::fail("$name - failed to execute the nginx command line");
        } elsif ($status & 128) {
            Test::More::fail("$name - nginx core dumped");
        } elsif (looks_like_number($must_die)) {
            Test::More::is($status >> 8, $must_die,
                           "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }

        check_error_log($block, $rep);

        if ($status == 0) {
            warn "WARNING: $name - nginx must die but it does not; killing it (req $rep)\n";
            stop_nginx($name);
        }
    }
}

sub read_pid {
    my $pid = slurp($PidFile);
    return $pid =~ /^(\d+)/ ? $1 : undef;
}

# True while $pid runs.  Our own children are reaped here; a daemonized
# nginx is not our child and, once exited, may stay a zombie for a while
# until its new parent reaps it, so zombies count as gone.
sub alive {
    my ($pid) = @_;
    return 0 if waitpid($pid, WNOHANG) == $pid;
    return 0 if !kill 0, $pid;
    my $stat = slurp("/proc/$pid/stat");
    return $stat !~ /^\d+ \(.*\) Z/s;
}

# Graceful stop (QUIT, or TERM with TEST_NGINX_FAST_SHUTDOWN), then KILL if
# it is still there after the timeout (longer under valgrind, whose leak
# check runs at exit).
sub kill_process {
    my ($pid, $name) = @_;

    kill($ENV{TEST_NGINX_FAST_SHUTDOWN} ? 'TERM' : 'QUIT', $pid);
    my $left = $ValgrindPid ? ($Timeout > 30 ? $Timeout : 30) : $Timeout;
    while ($left > 0 && alive($pid)) {
        sleep 0.05;
        $left -= 0.05;
    }
    return if !alive($pid);

    warn "$name - timeout when waiting for the process $pid to exit\n";
    kill 'KILL', getpgrp($pid) == $pid ? -$pid : $pid;
    waitpid $pid, 0;
}

sub stop_nginx {
    my ($name) = @_;
    my $pid = read_pid() // $ValgrindPid;
    kill_process($pid, $name) if $pid && alive($pid);
    if ($ValgrindPid) {
        kill_process($ValgrindPid, $name) if alive($ValgrindPid);
        undef $ValgrindPid;
    }
    unlink $PidFile;
}

sub cleanup {
    return if $$ != $MainPid;
    stop_nginx('cleanup') if !$NoClean || $ValgrindPid;
}

END {
    local $?;    # keep Test::Builder's exit status
    cleanup();
}

# Under valgrind -q every line valgrind writes is a complaint.
sub check_valgrind {
    my ($name) = @_;
    my $report = join '', grep { /^==\d+==/ } map { split /^/, slurp($_) }
                                              $ValgrindLog, $StderrFile;
    return if $report eq '';
    Test::More::fail("$name - valgrind reported errors");
    Test::More::diag($report);
}

# ---------------------------------------------------------------------------
# Requests.

sub parse_time {
    my ($t) = @_;
    return undef if !defined $t;
    $t =~ s/\s+//g;
    return $1 / 1000 if $t =~ /^([\d.]+)ms$/;
    $t =~ s/s$//;
    return $t;
}

# The value meant for request $idx: an array element when the block sends
# several requests (then the expectation must be an array too).
sub indexed {
    my ($name, $value, $idx, $need_array) = @_;
    if (ref $value eq 'ARRAY') {
        return $value->[$need_array ? $idx : 0];
    }
    bail_out("$name - You asked for many requests, the expected results "
             . "should be arrays as well.") if $need_array;
    return $value;
}

# The requests of a block, each a list of pieces written one after the other
# on its own connection.
sub block_requests {
    my ($block) = @_;
    my $name = $block->name;

    if (defined(my $raw = $block->raw_request)) {
        return ([ref $raw eq 'ARRAY' ? @$raw : $raw]);
    }

    my $more = $block->more_headers // '';
    my $build = sub {
        my ($text, $i, $connection) = @_;
        my $hdr = $more;
        if (ref $more eq 'ARRAY') {
            $hdr = $more->[$i];
            bail_out("--- more_headers lacks data for request $i") if !defined $hdr;
        }
        my $bytes = eval {
            build_request(request => $text, more_headers => $hdr,
                          connection => $connection, host => $ServerName);
        };
        bail_out("$name - $@") if !defined $bytes;
        return $bytes;
    };

    # All on one keep-alive connection, the last one closing it.
    if (defined(my $list = $block->pipelined_requests)) {
        bail_out("$name - invalid entries in --- pipelined_requests")
            if ref $list ne 'ARRAY';
        my $bytes = '';
        for my $i (0 .. $#$list) {
            my $req = expand_env($list->[$i], $name);
            $bytes .= $build->($req, $i, $i == $#$list ? 'close' : 'keep-alive');
        }
        return ([$bytes]);
    }

    my $req = $block->request;
    $req = [$req] if !ref $req;
    bail_out("$name - invalid --- request: must be a string or an array")
        if ref $req ne 'ARRAY' || grep { ref } @$req;
    return map { [$build->($req->[$_], $_, 'close')] } 0 .. $#$req;
}

# Waits until something listens on the test port (nginx may still be
# starting under valgrind), as curl, unlike our client, does not retry.
# Looks at /proc/net/tcp* so as not to open a connection.
sub wait_listening {
    my $port = sprintf ':%04X ', $ServerPort;
    my $deadline = time + 30;
    while (time < $deadline) {
        for my $table ('/proc/net/tcp', '/proc/net/tcp6') {
            return if grep { /^\s*\d+: [0-9A-F]+\Q$port\E[0-9A-F:]+ 0A / }
                      split /\n/, slurp($table);
        }
        return if $ValgrindPid && !alive($ValgrindPid);
        sleep 0.05;
    }
}

sub send_request {
    my ($block, $pieces, $timeout) = @_;
    if (defined $block->http2) {
        wait_listening() if $ValgrindPid;
        return curl_exchange(
            request => join('', @$pieces), addr => $ServerAddr,
            port => $ClientPort, timeout => $timeout,
            data_file => "$HtmlDir/curl.data.bin");
    }
    my $vg = $ValgrindPid;
    return exchange(
        addr => $ServerAddr, port => $ClientPort, pieces => $pieces,
        timeout => $timeout,
        middle_delay => parse_time(scalar $block->raw_request_middle_delay),
        alive => $vg ? sub { alive($vg) } : undef);
}

sub run_requests {
    my ($block, $rep) = @_;
    my $name = $block->name;
    my $timeout = parse_time(scalar $block->timeout) // $Timeout;
    my $ignore = defined $block->ignore_response;
    bail_out("$name - cannot use --- http2 with --- raw_request")
        if defined $block->http2 && defined $block->raw_request;

    my @requests = block_requests($block);
    my $pipelined = $block->pipelined_requests;
    my $total = $pipelined ? @$pipelined : @requests;
    my $need_array = $total > 1;

    my $idx = 0;
    for my $pieces (@requests) {
        my $got = send_request($block, $pieces, $timeout);
        if (defined $got->{error}) {
            Test::More::fail("$name - curl failed: $got->{error}");
        }
        if (defined $got->{connect_error}) {
            my $msg = "$name - $got->{connect_error} (aborted)";
            if ($ValgrindPid && !alive($ValgrindPid)) {
                my @log = split /^/, slurp($ErrLogFile);
                $msg .= "\n" . join '', @log > 20 ? @log[-20 .. -1] : @log;
            }
            bail_out($msg) if ++$ConnectFailures >= 3;
            Test::More::fail($msg);
        }
        warn "WARNING: $name - $got->{warning}" if $got->{warning};
        if ($got->{timed_out} && !defined $block->abort) {
            Test::More::fail("ERROR: client socket timed out - $name");
        }

        my $raw = $got->{response};
        my $is_head = join('', @$pieces) =~ /^\s*HEAD\s+/;
        for my $n (reverse 0 .. ($pipelined ? $total - 1 : 0)) {
            if (!$ignore) {
                my $res = parse_response($raw, $is_head);
                $raw = delete $res->{left} // '';
                if ($n == 0 && $raw ne '') {
                    (my $shown = $raw) =~ s/([\0-\037\200-\377])/sprintf '\x{%02x}', ord $1/ge;
                    warn "WARNING: $name - unexpected extra bytes after last chunk in response: \"$shown\"\n";
                }
                warn "WARNING: $name - $res->{warning}\n" if $res->{warning};
                if ($res->{error}) {
                    Test::More::fail("$name - $res->{error}");
                    $res = undef;
                }
                check_response($block, $res, $idx, $need_array, $rep);
            }
            if ($idx < $total - 1) {
                sleep $block->wait if $block->wait;
                check_error_log($block, $rep);
            }
            $idx++;
        }
    }

    sleep $block->wait if $block->wait;
    check_error_log($block, $rep);
}

# ---------------------------------------------------------------------------
# Checks.  Test names follow the real module.

sub check_response {
    my ($block, $res, $idx, $need_array, $rep) = @_;
    my $name = $block->name;
    my $code = ($res && $res->{code}) || '';

    if (defined $block->error_code_like) {
        my $pat = indexed($name, scalar $block->error_code_like, $idx, $need_array);
        Test::More::like($code, qr/$pat/sm, "$name - status code ok");
    } elsif (defined $block->error_code) {
        Test::More::is($code, indexed($name, scalar $block->error_code, $idx, $need_array),
                       "$name - status code ok");
    } else {
        Test::More::is($code, 200, "$name - status code ok");
    }

    check_response_headers($block, $res, $idx, $need_array);

    my $body = $res ? $res->{body} : undef;
    $body = filter_body($block, $body) if defined $body;
    if (defined $block->response_body) {
        my $expected = indexed($name, scalar $block->response_body, $idx, $need_array);
        if (ref $expected) {
            Test::More::like($body, $expected,
                "$name - response_body - like (repeated req $rep, req $idx)");
        } else {
            $expected =~ s/\$ServerPort\b/$ServerPort/g if defined $expected;
            $expected = expand_env($expected, $name);
            Test::More::is($body, $expected,
                "$name - response_body - response is expected (repeated req $rep, req $idx)");
        }
    } elsif (defined $block->response_body_like || defined $block->response_body_unlike) {
        my $type = defined $block->response_body_like ? 'like' : 'unlike';
        my $method = "response_body_$type";
        my $pat = indexed($name, scalar $block->$method, $idx, $need_array);
        $pat =~ s/\$ServerPort\b/$ServerPort/g if !ref $pat;
        (my $summary = $body // '') =~ s/^\s+|\s+$//g;
        $summary =~ s/\s+/ /g;
        my $check = $type eq 'like' ? \&Test::More::like : \&Test::More::unlike;
        $check->($body, qr/$pat/s,
                 "$name - response_body_$type - response is expected ($summary)");
    }
}

# --- response_body_filters: names (uc, lc) or code refs, one or a list,
# applied in order to the body before it is compared.
sub filter_body {
    my ($block, $body) = @_;
    my $filters = $block->response_body_filters;
    return $body if !defined $filters;
    my @list = ref $filters eq 'ARRAY' ? @$filters
             : ref $filters ? ($filters) : split ' ', $filters;
    my %named = (uc => sub { uc shift }, lc => sub { lc shift });
    for my $f (@list) {
        my $code = ref $f eq 'CODE' ? $f : $named{$f};
        bail_out($block->name . " - unknown response body filter \"$f\"")
            if !$code;
        $body = $code->($body);
    }
    return $body;
}

# "Name: value" lines, or "!Name" for a header that must be absent.
# Returns [name, value-or-undef] pairs; a repeated name keeps its last value.
sub parse_header_spec {
    my ($text) = @_;
    my (@order, %val);
    for my $line (split /\n/, $text // '') {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        my ($key, $val) = $line =~ s/^!\s*// ? ($line, undef) : split(/\s*:\s*/, $line, 2);
        push @order, $key if !exists $val{$key};
        $val{$key} = $val;
    }
    return map { [$_, $val{$_}] } @order;
}

sub check_response_headers {
    my ($block, $res, $idx, $need_array) = @_;
    my $name = $block->name;
    my $value = sub { ($res && header($res, $_[0])) // '' };

    if (defined $block->response_headers) {
        my $spec = indexed($name, scalar $block->response_headers, $idx, $need_array);
        for my $h (parse_header_spec($spec)) {
            my ($key, $val) = @$h;
            if (!defined $val) {
                Test::More::unlike($res ? $res->{raw_headers} : '', qr/^\s*\Q$key\E\s*:/m,
                                   "$name - header $key not present in the raw headers");
                next;
            }
            $val =~ s/\$ServerPort\b/$ServerPort/g;
            Test::More::is($value->($key), $val, "$name - header $key ok");
        }
    } elsif (defined $block->response_headers_like) {
        my $spec = indexed($name, scalar $block->response_headers_like, $idx, $need_array);
        for my $h (parse_header_spec($spec)) {
            my ($key, $val) = @$h;
            Test::More::like($value->($key), qr/^$val$/, "$name - header $key like ok");
        }
    }
}

# The error.log lines written since the previous look (a short pause first:
# nginx may still be logging the end of the request).
sub new_error_log_lines {
    sleep $Sleep * 3;
    open my $fh, '<', $ErrLogFile or return [];
    seek $fh, $ErrLogPos, 0;
    my @lines = <$fh>;
    $ErrLogPos = tell $fh;
    return \@lines;
}

sub pattern_list {
    my ($pats) = @_;
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats] if ref $pats eq 'ARRAY';
    chomp $pats;
    return [split /\n+/, $pats];
}

sub line_matches {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ $pat : index($line, $pat) >= 0;
}

sub mentions {
    my ($pats, $text) = @_;
    return 0 if !defined $pats;
    return grep { defined($_) && index("$_", $text) >= 0 } @{ pattern_list($pats) };
}

sub show {
    my ($s) = @_;
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

# grep_error_log/grep_error_log_out, error_log, no_error_log; all of them
# look at the same new lines.  Like the real module it also fails on
# "Assertion ... failed" lines and warns about [alert], [crit] and [emerg]
# lines unless the block's patterns mention those levels.
sub check_error_log {
    my ($block, $rep) = @_;
    my $name = $block->name;
    my $lines = new_error_log_lines();

    my $grep = $block->grep_error_log;
    $grep = $grep->[$rep] if ref $grep eq 'ARRAY';
    bail_out("$name - No --- grep_error_log defined but --- grep_error_log_out is defined")
        if !defined $grep && defined $block->grep_error_log_out;
    if (defined $grep) {
        my $expected = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but --- grep_error_log is defined")
            if !defined $expected;
        $expected = $expected->[$rep] if ref $expected eq 'ARRAY';
        $expected = expand_env($expected, $name);
        my $matched = '';
        for my $line (@$lines) {
            my $hit = ref $grep ? ($line =~ $grep ? $& : undef)
                    : index($line, $grep) >= 0 ? $grep : undef;
            $matched .= "$hit\n" if defined $hit && $hit !~ /\n/;
        }
        my $test = "$name - grep_error_log_out (req $rep)";
        ref $expected eq 'Regexp' ? Test::More::like($matched, $expected, $test)
                                  : Test::More::is($matched, $expected, $test);
    }

    if (defined(my $pats = $block->error_log)) {
        my @left = @{ pattern_list($pats) };
        for my $line (@$lines) {
            for my $pat (@left) {
                next if !defined $pat || !line_matches($line, $pat);
                Test::More::pass("$name - pattern \"$pat\" matches a line in error.log (req $rep)");
                undef $pat;
            }
        }
        for my $pat (grep { defined } @left) {
            Test::More::fail("$name - pattern \"$pat\" should match a line in error.log (req $rep)");
        }
    }

    if (defined(my $pats = $block->no_error_log)) {
        my @pats = grep { defined } @{ pattern_list($pats) };
        my %found;
        for my $line (@$lines) {
            for my $pat (@pats) {
                next if !line_matches($line, $pat);
                $found{$pat} = 1;
                Test::More::fail("$name - pattern \"" . show($pat) . "\" should not match any "
                                 . "line in error.log but matches line \"" . show($line)
                                 . "\" (req $rep)");
            }
        }
        for my $pat (grep { !$found{$_} } @pats) {
            Test::More::pass("$name - pattern \"" . show($pat)
                             . "\" does not match a line in error.log (req $rep)");
        }
    }

    for my $level (qw(alert crit emerg)) {
        next if mentions(scalar $block->error_log, "[$level") || mentions(scalar $block->no_error_log, "[$level");
        warn "WARNING: $name - ", show($_), "\n" for grep { /\[$level\]/ } @$lines;
    }

    for my $line (grep { /\bAssertion .*?failed\b/ } @$lines) {
        Test::More::fail("$name - " . show($line));
    }
}

1;
