#!/usr/bin/env bash
# maitred cache benchmark (issue 5): cache hits, maitred's route cache against nginx
# `proxy_cache`, on the same objects from the same origin:
#   - origin: nginx (1 worker) serving two static files, 1 KiB and 64 KiB, with
#     `Cache-Control: max-age=3600`; its access log counts every request that reaches it;
#   - nginx: caching reverse proxy (1 worker, `proxy_cache_path` in the work directory,
#     `keys_zone`, `proxy_cache_valid`, `proxy_cache_lock`, keep-alive to the origin);
#   - maitred: `workers = 1`, one route with `cache = { max_size = "256MiB", max_object_size = "8MiB" }`.
# Both caches are warmed (one miss each, then a hit checked), then for every object and proxy:
# wrk saturated (req/s, p99, proxy CPU per request) and fixed-rate h2load (proxy CPU µs/request),
# both in rounds interleaved over the scenarios. The origin's request count is read around
# every measured run: it must stay flat (all hits).
# Prints one markdown table on stdout (progress goes to stderr).
#
# Usually run by `cargo xtask bench --cache`; when run directly it builds the proxy if missing
# and apt-get installs wrk, nginx-light, nghttp2-client, curl. Knobs (environment):
#   DURATION=8        seconds of one `wrk -t1 -c32 --latency` run (req/s, p99)
#   WRK_ROUNDS=3      wrk rounds, interleaved over the scenarios; medians are reported
#   RATE=5000         fixed request rate (req/s) of the CPU-per-request runs
#   RATE_DURATION=4   seconds of one fixed-rate run
#   ROUNDS=3          fixed-rate rounds, interleaved over the scenarios; the median is reported
#   SIZES="1024 65536" object sizes in bytes
#   PIN=1             1: servers on CPU 0, load generators on CPU 1 (taskset); 0: no pinning
#   PORT_BASE=30000   origin on PORT_BASE, nginx on +1, maitred on +2, maitred admin on +3
#   MAITRED_CACHE='{ max_size = "256MiB", max_object_size = "8MiB" }'
#                     the route's `cache` table; empty: the route has no cache (the uncached
#                     proxy path, every request goes to the origin)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=${DURATION:-8}
RATE=${RATE:-5000}
RATE_DURATION=${RATE_DURATION:-4}
ROUNDS=${ROUNDS:-3}
WRK_ROUNDS=${WRK_ROUNDS:-3}
SIZES=${SIZES:-1024 65536}
PIN=${PIN:-1}
PORT_BASE=${PORT_BASE:-30000}
MAITRED_CACHE=${MAITRED_CACHE-'{ max_size = "256MiB", max_object_size = "8MiB" }'}
CONNS=32
RATE_CONNS=$(( (RATE + 99) / 100 ))   # h2load --rps is per connection: <=100 each (see run.sh)
RATE_PER_CONN=$(( RATE / RATE_CONNS ))
RATE=$(( RATE_PER_CONN * RATE_CONNS ))

ORIGIN_PORT=$PORT_BASE
NG_PORT=$((PORT_BASE + 1))
MD_PORT=$((PORT_BASE + 2))
ADMIN_PORT=$((PORT_BASE + 3))

# ---- tools -----------------------------------------------------------------------------------
need wrk wrk
need nginx nginx-light
need h2load nghttp2-client
need curl curl
need taskset util-linux
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)

MAITRED=$TARGET/release/maitred
if [ ! -x "$MAITRED" ]; then
    log "proxy missing: cargo build --release -p maitred"
    (cd "$ROOT" && cargo build --release -p maitred) >&2
fi

# ---- process management ----------------------------------------------------------------------
init_work maitred-cache
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
init_pinning "servers (origin, proxy)"

wait_ready() { # wait_ready URL PID: URL answers 200
    local i
    for i in $(seq 1 200); do
        kill -0 "$2" 2>/dev/null || return 1
        [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$1" || true)" = 200 ] && return 0
        sleep 0.05
    done
    return 1
}

# ---- objects and configs ---------------------------------------------------------------------
mkdir -p "$WORK/origin/www" "$WORK/nginx/cache"
OBJS=()
for size in $SIZES; do
    name=$(awk -v s="$size" 'BEGIN {
        if (s % 1048576 == 0) printf "%dMiB", s / 1048576
        else if (s % 1024 == 0) printf "%dKiB", s / 1024
        else printf "%dB", s }')
    head -c "$size" /dev/urandom >"$WORK/origin/www/obj-$name"
    OBJS+=("$name")
