#!/usr/bin/env bash
# maitred WAF benchmark (issue 7): what the `waf` plugin with the OWASP Core Rule Set costs
# per request through the proxy:
#   - backend: nginx, 1 worker, `return 200 "hello\n"`;
#   - maitred: `workers = 1`, one process with two listeners, each with one route to the
#     backend: "no WAF" (no plugin) and "WAF" (plugins = ["waf"]: Debian's CRS 3.3, the
#     request rules `REQUEST-*.conf` after `crs-setup.conf`, paranoia level 1, inbound
#     threshold 5, blocking mode);
#   - the peer: nginx + ModSecurity v3 (libmodsecurity3 through the ModSecurity-nginx module),
#     1 worker, one process with two servers reverse-proxying to the same backend (upstream
#     keepalive): "nginx" (no ModSecurity) and "nginx ModSecurity" (the same CRS files, the same
#     PL and threshold, SecRuleEngine On, request body access with a 1 MiB limit, audit log off);
#   - two requests, both GETs with a browser's header set: a benign one
#     (`/products/shoes?color=blue&size=42&page=2`) and a SQL injection
#     (`/?id=1' OR '1'='1`), which the WAF answers 403 (counted as expected, not as errors).
# For every request and route: wrk saturated (req/s, p99, proxy CPU per request) and fixed-rate
# h2load (proxy CPU µs/request), both in rounds interleaved over the scenarios. Every response's
# status class is checked with maitred's per-route request counters (admin /metrics) and the
# plugin's traps and timeouts must stay at 0; for nginx, with wrk's non-2xx count and h2load's
# status classes.
# Prints two markdown tables on stdout (progress goes to stderr): every scenario, and maitred's
# WAF against nginx + ModSecurity (CPU per request).
#
# Usually run by `cargo xtask bench --waf`; when run directly it builds what is missing (proxy,
# waf.wasm) and apt-get installs wrk, nginx-light, nghttp2-client, curl, modsecurity-crs,
# libnginx-mod-http-modsecurity.
# Knobs (environment):
#   DURATION=8        seconds of one `wrk -t1 -c32 --latency` run (req/s, p99)
#   WRK_ROUNDS=3      wrk rounds, interleaved over the scenarios; medians are reported
#   RATE=1000         fixed request rate (req/s) of the CPU-per-request runs (below what one
#                     core does through the WAF)
#   RATE_DURATION=4   seconds of one fixed-rate run
#   ROUNDS=3          fixed-rate rounds, interleaved over the scenarios; the median is reported
#   PIN=1             1: servers on CPU 0, load generators on CPU 1 (taskset); 0: no pinning
#   PORT_BASE=31000   backend on PORT_BASE, maitred no WAF on +1, WAF on +2, admin on +3,
#                     nginx without ModSecurity on +4, with it on +5
#   PARANOIA=1        the CRS paranoia level
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=${DURATION:-8}
RATE=${RATE:-1000}
RATE_DURATION=${RATE_DURATION:-4}
ROUNDS=${ROUNDS:-3}
WRK_ROUNDS=${WRK_ROUNDS:-3}
PIN=${PIN:-1}
PORT_BASE=${PORT_BASE:-31000}
PARANOIA=${PARANOIA:-1}
CONNS=32
RATE_CONNS=$(( (RATE + 99) / 100 ))   # h2load --rps is per connection: <=100 each (see run.sh)
RATE_PER_CONN=$(( RATE / RATE_CONNS ))
RATE=$(( RATE_PER_CONN * RATE_CONNS ))

BACKEND_PORT=$PORT_BASE
PLAIN_PORT=$((PORT_BASE + 1))
WAF_PORT=$((PORT_BASE + 2))
ADMIN_PORT=$((PORT_BASE + 3))
NGX_PLAIN_PORT=$((PORT_BASE + 4))
NGX_MODSEC_PORT=$((PORT_BASE + 5))

CRS_SETUP=/etc/modsecurity/crs/crs-setup.conf
CRS_RULES=/usr/share/modsecurity-crs/rules

# ---- tools -----------------------------------------------------------------------------------
need wrk wrk
need nginx nginx-light
need h2load nghttp2-client
need curl curl
need taskset util-linux
[ -f "$CRS_SETUP" ] && [ -d "$CRS_RULES" ] || apt_install modsecurity-crs
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
MODSEC_MODULE=/usr/lib/nginx/modules/ngx_http_modsecurity_module.so
[ -f "$MODSEC_MODULE" ] || apt_install libnginx-mod-http-modsecurity

