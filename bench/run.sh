#!/usr/bin/env bash
# maitred benchmark: the same nginx backend measured directly, through nginx as a reverse proxy,
# and through maitred with 0, 1 and 3 plugins (pooled) and 1 plugin (per-request isolation).
# Prints one markdown table on stdout (progress goes to stderr). Method: bench/README.md.
#
# Usually run by `cargo xtask bench` (which builds plugins + release binary first); when run
# directly it builds whatever is missing. Knobs (environment):
#   DURATION=8        seconds of `wrk -t1 -c32 --latency` per scenario (req/s, p99)
#   RATE=5000         fixed request rate (req/s) of the CPU-per-request runs
#   RATE_DURATION=4   seconds of one fixed-rate run
#   ROUNDS=3          fixed-rate rounds, interleaved over the scenarios; the median is reported
#   PIN=1             1: servers on CPU 0, load generators on CPU 1 (taskset); 0: no pinning
#   PORT_BASE=28000   backend on PORT_BASE, proxies on PORT_BASE+81..
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=${DURATION:-8}
RATE=${RATE:-5000}
RATE_DURATION=${RATE_DURATION:-4}
ROUNDS=${ROUNDS:-3}
PIN=${PIN:-1}
PORT_BASE=${PORT_BASE:-28000}
BACKEND_PORT=$PORT_BASE
CONNS=32
# h2load's --rps is per connection and, in HTTP/1.1 mode, undershoots above ~250 req/s per
# connection, so the fixed rate is spread over enough connections to stay at <=100 each.
RATE_CONNS=$(( (RATE + 99) / 100 ))
RATE_PER_CONN=$(( RATE / RATE_CONNS ))
RATE=$(( RATE_PER_CONN * RATE_CONNS ))

# ---- tools -----------------------------------------------------------------------------------
need wrk wrk
need nginx nginx-light
need h2load nghttp2-client
need curl curl
need taskset util-linux
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)

# ---- build what is missing -------------------------------------------------------------------
WASM=$TARGET/wasm32-wasip2/release
MAITRED=$TARGET/release/maitred
if [ ! -f "$WASM/headers.wasm" ] || [ ! -f "$WASM/canary.wasm" ] || [ ! -f "$WASM/respond.wasm" ]; then
    log "plugins missing: cargo xtask plugins"
    (cd "$ROOT" && cargo xtask plugins) >&2
fi
if [ ! -x "$MAITRED" ]; then
    log "proxy missing: cargo build --release -p maitred"
    (cd "$ROOT" && cargo build --release -p maitred) >&2
fi

# ---- process management ----------------------------------------------------------------------
init_work maitred-bench
init_pinning "backend and proxy"

wait_ready() { # wait_ready PORT PID
    local i
    for i in $(seq 1 200); do
        kill -0 "$2" 2>/dev/null || return 1
        [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$1/" || true)" = 200 ] && return 0
        sleep 0.05
    done
    return 1
}

nginx_conf() { # nginx_conf DIR PORT UPSTREAM_PORT|""  (no upstream: the backend)
    local location upstream=""
    if [ -z "$3" ]; then
        location='return 200 "hello\n";'
    else
        location='proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";'
        upstream="upstream backend { server 127.0.0.1:$3; keepalive 64; keepalive_requests 1000000; }"
    fi
    cat >"$1/nginx.conf" <<EOF
worker_processes 1;
error_log $1/error.log warn;
pid $1/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000;
    client_body_temp_path $1/body;
    proxy_temp_path $1/proxy;
    $upstream
    server {
        listen 127.0.0.1:$2 backlog=4096;
        location / { $location }
    }
}
EOF
}

maitred_config() { # maitred_config FILE PORT PLUGINS ISOLATION
    cat >"$1" <<EOF
[runtime]
workers = 1

[[listener]]
name = "web"
listen = "127.0.0.1:$2"

[[route]]
listener = "web"
path_prefix = "/"
upstream = "backend"
plugins = [$3]

[upstream.backend]
endpoints = ["127.0.0.1:$BACKEND_PORT"]

[plugin.tag]
wasm = "$WASM/headers.wasm"
config = { request = { set = { "x-env" = "bench" } }, response = { remove = ["server"] } }
isolation = "$4"

[plugin.canary]
wasm = "$WASM/canary.wasm"
config = { upstream = "backend", percent = 0, header = { name = "x-canary", value = "1" } }

[plugin.guard]
wasm = "$WASM/respond.wasm"
config = { rules = [ { path_prefix = "/admin/", status = 403, body = "forbidden" } ] }
EOF
}