done
obj_bytes() { stat -c %s "$WORK/origin/www/obj-$1"; }

# The origin logs every request it gets (that count is the hit check); the proxies log none.
cat >"$WORK/origin/nginx.conf" <<EOF
worker_processes 1;
error_log $WORK/origin/error.log warn;
pid $WORK/origin/nginx.pid;
events { worker_connections 4096; }
http {
    access_log $WORK/origin/access.log;
    default_type application/octet-stream;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/origin/body;
    server {
        listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
        root $WORK/origin/www;
        location / { add_header Cache-Control "max-age=3600" always; }
    }
}
EOF

# nginx as a caching reverse proxy, as one would set it up: Debian's default `sendfile on`, the
# cache on disk (page cache) with its index in a shared-memory zone, upstream keep-alive.
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
error_log $WORK/nginx/error.log warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    default_type application/octet-stream;
    keepalive_requests 1000000;
    sendfile on;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=bench:10m max_size=256m inactive=1h use_temp_path=off;
    upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$NG_PORT backlog=4096;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
            add_header X-Cache-Status \$upstream_cache_status;
        }
    }
}
EOF

CACHE_LINE=""; [ -n "$MAITRED_CACHE" ] && CACHE_LINE="cache = $MAITRED_CACHE"
cat >"$WORK/maitred.toml" <<EOF
[runtime]
workers = 1

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[[listener]]
name = "web"
listen = "127.0.0.1:$MD_PORT"

[[route]]
listener = "web"
path_prefix = "/"
upstream = "origin"
$CACHE_LINE

[upstream.origin]
endpoints = ["127.0.0.1:$ORIGIN_PORT"]
EOF

for d in origin nginx; do
    "$NGINX" -p "$WORK/$d" -c "$WORK/$d/nginx.conf" -t -q 2>"$WORK/$d/check.log" \
        || { cat "$WORK/$d/check.log" >&2; die "bad nginx config $WORK/$d/nginx.conf"; }
done
if ! "$MAITRED" check --config "$WORK/maitred.toml" >"$WORK/check.log" 2>&1; then
    cat "$WORK/check.log" >&2
    grep -q cache "$WORK/check.log" && log "this maitred build does not take the route's \`cache\` key yet (rebuild; or MAITRED_CACHE= for the uncached path)"
    die "bad maitred config"
fi

# ---- start everything ------------------------------------------------------------------------
for p in $ORIGIN_PORT $NG_PORT $MD_PORT $ADMIN_PORT; do
    port_free "$p" || die "port $p is in use (set PORT_BASE)"
done
FIRST=${OBJS[0]}
start() { # start NAME URL LOG COMMAND...: runs COMMAND on the server CPU, sets STARTED
    local name=$1 url=$2 logf=$3
    shift 3
    "${SERVER_PIN[@]}" "$@" >"$logf" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
    wait_ready "$url" "$STARTED" || { cat "$logf" >&2; die "$name did not start"; }
}
start origin "http://127.0.0.1:$ORIGIN_PORT/obj-$FIRST" "$WORK/origin/stderr.log" \
    "$NGINX" -p "$WORK/origin" -c "$WORK/origin/nginx.conf" -g 'daemon off;'
ORIGIN_PID=$STARTED
# The proxies' readiness is checked on a path the benchmark does not use (not to fill the cache).
start "nginx proxy" "http://127.0.0.1:$NG_PORT/obj-$FIRST?ready" "$WORK/nginx/stderr.log" \
    "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;'
NG_PID=$STARTED
start maitred "http://127.0.0.1:$MD_PORT/obj-$FIRST?ready" "$WORK/maitred.log" \
    "$MAITRED" run --config "$WORK/maitred.toml"
MD_PID=$STARTED

origin_count() { wc -l <"$WORK/origin/access.log"; }

# The proxy being measured runs, the other is stopped; "" runs both. The origin always runs
# (idle when every request is a hit; its CPU is not counted).
only() { # only PID|""
    local p
    for p in "$NG_PID" "$MD_PID"; do
        if [ -z "$1" ] || [ "$p" = "$1" ]; then signal_tree CONT "$p"; else signal_tree STOP "$p"; fi
    done
    sleep 0.2
}