MAITRED=$TARGET/release/maitred
if [ ! -x "$MAITRED" ]; then
    log "proxy missing: cargo build --release -p maitred"
    (cd "$ROOT" && cargo build --release -p maitred) >&2
fi
WAF_WASM=$TARGET/wasm32-wasip2/release/waf.wasm
if [ ! -f "$WAF_WASM" ]; then
    log "plugin missing: cargo build -p waf --target wasm32-wasip2 --release"
    (cd "$ROOT" && cargo build -p waf --target wasm32-wasip2 --release) >&2
fi

# ---- process management ----------------------------------------------------------------------
init_work maitred-waf
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
init_pinning "servers (backend, proxy)"

wait_ready() { # wait_ready URL PID: URL answers 200
    local i
    for i in $(seq 1 600); do
        kill -0 "$2" 2>/dev/null || return 1
        [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$1" || true)" = 200 ] && return 0
        sleep 0.05
    done
    return 1
}

# ---- configs ---------------------------------------------------------------------------------
mkdir -p "$WORK/backend"
cat >"$WORK/backend/nginx.conf" <<EOF
worker_processes 1;
error_log $WORK/backend/error.log warn;
pid $WORK/backend/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/backend/body;
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        location / { return 200 "hello\n"; }
    }
}
EOF

# The WAF's call deadline is raised from the default 10 ms: the deadline is wall-clock time, and
# on a shared machine a call descheduled for a while would otherwise fail (closed, 500).
cat >"$WORK/maitred.toml" <<EOF
[runtime]
workers = 1

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[[listener]]
name = "plain"
listen = "127.0.0.1:$PLAIN_PORT"

[[listener]]
name = "waf"
listen = "127.0.0.1:$WAF_PORT"

[[route]]
listener = "plain"
path_prefix = "/"
upstream = "backend"

[[route]]
listener = "waf"
path_prefix = "/"
upstream = "backend"
plugins = ["waf"]

[upstream.backend]
endpoints = ["127.0.0.1:$BACKEND_PORT"]

[plugin.waf]
wasm = "$WAF_WASM"
files = ["/etc/modsecurity/crs", "/usr/share/modsecurity-crs"]
timeout = "100ms"

[plugin.waf.config]
include = ["$CRS_SETUP", "$CRS_RULES/REQUEST-*.conf"]
paranoia_level = $PARANOIA
inbound_threshold = 5
mode = "block"
EOF
ROUTE_LABEL=("route[0]" "route[1]")   # no WAF, WAF (the routes' order above)

