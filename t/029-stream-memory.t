# Memory of a rewritten stream (model restored, chunk hooks): the worker
# reads the engine only as fast as the client takes the events, and a
# chunk hook's work per event does not grow the request's memory.
#
# The engine is a server block that sends a file of SSE events as fast as
# it can.  A client of our own (in --- init) reads the answer slowly or
# not at all for a while, and the worker's VmRSS (/proc/PID/status, the
# PID from an X-Worker-Pid header) is read meanwhile.  The bounds checked:
#   - a client that stops reading a 24 MB stream: the worker grows by
#     less than 4 MB (it holds 4 output buffers of 4 KB and the upstream's
#     buffers; before, it read the whole stream into memory);
#   - 110 000 events through a chunk hook: less than 4 MB more between the
#     10 000th and the 100 000th event (before, the request pool grew by
#     two copies of every event).
# And a chunk hook that fails while the engine's bytes wait unread still
# ends the stream with its error event and [DONE], nothing after.
# Under valgrind the streams are short and only their content is checked.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;
use File::Temp ();
use IO::Select;
use Socket qw(PF_INET SOCK_STREAM SOL_SOCKET SO_RCVBUF inet_aton
              pack_sockaddr_in);
use Time::HiRes qw(sleep time);

$ENV{TEST_NGINX_HOOKS} = "$FindBin::Bin/hooks";

our $Valgrind = $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 0;
our $BigEvents = $Valgrind ? 2000 : 100000;
our $HookEvents = $Valgrind ? 2000 : 110000;
our $BoundKB = 4096;

# the engine's answers: files of chat completion chunks
our $Dir = File::Temp->newdir('llm-sse-XXXXXX', TMPDIR => 1);
$ENV{TEST_NGINX_SSE_DIR} = $Dir->dirname;

# COUNT events; the FAIL-th one's content is "tok1 " (t/hooks/answer.lua
# fails on it when the request has X-Fail)
sub write_events {
    my ($name, $count, $fail) = @_;
    open my $fh, '>', "$Dir/$name" or die "$Dir/$name: $!";
    my $pad = 'lorem ipsum dolor sit amet ' x 3;
    for my $i (1 .. $count) {
        my $content = sprintf 'tok %06d %s', $i, $pad;
        $content = 'tok1 ' if $fail && $i == $fail;
        print {$fh} 'data: {"id":"chatcmpl-1","object":"chat.completion.chunk",'
            . '"created":1,"model":"engine-x","choices":[{"index":0,'
            . '"delta":{"content":"' . $content . '"},"finish_reason":null}]}'
            . "\n\n";
    }
    print {$fh} "data: [DONE]\n\n";
    close $fh or die $!;
}

write_events('big', $BigEvents);
write_events('hooked', $HookEvents);
write_events('small', 3);
write_events('abort', $BigEvents, $BigEvents / 2);

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    my $buffering = $block->buffering // 'proxy_buffering off;';
    my $hook = $block->hook ? "llm_hook $ENV{TEST_NGINX_HOOKS}/" . $block->hook . ';' : '';
    $block->set_value("http_config", <<"_EOC_");
upstream sse { server 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT}; }
llm_model m { upstream sse; target engine-x; }
server {
    listen 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT};
    location / {
        root $ENV{TEST_NGINX_SSE_DIR};
        try_files /\$http_x_file =404;
        types { }
        default_type text/event-stream;
        error_page 405 =200 \$uri;
    }
}
server {
    listen 127.0.0.1:$ENV{TEST_NGINX_BACKEND2_PORT};
    location /v1/ {
        llm_router on;
        proxy_pass http://\$llm_upstream;
        proxy_http_version 1.1;
        $buffering
        $hook
        add_header X-Worker-Pid \$pid;
    }
}
_EOC_
    $block->set_value("config", <<"_EOC_");
location /v1/ {
    proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_BACKEND2_PORT};
}
_EOC_
});

# ---------------------------------------------------------------------------
# A client of our own on the router's server block.

sub vmrss_kb {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/status" or die "/proc/$pid/status: $!";
    while (<$fh>) {
        return $1 if /^VmRSS:\s+(\d+)\s+kB/;
    }
    die "no VmRSS in /proc/$pid/status\n";
}

sub read_chars {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/io" or return undef;
    while (<$fh>) {
        return $1 if /^rchar:\s+(\d+)/;
    }
    return undef;
}

