#!/usr/bin/env bash
# Starts an N-node p2p-chat network on 127.0.0.1 (default 10), sends one chat from the last node,
# shows which nodes received it, and stops every node it started.
#
#   examples/run_test_network.sh [N]
#
# Runs the binary cargo reports building (so $CARGO_TARGET_DIR is honoured); when a node fails,
# what it wrote to stderr is printed before the script exits non-zero.
set -euo pipefail
n=${1:-10}
cd "$(dirname "$0")/.."
# The binary where cargo says it put it (CARGO_TARGET_DIR or not).
bin=$(cargo build --release -q -p p2p-chat --bin p2p-chat --message-format=json-render-diagnostics \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "cargo built no p2p-chat binary" >&2
  exit 1
fi
work=$(mktemp -d)
pids=()
cleanup() {
  local status=$?
  # Braces: a redirection on `exec` itself would apply to the rest of the script.
  for fd in "${fds[@]:-}"; do { exec {fd}>&-; } 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    # What the nodes said before their files go: a node that failed to start says why here.
    for f in "$work"/*.err; do
      [ -s "$f" ] && { echo "$(basename "$f" .err) wrote to stderr:" >&2; sed 's/^/  /' "$f" >&2; }
    done
  fi
  rm -rf "$work"
}
fds=()
trap cleanup EXIT

start() { # start NAME ARGS... : node reading commands from a fifo, output in $work/NAME.out
  local name=$1; shift
  mkfifo "$work/$name.in"
  "$bin" "$@" --plain <"$work/$name.in" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  eval "pid_$name=$!"
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
wait_for "$work/node1.out" "listening on" || { echo "node1 did not start" >&2; exit 1; }
port=$(grep -o 'listening on [0-9.:]*' "$work/node1.out" | sed 's/.*://')
echo "node1 listens on 127.0.0.1:$port"
for i in $(seq 2 "$n"); do
  start "node$i" listen -p 0 -u "node$i" --bootstrap "127.0.0.1:$port"
done
for i in $(seq 2 "$n"); do
  wait_for "$work/node$i.out" "connected to" && continue
  pid_var="pid_node$i"
  if ! kill -0 "${!pid_var}" 2>/dev/null; then
    echo "node$i exited" >&2
    exit 1 # the cleanup prints what it wrote to stderr
  fi
  echo "node$i has not connected"
done

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
