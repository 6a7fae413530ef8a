# Self-test of t/lib/PromText.pm, the checker of the Prometheus text format
# (0.0.4) used by the /metrics tests: valid text parses to the expected
# structure, each rule violation is reported with its line, monotonic() and
# value() work.  Needs neither nginx nor the module.
use strict;
use warnings;

use Test::More;

use lib 't/lib';
use PromText qw(parse monotonic value);

my $INF = 9**9**9;

# ---------------------------------------------------------------- valid text

my $valid = <<'EOT';
# A free-form comment, ignored.
# HELP llm_requests_total Requests routed, by model.
# TYPE llm_requests_total counter
llm_requests_total{model="a",upstream="pool_a"} 10
llm_requests_total{model="b",upstream="pool_a",} 0 1700000000000

# HELP llm_in_flight In flight.\nSecond line, a backslash: \\ end
# TYPE llm_in_flight gauge
llm_in_flight -1.5e2
llm_in_flight{path="C:\\dir\\",note="say \"hi\"\nbye"} NaN
llm_in_flight{path="\\t is not a tab"} .5 -12
# TYPE llm_latency_seconds histogram
llm_latency_seconds_bucket{model="a",le="0.1"} 1
llm_latency_seconds_bucket{model="a",le="0.5"} 3
llm_latency_seconds_bucket{model="a",le="+Inf"} 4
llm_latency_seconds_sum{model="a"} 1.25
llm_latency_seconds_count{model="a"} 4
llm_latency_seconds_bucket{model="b",le="0.1"} 0
llm_latency_seconds_bucket{model="b",le="0.5"} 0
llm_latency_seconds_bucket{model="b",le="+Inf"} 2
llm_latency_seconds_sum{model="b"} 7
llm_latency_seconds_count{model="b"} 2
llm_up 1
# TYPE llm_limit gauge
llm_limit{kind="max"} +Inf
llm_limit { kind = "min" , }	-Inf   
llm_limit{} 3e-3
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.5"} 0.01
rpc_duration_seconds{quantile="0.99"} 0.2
rpc_duration_seconds_sum 12.5
rpc_duration_seconds_count 100
EOT