# ---- scenarios: every object through both proxies ---------------------------------------------
S_NAME=(); S_OBJ=(); S_PROXY=(); S_URL=(); S_PID=(); S_STATUS=()
for o in "${OBJS[@]}"; do
    S_NAME+=("nginx proxy_cache"); S_OBJ+=("$o"); S_PROXY+=(nginx)
    S_URL+=("http://127.0.0.1:$NG_PORT/obj-$o"); S_PID+=("$NG_PID")
    S_NAME+=("maitred cache"); S_OBJ+=("$o"); S_PROXY+=(maitred)
    S_URL+=("http://127.0.0.1:$MD_PORT/obj-$o"); S_PID+=("$MD_PID")
done

# Warm-up and checks: the first request is a miss (one origin request), the second must be a
# hit (no origin request) with the origin's exact bytes; the proxies' cache headers are logged.
only ""
for i in "${!S_NAME[@]}"; do
    url=${S_URL[$i]}; o=${S_OBJ[$i]}
    c0=$(origin_count)
    curl -s -m 5 -o "$WORK/body" "$url" || die "${S_NAME[$i]} $o: request failed"
    c1=$(origin_count)
    hdrs=$(curl -s -m 5 -D - -o "$WORK/body" "$url") || die "${S_NAME[$i]} $o: request failed"
    c2=$(origin_count)
    cmp -s "$WORK/body" "$WORK/origin/www/obj-$o" || die "${S_NAME[$i]} $o: body differs from the origin's object"
    status=$( { grep -i -E '^(x-cache-status|cache-status|age):' <<<"$hdrs" || true; } | tr -d '\r' | tr '\n' ' ' | sed 's/ $//')
    S_STATUS[$i]=$status
    log "${S_NAME[$i]} $o: origin requests: first GET $((c1 - c0)), second GET $((c2 - c1)); second answer: ${status:-no cache header}"
    [ $((c2 - c1)) = 0 ] || log "WARNING: ${S_NAME[$i]} $o: the second GET reached the origin (not a cache hit)"
done

wrk_errors() { # wrk_errors OUTPUT -> non-2xx/3xx + socket errors
    local n e=0
    n=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$1"); e=$((e + ${n:-0}))
    n=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' <<<"$1"); e=$((e + ${n:-0}))
    echo "$e"
}
# Load generators run under bash's `time`: near 100 % of their core means the client, not the
# proxy, set the pace.
TIMEFORMAT='%R %U %S'
client_share() { # client_share TIMEFILE -> percent of one core used by the load generator
    awk '/^[0-9.]+ [0-9.]+ [0-9.]+$/ {r = $1; c = $2 + $3} END {if (r > 0) printf "%.0f", 100 * c / r; else print 0}' "$1"
}

# ---- throughput and p99: wrk, rounds interleaved over the scenarios --------------------------
# Every list below holds one value per round; the table shows medians (and the req/s range).
RPS=(); P99=(); ERRS=(); CPUS=(); NOTES=(); CLIENT=(); SERVER=(); PER_CORE=(); ORIG=(); MEASURED=()
for i in "${!S_NAME[@]}"; do
    RPS[$i]=""; P99[$i]=""; ERRS[$i]=0; CPUS[$i]=""; NOTES[$i]=""; CLIENT[$i]=""; SERVER[$i]=""; PER_CORE[$i]=""
    ORIG[$i]=0; MEASURED[$i]=0
