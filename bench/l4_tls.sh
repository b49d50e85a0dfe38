#!/usr/bin/env bash
# maitred L4 and TLS benchmark (issue 3), maitred against nginx, in one run:
#   1. TCP throughput of a 1 GiB transfer (iperf3): direct, through maitred `protocol = "tcp"`,
#      through nginx `stream { proxy_pass }`; GB/s and the proxy's CPU seconds per GiB;
#   2. TLS handshakes per second on termination, full handshakes (`openssl s_time -new`, as
#      wrk resumes sessions on reconnect), with an ECDSA P-256 and an RSA 2048 certificate;
#      handshakes/s and the proxy's CPU µs per handshake;
#   3. HTTPS requests/s with keep-alive: wrk over https (req/s, p99), and the CPU per request
#      at a fixed rate (h2load --h1 over TLS).
# Both proxies terminate TLS with the same self-signed certificates and forward to the same
# nginx backend over plain HTTP/1.1 with upstream keep-alive, as bench/run.sh does.
# Prints one markdown table on stdout (progress goes to stderr). Method: bench/README.md.
#
# Usually run by `cargo xtask bench --l4-tls`; when run directly it builds the proxy if missing
# and apt-get installs wrk, nginx-light, libnginx-mod-stream, nghttp2-client, iperf3, openssl,
# curl. Knobs (environment):
#   ROUNDS=3          rounds, interleaved over the scenarios; medians are reported
#   TCP_BYTES=1G      bytes of one iperf3 transfer (iperf3 units: K/M/G are powers of 1024)
#   HS_DURATION=4     seconds of one handshake run
#   HS_CLIENTS=16     concurrent `openssl s_time -new` processes of a handshake run
#   DURATION=8        seconds of the keep-alive run (wrk -t1 -c32 --latency)
#   RATE=2000         fixed request rate (req/s) of the keep-alive CPU-per-request runs
#   RATE_DURATION=4   seconds of one fixed-rate run
#   PIN=1             1: servers on CPU 0, load generators on CPU 1 (taskset); 0: no pinning
#   PORT_BASE=29000   backend on PORT_BASE, iperf3 on +1, nginx/maitred: TCP on +10/+11,
#                     https (ECDSA) on +20/+21, https (RSA) on +22/+23
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
ROUNDS=${ROUNDS:-3}
TCP_BYTES=${TCP_BYTES:-1G}
HS_DURATION=${HS_DURATION:-4}
HS_CLIENTS=${HS_CLIENTS:-16}
DURATION=${DURATION:-8}
RATE=${RATE:-2000}
RATE_DURATION=${RATE_DURATION:-4}
PIN=${PIN:-1}
PORT_BASE=${PORT_BASE:-29000}
CONNS=32
RATE_CONNS=$(( (RATE + 99) / 100 ))   # h2load --rps is per connection: <=100 each (see run.sh)
RATE_PER_CONN=$(( RATE / RATE_CONNS ))
RATE=$(( RATE_PER_CONN * RATE_CONNS ))

BACKEND_PORT=$PORT_BASE
SINK_PORT=$((PORT_BASE + 1))
NG_TCP=$((PORT_BASE + 10)); MD_TCP=$((PORT_BASE + 11))
NG_TLS=$((PORT_BASE + 20)); MD_TLS=$((PORT_BASE + 21))   # ECDSA certificate
NG_RSA=$((PORT_BASE + 22)); MD_RSA=$((PORT_BASE + 23))   # RSA certificate

# ---- tools -----------------------------------------------------------------------------------
need wrk wrk
need nginx nginx-light
need h2load nghttp2-client
need iperf3 iperf3
need openssl openssl
need curl curl
need taskset util-linux
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)