{
    my ($f, $errors) = parse($valid);
    is_deeply($errors, [], 'valid text: no errors') or diag explain $errors;

    my $expected = {
        llm_requests_total => {
            type => 'counter',
            help => 'Requests routed, by model.',
            samples => [
                { name => 'llm_requests_total', line => 4, value => 10,
                  labels => { model => 'a', upstream => 'pool_a' } },
                { name => 'llm_requests_total', line => 5, value => 0,
                  labels => { model => 'b', upstream => 'pool_a' },
                  timestamp => 1700000000000 },
            ],
        },
        llm_in_flight => {
            type => 'gauge',
            help => "In flight.\nSecond line, a backslash: \\ end",
            samples => [
                { name => 'llm_in_flight', line => 9, value => -150,
                  labels => {} },
                { name => 'llm_in_flight', line => 10, value => 'NaN',
                  labels => { path => 'C:\\dir\\',
                              note => qq{say "hi"\nbye} } },
                { name => 'llm_in_flight', line => 11, value => 0.5,
                  labels => { path => '\\t is not a tab' },
                  timestamp => -12 },
            ],
        },
        llm_latency_seconds => {
            type => 'histogram',
            help => undef,
            samples => [
                { name => 'llm_latency_seconds_bucket', line => 13,
                  value => 1, labels => { model => 'a', le => '0.1' } },
                { name => 'llm_latency_seconds_bucket', line => 14,
                  value => 3, labels => { model => 'a', le => '0.5' } },
                { name => 'llm_latency_seconds_bucket', line => 15,
                  value => 4, labels => { model => 'a', le => '+Inf' } },
                { name => 'llm_latency_seconds_sum', line => 16,
                  value => 1.25, labels => { model => 'a' } },
                { name => 'llm_latency_seconds_count', line => 17,
                  value => 4, labels => { model => 'a' } },
                { name => 'llm_latency_seconds_bucket', line => 18,
                  value => 0, labels => { model => 'b', le => '0.1' } },
                { name => 'llm_latency_seconds_bucket', line => 19,
                  value => 0, labels => { model => 'b', le => '0.5' } },
                { name => 'llm_latency_seconds_bucket', line => 20,
                  value => 2, labels => { model => 'b', le => '+Inf' } },
                { name => 'llm_latency_seconds_sum', line => 21,
                  value => 7, labels => { model => 'b' } },
                { name => 'llm_latency_seconds_count', line => 22,
                  value => 2, labels => { model => 'b' } },
            ],
        },
        llm_up => {
            type => 'untyped',
            help => undef,
            samples => [
                { name => 'llm_up', line => 23, value => 1, labels => {} },
            ],
        },
        llm_limit => {
            type => 'gauge',
            help => undef,
            samples => [
                { name => 'llm_limit', line => 25, value => '+Inf',
                  labels => { kind => 'max' } },
                { name => 'llm_limit', line => 26, value => '-Inf',
                  labels => { kind => 'min' } },
                { name => 'llm_limit', line => 27, value => 0.003,
                  labels => {} },
            ],
        },
        rpc_duration_seconds => {
            type => 'summary',
            help => undef,
            samples => [
                { name => 'rpc_duration_seconds', line => 29, value => 0.01,
                  labels => { quantile => '0.5' } },
                { name => 'rpc_duration_seconds', line => 30, value => 0.2,
                  labels => { quantile => '0.99' } },
                { name => 'rpc_duration_seconds_sum', line => 31,
                  value => 12.5, labels => {} },
                { name => 'rpc_duration_seconds_count', line => 32,
                  value => 100, labels => {} },
            ],
        },
    };
    is_deeply($f, $expected, 'valid text: the expected structure')
        or diag explain $f;

    # Values are numbers (not the text), except NaN and the infinities.
    my $v = $f->{llm_in_flight}{samples}[0]{value};
    ok($v == -150 && $v . '' eq '-150', 'a value is a number');

    is_deeply([ parse('') ], [ {}, [] ], 'empty text: no families, no errors');

    my ($g, $e) = parse("# TYPE only_typed_total counter\n"
                        . "# HELP only_help Help only.\n");
    is_deeply($e, [], 'HELP/TYPE without samples: no errors');
    is_deeply($g, {
        only_typed_total => { type => 'counter', help => undef, samples => [] },
        only_help => { type => 'untyped', help => 'Help only.', samples => [] },
    }, 'HELP/TYPE without samples: families without samples');
}

# ------------------------------------------------------------ one per rule

