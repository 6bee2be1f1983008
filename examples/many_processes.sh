#!/usr/bin/env bash
# Starts N real `p2p-chat listen` processes on 127.0.0.1 (default 200), each bootstrapping off up
# to three nodes started before it, sends one chat from the last node, and checks that every
# process displayed it. Prints how long that took, the peers each node had, and the RSS of each
# process (VmRSS). Stops every process it started.
#
#   examples/many_processes.sh [N] [--runtime mio|smol]
#
# Uses $CARGO_TARGET_DIR if set. Each node accepts at most 32 connections from one IP address
# (Config::max_conns_per_ip), and on 127.0.0.1 every node has the same IP: the bootstraps are
# spread so that no node is asked for more.
set -euo pipefail
n=${1:-200}
runtime=${3:-mio}
[ "${2:-}" = "--runtime" ] || runtime=mio
cd "$(dirname "$0")/.."
cargo build --release -q -p p2p-chat
bin=${CARGO_TARGET_DIR:-target}/release/p2p-chat
work=$(mktemp -d)
pids=()
fds=()
cleanup() {
  for fd in "${fds[@]:-}"; do exec {fd}>&- 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start() { # start I ARGS... : node I reading commands from a fifo, output in $work/I.out
  local i=$1; shift
  mkfifo "$work/$i.in"
  "$bin" "$@" <"$work/$i.in" >"$work/$i.out" 2>"$work/$i.err" &
  pids[i]=$!
  local fd
  exec {fd}>"$work/$i.in"
  fds[i]=$fd
}

wait_for() { # wait_for FILE TEXT [TRIES of 0.02 s]
  for _ in $(seq 1 "${3:-500}"); do grep -qF -- "$2" "$1" 2>/dev/null && return 0; sleep 0.02; done
  return 1
}

ports=()
t_start=$(date +%s.%N)
for i in $(seq 1 "$n"); do
  args=(listen -p 0 -u "node$i" --runtime "$runtime")
  if [ "$i" -gt 1 ]; then
    # The node just before, and two others at random among the earlier ones.
    for b in $((i - 1)) $((RANDOM % (i - 1) + 1)) $((RANDOM % (i - 1) + 1)); do
      args+=(--bootstrap "127.0.0.1:${ports[b]}")
    done
  fi
  start "$i" "${args[@]}"
  wait_for "$work/$i.out" "listening on" || { echo "node$i did not start"; cat "$work/$i.err"; exit 1; }
  ports[i]=$(grep -o 'listening on [0-9.:]*' "$work/$i.out" | sed 's/.*://')
done
echo "$n nodes started in $(echo "$(date +%s.%N) - $t_start" | bc) s"
unconnected=0
for i in $(seq 2 "$n"); do wait_for "$work/$i.out" "connected to" || unconnected=$((unconnected + 1)); done
echo "nodes without a connection: $unconnected"
sleep "${SETTLE_SECS:-5}" # let peer exchange mix the overlay

text="hello from node$n at $(date +%T.%N)"
t0=$(date +%s.%N)
echo "$text" >&"${fds[n]}"
missing=()
for i in $(seq 1 "$n"); do
  wait_for "$work/$i.out" "$text" 1500 || missing+=("$i")
done
t1=$(date +%s.%N)
reached=$((n - ${#missing[@]}))
echo "$reached/$n processes displayed the chat; the last after $(echo "$t1 - $t0" | bc) s (polled every 20 ms)"
[ "${#missing[@]}" -eq 0 ] || echo "missing: ${missing[*]}"

# Peers and memory of every process.
for i in $(seq 1 "$n"); do echo "/peers" >&"${fds[i]}"; done
sleep 1
peers=$(for i in $(seq 1 "$n"); do grep -o '[0-9]* peer(s):' "$work/$i.out" | tail -1 | grep -o '^[0-9]*' || echo 0; done | sort -n)
rss=$(for i in $(seq 1 "$n"); do awk '/VmRSS/ {print $2}' "/proc/${pids[i]}/status" 2>/dev/null || echo 0; done | sort -n)
stat() { # min median max of numbers on stdin
  awk '{v[NR]=$1} END {print "min " v[1] ", median " v[int((NR+1)/2)] ", max " v[NR]}'
}
echo "peers per node: $(echo "$peers" | stat)"
echo "RSS per process (KiB): $(echo "$rss" | stat); total $(echo "$rss" | awk '{s+=$1} END {print s}') KiB"
[ "${#missing[@]}" -eq 0 ]
