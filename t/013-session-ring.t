# llm_balance session: the ring of the documentation, recomputed here
# (MurmurHash2 as nginx computes it): each user lands on the peer the ring names, and
# when a peer goes down only its users move, each to the next peer on the
# ring; the others stay where they were.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}=m2",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK3_PORT}=m3",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK4_PORT}=m4");

no_shuffle();

my @peers = map {
    my $port = $ENV{"TEST_NGINX_MOCK${_}_PORT"};
    ["127.0.0.1:$port", "m$_"];
} 1 .. 3;

# ngx_murmur_hash2() of src/core/ngx_murmurhash.c, in 32-bit arithmetic
sub murmur2 {
    my @d = unpack 'C*', shift;
    my ($m, $len, $i) = (0x5bd1e995, scalar @d, 0);
    my $h = $len;

    while ($len - $i >= 4) {
        my $k = $d[$i] | $d[$i + 1] << 8 | $d[$i + 2] << 16 | $d[$i + 3] << 24;
        $k = ($k * $m) & 0xffffffff;
        $k ^= $k >> 24;
        $k = ($k * $m) & 0xffffffff;
        $h = (($h * $m) & 0xffffffff) ^ $k;
        $i += 4;
    }

    my $r = $len - $i;
    $h ^= $d[$i + 2] << 16 if $r == 3;
    $h ^= $d[$i + 1] << 8 if $r >= 2;
    $h = (($h ^ $d[$i]) * $m) & 0xffffffff if $r >= 1;

    $h ^= $h >> 13;
    $h = ($h * $m) & 0xffffffff;
    $h ^= $h >> 15;

    return $h;
}

my @ring;
for my $i (0 .. $#peers) {
    push @ring, [murmur2("$peers[$i][0]-$_"), $i] for 0 .. 159;
}
@ring = sort { $a->[0] <=> $b->[0] } @ring;

# the instance serving a user, skipping the peers in %down
sub owner {
    my ($user, %down) = @_;
    my $h = murmur2($user);
    my $k = 0;
    $k++ while $k < @ring && $ring[$k][0] < $h;
    for my $n (0 .. $#ring) {
        my $p = $ring[($k + $n) % @ring][1];
        return $peers[$p][1] unless $down{$p};
    }
}

our @users = map { "user-$_" } 1 .. 15;
our @before = map { owner($_) } @users;
our @after = map { owner($_, 1 => 1) } @users;

# the test means something only if m2 owned some users and others stayed
my $moved = grep { $before[$_] ne $after[$_] } 0 .. $#users;
die "the ring gives m2 no user: pick other names\n" if !$moved;

our @req = map { "POST /v1/chat/completions\n{\"model\":\"m\",\"user\":\"$_\"}" } @users;

run_tests();

__DATA__

=== TEST 1: each user on the peer the ring names; with m2 down only m2's users move
--- http_config
llm_router_zone llm 1m;
upstream pool {
    llm_balance session;
    llm_check interval=100ms timeout=100ms fall=1 rise=1;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
    server 127.0.0.1:$TEST_NGINX_MOCK2_PORT;
    server 127.0.0.1:$TEST_NGINX_MOCK3_PORT;
}
llm_model m { upstream pool; }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
}
location = /m2/control {
    proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK2_PORT/mock/control;
}
location = /wait {
    proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK4_PORT/health;
    proxy_set_header X-Mock-Delay-Ms 500;
}
--- request eval
[@::req,
 "POST /m2/control\n{\"health_status\":503}", "GET /wait",
 @::req,
 "POST /m2/control\n{\"health_status\":200}"]
--- response_headers eval
[(map { "X-Mock-Instance: $_" } @::before), "", "",
 (map { "X-Mock-Instance: $_" } @::after), ""]
--- no_error_log
[alert]