# nginx's stream module: built in, or Debian's dynamic module (libnginx-mod-stream).
NGINX_V=$("$NGINX" -V 2>&1)
STREAM_LOAD=""
if grep -q -- '--with-stream=dynamic' <<<"$NGINX_V" || ! grep -q -- '--with-stream' <<<"$NGINX_V"; then
    MODULES=$(grep -o -- '--modules-path=[^ ]*' <<<"$NGINX_V" | cut -d= -f2)
    MODULES=${MODULES:-/usr/lib/nginx/modules}
    [ -f "$MODULES/ngx_stream_module.so" ] || apt_install libnginx-mod-stream
    [ -f "$MODULES/ngx_stream_module.so" ] || die "no $MODULES/ngx_stream_module.so after installing libnginx-mod-stream"
    STREAM_LOAD="load_module $MODULES/ngx_stream_module.so;"
fi

MAITRED=$TARGET/release/maitred
if [ ! -x "$MAITRED" ]; then
    log "proxy missing: cargo build --release -p maitred"
    (cd "$ROOT" && cargo build --release -p maitred) >&2
fi

# ---- process management ----------------------------------------------------------------------
init_work maitred-l4tls
init_pinning "servers (backend, iperf3 sink, proxy)"

wait_port() { # wait_port PORT PID: the port accepts connections
    local i
    for i in $(seq 1 200); do
        kill -0 "$2" 2>/dev/null || return 1
        port_free "$1" || return 0
        sleep 0.05
    done
    return 1
}

# ---- certificates ----------------------------------------------------------------------------
for k in ec rsa; do
    case $k in
        ec) keyargs=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
        rsa) keyargs=(-newkey rsa:2048) ;;
    esac
    openssl req -x509 "${keyargs[@]}" -nodes -days 2 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$WORK/$k.key" -out "$WORK/$k.pem" 2>"$WORK/openssl.log" \
        || { cat "$WORK/openssl.log" >&2; die "openssl cannot make the $k certificate"; }
done

# ---- configs ---------------------------------------------------------------------------------
mkdir -p "$WORK/backend" "$WORK/nginx"
cat >"$WORK/backend/nginx.conf" <<EOF
worker_processes 1;
error_log $WORK/backend/error.log warn;
pid $WORK/backend/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/backend/body;
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        location / { return 200 "hello\n"; }
    }
}
EOF