# [ name, text, line of the error, pattern the error must match,
#   optionally: number of errors (default 1), then line and pattern of
#   the further errors ]
my @bad = (
    [ 'text does not end with "\n"',
      "a 1\nb 2", 2, qr/does not end with/ ],
    [ 'carriage return',
      "a 1\r\nb 2\n", 1, qr/carriage return/ ],
    [ 'HELP: invalid metric name',
      "# HELP 0abc Text.\n", 1, qr/invalid metric name "0abc"/ ],
    [ 'TYPE: invalid metric name',
      "# TYPE a-b gauge\n", 1, qr/invalid metric name "a-b"/ ],
    [ 'HELP: no metric name',
      "# HELP\n", 1, qr/without a metric name/ ],
    [ 'HELP: invalid escape',
      "# HELP a Tab: \\t.\na 1\n", 1, qr/invalid escape "\\t"/ ],
    [ 'second HELP line',
      "# HELP a One.\n# HELP a Two.\na 1\n", 2, qr/second HELP line for a/ ],
    [ 'second TYPE line',
      "# TYPE a gauge\n# TYPE a gauge\na 1\n", 2, qr/second TYPE line for a/ ],
    [ 'TYPE after the first sample',
      "a 1\n# TYPE a gauge\n", 2, qr/TYPE line for a comes after/ ],
    [ 'TYPE histogram after its _bucket samples',
      "h_bucket{le=\"+Inf\"} 1\n# TYPE h histogram\n", 2,
      qr/TYPE line for h comes after its sample h_bucket/ ],
    [ 'unknown type',
      "# TYPE a gaugey\na 1\n", 1, qr/invalid type "gaugey"/ ],
    [ 'TYPE without a type',
      "# TYPE a\na 1\n", 1, qr/invalid type ""/ ],
    [ 'sample: invalid metric name (first character)',
      "0a 1\n", 1, qr/invalid metric name/ ],
    [ 'sample: invalid metric name (character)',
      "a-b 1\n", 1, qr/invalid character "-" after metric name a/ ],
    [ 'invalid label name',
      "a{0x=\"1\"} 1\n", 1, qr/invalid label name/ ],
    [ 'invalid character in label name',
      "a{x-y=\"1\"} 1\n", 1, qr/invalid label name/ ],
    [ 'label name starting with __',
      "a{__name__=\"x\"} 1\n", 1, qr/starts with "__"/ ],
    [ 'label value not quoted',
      "a{l=x} 1\n", 1, qr/not a double-quoted string/ ],
    [ 'label value in single quotes',
      "a{l='x'} 1\n", 1, qr/not a double-quoted string/ ],
    [ 'unterminated label value',
      "a{l=\"x} 1\n", 1, qr/unterminated/ ],
    [ 'invalid escape in label value',
      "a{l=\"\\t\"} 1\n", 1, qr/invalid escape "\\t"/ ],
    [ 'invalid escape after an escaped backslash',
      "a{l=\"\\\\\\x\"} 1\n", 1, qr/invalid escape "\\x"/ ],
    [ 'duplicate label name',
      "a{l=\"1\",l=\"2\"} 1\n", 1, qr/label l appears twice/ ],
    [ 'two commas in a label set',
      "a{l=\"1\",,} 1\n", 1, qr/invalid label name/ ],
    [ 'no comma between labels',
      "a{l=\"1\" m=\"2\"} 1\n", 1, qr/expected "," or "}"/ ],
    [ 'no value',
      "a{l=\"1\"}\n", 1, qr/no value/ ],
    [ 'invalid value (comma)',
      "a 1,5\n", 1, qr/invalid value "1,5"/ ],
    [ 'invalid value (Infinity)',
      "a Infinity\n", 1, qr/invalid value "Infinity"/ ],
    [ 'invalid value (nan)',
      "a nan\n", 1, qr/invalid value "nan"/ ],
    [ 'invalid value (hex)',
      "a 0x10\n", 1, qr/invalid value "0x10"/ ],
    [ 'invalid value (out of range)',
      "a 1e999\n", 1, qr/invalid value "1e999"/ ],
    [ 'invalid timestamp (float)',
      "a 1 1.5\n", 1, qr/invalid timestamp "1.5"/ ],
    [ 'text after the timestamp',
      "a 1 2 3\n", 1, qr/unexpected text "3"/ ],
    [ 'family not contiguous (sample)',
      "a 1\nb 1\na{x=\"y\"} 2\n", 3, qr/family a is not contiguous/ ],
    [ 'family not contiguous (HELP)',
      "# HELP a A.\n# HELP b B.\n# TYPE a gauge\na 1\n", 3,
      qr/family a is not contiguous/ ],
    [ 'family not contiguous (histogram parts)',
      "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\n"
      . "g 1\nh_count 1\n", 5, qr/family h is not contiguous/ ],
    [ 'duplicate sample (labels in another order)',
      "a{x=\"1\",y=\"2\"} 1\na{y=\"2\",x=\"1\"} 2\n", 2,
      qr/duplicate sample a\{x="1",y="2"\} \(first at line 1\)/ ],
    [ 'duplicate sample without labels',
      "a 1\na{} 2\n", 2, qr/duplicate sample a / ],
    [ 'histogram bucket without le',
      "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_bucket{m=\"x\"} 1\n"
      . "h_sum 0\nh_count 1\n", 3, qr/no "le" label/ ],
    [ 'histogram bucket with an invalid le',
      "# TYPE h histogram\nh_bucket{le=\"big\"} 1\nh_bucket{le=\"+Inf\"} 1\n"
      . "h_sum 0\nh_count 1\n", 2, qr/"le" label value "big" is not a float/ ],
    [ 'histogram _count with le',
      "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\n"
      . "h_count{le=\"+Inf\"} 1\nh_count 1\n", 4,
      qr/must not have a "le" label/ ],
    [ 'histogram sample with the bare family name',
      "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\nh 1\n",
      5, qr/must be named h_bucket, h_sum or h_count/ ],
    [ 'summary sample without quantile',
      "# TYPE s summary\ns 1\ns_sum 1\ns_count 1\n", 2,
      qr/summary sample s has no "quantile" label/ ],
    [ 'summary without _count',
      "# TYPE s summary\ns{quantile=\"0.5\",m=\"x\"} 1\ns_sum{m=\"x\"} 1\n", 2,
      qr/summary s\{m="x"\} has no s_count sample/ ],
    [ 'counter name without _total',
      "# TYPE requests counter\nrequests 1\n", 1,
      qr/counter requests: name does not end in _total/ ],
    [ 'negative counter',
      "# TYPE a_total counter\na_total{m=\"x\"} -1\n", 2,
      qr/counter a_total\{m="x"\} has value -1/ ],
    [ 'NaN counter',
      "# TYPE a_total counter\na_total NaN\n", 2,
      qr/counter a_total has value NaN/ ],
    [ 'negative bucket',
      "# TYPE h histogram\nh_bucket{le=\"1\"} -1\nh_bucket{le=\"+Inf\"} 0\n"
      . "h_sum 0\nh_count 0\n", 2, qr/histogram h_bucket\{le="1"\} has value -1/ ],
    [ 'negative histogram count (and so +Inf bucket)',
      "# TYPE h histogram\nh_bucket{le=\"+Inf\"} -1\nh_sum 0\nh_count -1\n",
      2, qr/histogram h_bucket\{le="\+Inf"\} has value -1/, 2,
      4, qr/histogram h_count has value -1/ ],
    [ 'buckets not in increasing le order',
      "# TYPE h histogram\nh_bucket{le=\"1\"} 0\nh_bucket{le=\"0.5\"} 0\n"
      . "h_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n", 3,
      qr/le="0.5" does not come after le="1" \(line 2\)/ ],
    [ 'buckets with the same le (numerically)',
      "# TYPE h histogram\nh_bucket{le=\"1\"} 0\nh_bucket{le=\"1.0\"} 0\n"
      . "h_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n", 3,
      qr/le="1.0" does not come after le="1"/ ],
    [ 'no +Inf bucket',
      "# TYPE h histogram\nh_bucket{m=\"x\",le=\"1\"} 0\n"
      . "h_bucket{m=\"x\",le=\"2\"} 0\nh_sum{m=\"x\"} 0\nh_count{m=\"x\"} 0\n",
      3, qr/histogram h\{m="x"\} has no le="\+Inf" bucket/ ],
    [ 'decreasing cumulative bucket counts',
      "# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_bucket{le=\"2\"} 4\n"
      . "h_bucket{le=\"+Inf\"} 5\nh_sum 0\nh_count 5\n", 3,
      qr/has count 4, less than 5/ ],
    [ '+Inf bucket differs from _count',
      "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
      . "h_sum 0\nh_count 3\n", 5,
      qr/h_count is 3 but the le="\+Inf" bucket \(line 3\) is 2/ ],
    [ 'histogram without _sum',
      "# TYPE h histogram\nh_bucket{m=\"x\",le=\"+Inf\"} 1\n"
      . "h_count{m=\"x\"} 1\n", 2, qr/histogram h\{m="x"\} has no h_sum/ ],
    [ 'histogram without _count',
      "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\n", 2,
      qr/histogram h has no h_count/ ],
);

