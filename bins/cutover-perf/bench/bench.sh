#!/usr/bin/env bash
# cutover-perf vs wrk, side by side in one run (the machines are shared and noisy, so only
# ratios taken together mean anything), plus the peak RSS of a long cutover-perf run.
#
#   bins/cutover-perf/bench/bench.sh [ROUNDS] [SECONDS] [CONNECTIONS] [RSS_SECONDS]
#   defaults:                         3        5         16            60
#
# Targets: (a) a private, unprivileged nginx serving a small static file (prefix, pid, logs
# and every *_temp_path under a temp dir, a free loopback port), (b) the demo hub (release
# build). Each round runs wrk then cutover-perf at the same connection count against the same
# target; the summary gives the median requests/s of each tool and their ratio.
# Needs the Debian packages wrk and nginx. Prints a Markdown table; machine-readable lines
# start with "RESULT". `cargo xtask bench` can call this script as it is.
set -euo pipefail

ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-5}
CONNECTIONS=${3:-16}
RSS_SECONDS=${4:-60}
THREADS=$(nproc)

for tool in wrk nginx python3; do
    command -v "$tool" >/dev/null || {
        echo "bench: $tool is missing; install it: apt-get install -y --no-install-recommends ${tool/python3/python3-minimal}" >&2
        exit 1
    }
done

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$ROOT"
cargo build --release -q -p cutover-perf -p cutover-demo-hub
PERF="$ROOT/target/release/cutover-perf"
HUB="$ROOT/target/release/cutover-demo-hub"

WORK=$(mktemp -d /tmp/cutover-perf-bench.XXXXXX)
# nginx started as root runs its workers as nobody, who must be able to read the files.
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# (a) private nginx.
NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx/html" "$WORK/nginx/logs"
head -c 612 /dev/zero | tr '\0' 'x' > "$WORK/nginx/html/index.html"
cat > "$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/client_temp;
    proxy_temp_path $WORK/nginx/proxy_temp;
    fastcgi_temp_path $WORK/nginx/fastcgi_temp;
    uwsgi_temp_path $WORK/nginx/uwsgi_temp;
    scgi_temp_path $WORK/nginx/scgi_temp;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/nginx/html;
    }
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/logs/error.log" &
PIDS+=($!)

# (b) the demo hub, release build.
"$HUB" --listen 127.0.0.1:0 --addr-file "$WORK/hub.addr" >/dev/null 2>&1 &
HUB_PID=$!
PIDS+=("$HUB_PID")

wait_for() { # URL
    for _ in $(seq 100); do
        if python3 - "$1" <<'PY' 2>/dev/null; then return 0; fi
import sys, urllib.request
body = urllib.request.urlopen(sys.argv[1], timeout=1).read().decode()
sys.exit(0 if ("ready" in body or "xxxx" in body) else 1)
PY
        sleep 0.1
    done
    echo "bench: $1 did not come up" >&2
    exit 1
}
for _ in $(seq 100); do [ -s "$WORK/hub.addr" ] && break; sleep 0.1; done
HUB_ADDR=$(cat "$WORK/hub.addr")
NGINX_URL="http://127.0.0.1:$NGINX_PORT/index.html"
HUB_URL="http://$HUB_ADDR/api/health"
wait_for "$NGINX_URL"
wait_for "$HUB_URL"

wrk_rps() { # URL
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" "$1" | awk '/^Requests\/sec:/ {print $2}'
}
perf_rps() { # URL
    "$PERF" run --url "$1" -c "$CONNECTIONS" -d "${SECONDS_PER_RUN}s" --json |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["requests_per_sec"], 2))'
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "| target | round | wrk req/s | cutover-perf req/s | ratio |"
echo "|---|---|---|---|---|"
for target in nginx hub; do
    url=$NGINX_URL
    [ "$target" = hub ] && url=$HUB_URL
    : > "$WORK/$target.wrk"
    : > "$WORK/$target.perf"
    : > "$WORK/$target.ratio"
    for round in $(seq "$ROUNDS"); do
        w=$(wrk_rps "$url")
        p=$(perf_rps "$url")
        echo "$w" >> "$WORK/$target.wrk"
        echo "$p" >> "$WORK/$target.perf"
        r=$(awk -v p="$p" -v w="$w" 'BEGIN {printf "%.3f", p/w}')
        echo "$r" >> "$WORK/$target.ratio"
        echo "| $target | $round | $w | $p | $r |"
    done
    mw=$(median < "$WORK/$target.wrk")
    mp=$(median < "$WORK/$target.perf")
    ratio=$(awk -v p="$mp" -v w="$mw" 'BEGIN {printf "%.3f", p/w}')
    mr=$(median < "$WORK/$target.ratio")
    echo "| $target | median of $ROUNDS | $mw | $mp | **$ratio** (median of per-round ratios: $mr) |"
    echo "RESULT target=$target connections=$CONNECTIONS threads=$THREADS wrk_rps=$mw perf_rps=$mp ratio=$ratio round_ratio_median=$mr" >&2
done

if [ "$RSS_SECONDS" -gt 0 ]; then
    # Peak RSS (VmHWM) of cutover-perf itself over a long closed-model run against nginx.
    /usr/bin/time -f '%M' -o "$WORK/rss" "$PERF" run --url "$NGINX_URL" -c "$CONNECTIONS" \
        -d "${RSS_SECONDS}s" --json > "$WORK/long.json"
    requests=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests"])' "$WORK/long.json")
    kib=$(tail -n1 "$WORK/rss")
    echo
    echo "cutover-perf peak RSS over a ${RSS_SECONDS}s run ($requests requests, $CONNECTIONS connections): $((kib / 1024)) MiB ($kib KiB)"
    echo "RESULT peak_rss_kib=$kib seconds=$RSS_SECONDS requests=$requests" >&2
fi
