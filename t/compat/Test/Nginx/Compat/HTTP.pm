package Test::Nginx::Compat::HTTP;

# The HTTP side of our Test::Nginx::Socket stand-in (t/compat): turns a
# block's "--- request" text into request bytes, talks to nginx over a plain
# TCP socket (or through curl for HTTP/2) and parses the answer.  Nothing in
# here knows about test blocks or TAP; the caller passes every setting in.
#
# The behaviour follows what the CPAN Test::Nginx::Socket documents and does:
# one connection per request, "Connection: close" unless the test sets its
# own, the response is read until the server closes the connection (or the
# socket stays idle for the timeout), then parsed.

use strict;
use warnings;

use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use Exporter 'import';
use IO::Handle;
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep);

our @EXPORT_OK = qw(build_request exchange parse_response header curl_exchange);

# Splits a "--- more_headers" text into wire format.  Blank lines and lines
# starting with "#" are dropped.  Returns the header bytes and whether the
# test asked for a chunked request body.
sub parse_more_headers {
    my ($text) = @_;

    my $out = '';
    my $chunked = 0;
    for my $line (split /\n+/, $text // '') {
        next if $line =~ /^\s*#/;
        my ($key, $val) = split /:\s*/, $line, 2;
        $val //= '';
        $chunked = 1 if lc($key) eq 'transfer-encoding' && $val eq 'chunked';
        $out .= "$key: $val\r\n";
    }
    return ($out, $chunked);
}

