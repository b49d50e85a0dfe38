# Shared by the benchmark scripts (sourced): logging, installing tools, process trees,
# exact CPU accounting, work directory with cleanup, CPU pinning.
# The sourcing script sets `set -euo pipefail` and PIN (1: pin servers and clients).

log() { printf '%s\n' "bench: $*" >&2; }
die() { log "error: $*"; exit 1; }

apt_updated=0
apt_install() { # apt_install PACKAGE
    log "apt-get install -y $1"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "$1" >&2; then
        [ $apt_updated = 1 ] && die "cannot install $1"
        apt-get update >&2 && apt_updated=1
        DEBIAN_FRONTEND=noninteractive apt-get install -y "$1" >&2 || die "cannot install $1"
    fi
}
need() { # need COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    [ -x "/usr/sbin/$1" ] && return 0
    apt_install "$2"
}

children() { cat /proc/"$1"/task/*/children 2>/dev/null || true; }

# signal_tree SIG PID: PID and its children (nginx: master + worker). Servers not being
# measured are kept stopped (SIGSTOP) so they cost nothing, e.g. maitred's epoch ticker.
signal_tree() {
    local p
    for p in "$2" $(children "$2"); do kill -"$1" "$p" 2>/dev/null || true; done
}

# CPU time (ns, user + system) of every thread of PID and of its children, from the
# scheduler's own accounting (/proc/PID/task/TID/schedstat, field 1): exact, unlike the
# 10 ms clock ticks of /proc/PID/stat.
cpu_ns() {
    local total=0 p t
    for p in "$1" $(children "$1"); do
        for t in /proc/"$p"/task/*/schedstat; do
            [ -r "$t" ] || continue
            total=$(( total + $(cut -d' ' -f1 "$t" 2>/dev/null || echo 0) ))
        done
    done
    echo "$total"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

to_ms() { # wrk latency ("812.00us", "1.23ms", "1.02s") -> ms
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.2f", v * 60000 }
        else { sub(/s$/, "", v); printf "%.2f", v * 1000 } }'
}

# init_work PREFIX: a work directory ($WORK) and the list of started servers ($PIDS), both
# cleaned up on exit.
init_work() {
    WORK=$(mktemp -d -t "$1.XXXXXX")
    chmod 755 "$WORK"
    PIDS=()
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}
cleanup() {
    local p
    for p in "${PIDS[@]}"; do signal_tree CONT "$p"; kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}

# init_pinning WHAT: with PIN=1 and 2+ CPUs, SERVER_PIN/CLIENT_PIN run commands on CPU 0/1
# and PIN_DESC says "WHAT pinned to CPU 0, load generators to CPU 1".
init_pinning() {
    if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
        SERVER_PIN=(taskset -c 0); CLIENT_PIN=(taskset -c 1)
        PIN_DESC="$1 pinned to CPU 0, load generators to CPU 1"
    else
        SERVER_PIN=(); CLIENT_PIN=()
        PIN_DESC="no CPU pinning"
    fi
}