# One nginx proxy (1 worker) with both listeners, like the one maitred with both.
cat >"$WORK/nginx/nginx.conf" <<EOF
$STREAM_LOAD
worker_processes 1;
error_log $WORK/nginx/error.log warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
stream {
    server {
        listen 127.0.0.1:$NG_TCP backlog=4096;
        proxy_pass 127.0.0.1:$SINK_PORT;
    }
}
http {
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 64; keepalive_requests 1000000; }
    # nginx 1.22's default ssl_protocols lack TLSv1.3; maitred offers TLS 1.2 and 1.3.
    ssl_protocols TLSv1.2 TLSv1.3;
    server {
        listen 127.0.0.1:$NG_TLS ssl backlog=4096;
        ssl_certificate $WORK/ec.pem;
        ssl_certificate_key $WORK/ec.key;
        location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
    server {
        listen 127.0.0.1:$NG_RSA ssl backlog=4096;
        ssl_certificate $WORK/rsa.pem;
        ssl_certificate_key $WORK/rsa.key;
        location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF

cat >"$WORK/maitred.toml" <<EOF
[runtime]
workers = 1

[[listener]]
name = "tcp"
listen = "127.0.0.1:$MD_TCP"
protocol = "tcp"
upstream = "sink"

[[listener]]
name = "tls"
listen = "127.0.0.1:$MD_TLS"
protocol = "https"
certificates = [ { cert = "$WORK/ec.pem", key = "$WORK/ec.key" } ]

[[listener]]
name = "tls-rsa"
listen = "127.0.0.1:$MD_RSA"
protocol = "https"
certificates = [ { cert = "$WORK/rsa.pem", key = "$WORK/rsa.key" } ]

[[route]]
listener = "tls"
upstream = "backend"

[[route]]
listener = "tls-rsa"
upstream = "backend"

[upstream.sink]
endpoints = ["127.0.0.1:$SINK_PORT"]

[upstream.backend]
endpoints = ["127.0.0.1:$BACKEND_PORT"]
EOF

# ---- start everything ------------------------------------------------------------------------
for p in $BACKEND_PORT $SINK_PORT $NG_TCP $MD_TCP $NG_TLS $MD_TLS $NG_RSA $MD_RSA; do
    port_free "$p" || die "port $p is in use (set PORT_BASE)"
done

start() { # start NAME PORT LOG COMMAND...: runs COMMAND on the server CPU, sets STARTED
    local name=$1 port=$2 logf=$3
    shift 3
    "${SERVER_PIN[@]}" "$@" >"$logf" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
    wait_port "$port" "$STARTED" || { cat "$logf" >&2; die "$name did not start"; }
}

for d in backend nginx; do
    "$NGINX" -p "$WORK/$d" -c "$WORK/$d/nginx.conf" -t -q 2>"$WORK/$d/check.log" \
        || { cat "$WORK/$d/check.log" >&2; die "bad nginx config $WORK/$d/nginx.conf"; }
done
"$MAITRED" check --config "$WORK/maitred.toml" >"$WORK/check.log" 2>&1 \
    || { cat "$WORK/check.log" >&2; die "bad maitred config"; }

start backend "$BACKEND_PORT" "$WORK/backend/stderr.log" "$NGINX" -p "$WORK/backend" -c "$WORK/backend/nginx.conf" -g 'daemon off;'
BACKEND_PID=$STARTED
start "iperf3 sink" "$SINK_PORT" "$WORK/iperf3.log" iperf3 -s -B 127.0.0.1 -p "$SINK_PORT"
SINK_PID=$STARTED
start "nginx proxy" "$NG_TLS" "$WORK/nginx/stderr.log" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;'
NG_PID=$STARTED
for p in $NG_TCP $NG_RSA; do wait_port "$p" "$NG_PID" || die "nginx did not listen on $p"; done
start maitred "$MD_TLS" "$WORK/maitred.log" "$MAITRED" run --config "$WORK/maitred.toml"
MD_PID=$STARTED
for p in $MD_TCP $MD_RSA; do wait_port "$p" "$MD_PID" || die "maitred did not listen on $p"; done

# The proxy being measured runs, the other is stopped; "" stops both.
only() { # only PID|""
    local p
    for p in "$NG_PID" "$MD_PID"; do
        if [ "$p" = "$1" ]; then signal_tree CONT "$p"; else signal_tree STOP "$p"; fi
    done
    sleep 0.2
}

# Both proxies answer over TLS with the backend's body; note what TLS they negotiate.
only ""; signal_tree CONT "$NG_PID"; signal_tree CONT "$MD_PID"
for port in $NG_TLS $MD_TLS $NG_RSA $MD_RSA; do
    body=$(curl -sk -m 5 "https://127.0.0.1:$port/" || true)
    [ "$body" = hello ] || die "https://127.0.0.1:$port/ does not answer hello (got: $body)"
done
tls_params() { # tls_params PORT -> "TLSv1.3 TLS_AES_256_GCM_SHA384 (X25519)"
    timeout 10 openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null | awk '
        /^New, / {proto = $2; sub(/,$/, "", proto); cipher = $NF}
        /^Server Temp Key:/ {kx = $4; sub(/,$/, "", kx)}
        END {printf "%s %s (%s)", proto, cipher, kx}'
}
TLS_NG=$(tls_params "$NG_TLS"); TLS_MD=$(tls_params "$MD_TLS")
TLS_NG_RSA=$(tls_params "$NG_RSA"); TLS_MD_RSA=$(tls_params "$MD_RSA")
log "TLS negotiated (ECDSA): nginx $TLS_NG; maitred $TLS_MD"
log "TLS negotiated (RSA): nginx $TLS_NG_RSA; maitred $TLS_MD_RSA"

wrk_errors() { # wrk_errors OUTPUT -> non-2xx/3xx + socket errors
    local n e=0
    n=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$1"); e=$((e + ${n:-0}))
    n=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' <<<"$1"); e=$((e + ${n:-0}))
    echo "$e"
}
# Load generators run under bash's `time`, so their CPU share is known: near 100 % of their
# core means the client, not the proxy, set the pace.
TIMEFORMAT='%R %U %S'
client_share() { # client_share TIMEFILE -> percent of one core used by the load generator
    awk '/^[0-9.]+ [0-9.]+ [0-9.]+$/ {r = $1; c = $2 + $3} END {if (r > 0) printf "%.0f", 100 * c / r; else print 0}' "$1"
}

# ---- 1. TCP throughput: iperf3, rounds interleaved -------------------------------------------
TCP_NAMES=("direct (client → iperf3)" "nginx stream" "maitred tcp")
TCP_PORTS=("$SINK_PORT" "$NG_TCP" "$MD_TCP")
TCP_CPUPID=("$SINK_PID" "$NG_PID" "$MD_PID")
TCP_ONLY=("" "$NG_PID" "$MD_PID")
TCP_GBS=("" "" ""); TCP_CPU=("" "" ""); TCP_ERR=(0 0 0)
iperf_result() { # iperf_result JSON -> "SENT_BYTES RECEIVED_BYTES RECEIVER_SECONDS" (end.sum_sent, end.sum_received)
    awk '/"sum_sent"/ {blk = "s"} /"sum_received"/ {blk = "r"}
         blk != "" && /"seconds"/ {gsub(/[",]/, ""); sec[blk] = $2}
         blk != "" && /"bytes"/ {gsub(/[",]/, ""); b[blk] = $2}
         blk != "" && /}/ {blk = ""}
         END {if (b["s"] != "" && b["r"] != "") print b["s"], b["r"], sec["r"]}' <<<"$1"
}
for i in 0 1 2; do # warm-up and check: a small transfer through every path
    only "${TCP_ONLY[$i]}"
    timeout 30 "${CLIENT_PIN[@]}" iperf3 -c 127.0.0.1 -p "${TCP_PORTS[$i]}" -n 16M --connect-timeout 5000 >/dev/null 2>&1 \
        || die "${TCP_NAMES[$i]}: iperf3 warm-up failed"
done
for r in $(seq 1 "$ROUNDS"); do
    for i in 0 1 2; do
        only "${TCP_ONLY[$i]}"
        t0=$(cpu_ns "${TCP_CPUPID[$i]}")
        out=$(timeout 120 "${CLIENT_PIN[@]}" iperf3 -c 127.0.0.1 -p "${TCP_PORTS[$i]}" -n "$TCP_BYTES" -J --connect-timeout 5000 2>&1) || true
        t1=$(cpu_ns "${TCP_CPUPID[$i]}")
        read -r sent bytes secs <<<"$(iperf_result "$out")" || true
        if [ -z "${bytes:-}" ] || [ "${bytes:-0}" = 0 ]; then
            log "${TCP_NAMES[$i]}: iperf3 failed: $(grep -m1 '"error"' <<<"$out" || head -c 300 <<<"$out")"
            TCP_ERR[$i]=$(( TCP_ERR[i] + 1 )); continue
        fi
        # GB/s: what the receiver counted over its own time (it stops counting at the end of the
        # test, so bytes still in the proxy's buffers are not in it); CPU: per byte sent.
        gbs=$(awk -v b="$bytes" -v s="$secs" 'BEGIN {printf "%.2f", b / s / 1e9}')
        cpu=$(awk -v d=$((t1 - t0)) -v b="$sent" 'BEGIN {printf "%.3f", d / 1e9 / (b / 1073741824)}')
        log "round $r/$ROUNDS, ${TCP_NAMES[$i]}: $gbs GB/s, $cpu CPU s/GiB ($sent bytes sent, $bytes received in $secs s)"
        TCP_GBS[$i]="${TCP_GBS[$i]} $gbs"; TCP_CPU[$i]="${TCP_CPU[$i]} $cpu"
    done
done

# ---- 2. TLS handshakes: parallel `openssl s_time -new`, rounds interleaved ---------------------
# wrk resumes the session when it reconnects (it keeps its SSL objects), so every handshake
# after the first would be an abbreviated one; `s_time -new` makes a full handshake per
# connection, with no HTTP request, so only the termination is measured. HS_CLIENTS processes
# run side by side on the client CPU; their connections are summed over the group's wall time.
TLS_NAMES=("nginx" "maitred"); TLS_PORTS=("$NG_TLS" "$MD_TLS"); TLS_PIDS=("$NG_PID" "$MD_PID")
HS_KEYS=(ec ec rsa rsa); HS_PROXY=(0 1 0 1); HS_PORTS=("$NG_TLS" "$MD_TLS" "$NG_RSA" "$MD_RSA")
HS_RATE=("" "" "" ""); HS_CPU=("" "" "" ""); HS_ERR=(0 0 0 0); HS_CLIENT=("" "" "" "")
s_time_group() { # s_time_group PORT SECONDS: HS_CLIENTS parallel s_time; writes $WORK/st.* and $WORK/time
    rm -f "$WORK"/st.*
    { time (
        for k in $(seq 1 "$HS_CLIENTS"); do
            timeout $(($2 + 15)) "${CLIENT_PIN[@]}" openssl s_time -connect "127.0.0.1:$1" -new -time "$2" >"$WORK/st.$k" 2>&1 &
        done
        wait
    ); } 2>"$WORK/time"
}
for j in 0 1 2 3; do # warm-up and check
    only "${TLS_PIDS[${HS_PROXY[$j]}]}"
    s_time_group "${HS_PORTS[$j]}" 1
    n=$(cat "$WORK"/st.* | awk '/connections in [0-9.]+s;/ {n += $1} END {print n + 0}')
    [ "$n" -gt 0 ] || { cat "$WORK"/st.* >&2; die "${TLS_NAMES[${HS_PROXY[$j]}]} (${HS_KEYS[$j]}): openssl s_time made no connection"; }
done
for r in $(seq 1 "$ROUNDS"); do
    for j in 0 1 2 3; do
        i=${HS_PROXY[$j]}
        only "${TLS_PIDS[$i]}"
        t0=$(cpu_ns "${TLS_PIDS[$i]}")
        s_time_group "${HS_PORTS[$j]}" "$HS_DURATION"
        t1=$(cpu_ns "${TLS_PIDS[$i]}")
        n=$(cat "$WORK"/st.* | awk '/connections in [0-9.]+s;/ {n += $1} END {print n + 0}')
        e=$(cat "$WORK"/st.* | grep -ci 'error' || true)
        wall=$(awk '/^[0-9.]+ [0-9.]+ [0-9.]+$/ {r = $1} END {print r}' "$WORK/time")
        [ "$n" -gt 0 ] || { cat "$WORK"/st.* >&2; die "${TLS_NAMES[$i]} (${HS_KEYS[$j]}): openssl s_time made no connection"; }
        [ "$e" = 0 ] || log "${TLS_NAMES[$i]} (${HS_KEYS[$j]}): s_time: $(grep -i -m3 error "$WORK"/st.* | tr '\n' ' ')"
        HS_ERR[$j]=$(( HS_ERR[j] + e ))
        rate=$(awk -v n="$n" -v w="$wall" 'BEGIN {printf "%.0f", n / w}')
        cpu=$(awk -v d=$((t1 - t0)) -v n="$n" 'BEGIN {printf "%.1f", d / 1e3 / n}')
        share=$(client_share "$WORK/time")
        log "round $r/$ROUNDS, ${TLS_NAMES[$i]} (${HS_KEYS[$j]}): $rate handshakes/s ($n in $wall s), $cpu µs CPU each, s_time at $share% of its core"
        HS_RATE[$j]="${HS_RATE[$j]} $rate"; HS_CPU[$j]="${HS_CPU[$j]} $cpu"; HS_CLIENT[$j]="${HS_CLIENT[$j]} $share"
    done
done

# ---- 3. HTTPS keep-alive: wrk for req/s and p99, then fixed-rate rounds for CPU/req ----------
KA_RPS=("" ""); KA_P99=("" ""); KA_CPU=("" ""); KA_ERR=(0 0); KA_CLIENT=("" ""); KA_NOTE=("" "")
for i in 0 1; do
    only "${TLS_PIDS[$i]}"
    url="https://127.0.0.1:${TLS_PORTS[$i]}/"
    timeout 10 "${CLIENT_PIN[@]}" wrk -t1 -c$CONNS -d1s "$url" >/dev/null 2>&1 || true
    out=$( { time timeout $((DURATION + 15)) "${CLIENT_PIN[@]}" wrk -t1 -c$CONNS -d"${DURATION}s" --latency "$url" 2>&1; } 2>"$WORK/time" ) || true
    rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    [ -n "$rps" ] && [ -n "$p99" ] || { echo "$out" >&2; die "${TLS_NAMES[$i]}: cannot parse wrk output"; }
    e=$(wrk_errors "$out"); KA_ERR[$i]=$(( KA_ERR[i] + e ))
    [ "$e" = 0 ] || log "${TLS_NAMES[$i]}: wrk reported errors: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ')"
    KA_RPS[$i]=$rps; KA_P99[$i]=$(to_ms "$p99"); KA_CLIENT[$i]=$(client_share "$WORK/time")
    log "${TLS_NAMES[$i]}: https keep-alive $rps req/s, p99 ${KA_P99[$i]} ms, wrk at ${KA_CLIENT[$i]}% of its core"
done
for r in $(seq 1 "$ROUNDS"); do
    for i in 0 1; do
        only "${TLS_PIDS[$i]}"
        url="https://127.0.0.1:${TLS_PORTS[$i]}/"
        t0=$(cpu_ns "${TLS_PIDS[$i]}")
        out=$(timeout $((RATE_DURATION + 15)) "${CLIENT_PIN[@]}" h2load --h1 -c "$RATE_CONNS" --rps "$RATE_PER_CONN" -D "$RATE_DURATION" "$url" 2>&1) || true
        t1=$(cpu_ns "${TLS_PIDS[$i]}")
        done_n=$(awk '/^requests:/ {print $6}' <<<"$out")
        codes2=$(awk '/^status codes:/ {print $3}' <<<"$out")
        [ -n "$done_n" ] && [ "$done_n" -gt 0 ] || { echo "$out" >&2; die "${TLS_NAMES[$i]}: cannot parse h2load output"; }
        if [ "$codes2" != "$done_n" ]; then
            log "${TLS_NAMES[$i]}: h2load: $(grep -E '^requests:|^status codes:' <<<"$out" | tr '\n' ' ')"
            KA_ERR[$i]=$(( KA_ERR[i] + done_n - ${codes2:-0} ))
        fi
        [ "$done_n" -lt $(( RATE * RATE_DURATION * 95 / 100 )) ] && KA_NOTE[$i]="fixed rate reached only $((done_n / RATE_DURATION)) req/s"
        # The connections' handshakes are in the window too: RATE_CONNS of them per run.
        cpu=$(awk -v d=$((t1 - t0)) -v n="$done_n" 'BEGIN {printf "%.1f", d / 1e3 / n}')
        log "round $r/$ROUNDS, ${TLS_NAMES[$i]}: $cpu µs CPU/req at $RATE req/s ($(( (t1 - t0) / 1000000 )) ms / $done_n req)"
        KA_CPU[$i]="${KA_CPU[$i]} $cpu"
    done
done
only ""

# ---- table -----------------------------------------------------------------------------------
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk -v f="${2:-%.1f}" '{v[NR] = $1} END {if (NR == 0) {print "n/a"; exit} printf f, NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
range() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {if (NR > 1) printf " (%s–%s)", lo, hi}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%.2f×", a / b; else print "n/a"}'; }
client_note() { # client_note TOOL PERCENT -> a note when the load generator was the bottleneck
    [ -n "$2" ] && [ "$2" -ge 90 ] && echo "client-bound: $1 at $2% of its core"
    return 0
}

echo
DIRTY=""; [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] && DIRTY=" (working tree with uncommitted changes)"
echo "maitred L4/TLS benchmark, $(date -u +%Y-%m-%d), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$DIRTY, binary built $(date -u -r "$MAITRED" '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'))."
echo "One worker per proxy (nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///') with OpenSSL $(openssl version | awk '{print $2}'); maitred with rustls + ring); $PIN_DESC."
echo "Self-signed certificates, the same for both proxies. Negotiated with OpenSSL clients: ECDSA P-256: nginx $TLS_NG, maitred $TLS_MD; RSA 2048: nginx $TLS_NG_RSA, maitred $TLS_MD_RSA."
echo "TCP: \`iperf3 -c -n $TCP_BYTES\` (one stream, client → server); CPU of the proxy (direct: of the iperf3 server) per GiB. Handshakes: $HS_CLIENTS × \`openssl s_time -new -time $HS_DURATION\` (a full handshake per connection, no request); proxy CPU per handshake. Keep-alive: \`wrk -t1 -c$CONNS -d${DURATION}s --latency\` (ECDSA certificate); CPU µs/req at a fixed $RATE req/s (\`h2load --h1 -c$RATE_CONNS --rps $RATE_PER_CONN -D $RATE_DURATION\`). Medians of $ROUNDS interleaved rounds (range)."
echo
echo "| test | path | throughput | p99 (ms) | proxy CPU | throughput vs nginx | CPU vs nginx | errors, notes |"
echo "|---|---|---:|---:|---:|---:|---:|---|"
g_ng=$(median "${TCP_GBS[1]}" %.2f); c_ng=$(median "${TCP_CPU[1]}" %.3f)
for i in 0 1 2; do
    g=$(median "${TCP_GBS[$i]}" %.2f); c=$(median "${TCP_CPU[$i]}" %.3f)
    cr=$(ratio "$c" "$c_ng"); [ "$i" = 0 ] && cr="(iperf3 server)"
    echo "| TCP, 1 transfer of $TCP_BYTES | ${TCP_NAMES[$i]} | $g GB/s$(range "${TCP_GBS[$i]}") | | $c s/GiB$(range "${TCP_CPU[$i]}") | $(ratio "$g" "$g_ng") | $cr | ${TCP_ERR[$i]} |"
done
for j in 0 1 2 3; do
    i=${HS_PROXY[$j]}; b=$(( j - i ))   # b: the nginx row with the same key
    h=$(median "${HS_RATE[$j]}" %.0f); c=$(median "${HS_CPU[$j]}")
    hb=$(median "${HS_RATE[$b]}" %.0f); cb=$(median "${HS_CPU[$b]}")
    kd="ECDSA P-256"; [ "${HS_KEYS[$j]}" = rsa ] && kd="RSA 2048"
    # What one core could do at this CPU cost: the rate itself is often set by the client.
    cap=$(awk -v c="$c" 'BEGIN {if (c > 0) printf "%.0f", 1e6 / c; else print "n/a"}')
    note=$(client_note s_time "$(median "${HS_CLIENT[$j]}" %.0f)")
    note="1 core ≈ $cap /s${note:+; $note}"
    echo "| TLS full handshakes, $kd | ${TLS_NAMES[$i]} https | $h /s$(range "${HS_RATE[$j]}") | | $c µs/handshake$(range "${HS_CPU[$j]}") | $(ratio "$h" "$hb") | $(ratio "$c" "$cb") | ${HS_ERR[$j]} ($note) |"
done
k_ng=${KA_RPS[0]}; kc_ng=$(median "${KA_CPU[0]}")
for i in 0 1; do
    c=$(median "${KA_CPU[$i]}")
    note=$(client_note wrk "${KA_CLIENT[$i]}"); [ -n "${KA_NOTE[$i]}" ] && note="${note:+$note; }${KA_NOTE[$i]}"
    echo "| HTTPS keep-alive, $CONNS conns | ${TLS_NAMES[$i]} https | ${KA_RPS[$i]} req/s | ${KA_P99[$i]} | $c µs/req$(range "${KA_CPU[$i]}") | $(ratio "${KA_RPS[$i]}" "$k_ng") | $(ratio "$c" "$kc_ng") | ${KA_ERR[$i]}${note:+ ($note)} |"
done
