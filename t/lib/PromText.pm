package PromText;

# A strict checker and parser of the Prometheus text exposition format,
# version 0.0.4, for the tests of the /metrics endpoint.
#
#   use lib 't/lib';
#   use PromText qw(parse monotonic value);
#
#   my ($families, $errors) = parse($body);
#   is_deeply($errors, [], 'valid exposition') or diag explain $errors;
#   is(value($families, 'llm_requests_total', { model => 'a' }), 3);
#   my @errs = monotonic($families_before, $families_after);
#
# parse($text) returns ($families, $errors).  $errors is an arrayref of
# strings "line N: ...", sorted by line, empty when the text is valid.
# $families maps a family name to
#   { type => 'counter'|'gauge'|'histogram'|'summary'|'untyped',
#     help => STRING or undef,
#     samples => [ { name => 'x_bucket', labels => { le => '0.5' },
#                    value => NUMBER, line => N }, ... ] }
# A sample's value is a Perl number, or one of the strings 'NaN', '+Inf',
# '-Inf'.  A sample with a timestamp also has "timestamp => INTEGER".
# Label values and HELP texts are unescaped.
#
# What is checked (each violation is one error naming its line):
#   - the text ends with "\n" and holds no "\r";
#   - "# HELP name text" and "# TYPE name type": a valid metric name, at
#     most one HELP and one TYPE per family, the type one of counter, gauge,
#     histogram, summary, untyped, and TYPE before the family's first
#     sample; HELP texts use only the escapes \\ and \n.  Other "#" lines
#     are comments; empty lines are ignored;
#   - sample lines: name{label="value",...} value [timestamp], blanks and
#     tabs allowed between tokens; label names [a-zA-Z_][a-zA-Z0-9_]* not
#     starting with "__", no label twice, a trailing comma allowed; label
#     values double-quoted with only the escapes \\ \" \n; the value a
#     decimal float (sign, digits, point, exponent) or exactly NaN, +Inf,
#     -Inf (no hex floats, no "Inf", "inf", "Infinity"; values out of the
#     double range are errors); the timestamp an integer;
#   - a family's lines (HELP, TYPE, samples) are contiguous; no name and
#     label set appears twice;
#   - families: a histogram "h" has samples h_bucket (with a float "le"),
#     h_sum and h_count (neither with "le"); a summary "s" has s (with a
#     float "quantile"), s_sum and s_count (neither with "quantile"); any
#     other family's samples carry the family's name; a sample whose name
#     has no TYPE is an untyped family of its own.  A counter family's name
#     ends in "_total";
#   - values of counters, histogram buckets and counts, and summary counts
#     are numbers >= 0 (not NaN);
#   - per histogram label set (labels minus "le"): buckets in increasing
#     "le" order with non-decreasing counts, an le="+Inf" bucket whose value
#     equals h_count, and both h_sum and h_count present.  Per summary label
#     set (labels minus "quantile"): s_sum and s_count present.
#
# monotonic($before, $after) returns error strings, one for each counter
# sample and each histogram _bucket/_count sample of $before that is
# missing from $after (same name and label set) or has a smaller value
# there.
#
# value($families, $name, \%labels) returns the value of the sample with
# exactly that name and label set (no labels: {} or undef), undef if none.

use strict;
use warnings;

use Exporter 'import';

our @EXPORT_OK = qw(parse monotonic value);
our $VERSION = '1.00';

