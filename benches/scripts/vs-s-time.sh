#!/usr/bin/env bash
# Is handshake-load the bottleneck? Runs `openssl s_time -new` (full handshakes with a client certificate)
# and `handshake-load` against the same TLS server, interleaved, ROUNDS times each, and prints every run's
# handshakes/s, the medians and their ratio (the target: handshake-load at least 1.5x s_time).
#
#   benches/scripts/vs-s-time.sh HOST:PORT CERT KEY CA SERVER_ID [ROUNDS [SECONDS]]
#
# s_time only prints whole seconds of wall time, so its rate is its connection count over the wall time
# measured here. Environment:
#   HL_ARGS       extra handshake-load flags, e.g. "--no-confirm" (s_time's semantics) or "--concurrency 4"
#   CLIENT_CPUS   pin both clients with taskset to these CPUs (e.g. 0), to leave the server its own
set -euo pipefail

if [ $# -lt 5 ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
target=$1 server_id=$5 rounds=${6:-5} secs=${7:-10}
cert=$(realpath "$2") key=$(realpath "$3") ca=$(realpath "$4")
cd "$(dirname "$0")/../.."
cargo build --release -q -p benches --bin handshake-load
hl=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/handshake-load
pin=()
if [ -n "${CLIENT_CPUS:-}" ]; then pin=(taskset -c "$CLIENT_CPUS"); fi

median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

s_time_runs=() hl_runs=()
for round in $(seq "$rounds"); do
  start=$(date +%s.%N)
  out=$("${pin[@]}" openssl s_time -connect "$target" -new -cert "$cert" -key "$key" -CAfile "$ca" -time "$secs" 2>&1) \
    || { echo "openssl s_time failed: $out" >&2; exit 1; }
  end=$(date +%s.%N)
  count=$(sed -n 's/^\([0-9]*\) connections in [0-9.]*s;.*/\1/p' <<<"$out" | head -n 1)
  s_rate=$(awk -v n="${count:-0}" -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", n / (b - a)}')
  # shellcheck disable=SC2086 # HL_ARGS is a list of flags
  h_rate=$("${pin[@]}" "$hl" --target "$target" --cert "$cert" --key "$key" --ca "$ca" --server-id "$server_id" \
    --duration "${secs}s" --json ${HL_ARGS:-} | sed -n 's/^ *"handshakes_per_s": \([0-9.eE+-]*\),*$/\1/p')
  printf 'round %d: s_time %8.1f/s   handshake-load %8.1f/s\n' "$round" "$s_rate" "$h_rate"
  s_time_runs+=("$s_rate") hl_runs+=("$h_rate")
done
s_med=$(printf '%s\n' "${s_time_runs[@]}" | median)
h_med=$(printf '%s\n' "${hl_runs[@]}" | median)
awk -v s="$s_med" -v h="$h_med" 'BEGIN {printf "median: s_time %.1f/s, handshake-load %.1f/s, ratio %.2fx\n", s, h, (s > 0 ? h / s : 0)}'
