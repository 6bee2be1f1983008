#!/usr/bin/env bash
# Starts an N-node p2p-chat network on 127.0.0.1 (default 10), sends one chat from the last node,
# shows which nodes received it, and stops every node it started.
#
#   examples/run_test_network.sh [N]
set -euo pipefail
n=${1:-10}
cd "$(dirname "$0")/.."
cargo build --release -q
bin=target/release/p2p-chat
work=$(mktemp -d)
pids=()
cleanup() {
  for fd in "${fds[@]:-}"; do exec {fd}>&- 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
fds=()
trap cleanup EXIT

start() { # start NAME ARGS... : node reading commands from a fifo, output in $work/NAME.out
  local name=$1; shift
  mkfifo "$work/$name.in"
  "$bin" "$@" <"$work/$name.in" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  local fd
  exec {fd}>"$work/$name.in"
  fds+=("$fd")
  eval "fd_$name=$fd"
}

wait_for() { # wait_for FILE TEXT
  for _ in $(seq 1 200); do grep -qF -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

start node1 listen -p 0 -u node1
wait_for "$work/node1.out" "listening on"
port=$(grep -o 'listening on [0-9.:]*' "$work/node1.out" | sed 's/.*://')
echo "node1 listens on 127.0.0.1:$port"
for i in $(seq 2 "$n"); do
  start "node$i" listen -p 0 -u "node$i" --bootstrap "127.0.0.1:$port"
done
for i in $(seq 2 "$n"); do wait_for "$work/node$i.out" "connected to" || echo "node$i has not connected"; done

text="hello from node$n at $(date +%T)"
fd_var="fd_node$n"
echo "$text" >&"${!fd_var}"
echo "node$n says: $text"
missing=0
for i in $(seq 1 "$n"); do
  if wait_for "$work/node$i.out" "$text"; then
    echo "  node$i received it"
  else
    echo "  node$i did NOT receive it"; missing=$((missing + 1))
  fi
done
echo "$((n - missing))/$n nodes received the chat"
[ "$missing" -eq 0 ]