for my $case (@bad) {
    my ($name, $text, $line, $re, $count, @more) = @$case;
    $count //= 1;
    subtest $name => sub {
        my ($f, $errors) = parse($text);
        ok(scalar @$errors, 'an error') or return;
        is(scalar @$errors, $count, "exactly $count error(s)")
            or diag explain $errors;
        my @want = ($line, $re, @more);
        my $i = 0;
        while (my ($l, $r) = splice @want, 0, 2) {
            my $e = $errors->[$i++] // '';
            like($e, qr/^line $l: /, "names line $l");
            like($e, $r, 'says what is wrong');
        }
    };
}

{
    # Several violations, several errors, sorted by line.
    my ($f, $errors) = parse("# TYPE h histogram\nh_bucket{le=\"1\"} 1\n"
                             . "h_sum 0\nx 1 2 3\nb{l=\"\\q\"} 1\nb 1\nb 2");
    is_deeply([ map { /^line (\d+):/ ? $1 : $_ } @$errors ],
              [ 2, 2, 4, 5, 7, 7 ],
              'several errors, sorted by line') or diag explain $errors;
}

# ------------------------------------------------------------ monotonic()

my $before_text = <<'EOT';
# TYPE req_total counter
req_total{m="a"} 5
req_total{m="b"} 1
# TYPE temp gauge
temp 30
# TYPE lat histogram
lat_bucket{le="1"} 2
lat_bucket{le="+Inf"} 3
lat_sum 4.5
lat_count 3
EOT