# Builds the bytes of one request from a "--- request" text:
#   "METHOD [URI [HTTP/1.x]]\n" followed by an optional body.
# Leading blank and "#" comment lines are skipped.  The URI defaults to "/"
# and the version to HTTP/1.1.  Host and Connection headers are added unless
# more_headers has them; a non-chunked body is trimmed of surrounding
# whitespace and gets a Content-Length unless more_headers sets one.
# Arguments (a hash): request, more_headers, connection, host.
# Returns the bytes, or dies with a message when the request line is bad.
sub build_request {
    my (%arg) = @_;

    my $text = $arg{request};
    die "request empty\n" if !defined $text;
    1 while $text =~ s/\A(?:\s*#[^\n]*\n|\s+)//;

    my ($line, $body) = split /\n/, $text, 2;
    die "Request line should be non-empty\n" if !defined $line || $line eq '';
    my ($method, $uri, $version) =
        $line =~ /\A\s*(\S+) *(?:(\S+) *)?(?:(\S+) *)?\s*\z/
        or die "Request line is not valid. Should be 'meth [url [version]]'"
             . " but got \"$line\".\n";
    $uri //= '/';
    $version //= 'HTTP/1.1';
    $body //= '';

    my ($more, $chunked) = parse_more_headers($arg{more_headers});

    my $head = "$method $uri $version\r\n";
    $head .= "Host: $arg{host}\r\n" if $more !~ /(?:^|\n)Host:/mi;
    $head .= "Connection: $arg{connection}\r\n"
        if $more !~ /(?:^|\n)Connection/mi;
    $head .= $more;

    if (!$chunked && $body ne '' && $more !~ /(?:^|\n)Content-Length:/) {
        $body =~ s/\A\s+//;
        $body =~ s/\s+\z//;
        $head .= 'Content-Length: ' . length($body) . "\r\n";
    }

    return "$head\r\n$body";
}

# Opens a TCP connection, retrying while nginx is not listening yet (it may
# still be starting, e.g. under valgrind).  The delay grows with each try up
# to one second, for at most 50 tries.  $alive, when given, is called between
# tries and makes us give up early when it returns false.
sub _connect {
    my ($addr, $port, $timeout, $alive) = @_;

    my $step = 0.015;
    for my $try (1 .. 50) {
        my $sock = IO::Socket::INET->new(
            PeerAddr => $addr,
            PeerPort => $port,
            Proto    => 'tcp',
            Timeout  => $timeout,
        );
        return ($sock, undef) if $sock;

        my $err = "$!";
        return (undef, "$err (nginx is gone)") if $alive && !$alive->();
        return (undef, $err) if $try == 50;

        my $wait = ($step + $step * $try) * $try / 2;
        sleep($wait > 1 ? 1 : $wait);
    }
    return (undef, 'unreachable');
}

# Sends the pieces of one request on a new connection and reads the reply
# until the server closes the connection.  Writing and reading are
# interleaved so that a server answering before it has read a large body
# (or closing early) cannot deadlock us.  When the connection stays idle
# for $timeout seconds we give up and report timed_out.
# Arguments (a hash): addr, port, pieces (array of strings), middle_delay
# (seconds between pieces), timeout, alive (see _connect).
# Returns a hash: response (bytes), timed_out, connect_error.
sub exchange {
    my (%arg) = @_;

    my ($sock, $err) = _connect(@arg{qw(addr port timeout alive)});
    return { response => '', connect_error => "Can't connect to $arg{addr}:$arg{port}: $err" }
        if !$sock;

    local $SIG{PIPE} = 'IGNORE';
    $sock->blocking(0);

    my @pieces = @{ $arg{pieces} };
    my $out = shift(@pieces) // '';
    my $offset = 0;
    my $response = '';
    my $timed_out = 0;

    my $readers = IO::Select->new($sock);
    my $writers = IO::Select->new($sock);

    while ($readers->count) {
        $! = 0;
        my ($can_read, $can_write) =
            IO::Select->select($readers, $writers->count ? $writers : undef,
                               undef, $arg{timeout});
        if (!$can_read && !$can_write) {
            next if $! == EINTR;
            $timed_out = 1;
            last;
        }

        if ($can_write && @$can_write) {
            my $n = syswrite($sock, $out, length($out) - $offset, $offset);
            if (defined $n) {
                $offset += $n;
                if ($offset >= length $out) {
                    if (@pieces) {
                        sleep $arg{middle_delay} if $arg{middle_delay};
                        $out = shift @pieces;
                        $offset = 0;
                    } else {
                        $writers->remove($sock);
                    }
                }
            } elsif ($! != EAGAIN && $! != EWOULDBLOCK && $! != EINTR) {
                # The server closed its side early (e.g. it rejected the
                # body); stop writing but keep whatever it answered.
                $writers->remove($sock);
            }
        }

        if ($can_read && @$can_read) {
            my $n = sysread($sock, my $buf, 65536);
            if (defined $n) {
                last if $n == 0;
                $response .= $buf;
            } elsif ($! != EAGAIN && $! != EWOULDBLOCK && $! != EINTR) {
                last;
            }
        }
    }

    close $sock;
    return { response => $response, timed_out => $timed_out };
}

# Decodes a chunked body.  Returns (body, bytes after the last chunk) or
# (undef, undef, error message).
sub _dechunk {
    my ($raw, $has_trailers) = @_;

    my $body = '';
    pos($raw) = 0;
    while (1) {
        if ($raw =~ /\G[ \t]*([0-9A-Fa-f]+)[ \t]*(?:;[^\r\n]*)?\r\n/gc) {
            my $size = hex $1;
            if ($size == 0) {
                # Optional trailer fields, then the final empty line.
                $raw =~ /\G(?:[^\r\n]+\r\n)*/gc if $has_trailers;
                return (undef, undef, 'expected CRLF after the last chunk')
                    if $raw !~ /\G\r\n/gc;
                return ($body, substr($raw, pos $raw));
            }
            my $start = pos $raw;
            return (undef, undef, 'not enough octets for the data section')
                if length($raw) - $start < $size;
            $body .= substr($raw, $start, $size);
            pos($raw) = $start + $size;
            return (undef, undef, 'expected CRLF after chunk data')
                if $raw !~ /\G\r\n/gc;
        } elsif ($raw =~ /\G(.+)/gcs) {
            return (undef, undef, "invalid chunked body received: $1");
        } else {
            return (undef, undef, 'no last chunk found');
        }
    }
}

# Parses a raw HTTP response.  $is_head suppresses the body-length check.
# Returns a hash:
#   code        status code (undef when there is no valid status line)
#   raw_headers the status line and header lines up to the blank line
#   headers     [[name, value], ...] in the order received
#   body        the body, de-chunked when Transfer-Encoding is chunked
#   left        bytes after the end of the body (pipelined responses)
#   error       set when the chunked framing is broken
#   warning     set when the body is shorter than its Content-Length
sub parse_response {
    my ($raw, $is_head) = @_;

    my %res = (raw_headers => '', headers => [], body => '');
    my ($head, $body) = split /\r?\n\r?\n/, $raw, 2;
    $body //= '';
    $res{raw_headers} = $1 if $raw =~ /\A(.*?\r\n)\r\n/s;

    my @lines = split /\r?\n/, $head // '';
    my $status = shift(@lines) // '';
    $res{code} = $1 if $status =~ m{\A\S+\s+(\d{3})\b};
    for my $line (@lines) {
        if ($line =~ /\A[ \t]+(.*)\z/ && @{ $res{headers} }) {
            $res{headers}[-1][1] .= " $1";    # obsolete line folding
        } elsif ($line =~ /\A([^:\s]+)\s*:\s*(.*?)\s*\z/) {
            push @{ $res{headers} }, [$1, $2];
        }
    }

    my $code = $res{code} // 0;
    if ($code == 304 || $code == 101) {
        $res{body} = $body;
        return \%res;
    }

    my $te = header(\%res, 'Transfer-Encoding');
    my $len = header(\%res, 'Content-Length');
    if (defined $te && $te eq 'chunked') {
        my ($decoded, $left, $err) =
            _dechunk($body, defined header(\%res, 'Trailer'));
        if (defined $err) {
            $res{error} = "invalid chunked data received ($err)";
            return \%res;
        }
        $res{body} = $decoded;
        $res{left} = $left if length $left;
    } elsif (defined $len && $len =~ /\A\d+\z/) {
        if (length($body) > $len) {
            $res{left} = substr $body, $len;
            $body = substr $body, 0, $len;
        } elsif (length($body) < $len && !$is_head) {
            $res{warning} = "response body truncated: $len expected, but got "
                            . length $body;
        }
        $res{body} = $body;
    } else {
        $res{body} = $body;
    }
    return \%res;
}

# Value of a response header, case-insensitively; several fields of the same
# name are joined with ", ".  undef when absent.
sub header {
    my ($res, $name) = @_;
    my @vals = map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $res->{headers} };
    return @vals ? join(', ', @vals) : undef;
}