# ---- start everything ------------------------------------------------------------------------
NAMES=(); PORTS=(); SPIDS=()   # scenario name, port, PID whose CPU is counted

start_server() { # start_server NAME PORT KIND(nginx|maitred) CONFIG
    local name=$1 port=$2 pid
    port_free "$port" || die "port $port is in use (set PORT_BASE)"
    if [ "$3" = nginx ]; then
        "$NGINX" -p "$4" -c "$4/nginx.conf" -t -q 2>"$4/check.log" || { cat "$4/check.log" >&2; die "bad nginx config $4"; }
        "${SERVER_PIN[@]}" "$NGINX" -p "$4" -c "$4/nginx.conf" -g 'daemon off;' 2>>"$4/stderr.log" &
        pid=$!
    else
        "${SERVER_PIN[@]}" "$MAITRED" run --config "$4" 2>"$4.log" &
        pid=$!
    fi
    PIDS+=("$pid")
    wait_ready "$port" "$pid" || { cat "$4"*.log "$4"/*.log 2>/dev/null >&2; die "$name did not start"; }
    NAMES+=("$name"); PORTS+=("$port"); SPIDS+=("$pid")
}

mkdir -p "$WORK/backend" "$WORK/nginx"
nginx_conf "$WORK/backend" "$BACKEND_PORT" ""
start_server "direct to backend" "$BACKEND_PORT" nginx "$WORK/backend"
[ "$(curl -s "http://127.0.0.1:$BACKEND_PORT/")" = hello ] || die "the backend does not answer hello"
BACKEND_PID=${SPIDS[0]}

P=$((PORT_BASE + 81))
nginx_conf "$WORK/nginx" "$P" "$BACKEND_PORT"
start_server "nginx proxy" "$P" nginx "$WORK/nginx"
maitred_config "$WORK/none.toml" $((P + 1)) "" pooled
start_server "maitred, no plugin" $((P + 1)) maitred "$WORK/none.toml"
maitred_config "$WORK/headers.toml" $((P + 2)) '"tag"' pooled
start_server "maitred + headers (pooled)" $((P + 2)) maitred "$WORK/headers.toml"
maitred_config "$WORK/chain.toml" $((P + 3)) '"tag", "canary", "guard"' pooled
start_server "maitred + headers, canary, respond" $((P + 3)) maitred "$WORK/chain.toml"
maitred_config "$WORK/per-request.toml" $((P + 4)) '"tag"' per-request
start_server "maitred + headers (per-request)" $((P + 4)) maitred "$WORK/per-request.toml"

# The plugins do their job: the headers plugin removes the backend's `server` header.
for i in 3 4 5; do
    if curl -s -D - -o /dev/null "http://127.0.0.1:${PORTS[$i]}/" | grep -qi '^server:'; then
        log "WARNING: ${NAMES[$i]}: the server header was not removed"
    fi
done

# Only the backend and the scenario being measured run; the other servers are stopped.
only() { # only INDEX
    local i
    for i in "${!NAMES[@]}"; do
        [ "$i" = 0 ] && continue
        if [ "$i" = "$1" ]; then signal_tree CONT "${SPIDS[$i]}"; else signal_tree STOP "${SPIDS[$i]}"; fi
    done
    sleep 0.2
}

# ---- throughput and p99: wrk -----------------------------------------------------------------
RPS=(); P99=(); ERRS=(); CPUS=(); NOTES=()
for i in "${!NAMES[@]}"; do
    only "$i"
    url="http://127.0.0.1:${PORTS[$i]}/"
    log "${NAMES[$i]}: warm-up, then wrk -t1 -c$CONNS -d${DURATION}s --latency"
    timeout 10 "${CLIENT_PIN[@]}" wrk -t1 -c$CONNS -d1s "$url" >/dev/null 2>&1 || true
    out=$(timeout $((DURATION + 15)) "${CLIENT_PIN[@]}" wrk -t1 -c$CONNS -d"${DURATION}s" --latency "$url" 2>&1) || true
    rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    [ -n "$rps" ] && [ -n "$p99" ] || { echo "$out" >&2; die "${NAMES[$i]}: cannot parse wrk output"; }
    errs=0
    n=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out"); errs=$((errs + ${n:-0}))
    n=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' <<<"$out"); errs=$((errs + ${n:-0}))
    [ "$errs" = 0 ] || log "${NAMES[$i]}: wrk reported errors:"$'\n'"$(grep -E 'Non-2xx|Socket errors' <<<"$out")"
    log "${NAMES[$i]}: $rps req/s, p99 $(to_ms "$p99") ms"
    RPS[$i]=$rps; P99[$i]=$(to_ms "$p99"); ERRS[$i]=$errs; CPUS[$i]=""; NOTES[$i]=""
done

# ---- CPU per request at a fixed rate: h2load, rounds interleaved over the scenarios ----------
for r in $(seq 1 "$ROUNDS"); do
    for i in "${!NAMES[@]}"; do
        only "$i"
        url="http://127.0.0.1:${PORTS[$i]}/"
        t0=$(cpu_ns "${SPIDS[$i]}")
        out=$(timeout $((RATE_DURATION + 15)) "${CLIENT_PIN[@]}" h2load --h1 -c "$RATE_CONNS" --rps "$RATE_PER_CONN" -D "$RATE_DURATION" "$url" 2>&1) || true
        t1=$(cpu_ns "${SPIDS[$i]}")
        # requests: N total, N started, N done, N succeeded, N failed, ...; status codes: N 2xx, ...
        done_n=$(awk '/^requests:/ {print $6}' <<<"$out")
        ok_n=$(awk '/^requests:/ {print $8}' <<<"$out")
        codes2=$(awk '/^status codes:/ {print $3}' <<<"$out")
        [ -n "$done_n" ] && [ "$done_n" -gt 0 ] || { echo "$out" >&2; die "${NAMES[$i]}: cannot parse h2load output"; }
        if [ "$ok_n" != "$done_n" ] || [ "$codes2" != "$done_n" ]; then
            log "${NAMES[$i]}: h2load: $(grep -E '^requests:|^status codes:' <<<"$out" | tr '\n' ' ')"
            ERRS[$i]=$(( ERRS[i] + done_n - ${codes2:-0} ))
        fi
        if [ "$done_n" -lt $(( RATE * RATE_DURATION * 95 / 100 )) ]; then
            NOTES[$i]="fixed rate reached only $((done_n / RATE_DURATION)) req/s"
        fi
        cpu=$(awk -v d=$((t1 - t0)) -v n="$done_n" 'BEGIN {printf "%.1f", d / 1e3 / n}')
        log "round $r/$ROUNDS, ${NAMES[$i]}: $cpu µs CPU/req ($(( (t1 - t0) / 1000000 )) ms / $done_n req)"
        CPUS[$i]="${CPUS[$i]} $cpu"
    done
done

# ---- table -----------------------------------------------------------------------------------
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR] = $1} END {printf "%.1f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
range() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%s–%s", lo, hi}'; }
NG=1; BASE=2
CPU_NG=$(median "${CPUS[$NG]}"); CPU_BASE=$(median "${CPUS[$BASE]}")

echo
echo "maitred benchmark, $(date -u +%Y-%m-%d), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'))."
echo "Backend: nginx, 1 worker, \`return 200 \"hello\\n\"\`. Proxies: 1 worker each; $PIN_DESC."
echo "req/s, p99: \`wrk -t1 -c$CONNS -d${DURATION}s --latency\`. CPU µs/req: on-CPU time (schedstat) of the proxy process (direct: of the backend) during a fixed $RATE req/s load (\`h2load --h1 -c$RATE_CONNS --rps $RATE_PER_CONN -D $RATE_DURATION\`), median of $ROUNDS interleaved rounds (range in brackets)."
echo
echo "| scenario | req/s | p99 (ms) | CPU µs/req | req/s vs nginx | CPU/req vs nginx | added CPU µs/req vs maitred no plugin | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for i in "${!NAMES[@]}"; do
    cpu=$(median "${CPUS[$i]}")
    r_ratio=$(awk -v a="${RPS[$i]}" -v b="${RPS[$NG]}" 'BEGIN {printf "%.2f×", a / b}')
    c_ratio=$(awk -v a="$cpu" -v b="$CPU_NG" 'BEGIN {if (b > 0) printf "%.2f×", a / b; else print "n/a"}')
    added=""
    [ "$i" -gt "$BASE" ] && added=$(awk -v a="$cpu" -v b="$CPU_BASE" 'BEGIN {printf "%+.1f", a - b}')
    err=${ERRS[$i]}; [ -n "${NOTES[$i]}" ] && err="$err (${NOTES[$i]})"
    echo "| ${NAMES[$i]} | ${RPS[$i]} | ${P99[$i]} | $cpu ($(range "${CPUS[$i]}")) | $r_ratio | $c_ratio | $added | $err |"
done