# The peer: nginx + ModSecurity v3 with the same CRS files and settings. Debian's nginx config
# (modules-enabled) is not used, so the module is loaded here.
mkdir -p "$WORK/modsec/tmp"
cat >"$WORK/modsec/main.conf" <<EOF
SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit 1048576
SecRequestBodyNoFilesLimit 1048576
SecRequestBodyLimitAction Reject
SecResponseBodyAccess Off
SecAuditEngine Off
SecDebugLogLevel 0
SecTmpDir $WORK/modsec/tmp
SecDataDir $WORK/modsec/tmp
Include $CRS_SETUP
SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level=$PARANOIA"
SecAction "id:900110,phase:1,nolog,pass,t:none,setvar:tx.inbound_anomaly_score_threshold=5"
Include $CRS_RULES/REQUEST-*.conf
EOF
cat >"$WORK/modsec/nginx.conf" <<EOF
load_module $MODSEC_MODULE;
worker_processes 1;
error_log $WORK/modsec/error.log warn;
pid $WORK/modsec/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/modsec/body;
    proxy_temp_path $WORK/modsec/proxy;
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGX_PLAIN_PORT backlog=4096;
        location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
    server {
        listen 127.0.0.1:$NGX_MODSEC_PORT backlog=4096;
        modsecurity on;
        modsecurity_rules_file $WORK/modsec/main.conf;
        location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF

"$NGINX" -p "$WORK/backend" -c "$WORK/backend/nginx.conf" -t -q 2>"$WORK/backend/check.log" \
    || { cat "$WORK/backend/check.log" >&2; die "bad nginx config $WORK/backend/nginx.conf"; }
"$NGINX" -p "$WORK/modsec" -c "$WORK/modsec/nginx.conf" -t 2>"$WORK/modsec/check.log" \
    || { cat "$WORK/modsec/check.log" >&2; die "bad nginx + ModSecurity config $WORK/modsec/nginx.conf"; }
MODSEC_RULES=$(grep -o 'rules loaded inline/local/remote: [0-9/]*' "$WORK/modsec/check.log" | head -1 || true)
if ! "$MAITRED" check --config "$WORK/maitred.toml" >"$WORK/check.log" 2>&1; then
    cat "$WORK/check.log" >&2
    die "bad maitred config"
fi

# ---- start everything ------------------------------------------------------------------------
for p in $BACKEND_PORT $PLAIN_PORT $WAF_PORT $ADMIN_PORT $NGX_PLAIN_PORT $NGX_MODSEC_PORT; do
    port_free "$p" || die "port $p is in use (set PORT_BASE)"
done
start() { # start NAME URL LOG COMMAND...: runs COMMAND on the server CPU, sets STARTED
    local name=$1 url=$2 logf=$3
    shift 3
    "${SERVER_PIN[@]}" "$@" >"$logf" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
    wait_ready "$url" "$STARTED" || { cat "$logf" >&2; die "$name did not start"; }
}
start backend "http://127.0.0.1:$BACKEND_PORT/" "$WORK/backend/stderr.log" \
    "$NGINX" -p "$WORK/backend" -c "$WORK/backend/nginx.conf" -g 'daemon off;'
t0=$(date +%s%N)
start maitred "http://127.0.0.1:$WAF_PORT/" "$WORK/maitred.log" \
    "$MAITRED" run --config "$WORK/maitred.toml"
MD_PID=$STARTED
START_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
# The plugin's init report: rules loaded, skipped, ignored.
sed 's/\x1b\[[0-9;]*m//g' "$WORK/maitred.log" >"$WORK/maitred.init.log"
WAF_SUMMARY=$(grep -o 'waf: [0-9]* rules loaded (request phases 1-2), [0-9]* skipped as unsupported, [0-9]* response-phase rules not run' "$WORK/maitred.init.log" | head -1 || true)
log "maitred ready in $START_MS ms (WAF rule set loaded); ${WAF_SUMMARY:-no rule summary in the log}"
grep -o 'waf: skipped .*' "$WORK/maitred.init.log" | sed 's/ plugin=.*//' | while read -r line; do log "  $line"; done
t0=$(date +%s%N)
start "nginx + ModSecurity" "http://127.0.0.1:$NGX_MODSEC_PORT/" "$WORK/modsec/stderr.log" \
    "$NGINX" -p "$WORK/modsec" -c "$WORK/modsec/nginx.conf" -g 'daemon off;'
NGX_PID=$STARTED
NGX_START_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
MODSEC_VERSION=$(dpkg-query -W -f='${Version}' libmodsecurity3 2>/dev/null || echo '?')
log "nginx + ModSecurity $MODSEC_VERSION ready in $NGX_START_MS ms (${MODSEC_RULES:-no rule count in the log})"

# ---- requests ----------------------------------------------------------------------------------
# What Firefox sends for a page load (with a session cookie); Host and Connection come from the
# load generators.
HEADERS=(
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    "Accept-Language: en-US,en;q=0.5"
    "Accept-Encoding: gzip, deflate, br"
    "Referer: http://127.0.0.1/"
    "Cookie: session=6f1c2a9e8b7d4c3f; theme=dark"
    "Upgrade-Insecure-Requests: 1"
)
HARGS=(); for h in "${HEADERS[@]}"; do HARGS+=(-H "$h"); done
BENIGN_PATH="/products/shoes?color=blue&size=42&page=2"
ATTACK_PATH="/?id=1%27%20OR%20%271%27%3D%271"

# S_ROUTE: maitred's route label (its counters check the statuses), empty for nginx (wrk's and
# h2load's status counts do). S_PID: the measured server. S_BASE: the row of the same proxy
# without the WAF (empty for the rows without one).
S_NAME=(); S_REQ=(); S_URL=(); S_ROUTE=(); S_STATUS=(); S_PID=(); S_BASE=()
for req in benign attack; do
    path=$BENIGN_PATH; [ "$req" = attack ] && path=$ATTACK_PATH
    blocked=200; [ "$req" = attack ] && blocked=403
    b=${#S_NAME[@]}
    S_NAME+=("no WAF"); S_REQ+=("$req"); S_URL+=("http://127.0.0.1:$PLAIN_PORT$path")
    S_ROUTE+=("${ROUTE_LABEL[0]}"); S_STATUS+=(200); S_PID+=("$MD_PID"); S_BASE+=("")
    S_NAME+=("WAF (CRS PL$PARANOIA)"); S_REQ+=("$req"); S_URL+=("http://127.0.0.1:$WAF_PORT$path")
    S_ROUTE+=("${ROUTE_LABEL[1]}"); S_STATUS+=("$blocked"); S_PID+=("$MD_PID"); S_BASE+=("$b")
    S_NAME+=("nginx"); S_REQ+=("$req"); S_URL+=("http://127.0.0.1:$NGX_PLAIN_PORT$path")
    S_ROUTE+=(""); S_STATUS+=(200); S_PID+=("$NGX_PID"); S_BASE+=("")
    S_NAME+=("nginx ModSecurity (CRS PL$PARANOIA)"); S_REQ+=("$req"); S_URL+=("http://127.0.0.1:$NGX_MODSEC_PORT$path")
    S_ROUTE+=(""); S_STATUS+=("$blocked"); S_PID+=("$NGX_PID"); S_BASE+=("$((b + 2))")
done

# Every scenario answers what it should.
for i in "${!S_NAME[@]}"; do
    code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "${HARGS[@]}" "${S_URL[$i]}" || true)
    [ "$code" = "${S_STATUS[$i]}" ] || die "${S_NAME[$i]}, ${S_REQ[$i]}: got $code, expected ${S_STATUS[$i]} ($(tail -3 "$WORK/maitred.log" "$WORK/modsec/error.log"))"
    log "${S_NAME[$i]}, ${S_REQ[$i]} request: $code as expected"
done

# maitred's own counters (admin /metrics): responses of a route by status class, and the WAF
# plugin's failures.
metrics() { curl -s -m 5 "http://127.0.0.1:$ADMIN_PORT/metrics"; }
route_count() { # route_count METRICS ROUTE CLASS -> responses of ROUTE in CLASS (e.g. 4xx)
    awk -v r="route=\"$2\"" -v c="status=\"$3\"" '/^maitred_requests_total\{/ && index($0, r) && index($0, c) {s += $NF} END {printf "%d", s}' <<<"$1"
}
plugin_failures() { # plugin_failures METRICS -> traps + timeouts of the waf plugin
    awk '/^maitred_plugin_(traps|timeouts)_total\{/ && /plugin="waf"/ {s += $NF} END {printf "%d", s}' <<<"$1"
}
# unexpected BEFORE AFTER ROUTE EXPECTED_STATUS -> responses of ROUTE outside the expected class
unexpected() {
    local class=${4:0:1}xx total=0 ok c
    for c in 1xx 2xx 3xx 4xx 5xx; do
        total=$(( total + $(route_count "$2" "$3" $c) - $(route_count "$1" "$3" $c) ))
    done
    ok=$(( $(route_count "$2" "$3" "$class") - $(route_count "$1" "$3" "$class") ))
    echo $(( total - ok + $(plugin_failures "$2") - $(plugin_failures "$1") ))
}
# For nginx, which has no per-status counters without an access log:
wrk_unexpected() { # wrk_unexpected OUTPUT REQUESTS EXPECTED_STATUS -> responses of the wrong kind
    local non2xx
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$1")
    non2xx=${non2xx:-0}
    if [ "$3" = 200 ]; then echo "$non2xx"; else echo $(( $2 - non2xx )); fi
}
h2load_unexpected() { # h2load_unexpected OUTPUT EXPECTED_STATUS -> responses outside its class
    # status codes: N 2xx, N 3xx, N 4xx, N 5xx
    awk -v c="${2:0:1}" '/^status codes:/ {gsub(/,/, ""); t = $3 + $5 + $7 + $9; ok = $(2 * c - 1); print t - ok}' <<<"$1"
}
[ -n "$(metrics | grep '^maitred_requests_total')" ] || die "no maitred_requests_total in the admin /metrics"

wrk_socket_errors() { # wrk_socket_errors OUTPUT
    local n
    n=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' <<<"$1")
    echo "${n:-0}"
}
# Load generators run under bash's `time`: near 100 % of their core means the client, not the
# proxy, set the pace.
TIMEFORMAT='%R %U %S'
client_share() { # client_share TIMEFILE -> percent of one core used by the load generator
    awk '/^[0-9.]+ [0-9.]+ [0-9.]+$/ {r = $1; c = $2 + $3} END {if (r > 0) printf "%.0f", 100 * c / r; else print 0}' "$1"
}

# ---- throughput and p99: wrk, rounds interleaved over the scenarios --------------------------
RPS=(); P99=(); ERRS=(); CPUS=(); NOTES=(); CLIENT=(); SERVER=(); PER_CORE=(); WCPU=()
for i in "${!S_NAME[@]}"; do
    RPS[$i]=""; P99[$i]=""; ERRS[$i]=0; CPUS[$i]=""; NOTES[$i]=""; CLIENT[$i]=""; SERVER[$i]=""; PER_CORE[$i]=""; WCPU[$i]=""
done
for r in $(seq 1 "$WRK_ROUNDS"); do
    for i in "${!S_NAME[@]}"; do
        url=${S_URL[$i]}
        if [ "$r" = 1 ]; then
            timeout 10 "${CLIENT_PIN[@]}" wrk -t1 -c$CONNS -d1s "${HARGS[@]}" "$url" >/dev/null 2>&1 || true
        fi
        m0=$(metrics)
        t0=$(cpu_ns "${S_PID[$i]}")
        out=$( { time timeout $((DURATION + 15)) "${CLIENT_PIN[@]}" wrk -t1 -c$CONNS -d"${DURATION}s" --latency "${HARGS[@]}" "$url" 2>&1; } 2>"$WORK/time" ) || true
        t1=$(cpu_ns "${S_PID[$i]}")
        m1=$(metrics)
        rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
        p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
        n=$(awk '/ requests in / {print $1}' <<<"$out")
        [ -n "$rps" ] && [ -n "$p99" ] && [ -n "$n" ] || { echo "$out" >&2; die "${S_NAME[$i]} ${S_REQ[$i]}: cannot parse wrk output"; }
        # wrk counts the 403s as "Non-2xx"; the status classes come from maitred's counters.
        if [ -n "${S_ROUTE[$i]}" ]; then
            e=$(( $(wrk_socket_errors "$out") + $(unexpected "$m0" "$m1" "${S_ROUTE[$i]}" "${S_STATUS[$i]}") ))
        else
            e=$(( $(wrk_socket_errors "$out") + $(wrk_unexpected "$out" "$n" "${S_STATUS[$i]}") ))
        fi
        [ "$e" = 0 ] || log "${S_NAME[$i]} ${S_REQ[$i]}: $e errors or unexpected statuses: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ')"
        server=$(awk -v d=$((t1 - t0)) '/^[0-9.]+ [0-9.]+ [0-9.]+$/ {r = $1} END {if (r > 0) printf "%.0f", 100 * d / 1e9 / r; else print 0}' "$WORK/time")
        per_core=$(awk -v d=$((t1 - t0)) -v n="$n" 'BEGIN {if (d > 0) printf "%.0f", n / (d / 1e9); else print 0}')
        wcpu=$(awk -v d=$((t1 - t0)) -v n="$n" 'BEGIN {printf "%.1f", d / 1e3 / n}')
        client=$(client_share "$WORK/time")
        RPS[$i]="${RPS[$i]} $rps"; P99[$i]="${P99[$i]} $(to_ms "$p99")"; ERRS[$i]=$(( ERRS[i] + e ))
        SERVER[$i]="${SERVER[$i]} $server"; PER_CORE[$i]="${PER_CORE[$i]} $per_core"; CLIENT[$i]="${CLIENT[$i]} $client"
        WCPU[$i]="${WCPU[$i]} $wcpu"
        log "round $r/$WRK_ROUNDS, ${S_NAME[$i]}, ${S_REQ[$i]}: $rps req/s, p99 $(to_ms "$p99") ms, proxy at $server% of a core ($wcpu µs CPU/req), wrk at $client%"
    done
done

# ---- CPU per request at a fixed rate: h2load, rounds interleaved over the scenarios ----------
for r in $(seq 1 "$ROUNDS"); do
    for i in "${!S_NAME[@]}"; do
        url=${S_URL[$i]}
        m0=$(metrics)
        t0=$(cpu_ns "${S_PID[$i]}")
        out=$(timeout $((RATE_DURATION + 15)) "${CLIENT_PIN[@]}" h2load --h1 -c "$RATE_CONNS" --rps "$RATE_PER_CONN" -D "$RATE_DURATION" "${HARGS[@]}" "$url" 2>&1) || true
        t1=$(cpu_ns "${S_PID[$i]}")
        m1=$(metrics)
        # requests: N total, N started, N done, N succeeded, N failed, ...
        done_n=$(awk '/^requests:/ {print $6}' <<<"$out")
        # h2load counts the 403s as "failed": its own errors are "errored" and "timeout"; the
        # status classes come from maitred's counters.
        failed=$(awk '/^requests:/ {print $12 + $14}' <<<"$out")
        [ -n "$done_n" ] && [ "$done_n" -gt 0 ] || { echo "$out" >&2; die "${S_NAME[$i]} ${S_REQ[$i]}: cannot parse h2load output"; }
        if [ -n "${S_ROUTE[$i]}" ]; then
            e=$(( ${failed:-0} + $(unexpected "$m0" "$m1" "${S_ROUTE[$i]}" "${S_STATUS[$i]}") ))
        else
            u=$(h2load_unexpected "$out" "${S_STATUS[$i]}")
            e=$(( ${failed:-0} + ${u:-1} ))
        fi
        if [ "$e" != 0 ]; then
            log "${S_NAME[$i]} ${S_REQ[$i]}: h2load: $(grep -E '^requests:|^status codes:' <<<"$out" | tr '\n' ' ')"
            ERRS[$i]=$(( ERRS[i] + e ))
        fi
        if [ "$done_n" -lt $(( RATE * RATE_DURATION * 95 / 100 )) ]; then
            NOTES[$i]="fixed rate reached only $((done_n / RATE_DURATION)) req/s"
        fi
        cpu=$(awk -v d=$((t1 - t0)) -v n="$done_n" 'BEGIN {printf "%.1f", d / 1e3 / n}')
        log "round $r/$ROUNDS, ${S_NAME[$i]}, ${S_REQ[$i]}: $cpu µs CPU/req ($(( (t1 - t0) / 1000000 )) ms / $done_n req)"
        CPUS[$i]="${CPUS[$i]} $cpu"
    done
done

m=$(metrics)
log "maitred counters after the runs:"$'\n'"$(grep -E '^maitred_(requests_total\{.*(2xx|4xx|5xx)|plugin_(calls|traps|timeouts)_total)' <<<"$m" | awk '$NF != 0')"

# ---- table -----------------------------------------------------------------------------------
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk -v f="${2:-%.1f}" '{v[NR] = $1} END {if (NR == 0) {print "n/a"; exit} printf f, NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
range() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {if (NR > 1) printf " (%s–%s)", lo, hi}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%.2f×", a / b; else print "n/a"}'; }
diff_us() { awk -v a="$1" -v b="$2" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%+.0f", a - b; else print "n/a"}'; }

echo
DIRTY=""; [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] && DIRTY=" (working tree with uncommitted changes)"
echo "maitred WAF benchmark, $(date -u +%Y-%m-%d), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$DIRTY, binary built $(date -u -r "$MAITRED" '+%Y-%m-%d %H:%M UTC'), waf.wasm built $(date -u -r "$WAF_WASM" '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
echo "Backend: nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), 1 worker, \`return 200\`. maitred: \`workers = 1\`, one process, a route without plugins and a route with the \`waf\` plugin: OWASP CRS $(dpkg-query -W -f='${Version}' modsecurity-crs 2>/dev/null || echo '?') (\`crs-setup.conf\` + \`rules/REQUEST-*.conf\`), paranoia level $PARANOIA, inbound threshold 5, blocking${WAF_SUMMARY:+ ($WAF_SUMMARY)}; ready $START_MS ms after start. Peer: nginx + ModSecurity-nginx $(dpkg-query -W -f='${Version}' libnginx-mod-http-modsecurity 2>/dev/null || echo '?') + libmodsecurity3 $MODSEC_VERSION, 1 worker, one process with two servers proxying to the backend (upstream keepalive): without ModSecurity and with it (the same CRS files, paranoia level and threshold; request body access, 1 MiB limit, audit log off${MODSEC_RULES:+; $MODSEC_RULES}); ready $NGX_START_MS ms after start. $PIN_DESC."
echo "Requests: GET with a browser's headers; benign \`$BENIGN_PATH\`, attack \`$ATTACK_PATH\` (\`1' OR '1'='1\`, answered 403 by the WAFs, 200 by the backend without them). req/s, p99: \`wrk -t1 -c$CONNS -d${DURATION}s --latency\`, median of $WRK_ROUNDS interleaved rounds (range); \"CPU µs/req saturated\": the proxy's on-CPU time (schedstat) over those runs per request. CPU µs/req: the proxy's on-CPU time during a fixed $RATE req/s load (\`h2load --h1 -c$RATE_CONNS --rps $RATE_PER_CONN -D $RATE_DURATION\`), median of $ROUNDS interleaved rounds (range). errors: socket errors, h2load failures, and responses outside the expected status class or WAF traps/timeouts by maitred's counters (nginx: wrk's non-2xx count, h2load's status classes)."
echo
echo "| request | route | status | req/s | p99 (ms) | proxy core use | CPU µs/req saturated | CPU µs/req at $RATE req/s | req/s WAF/no WAF | CPU/req WAF/no WAF | WAF CPU µs/req | errors, notes |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
for i in "${!S_NAME[@]}"; do
    cpu=$(median "${CPUS[$i]}"); rps=$(median "${RPS[$i]}" %.0f); wcpu=$(median "${WCPU[$i]}")
    client=$(median "${CLIENT[$i]}" %.0f)
    r_ratio=""; c_ratio=""; added=""
    if [ -n "${S_BASE[$i]}" ]; then
        b=${S_BASE[$i]}   # the no-WAF row of the same proxy and request
        r_ratio=$(ratio "$rps" "$(median "${RPS[$b]}" %.0f)")
        c_ratio=$(ratio "$cpu" "$(median "${CPUS[$b]}")")
        added=$(diff_us "$cpu" "$(median "${CPUS[$b]}")")
    fi
    note=${NOTES[$i]}
    [ "$client" -ge 90 ] && note="${note:+$note; }client-bound: wrk at $client% of its core"
    echo "| ${S_REQ[$i]} | ${S_NAME[$i]} | ${S_STATUS[$i]} | $rps$(range "${RPS[$i]}") | $(median "${P99[$i]}" %.2f) | $(median "${SERVER[$i]}" %.0f) % | $wcpu | $cpu$(range "${CPUS[$i]}") | $r_ratio | $c_ratio | $added | ${ERRS[$i]}${note:+ ($note)} |"
done

# ---- maitred's WAF against nginx + ModSecurity -------------------------------------------------
echo
echo "maitred WAF against nginx + ModSecurity v3 with the same CRS: proxy CPU µs per request (medians above; \"added\": over the same proxy without its WAF)."
echo
echo "| request | maitred WAF CPU µs/req at $RATE req/s | nginx ModSecurity CPU µs/req at $RATE req/s | CPU/req maitred WAF / nginx ModSecurity | added µs/req maitred / nginx | CPU/req saturated maitred WAF / nginx ModSecurity | req/s maitred WAF / nginx ModSecurity |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for i in "${!S_NAME[@]}"; do
    case "${S_NAME[$i]}" in "WAF "*) ;; *) continue ;; esac
    n=$((i + 2)); w0=${S_BASE[$i]}; n0=${S_BASE[$n]}
    wc=$(median "${CPUS[$i]}"); nc=$(median "${CPUS[$n]}")
    wa=$(diff_us "$wc" "$(median "${CPUS[$w0]}")"); na=$(diff_us "$nc" "$(median "${CPUS[$n0]}")")
    echo "| ${S_REQ[$i]} | $wc | $nc | $(ratio "$wc" "$nc") | $wa / $na | $(ratio "$(median "${WCPU[$i]}")" "$(median "${WCPU[$n]}")") | $(ratio "$(median "${RPS[$i]}" %.0f)" "$(median "${RPS[$n]}" %.0f)") |"
done