done
for r in $(seq 1 "$WRK_ROUNDS"); do
    for i in "${!S_NAME[@]}"; do
        only "${S_PID[$i]}"
        url=${S_URL[$i]}
        c0=$(origin_count)
        if [ "$r" = 1 ]; then
            timeout 10 "${CLIENT_PIN[@]}" wrk -t1 -c$CONNS -d1s "$url" >/dev/null 2>&1 || true
            c1=$(origin_count)
            log "${S_NAME[$i]} ${S_OBJ[$i]}: 1 s wrk warm-up, origin requests: $((c1 - c0))"
            c0=$c1
        fi
        t0=$(cpu_ns "${S_PID[$i]}")
        out=$( { time timeout $((DURATION + 15)) "${CLIENT_PIN[@]}" wrk -t1 -c$CONNS -d"${DURATION}s" --latency "$url" 2>&1; } 2>"$WORK/time" ) || true
        t1=$(cpu_ns "${S_PID[$i]}")
        c1=$(origin_count)
        rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
        p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
        n=$(awk '/ requests in / {print $1}' <<<"$out")
        [ -n "$rps" ] && [ -n "$p99" ] && [ -n "$n" ] || { echo "$out" >&2; die "${S_NAME[$i]} ${S_OBJ[$i]}: cannot parse wrk output"; }
        e=$(wrk_errors "$out")
        [ "$e" = 0 ] || log "${S_NAME[$i]} ${S_OBJ[$i]}: wrk reported errors: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ')"
        # The proxy's share of its core during the run: below ~100 % something else (other jobs on
        # a shared machine, the client) set the pace; requests per proxy CPU-second do not depend on it.
        server=$(awk -v d=$((t1 - t0)) '/^[0-9.]+ [0-9.]+ [0-9.]+$/ {r = $1} END {if (r > 0) printf "%.0f", 100 * d / 1e9 / r; else print 0}' "$WORK/time")
        per_core=$(awk -v d=$((t1 - t0)) -v n="$n" 'BEGIN {if (d > 0) printf "%.0f", n / (d / 1e9); else print 0}')
        client=$(client_share "$WORK/time")
        RPS[$i]="${RPS[$i]} $rps"; P99[$i]="${P99[$i]} $(to_ms "$p99")"; ERRS[$i]=$(( ERRS[i] + e ))
        SERVER[$i]="${SERVER[$i]} $server"; PER_CORE[$i]="${PER_CORE[$i]} $per_core"; CLIENT[$i]="${CLIENT[$i]} $client"
        ORIG[$i]=$(( ORIG[i] + c1 - c0 )); MEASURED[$i]=$(( MEASURED[i] + n ))
        log "round $r/$WRK_ROUNDS, ${S_NAME[$i]} ${S_OBJ[$i]}: $rps req/s, p99 $(to_ms "$p99") ms, proxy at $server% of a core ($per_core req per proxy CPU-second), wrk at $client%; origin requests $((c1 - c0)) of $n"
    done
done

# ---- CPU per request at a fixed rate: h2load, rounds interleaved over the scenarios ----------
for r in $(seq 1 "$ROUNDS"); do
    for i in "${!S_NAME[@]}"; do
        only "${S_PID[$i]}"
        url=${S_URL[$i]}
        c0=$(origin_count)
        t0=$(cpu_ns "${S_PID[$i]}")
        out=$(timeout $((RATE_DURATION + 15)) "${CLIENT_PIN[@]}" h2load --h1 -c "$RATE_CONNS" --rps "$RATE_PER_CONN" -D "$RATE_DURATION" "$url" 2>&1) || true
        t1=$(cpu_ns "${S_PID[$i]}")
        c1=$(origin_count)
        # requests: N total, N started, N done, N succeeded, N failed, ...; status codes: N 2xx, ...
        done_n=$(awk '/^requests:/ {print $6}' <<<"$out")
        codes2=$(awk '/^status codes:/ {print $3}' <<<"$out")
        [ -n "$done_n" ] && [ "$done_n" -gt 0 ] || { echo "$out" >&2; die "${S_NAME[$i]} ${S_OBJ[$i]}: cannot parse h2load output"; }
        if [ "$codes2" != "$done_n" ]; then
            log "${S_NAME[$i]} ${S_OBJ[$i]}: h2load: $(grep -E '^requests:|^status codes:' <<<"$out" | tr '\n' ' ')"
            ERRS[$i]=$(( ERRS[i] + done_n - ${codes2:-0} ))
        fi
        if [ "$done_n" -lt $(( RATE * RATE_DURATION * 95 / 100 )) ]; then
            NOTES[$i]="fixed rate reached only $((done_n / RATE_DURATION)) req/s"
        fi
        ORIG[$i]=$(( ORIG[i] + c1 - c0 )); MEASURED[$i]=$(( MEASURED[i] + done_n ))
        cpu=$(awk -v d=$((t1 - t0)) -v n="$done_n" 'BEGIN {printf "%.1f", d / 1e3 / n}')
        log "round $r/$ROUNDS, ${S_NAME[$i]} ${S_OBJ[$i]}: $cpu µs CPU/req ($(( (t1 - t0) / 1000000 )) ms / $done_n req), origin requests $((c1 - c0))"
        CPUS[$i]="${CPUS[$i]} $cpu"
    done