# Sends one request (as built by build_request) with curl over HTTP/2
# (prior knowledge, no TLS).  Headers other than Connection are passed with
# -H, the body through a file with --data-binary.
# Arguments (a hash): request (bytes), addr, port, timeout, data_file,
# curl (binary, default "curl").
# Returns a hash: response (curl -i output), error (curl's complaint, when
# it printed nothing on stdout).
sub curl_exchange {
    my (%arg) = @_;

    my $req = $arg{request};
    my ($method, $uri, $version) = $req =~ m{\A\s*(\w+)\s+(\S+)\s+HTTP/(\S+)\r?\n}
        or return { response => '', error => 'cannot parse the request line' };
    my ($head, $body) = split /\r\n\r\n/, $req, 2;
    my @headers = grep { !/^Connection\s*:/i } split /\r\n/, $head;
    shift @headers;    # the request line

    my @cmd = ($arg{curl} // 'curl', '-i', '-sS', '--http2-prior-knowledge',
               '-H', 'User-Agent:', '-H', 'Accept:', '-H', 'Host:');
    if ($method eq 'HEAD') {
        push @cmd, '-I';
    } elsif ($method ne 'GET') {
        push @cmd, '-X', $method;
    }
    push @cmd, '-0' if $version ne '1.1';
    push @cmd, map { ('-H', $_) } @headers;

    if (defined $body && length $body) {
        push @cmd, '-H', 'Content-Type: '
            if !grep { /^\s*Content-Type\s*:/i } @headers;
        open my $fh, '>', $arg{data_file}
            or die "cannot write $arg{data_file}: $!\n";
        binmode $fh;
        print {$fh} $body;
        close $fh;
        push @cmd, '--data-binary', "\@$arg{data_file}";
    }
    push @cmd, '--connect-timeout', $arg{timeout}, '--max-time', $arg{timeout},
               "http://$arg{addr}:$arg{port}$uri";

    my ($out, $err) = _run_capture(@cmd);
    return { response => '', error => $err || "curl printed nothing: @cmd" }
        if $out eq '';
    return { response => $out, warning => $err };
}

# Runs a command without a shell and returns its stdout and stderr.
sub _run_capture {
    my (@cmd) = @_;

    open my $out_fh, '+>', undef or die "tmpfile: $!\n";
    open my $err_fh, '+>', undef or die "tmpfile: $!\n";
    STDOUT->flush;
    STDERR->flush;
    my $pid = fork // die "fork: $!\n";
    if (!$pid) {
        open STDOUT, '>&', $out_fh or POSIX::_exit(127);
        open STDERR, '>&', $err_fh or POSIX::_exit(127);
        open STDIN, '<', '/dev/null' or POSIX::_exit(127);
        exec { $cmd[0] } @cmd or POSIX::_exit(127);    # no END blocks here
    }
    waitpid $pid, 0;

    my %text;
    for ([out => $out_fh], [err => $err_fh]) {
        my ($key, $fh) = @$_;
        seek $fh, 0, 0;
        local $/;
        $text{$key} = <$fh> // '';
    }
    return ($text{out}, $text{err});
}

1;