{
    my ($before, $e1) = parse($before_text);
    is_deeply($e1, [], 'monotonic: before is valid');

    (my $grown = $before_text) =~ s/ 5$/ 7/m;
    $grown =~ s/^temp 30$/temp 10/m;
    $grown =~ s/^lat_sum 4.5$/lat_sum -1/m;
    $grown .= "# TYPE new_total counter\nnew_total 1\n";
    my ($after, $e2) = parse($grown);
    is_deeply($e2, [], 'monotonic: after is valid');
    is_deeply([ monotonic($before, $after) ], [],
              'counters grown or equal, gauge and _sum down: no errors');
    is_deeply([ monotonic($before, $before) ], [], 'same values: no errors');

    (my $down = $before_text) =~ s/^req_total\{m="b"\} 1$/req_total{m="b"} 0/m;
    my @errs = monotonic($before, (parse($down))[0]);
    is(scalar @errs, 1, 'counter went down: one error');
    like($errs[0] // '', qr/req_total\{m="b"\} went from 1 \(line 3 before\) to 0/,
         'counter went down: named');

    (my $gone = $before_text) =~ s/^req_total\{m="a"\} 5\n//m;
    @errs = monotonic($before, (parse($gone))[0]);
    is(scalar @errs, 1, 'counter gone: one error');
    like($errs[0] // '', qr/req_total\{m="a"\} \(line 2 before\) is missing/,
         'counter gone: named');

    (my $relabel = $before_text) =~ s/m="a"/m="A"/;
    @errs = monotonic($before, (parse($relabel))[0]);
    like($errs[0] // '', qr/req_total\{m="a"\} .* missing/,
         'another label value is another sample');

    (my $hdown = $before_text) =~ s/^lat_bucket\{le="1"\} 2$/lat_bucket{le="1"} 1/m;
    $hdown =~ s/^lat_bucket\{le="\+Inf"\} 3$/lat_bucket{le="+Inf"} 2/m;
    $hdown =~ s/^lat_count 3$/lat_count 2/m;
    my ($hafter, $e3) = parse($hdown);
    is_deeply($e3, [], 'histogram went down: still valid text');
    @errs = monotonic($before, $hafter);
    is(scalar @errs, 3, 'histogram went down: one error per bucket and count')
        or diag explain \@errs;
    like(join("\n", @errs), qr/lat_bucket\{le="1"\} went from 2/, 'bucket');
    like(join("\n", @errs), qr/lat_bucket\{le="\+Inf"\} went from 3/, '+Inf');
    like(join("\n", @errs), qr/lat_count went from 3 \(line 10 before\) to 2/,
         'count');
}

# ---------------------------------------------------------------- value()

{
    my ($f) = parse($valid);
    is(value($f, 'llm_requests_total', { model => 'a', upstream => 'pool_a' }),
       10, 'value: exact label set');
    is(value($f, 'llm_requests_total', { upstream => 'pool_a', model => 'b' }),
       0, 'value: zero');
    is(value($f, 'llm_requests_total', { model => 'a' }), undef,
       'value: a subset of the labels is not the sample');
    is(value($f, 'llm_requests_total', { model => 'a', upstream => 'pool_a',
                                         x => 1 }),
       undef, 'value: a superset of the labels is not the sample');
    is(value($f, 'llm_in_flight', {}), -150, 'value: no labels ({})');
    is(value($f, 'llm_in_flight'), -150, 'value: no labels (undef)');
    is(value($f, 'llm_in_flight', { path => 'C:\\dir\\',
                                    note => qq{say "hi"\nbye} }),
       'NaN', 'value: unescaped label values, NaN');
    is(value($f, 'llm_latency_seconds_bucket', { model => 'b', le => '+Inf' }),
       2, 'value: histogram bucket');
    is(value($f, 'llm_latency_seconds_count', { model => 'b' }), 2,
       'value: histogram count');
    is(value($f, 'llm_limit', { kind => 'max' }), '+Inf', 'value: +Inf');
    is(value($f, 'llm_limit', { kind => 'min' }) , '-Inf', 'value: -Inf');
    is(value($f, 'no_such_metric', {}), undef, 'value: no such sample');
    my @list = (value($f, 'no_such_metric'), 'next');
    is(scalar @list, 2, 'value: undef (not an empty list) in list context');
}

done_testing();