my $METRIC_NAME = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
my $LABEL_NAME = qr/[a-zA-Z_][a-zA-Z0-9_]*/;
my $DECIMAL = qr/[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?/;
my %TYPES = map { $_ => 1 } qw(counter gauge histogram summary untyped);
my $INF = 9**9**9;

# ($ok, $value) for a sample value or an "le"/"quantile" label value.
sub _float {
    my ($s) = @_;
    return (1, $s) if $s eq 'NaN' || $s eq '+Inf' || $s eq '-Inf';
    return (0) if $s !~ /\A$DECIMAL\z/;
    my $v = 0 + $s;
    return (0) if $v == $INF || $v == -$INF;    # out of range, like ParseFloat
    return (1, $v);
}

# A value as a Perl number for comparisons; undef for NaN.
sub _num {
    my ($v) = @_;
    return $INF if $v eq '+Inf';
    return -$INF if $v eq '-Inf';
    return undef if $v eq 'NaN';
    return $v;
}

# An unambiguous key for a sample name and a label set.
sub _key {
    my ($name, $labels) = @_;
    $labels ||= {};
    return join '', map { length($_) . ':' . $_ . ';' }
        $name, map { ($_, $labels->{$_}) } sort keys %$labels;
}

# name{a="x",b="y"}, labels sorted and escaped, for messages.
sub _fmt {
    my ($name, $labels) = @_;
    my @l = map {
        my $v = $labels->{$_};
        $v =~ s/([\\"])/\\$1/g;
        $v =~ s/\n/\\n/g;
        qq{$_="$v"};
    } sort keys %{ $labels || {} };
    return @l ? "$name\{" . join(',', @l) . '}' : $name;
}

# The first backslash escape in $s whose character is not in $allowed
# (escapes are read pairwise: an escaped backslash followed by "t" is fine);
# undef if none.
sub _bad_escape {
    my ($s, $allowed) = @_;
    while ($s =~ /\\(.?)/gs) {
        return "\\$1" if $1 eq '' || index($allowed, $1) < 0;
    }
    return undef;
}

sub _without {
    my ($labels, $drop) = @_;
    return { map { $_ => $labels->{$_} } grep { $_ ne $drop } keys %$labels };
}

sub parse {
    my ($text) = @_;

    my @errors;    # [ line, sequence, message ]
    my $err = sub {
        my ($line, $msg) = @_;
        push @errors, [ $line, scalar @errors, "line $line: $msg" ];
        return;
    };

    my %fam;        # name => { type, help, samples, plus bookkeeping below }
    my @order;      # family names in order of appearance
    my %seen;       # _key(sample) => line
    my $current;    # family of the last HELP, TYPE or sample line

    my $family = sub {
        my ($name) = @_;
        if (!$fam{$name}) {
            $fam{$name} = { type => undef, help => undef, samples => [] };
            push @order, $name;
        }
        return $fam{$name};
    };

    # A family's lines must not be interleaved with another family's.
    my $touch = sub {
        my ($name, $line) = @_;
        my $f = $family->($name);
        if (defined $current && $current ne $name && defined $f->{last_line}) {
            $err->($line, "family $name is not contiguous: its earlier line"
                . " $f->{last_line} is followed by family $current");
        }
        $f->{last_line} = $line;
        $current = $name;
        return $f;
    };

    if (!defined $text) {
        return ({}, ['line 1: no text (undef)']);
    }

    my @lines = split /\n/, $text, -1;
    if (@lines && $lines[-1] eq '') {
        pop @lines;
    }
    elsif (@lines) {
        $err->(scalar @lines, 'the last line does not end with "\n"');
    }

    LINE:
    for my $i (0 .. $#lines) {
        my $n = $i + 1;
        my $l = $lines[$i];

        if ($l =~ /\r/) {
            $err->($n, 'carriage return ("\r") in line');
            $l =~ s/\r\z//;
        }

        next LINE if $l =~ /\A[ \t]*\z/;

        if ($l =~ /\A[ \t]*#[ \t]*([^ \t]*)(.*)\z/s) {
            my ($keyword, $rest) = ($1, $2);
            next LINE if $keyword ne 'HELP' && $keyword ne 'TYPE';

            if ($rest !~ /\A[ \t]+([^ \t]+)(.*)\z/s) {
                $err->($n, "$keyword line without a metric name");
                next LINE;
            }
            my ($name, $tail) = ($1, $2);
            if ($name !~ /\A$METRIC_NAME\z/) {
                $err->($n, "invalid metric name \"$name\" in $keyword line");
                next LINE;
            }
            my $arg = '';
            if ($tail ne '') {
                # $tail starts with a blank or tab.
                ($arg = $tail) =~ s/\A[ \t]+//;
            }

            if ($keyword eq 'HELP') {
                if (defined(my $bad = _bad_escape($arg, '\\n'))) {
                    $err->($n, "invalid escape \"$bad\" in HELP text of $name");
                    next LINE;
                }
                my $f = $touch->($name, $n);
                if (defined $f->{help_line}) {
                    $err->($n, "second HELP line for $name (first at line"
                        . " $f->{help_line})");
                    next LINE;
                }
                $arg =~ s/\\(.)/$1 eq 'n' ? "\n" : $1/ge;
                $f->{help} = $arg;
                $f->{help_line} = $n;
                next LINE;
            }

            # TYPE
            if (!$TYPES{$arg}) {
                $err->($n, "invalid type \"$arg\" in TYPE line of $name"
                    . ' (not one of: counter gauge histogram summary untyped)');
                next LINE;
            }
            my $f = $touch->($name, $n);
            if (defined $f->{type_line}) {
                $err->($n, "second TYPE line for $name (first at line"
                    . " $f->{type_line})");
                next LINE;
            }
            if (@{ $f->{samples} }) {
                $err->($n, "TYPE line for $name comes after its first sample"
                    . " (line $f->{samples}[0]{line})");
                next LINE;
            }
            my @parts = $arg eq 'histogram' ? qw(bucket sum count)
                      : $arg eq 'summary'   ? qw(sum count)
                      : ();
            for my $p (@parts) {
                my $o = $fam{"${name}_$p"};
                if ($o && @{ $o->{samples} }) {
                    $err->($n, "TYPE line for $name comes after its sample"
                        . " ${name}_$p (line $o->{samples}[0]{line})");
                    next LINE;
                }
            }
            $f->{type} = $arg;
            $f->{type_line} = $n;
            if ($arg eq 'counter' && $name !~ /_total\z/) {
                $err->($n, "counter $name: name does not end in _total");
            }
            next LINE;
        }

        # A sample line.
        my $s = $l;
        pos($s) = 0;
        $s =~ /\G[ \t]*/gc;
        if ($s !~ /\G($METRIC_NAME)/gc) {
            $err->($n, 'invalid metric name at the start of a sample line');
            next LINE;
        }
        my $name = $1;
        if ($s =~ /\G([^ \t{])/gc) {
            $err->($n, "invalid character \"$1\" after metric name $name");
            next LINE;
        }
        $s =~ /\G[ \t]*/gc;

        my %labels;
        if ($s =~ /\G\{/gc) {
            LABEL:
            while (1) {
                $s =~ /\G[ \t]*/gc;
                last LABEL if $s =~ /\G\}/gc;
                if ($s !~ /\G($LABEL_NAME)(?![^ \t=])/gc) {
                    $err->($n, "invalid label name in $name");
                    next LINE;
                }
                my $ln = $1;
                if ($ln =~ /\A__/) {
                    $err->($n, "label name \"$ln\" in $name starts with \"__\""
                        . ' (reserved)');
                    next LINE;
                }
                if ($s !~ /\G[ \t]*=[ \t]*/gc) {
                    $err->($n, "expected \"=\" after label name $ln in $name");
                    next LINE;
                }
                if ($s !~ /\G"/gc) {
                    $err->($n, "value of label $ln in $name is not a"
                        . ' double-quoted string');
                    next LINE;
                }
                if ($s !~ /\G((?:[^"\\]|\\.)*)"/gcs) {
                    $err->($n, "unterminated value of label $ln in $name");
                    next LINE;
                }
                my $lv = $1;
                if (defined(my $bad = _bad_escape($lv, '\\"n'))) {
                    $err->($n, "invalid escape \"$bad\" in value of label $ln"
                        . " in $name");
                    next LINE;
                }
                $lv =~ s/\\(.)/$1 eq 'n' ? "\n" : $1/ge;
                if (exists $labels{$ln}) {
                    $err->($n, "label $ln appears twice in $name");
                    next LINE;
                }
                $labels{$ln} = $lv;
                $s =~ /\G[ \t]*/gc;
                next LABEL if $s =~ /\G,/gc;
                last LABEL if $s =~ /\G\}/gc;
                $err->($n, "expected \",\" or \"}\" after the value of label"
                    . " $ln in $name");
                next LINE;
            }
        }

        $s =~ /\G[ \t]*/gc;
        if ($s !~ /\G([^ \t]+)/gc) {
            $err->($n, "no value for $name");
            next LINE;
        }
        my $raw = $1;
        my ($ok, $value) = _float($raw);
        if (!$ok) {
            $err->($n, "invalid value \"$raw\" for $name");
            next LINE;
        }
        my $ts;
        if ($s =~ /\G[ \t]+([^ \t]+)/gc) {
            $ts = $1;
            if ($ts !~ /\A[+-]?[0-9]+\z/) {
                $err->($n, "invalid timestamp \"$ts\" for $name (not an"
                    . ' integer)');
                next LINE;
            }
            $ts = 0 + $ts;
        }
        $s =~ /\G[ \t]*/gc;
        if ($s =~ /\G(.+)/gcs) {
            $err->($n, "unexpected text \"$1\" after the value"
                . (defined $ts ? ' and timestamp' : '') . " of $name");
            next LINE;
        }

        # The sample's family and its role in it.
        my ($fname, $role);
        if ($fam{$name}) {
            my $t = $fam{$name}{type} // 'untyped';
            ($fname, $role) = ($name, $t eq 'histogram' ? 'bare'
                                    : $t eq 'summary'   ? 'quantile'
                                    : 'plain');
        }
        elsif ($name =~ /\A(.+)_(bucket|sum|count)\z/ && $fam{$1}
               && ($fam{$1}{type} // '') eq 'histogram') {
            ($fname, $role) = ($1, $2);
        }
        elsif ($name =~ /\A(.+)_(sum|count)\z/ && $fam{$1}
               && ($fam{$1}{type} // '') eq 'summary') {
            ($fname, $role) = ($1, $2);
        }
        else {
            ($fname, $role) = ($name, 'plain');
        }

        my $f = $touch->($fname, $n);
        $f->{type} //= 'untyped';
        my $type = $f->{type};
        my $id = _fmt($name, \%labels);

        my $key = _key($name, \%labels);
        if ($seen{$key}) {
            $err->($n, "duplicate sample $id (first at line $seen{$key})");
            next LINE;
        }
        $seen{$key} = $n;

        my $sample = { name => $name, labels => \%labels, value => $value,
                       line => $n };
        $sample->{timestamp} = $ts if defined $ts;
        push @{ $f->{samples} }, $sample;

        my $nonneg = $type eq 'counter' || $role eq 'bucket'
            || ($role eq 'count' && $type ne 'untyped');
        if ($nonneg) {
            my $v = _num($value);
            if (!defined $v || $v < 0) {
                $err->($n, "$type $id has value $value (must be a number"
                    . ' >= 0)');
            }
        }

        if ($role eq 'bare') {
            $err->($n, "sample $id of histogram $fname must be named"
                . " ${fname}_bucket, ${fname}_sum or ${fname}_count");
            next LINE;
        }
        next LINE if $type ne 'histogram' && $type ne 'summary';

        my $special = $type eq 'histogram' ? 'le' : 'quantile';
        if ($role eq 'bucket' || $role eq 'quantile') {
            if (!exists $labels{$special}) {
                $err->($n, "$type sample $id has no \"$special\" label");
                next LINE;
            }
            my ($fok, $fv) = _float($labels{$special});
            if (!$fok || $fv eq 'NaN') {
                $err->($n, "$type sample $id: \"$special\" label value"
                    . " \"$labels{$special}\" is not a float");
                next LINE;
            }
        }
        elsif (exists $labels{$special}) {
            $err->($n, "$type sample $id must not have a \"$special\" label");
            next LINE;
        }

        # Group by label set without le / quantile, for the checks below.
        my $skey = _key('', _without(\%labels, $special));
        my $series = $f->{series}{$skey};
        if (!$series) {
            $series = $f->{series}{$skey} = {
                labels => _without(\%labels, $special), line => $n,
                bucket => [], quantile => [] };
            push @{ $f->{series_order} }, $skey;
        }
        if ($role eq 'bucket' || $role eq 'quantile') {
            push @{ $series->{$role} }, $sample;
        }
        else {
            $series->{$role} = $sample;
        }
    }

    # Histograms and summaries, per label set.
    for my $fname (@order) {
        my $f = $fam{$fname};
        next if !$f->{series};
        for my $skey (@{ $f->{series_order} }) {
            my $se = $f->{series}{$skey};
            my $id = _fmt($fname, $se->{labels});
            for my $part (qw(sum count)) {
                next if $se->{$part};
                $err->($se->{line}, "$f->{type} $id has no"
                    . " ${fname}_$part sample");
            }
            next if $f->{type} ne 'histogram';

            my ($prev, $inf);
            for my $bk (@{ $se->{bucket} }) {
                my $le = _num((_float($bk->{labels}{le}))[1]);
                my $v = _num($bk->{value});
                if ($prev && $le <= $prev->[0]) {
                    $err->($bk->{line}, "histogram $id: bucket"
                        . " le=\"$bk->{labels}{le}\" does not come after"
                        . " le=\"$prev->[1]{labels}{le}\" (line"
                        . " $prev->[1]{line}) in increasing order");
                }
                elsif ($prev && defined $v && defined $prev->[2]
                       && $v < $prev->[2]) {
                    $err->($bk->{line}, "histogram $id: bucket"
                        . " le=\"$bk->{labels}{le}\" has count $bk->{value},"
                        . " less than $prev->[1]{value} of bucket"
                        . " le=\"$prev->[1]{labels}{le}\" (line"
                        . " $prev->[1]{line})");
                }
                $inf = $bk if $le == $INF;
                $prev = [ $le, $bk, $v ];
            }
            if (!$inf) {
                my $at = @{ $se->{bucket} } ? $se->{bucket}[-1]{line}
                                            : $se->{line};
                $err->($at, "histogram $id has no le=\"+Inf\" bucket");
            }
            elsif ($se->{count}) {
                my ($iv, $cv) = (_num($inf->{value}), _num($se->{count}{value}));
                if (defined $iv && defined $cv && $iv != $cv) {
                    $err->($se->{count}{line}, "histogram $id:"
                        . " ${fname}_count is $se->{count}{value} but the"
                        . " le=\"+Inf\" bucket (line $inf->{line}) is"
                        . " $inf->{value}");
                }
            }
        }
    }

    my %families;
    for my $fname (@order) {
        my $f = $fam{$fname};
        $families{$fname} = { type => $f->{type} // 'untyped',
                              help => $f->{help},
                              samples => $f->{samples} };
    }
    my @sorted = map { $_->[2] }
        sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] } @errors;
    return (\%families, \@sorted);
}

sub monotonic {
    my ($before, $after) = @_;

    my %now;
    for my $fname (keys %{ $after || {} }) {
        my $f = $after->{$fname};
        for my $s (@{ $f->{samples} }) {
            $now{ _key($s->{name}, $s->{labels}) } = [ $s, $f->{type} ];
        }
    }

    my @errs;
    for my $fname (sort keys %{ $before || {} }) {
        my $f = $before->{$fname};
        my $type = $f->{type};
        next if $type ne 'counter' && $type ne 'histogram';
        for my $s (@{ $f->{samples} }) {
            next if $type eq 'histogram'
                && $s->{name} ne "${fname}_bucket"
                && $s->{name} ne "${fname}_count";
            my $id = _fmt($s->{name}, $s->{labels});
            my $hit = $now{ _key($s->{name}, $s->{labels}) };
            if (!$hit) {
                push @errs, "$type sample $id (line $s->{line} before) is"
                    . ' missing after';
                next;
            }
            my ($as, $atype) = @$hit;
            if ($atype ne $type) {
                push @errs, "$type sample $id (line $s->{line} before) belongs"
                    . " to a $atype family after (line $as->{line})";
                next;
            }
            my ($bv, $av) = (_num($s->{value}), _num($as->{value}));
            if (!defined $bv || !defined $av || $av < $bv) {
                push @errs, "$type sample $id went from $s->{value} (line"
                    . " $s->{line} before) to $as->{value} (line"
                    . " $as->{line} after)";
            }
        }
    }
    return @errs;
}

sub value {
    my ($families, $name, $labels) = @_;
    my $key = _key($name, $labels || {});
    for my $fname (sort keys %{ $families || {} }) {
        for my $s (@{ $families->{$fname}{samples} }) {
            next if $s->{name} ne $name;
            return $s->{value} if _key($s->{name}, $s->{labels}) eq $key;
        }
    }
    return undef;
}

1;