# opens the stream of FILE and reads its headers; returns the socket, the
# worker's pid and what was read past the headers.  RCVBUF fixes the
# socket's receive buffer (no autotuning); it stays above loopback's MSS
# (64 KB), or the window would open only by the sender's probes.
sub open_stream {
    my ($file, $rcvbuf, $headers) = @_;
    $headers //= '';
    my $s;
    my $deadline = time + 30;      # nginx under valgrind starts slowly
    while (1) {
        socket($s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
        if ($rcvbuf) {
            setsockopt($s, SOL_SOCKET, SO_RCVBUF, $rcvbuf)
                or die "setsockopt: $!";
        }
        last if connect($s, pack_sockaddr_in($ENV{TEST_NGINX_BACKEND2_PORT},
                                             inet_aton('127.0.0.1')));
        die "connect: $!" if time > $deadline;
        close $s;
        sleep 0.2;
    }
    binmode $s;
    my $body = '{"model":"m","stream":true,"messages":[]}';
    my $req = "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
        . "Connection: close\r\nContent-Type: application/json\r\n"
        . "X-File: $file\r\n$headers" . "Content-Length: " . length($body)
        . "\r\n\r\n$body";
    syswrite($s, $req) == length $req or die "write: $!";

    my $raw = '';
    my $sel = IO::Select->new($s);
    while ($raw !~ /\r\n\r\n/) {
        $sel->can_read(10) or die "no headers within 10 s\n";
        sysread($s, $raw, 1024, length $raw) or die "no headers: $!\n";
    }
    my ($head, $rest) = split /\r\n\r\n/, $raw, 2;
    $head =~ m{^HTTP/1\.1 200 } or die "not a 200: $head\n";
    my ($pid) = $head =~ /^X-Worker-Pid: (\d+)\r?$/mi
        or die "no X-Worker-Pid: $head\n";
    return ($s, $pid, $rest);
}

# reads on until the end, at most 120 s; returns all that was read
sub read_all {
    my ($s, $raw, $until_events, $cb) = @_;
    my $sel = IO::Select->new($s);
    my $deadline = time + 120;
    my $events = () = $raw =~ /data: \{/g;
    while (time < $deadline) {
        $sel->can_read(5) or next;
        my $buf;
        my $n = sysread($s, $buf, 16384);
        die "read: $!\n" if !defined $n;
        last if $n == 0;
        $raw .= $buf;
        if ($cb) {
            $events += () = $buf =~ /data: \{/g;
            $cb->($events);
        }
    }
    close $s;
    return $raw;
}

sub dechunk {
    my ($raw) = @_;
    my ($out, $pos) = ('', 0);
    while ($raw =~ /\G([0-9a-fA-F]+)\r\n/gc) {
        my $size = hex $1;
        last if $size == 0;
        $out .= substr($raw, pos($raw), $size);
        pos($raw) = pos($raw) + $size + 2;
    }
    return $out;
}

# the events as the client got them: count, model restored, the end
sub check_events {
    my ($name, $body, $count, $content) = @_;
    my $n = () = $body =~ /^data: \{[^\n]*"model":"m"[^\n]*\n\n/mg;
    Test::More::is($n, $count, "$name: $count events, the model restored");
    my $upper = () = $body =~ /"content":"\Q$content\E/g;
    Test::More::is($upper, $count, "$name: every event's content is '$content...'");
    Test::More::ok(index($body, 'engine-x') < 0, "$name: no engine name left");
    Test::More::is(substr($body, -16), "\n\ndata: [DONE]\n\n", "$name: ends with [DONE]");
}

# The client stops reading after the headers.  The worker's growth is
# measured until it reads no more (its rchar stands still for 1 s) or it
# has grown past the bound (at most 20 s); then the rest is read.
sub slow_client {
    my ($name) = @_;
    my ($s, $pid, $rest) = open_stream('big');
    my $base = vmrss_kb($pid);
    my $max = $base;
    my ($last, $same) = (read_chars($pid) // 0, 0);
    for (1 .. 200) {
        sleep 0.1;
        my $rss = vmrss_kb($pid);
        $max = $rss if $rss > $max;
        last if $max - $base >= $BoundKB;
        my $now = read_chars($pid) // 0;
        if ($now == $last) {
            last if ++$same >= 10;
        } else {
            ($last, $same) = ($now, 0);
        }
    }
    my $grew = $max - $base;
    my $body = dechunk(read_all($s, $rest));
    Test::More::diag("$name: the worker grew by $grew KB while the client "
                     . "did not read") if $ENV{TEST_VERBOSE};
    if (!$Valgrind) {
        Test::More::cmp_ok($grew, '<', $BoundKB,
            "$name: a client that does not read: the worker grows by "
            . "less than $BoundKB KB (it grew by $grew KB)");
    }
    check_events($name, $body, $BigEvents, 'tok ');
}

# Reads the hooked stream at full speed; the worker's VmRSS is read when
# the client has 10 000 and 100 000 events.
sub hooked_stream {
    my ($name) = @_;
    my ($s, $pid, $rest) = open_stream('hooked', 262144);
    my ($at10, $at100);
    my $body = dechunk(read_all($s, $rest, 0, sub {
        my ($events) = @_;
        $at10 //= vmrss_kb($pid) if $events >= $HookEvents / 11;
        $at100 //= vmrss_kb($pid) if $events >= $HookEvents * 10 / 11;
    }));
    if (!$Valgrind) {
        my $grew = $at100 - $at10;
        Test::More::cmp_ok($grew, '<', $BoundKB,
            "$name: from the 10 000th to the 100 000th event the worker "
            . "grows by less than $BoundKB KB (it grew by $grew KB)");
    }
    check_events($name, $body, $HookEvents, 'TOK ');
}

# A chunk hook fails on the middle event while the client does not read
# (the engine's bytes after it wait unread): once the client reads, it gets
# the events before it, the hook's error event and [DONE], nothing after.
sub slow_abort {
    my ($name) = @_;
    my ($s, $pid, $rest) = open_stream('abort', 0, "X-Fail: 1\r\n");
    sleep 1;
    my $body = dechunk(read_all($s, $rest));
    my $before = $BigEvents / 2 - 1;
    my $n = () = $body =~ /^data: \{[^\n]*"model":"m"[^\n]*\n\n/mg;
    Test::More::is($n, $before, "$name: the $before events before the failed one");
    Test::More::like(substr($body, -300),
        qr/\ndata: \{"error":\{[^\n]*"code":"hook_error"[^\n]*\}\n\ndata: \[DONE\]\n\n\z/,
        "$name: then the hook's error event and [DONE]");
}

run_tests();

__DATA__

=== TEST 1: a client that does not read: the engine is read no faster (proxy_buffering off)
--- init
main::slow_client('buffering off');
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[]}
--- more_headers
X-File: small
--- response_body_like eval
qr/\A(data: \{[^\n]*"model":"m"[^\n]*"content":"tok 00000\d [^\n]*\n\n){3}data: \[DONE\]\n\n\z/
--- no_error_log
[error]



=== TEST 2: the same with proxy_buffering on and no temp file (nginx's pipe waits for the client there)
--- buffering: proxy_buffering on; proxy_max_temp_file_size 0;
--- init
main::slow_client('buffering on');
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[]}
--- more_headers
X-File: small
--- response_body_like eval
qr/\A(data: \{[^\n]*"model":"m"[^\n]*"content":"tok 00000\d [^\n]*\n\n){3}data: \[DONE\]\n\n\z/
--- no_error_log
[error]



=== TEST 3: a chunk hook fails while the engine's bytes wait for a slow client
--- hook: answer.lua
--- init
main::slow_abort('chunk hook fails');
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[]}
--- more_headers
X-File: small
--- response_body_like eval
qr/\A(data: \{[^\n]*"model":"m"[^\n]*"content":"TOK 00000\d [^\n]*\n\n){3}data: \[DONE\]\n\n\z/
--- error_log eval
qr/chunk\(\) failed: \S+answer\.lua:\d+: chunk boom/



=== TEST 4: a chunk hook on 110 000 events: the worker's memory stays flat
--- hook: answer.lua
--- init
main::hooked_stream('chunk hook');
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[]}
--- more_headers
X-File: small
--- response_body_like eval
qr/\A(data: \{[^\n]*"model":"m"[^\n]*"content":"TOK 00000\d [^\n]*\n\n){3}data: \[DONE\]\n\n\z/
--- no_error_log
[error]