done
only ""

# maitred's own account of its cache (admin /metrics), as a cross-check of the origin count.
metrics=$(curl -s -m 5 "http://127.0.0.1:$ADMIN_PORT/metrics" | grep '^maitred_cache_' || true)
[ -n "$metrics" ] && log "maitred cache metrics after the runs:"$'\n'"$metrics"

# ---- table -----------------------------------------------------------------------------------
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk -v f="${2:-%.1f}" '{v[NR] = $1} END {if (NR == 0) {print "n/a"; exit} printf f, NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
range() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {if (NR > 1) printf " (%s–%s)", lo, hi}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%.2f×", a / b; else print "n/a"}'; }

echo
DIRTY=""; [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] && DIRTY=" (working tree with uncommitted changes)"
echo "maitred cache benchmark, $(date -u +%Y-%m-%d), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$DIRTY, binary built $(date -u -r "$MAITRED" '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
echo "Origin: nginx, 1 worker, static files with \`Cache-Control: max-age=3600\`. nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), 1 worker: \`proxy_cache\` (\`proxy_cache_path\` on disk, \`keys_zone\` 10m, \`proxy_cache_valid 200 1h\`, \`proxy_cache_lock on\`, \`sendfile on\`, upstream keepalive). maitred: \`workers = 1\`, route \`${CACHE_LINE:-(no cache)}\`. $PIN_DESC."
echo "Both caches warmed first (one miss each). req/s, p99: \`wrk -t1 -c$CONNS -d${DURATION}s --latency\`, median of $WRK_ROUNDS interleaved rounds (req/s range); \"proxy core use\": the proxy's on-CPU time over that run's wall time (below ~100 %, other load on the server CPU or the client set the pace); \"req/s per proxy core\": that run's requests per proxy CPU-second. CPU µs/req: on-CPU time (schedstat) of the proxy during a fixed $RATE req/s load (\`h2load --h1 -c$RATE_CONNS --rps $RATE_PER_CONN -D $RATE_DURATION\`), median of $ROUNDS interleaved rounds (range). \"origin requests\": requests that reached the origin during the measured runs / requests measured (0 = every request a hit)."
echo
echo "| object | proxy | req/s | p99 (ms) | proxy core use | req/s per proxy core | CPU µs/req at $RATE req/s | req/s maitred/nginx | req/s per core maitred/nginx | CPU/req maitred/nginx | origin requests | errors, notes |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
for i in "${!S_NAME[@]}"; do
    cpu=$(median "${CPUS[$i]}"); rps=$(median "${RPS[$i]}" %.0f); per_core=$(median "${PER_CORE[$i]}" %.0f)
    client=$(median "${CLIENT[$i]}" %.0f)
    r_ratio=""; k_ratio=""; c_ratio=""
    if [ "${S_PROXY[$i]}" = maitred ]; then
        b=$((i - 1))   # the nginx row of the same object
        r_ratio=$(ratio "$rps" "$(median "${RPS[$b]}" %.0f)")
        k_ratio=$(ratio "$per_core" "$(median "${PER_CORE[$b]}" %.0f)")
        c_ratio=$(ratio "$cpu" "$(median "${CPUS[$b]}")")
    fi
    note=${NOTES[$i]}
    [ "$client" -ge 90 ] && note="${note:+$note; }client-bound: wrk at $client% of its core"
    [ "${ORIG[$i]}" = 0 ] || note="${note:+$note; }NOT ALL HITS"
    echo "| $(obj_bytes "${S_OBJ[$i]}") B (${S_OBJ[$i]}) | ${S_NAME[$i]} | $rps$(range "${RPS[$i]}") | $(median "${P99[$i]}" %.2f) | $(median "${SERVER[$i]}" %.0f) % | $per_core | $cpu$(range "${CPUS[$i]}") | $r_ratio | $k_ratio | $c_ratio | ${ORIG[$i]} / ${MEASURED[$i]} | ${ERRS[$i]}${note:+ ($note)} |"
done
echo
echo "Cache headers of a warm hit: $(for i in "${!S_NAME[@]}"; do printf '%s %s: `%s`; ' "${S_NAME[$i]}" "${S_OBJ[$i]}" "${S_STATUS[$i]:-none}"; done | sed 's/; $/./')"
