#!/usr/bin/env bash
# The side-by-side benchmark: our sidecar's inbound listener, a bare tokio-rustls proxy (the floor for our own
# overhead), nginx (stream module), HAProxy and stunnel, each as an mTLS-terminating proxy on loopback in front
# of the same plaintext backend with the same P-256 certificates; then a sidecar pair (outbound -> inbound) and
# an nginx stream pair against a direct plaintext connection. Every measurement runs ROUNDS times, the peers
# interleaved (A B C A B C), each run against a freshly started server. Medians, ratios to the sidecar and
# PASS/FAIL per target go to benches/results/ as JSON and markdown. See benches/README.md, "Peer comparison".
#
#   benches/compare/run.sh [--quick] [--rounds N] [--out DIR] [--only inbound|pair]
#
#   --quick        a few minutes: 1 s runs, 128 MiB transfers, 500 and 1,000 idle connections
#                  (default: the full suite, ~30-40 minutes: 10 s runs, 1 GiB, 1,000 and up to 10,000)
#   --rounds N     rounds per measurement (default 3; at least 3 for figures worth quoting)
#   --out DIR      where to write compare.json and compare.md (default benches/results/, file names
#                  compare-quick.* in quick mode)
#   --only SUITE   run only the inbound suite (a-e) or only the pair suite
#
# Environment: SERVER_CPU (default 1) and CLIENT_CPU (default 0) pick the vCPUs; PORT_BASE (default 19100)
# the first of the loopback ports used (PORT_BASE .. PORT_BASE+79). Needs Linux, taskset, curl and the
# Debian packages nginx-full (or libnginx-mod-stream), haproxy and stunnel4, which it installs when absent
# (as root). Loopback only; every process it starts is stopped at the end and on Ctrl-C.
set -euo pipefail

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }

MODE=full ROUNDS=3 OUT="" ONLY=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) MODE=quick ;;
    --rounds) ROUNDS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --only) ONLY=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
case $ONLY in "" | inbound | pair) ;; *) echo "--only: inbound or pair" >&2; exit 2 ;; esac

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CONF=$ROOT/benches/compare/conf
OUT=${OUT:-$ROOT/benches/results}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
PORT_BASE=${PORT_BASE:-19100}
SERVER_ID=spiffe://example.org/ns/api/sa/api
CLIENT_ID=spiffe://example.org/ns/web/sa/web

if [ "$MODE" = quick ]; then
  DUR=1 BULK=128M IDLE_SMALL=500 IDLE_WANTED=1000 NAME=compare-quick
else
  DUR=10 BULK=1G IDLE_SMALL=1000 IDLE_WANTED=10000 NAME=compare
fi
RATE=200      # open-loop handshakes/s for (b): well under what the slowest peer sustains on one shared vCPU
RR_SIZE=64    # bytes per request and per response in (c) and the pair tests
HS_SEND=64    # bytes each handshake-load connection echoes: a new connection plus one tiny request

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- prerequisites ----------------------------------------------------------------------------------------

[ "$(uname -s)" = Linux ] || die "Linux only (taskset, /proc)"
[ "$(nproc)" -ge 2 ] || { log "one CPU: server and client share it"; SERVER_CPU=$CLIENT_CPU; }
command -v taskset >/dev/null || die "taskset (util-linux) is needed"

nginx_modules() { nginx -V 2>&1 | tr ' ' '\n' | sed -n 's/^--modules-path=//p'; }
missing=()
command -v nginx >/dev/null || missing+=(nginx-full)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v stunnel4 >/dev/null || missing+=(stunnel4)
command -v curl >/dev/null || missing+=(curl)
if command -v nginx >/dev/null && [ ! -f "$(nginx_modules)/ngx_stream_module.so" ]; then
  missing+=(libnginx-mod-stream)
fi
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]}: run as root, or apt-get install them first"
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
NGINX_MODULES=$(nginx_modules)
[ -f "$NGINX_MODULES/ngx_stream_module.so" ] || die "no ngx_stream_module.so in $NGINX_MODULES"

# File descriptors: a proxy holds two per connection (client and backend). Raise the soft limit to the hard
# one, and the hard one too where allowed (root with CAP_SYS_RESOURCE).
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
# The most idle connections every peer can hold: two fds each in the proxy, and stunnel refuses clients
# beyond 125/256 of its fd limit. Rounded down to a hundred.
IDLE_LARGE=$(( (NOFILE - 100) / 2 ))
[ $(( NOFILE * 125 / 256 )) -lt "$IDLE_LARGE" ] && IDLE_LARGE=$(( NOFILE * 125 / 256 ))
IDLE_LARGE=$(( IDLE_LARGE / 100 * 100 ))
[ "$IDLE_LARGE" -gt "$IDLE_WANTED" ] && IDLE_LARGE=$IDLE_WANTED
[ "$IDLE_LARGE" -lt "$IDLE_WANTED" ] && log "fd limit $NOFILE: idle connections capped at $IDLE_LARGE (not $IDLE_WANTED)"

log "building (release)"
(cd "$ROOT" && cargo build --release -q -p sidecar -p certs-agent -p benches --bins)
BIN=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sidecar-compare.XXXXXX")
mkdir -p "$WORK/logs" "$WORK/runs"
RUNS=$WORK/runs.jsonl
: >"$RUNS"

# --- processes --------------------------------------------------------------------------------------------

PIDS=()        # everything started, for the cleanup
LAST_PID=""
SERVER_PIDS=() # the server under test (all of its processes)

# start NAME CPU CMD...: runs CMD pinned to CPU in the background, output to logs/NAME.log.
start() {
  local name=$1 cpu=$2
  shift 2
  taskset -c "$cpu" "$@" >>"$WORK/logs/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# stop PID...: SIGTERM, then SIGKILL whatever is left after 5 s.
stop() {
  local pid alive
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local alive=()
  for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
  [ ${#alive[@]} -gt 0 ] && stop "${alive[@]}"
  [ $status = 0 ] || log "stopped (status $status); logs and raw runs in $WORK"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# nginx's master forks its worker: the server's processes are both, and both must be stopped.
with_children() {
  local parent=$1 child
  SERVER_PIDS+=("$parent")
  for child in $(cat "/proc/$parent/task/"*/children 2>/dev/null); do
    SERVER_PIDS+=("$child")
    PIDS+=("$child")
  done
}

rss_kib() { # the sum of VmRSS over the server's processes
  local pid total=0 kib
  for pid in "${SERVER_PIDS[@]}"; do
    kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    total=$(( total + kib ))
  done
  echo "$total"
}

# --- certificates and configurations ----------------------------------------------------------------------

PKI=$WORK/pki
"$BIN/certs-agent" ca init --trust-domain example.org --dir "$PKI/ca" >/dev/null
"$BIN/certs-agent" issue --ca-dir "$PKI/ca" --id "$SERVER_ID" --out "$PKI/api" --ttl 24h >/dev/null
"$BIN/certs-agent" issue --ca-dir "$PKI/ca" --id "$CLIENT_ID" --out "$PKI/web" --ttl 24h >/dev/null
CERT=$PKI/api/svid.pem KEY=$PKI/api/svid_key.pem BUNDLE=$PKI/ca/bundle.pem
CCERT=$PKI/web/svid.pem CKEY=$PKI/web/svid_key.pem
cat "$CERT" "$KEY" >"$PKI/api.pem" # HAProxy's crt: chain and key in one file
chmod 600 "$PKI/api.pem"

port() { echo $(( PORT_BASE + $1 )); }
BACKEND_ECHO=$(port 0) BACKEND_BULK=$(port 1)
# Inbound peers: echo port, bulk port (the sidecar's admin at +9).
# nginx_stock: the same nginx configuration without the lines marked "tuned" (tickets on, the client's suite order).
declare -A ECHO=([sidecar]=$(port 10) [bare]=$(port 20) [nginx]=$(port 30) [haproxy]=$(port 40) [stunnel]=$(port 50)
  [nginx_stock]=$(port 30))
declare -A BULKP=([sidecar]=$(port 11) [bare]=$(port 21) [nginx]=$(port 31) [haproxy]=$(port 41) [stunnel]=$(port 51)
  [nginx_stock]=$(port 31))
SIDECAR_ADMIN=$(port 19)
# Pair entry points: the client-side proxy's plaintext listeners (direct: the backend itself).
declare -A PAIR_ECHO=([direct]=$BACKEND_ECHO [sidecar]=$(port 60) [nginx]=$(port 70))
declare -A PAIR_BULK=([direct]=$BACKEND_BULK [sidecar]=$(port 61) [nginx]=$(port 71))
WEB_ADMIN=$(port 69)

# render TEMPLATE OUT NAME=VALUE...: replaces each @NAME@.
render() {
  local template=$1 out=$2 expr=() kv
  shift 2
  for kv in "$@"; do expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${expr[@]}" "$template" >"$out"
  if grep -q '@[A-Z_]*@' "$out"; then die "$out: unfilled $(grep -o '@[A-Z_]*@' "$out" | head -n 1)"; fi
}

for d in sidecar sidecar-web nginx nginx-stock nginx-client haproxy stunnel; do mkdir -p "$WORK/$d"; done
cp "$CONF/policy.yaml" "$WORK/sidecar/policy.yaml"
ln -s "$PKI/api" "$WORK/sidecar/api"
ln -s "$PKI/web" "$WORK/sidecar/web"
render "$CONF/sidecar-api.yaml" "$WORK/sidecar/api.yaml" DIR="$WORK/sidecar" ADMIN_PORT="$SIDECAR_ADMIN" \
  ECHO_PORT="${ECHO[sidecar]}" BULK_PORT="${BULKP[sidecar]}" BACKEND_ECHO="$BACKEND_ECHO" BACKEND_BULK="$BACKEND_BULK"
render "$CONF/sidecar-web.yaml" "$WORK/sidecar/web.yaml" DIR="$WORK/sidecar" ADMIN_PORT="$WEB_ADMIN" \
  ECHO_PORT="${PAIR_ECHO[sidecar]}" BULK_PORT="${PAIR_BULK[sidecar]}" PEER_ECHO="${ECHO[sidecar]}" \
  PEER_BULK="${BULKP[sidecar]}" SERVER_ID="$SERVER_ID"
render "$CONF/nginx.conf" "$WORK/nginx/nginx.conf" NGINX_MODULES="$NGINX_MODULES" NOFILE="$NOFILE" \
  DIR="$WORK/nginx" CERT="$CERT" KEY="$KEY" BUNDLE="$BUNDLE" ECHO_PORT="${ECHO[nginx]}" \
  BULK_PORT="${BULKP[nginx]}" BACKEND_ECHO="$BACKEND_ECHO" BACKEND_BULK="$BACKEND_BULK"
render "$CONF/nginx.conf" "$WORK/nginx-stock/tuned.conf" NGINX_MODULES="$NGINX_MODULES" NOFILE="$NOFILE" \
  DIR="$WORK/nginx-stock" CERT="$CERT" KEY="$KEY" BUNDLE="$BUNDLE" ECHO_PORT="${ECHO[nginx]}" \
  BULK_PORT="${BULKP[nginx]}" BACKEND_ECHO="$BACKEND_ECHO" BACKEND_BULK="$BACKEND_BULK"
grep -v '# tuned$' "$WORK/nginx-stock/tuned.conf" >"$WORK/nginx-stock/nginx.conf"
render "$CONF/nginx-client.conf" "$WORK/nginx-client/nginx.conf" NGINX_MODULES="$NGINX_MODULES" NOFILE="$NOFILE" \
  DIR="$WORK/nginx-client" CERT="$CCERT" KEY="$CKEY" BUNDLE="$BUNDLE" ECHO_PORT="${PAIR_ECHO[nginx]}" \
  BULK_PORT="${PAIR_BULK[nginx]}" PEER_ECHO="${ECHO[nginx]}" PEER_BULK="${BULKP[nginx]}"
render "$CONF/haproxy.cfg" "$WORK/haproxy/haproxy.cfg" MAXCONN=$(( IDLE_LARGE + 50 )) CRT="$PKI/api.pem" \
  BUNDLE="$BUNDLE" ECHO_PORT="${ECHO[haproxy]}" BULK_PORT="${BULKP[haproxy]}" BACKEND_ECHO="$BACKEND_ECHO" \
  BACKEND_BULK="$BACKEND_BULK"
render "$CONF/stunnel.conf" "$WORK/stunnel/stunnel.conf" DIR="$WORK/stunnel" CERT="$CERT" KEY="$KEY" \
  BUNDLE="$BUNDLE" ECHO_PORT="${ECHO[stunnel]}" BULK_PORT="${BULKP[stunnel]}" BACKEND_ECHO="$BACKEND_ECHO" \
  BACKEND_BULK="$BACKEND_BULK"

# --- servers ----------------------------------------------------------------------------------------------

MTLS=(--ca "$BUNDLE" --server-id "$SERVER_ID" --cert "$CCERT" --key "$CKEY")

# ready_tls PORT: one full handshake with an echo through it succeeds (10 s at most).
ready_tls() {
  for _ in $(seq 100); do
    if "$BIN/handshake-load" --target "127.0.0.1:$1" "${MTLS[@]}" --handshakes 1 --send 16 --json \
      --connect-timeout 1s --handshake-timeout 2s 2>/dev/null | grep -q '"ok": 1,'; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# ready_plain PORT: a request through the plaintext entry point of a pair gets its echo.
ready_plain() {
  for _ in $(seq 100); do
    if "$BIN/rr-load" --target "127.0.0.1:$1" --new-connection --duration 50ms --request-timeout 2s --json \
      2>/dev/null | grep -q '"ok": [1-9]'; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# start_peer PEER CPU: the inbound server PEER, pinned to CPU, ready; sets SERVER_PIDS.
start_peer() {
  local peer=$1 cpu=$2
  SERVER_PIDS=()
  case $peer in
    sidecar) start sidecar "$cpu" env RUST_LOG=warn "$BIN/sidecar" run --config "$WORK/sidecar/api.yaml" ;;
    bare)
      start bare "$cpu" "$BIN/bare-proxy" --cert "$CERT" --key "$KEY" --ca "$BUNDLE" \
        --route "127.0.0.1:${ECHO[bare]}=127.0.0.1:$BACKEND_ECHO" \
        --route "127.0.0.1:${BULKP[bare]}=127.0.0.1:$BACKEND_BULK"
      ;;
    nginx) start nginx "$cpu" nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" -g 'daemon off;' ;;
    nginx_stock) start nginx "$cpu" nginx -c "$WORK/nginx-stock/nginx.conf" -p "$WORK/nginx-stock" -g 'daemon off;' ;;
    haproxy) start haproxy "$cpu" env OPENSSL_CONF="$CONF/openssl.cnf" haproxy -f "$WORK/haproxy/haproxy.cfg" -db ;;
    stunnel) start stunnel "$cpu" env OPENSSL_CONF="$CONF/openssl.cnf" stunnel4 "$WORK/stunnel/stunnel.conf" ;;
  esac
  local pid=$LAST_PID
  ready_tls "${ECHO[$peer]}" || die "$peer did not come up (logs in $WORK/logs/$peer.log)"
  with_children "$pid"
}

# start_pair PEER CPU: both proxies of a pair, pinned to CPU, ready; sets SERVER_PIDS (direct: none).
start_pair() {
  local peer=$1 cpu=$2 first
  SERVER_PIDS=()
  case $peer in
    direct) return 0 ;;
    sidecar)
      start_peer sidecar "$cpu"
      start sidecar-web "$cpu" env RUST_LOG=warn "$BIN/sidecar" run --config "$WORK/sidecar/web.yaml"
      ;;
    nginx)
      start_peer nginx "$cpu"
      start nginx-client "$cpu" nginx -c "$WORK/nginx-client/nginx.conf" -p "$WORK/nginx-client" -g 'daemon off;'
      ;;
  esac
  first=$LAST_PID
  ready_plain "${PAIR_ECHO[$peer]}" || die "$peer pair did not come up (logs in $WORK/logs/)"
  with_children "$first"
}

stop_servers() {
  [ ${#SERVER_PIDS[@]} -gt 0 ] && stop "${SERVER_PIDS[@]}"
  SERVER_PIDS=()
}

server_pid_args() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do printf -- '--server-pid\n%s\n' "$pid"; done
}

# record SUITE TEST PEER ROUND FILE: one line of runs.jsonl with FILE's JSON as the result.
record() {
  local result
  result=$(tr '\n' ' ' <"$5")
  [ -n "${result// /}" ] || result='{"error": "no output"}'
  printf '{"suite":"%s","test":"%s","peer":"%s","round":%d,"result":%s}\n' "$1" "$2" "$3" "$4" "$result" >>"$RUNS"
}

# client CMD...: a load tool pinned to CLIENT_CPU; a failure is logged and recorded (as no output), not fatal.
client() { taskset -c "$CLIENT_CPU" "$@" || log "warning: ${1##*/} failed (status $?)"; }

# --- the measurements: one function per test, called as TEST PEER ROUND ------------------------------------

INBOUND=(sidecar bare nginx haproxy stunnel)
INBOUND_HS=("${INBOUND[@]}" nginx_stock) # the handshake tests also show nginx with its stock TLS settings
PAIRS=(direct sidecar nginx)

# (a) saturation: the server alone on SERVER_CPU; client (one thread, 8 in flight) and backend on CLIENT_CPU.
hs_saturation() {
  local f=$WORK/runs/$1-hs_saturation-$2.json
  start_peer "$1" "$SERVER_CPU"
  mapfile -t spid < <(server_pid_args)
  client "$BIN/handshake-load" --target "127.0.0.1:${ECHO[$1]}" "${MTLS[@]}" --threads 1 --concurrency 8 \
    --send "$HS_SEND" --duration "${DUR}s" "${spid[@]}" --json >"$f"
  stop_servers
  record inbound hs_saturation "$1" "$2" "$f"
}

# (b) unloaded: one client, one connection at a time, everything on CLIENT_CPU. For the sidecar, also the
# handshake histogram on /metrics around the run.
hs_unloaded() {
  local f=$WORK/runs/$1-hs_unloaded-$2.json base=$WORK/runs/metrics-$2
  start_peer "$1" "$CLIENT_CPU"
  [ "$1" = sidecar ] && curl -sf "http://127.0.0.1:$SIDECAR_ADMIN/metrics" >"$base-before.prom"
  client "$BIN/handshake-load" --target "127.0.0.1:${ECHO[$1]}" "${MTLS[@]}" --threads 1 --concurrency 1 \
    --send "$HS_SEND" --duration "${DUR}s" --json --histogram-out "$WORK/runs/$1-hs_unloaded-$2.hgrm" >"$f"
  if [ "$1" = sidecar ]; then
    curl -sf "http://127.0.0.1:$SIDECAR_ADMIN/metrics" >"$base-after.prom"
    printf '{"handshake_load": %s, "histogram_out": "runs/%s", "before": "runs/%s", "after": "runs/%s"}\n' \
      "$(tr '\n' ' ' <"$f")" "sidecar-hs_unloaded-$2.hgrm" "metrics-$2-before.prom" "metrics-$2-after.prom" \
      >"$base.json"
    record metrics handshake_p50 sidecar "$2" "$base.json"
  fi
  stop_servers
  record inbound hs_unloaded "$1" "$2" "$f"
}

# (b) a fixed open-loop rate every peer sustains, everything on CLIENT_CPU.
hs_rate() {
  local f=$WORK/runs/$1-hs_rate-$2.json
  start_peer "$1" "$CLIENT_CPU"
  client "$BIN/handshake-load" --target "127.0.0.1:${ECHO[$1]}" "${MTLS[@]}" --threads 1 --rate "$RATE" \
    --send "$HS_SEND" --duration "${DUR}s" --json >"$f"
  stop_servers
  record inbound hs_rate "$1" "$2" "$f"
}

# (c) kept-alive request/response, everything on CLIENT_CPU: rr_keepalive N PEER ROUND.
rr_keepalive() {
  local n=$1 f=$WORK/runs/$2-rr_keepalive_$1-$3.json
  start_peer "$2" "$CLIENT_CPU"
  mapfile -t spid < <(server_pid_args)
  client "$BIN/rr-load" --target "127.0.0.1:${ECHO[$2]}" "${MTLS[@]}" --threads 1 --connections "$n" \
    --size "$RR_SIZE" --duration "${DUR}s" "${spid[@]}" --json >"$f"
  stop_servers
  record inbound "rr_keepalive_$n" "$2" "$3" "$f"
}
rr_keepalive_1() { rr_keepalive 1 "$@"; }
rr_keepalive_8() { rr_keepalive 8 "$@"; }

# (d) one connection moves BULK bytes; the server on SERVER_CPU, client and backend on CLIENT_CPU.
bulk() {
  local dir=$1 f=$WORK/runs/$2-bulk_$1-$3.json
  start_peer "$2" "$SERVER_CPU"
  mapfile -t spid < <(server_pid_args)
  client "$BIN/bulk-transfer" --target "127.0.0.1:${BULKP[$2]}" "${MTLS[@]}" --threads 1 --bytes "$BULK" \
    --direction "$dir" "${spid[@]}" --json >"$f"
  stop_servers
  record inbound "bulk_$dir" "$2" "$3" "$f"
}
bulk_down() { bulk down "$@"; }
bulk_up() { bulk up "$@"; }

# (e) RSS of a fresh server (after the one readiness handshake), then with N idle connections held open by
# hold-conns (each echoed once, so every peer has dialed the backend): idle TEST N PEER ROUND.
idle() {
  local test=$1 n=$2 peer=$3 round=$4
  local f=$WORK/runs/$peer-$test-$round.json ready=$WORK/runs/$peer-$test-$round.ready hold=$WORK/runs/$peer-$test-$round.hold
  start_peer "$peer" "$SERVER_CPU"
  sleep 1
  local idle_kib held_kib hold_pid
  idle_kib=$(rss_kib)
  rm -f "$ready"
  taskset -c "$CLIENT_CPU" "$BIN/hold-conns" --target "127.0.0.1:${ECHO[$peer]}" "${MTLS[@]}" --threads 1 \
    --connections "$n" --concurrency 32 --ready-file "$ready" --hold 10m >"$hold" 2>>"$WORK/logs/hold.log" &
  hold_pid=$!
  PIDS+=("$hold_pid")
  for _ in $(seq 600); do
    [ -f "$ready" ] && break
    kill -0 "$hold_pid" 2>/dev/null || break
    sleep 0.5
  done
  [ -f "$ready" ] || die "hold-conns against $peer did not open its connections (see $WORK/logs/hold.log)"
  sleep 2
  held_kib=$(rss_kib)
  # On SIGTERM it probes every connection again and prints its final report (alive_after_hold).
  kill -TERM "$hold_pid"
  wait "$hold_pid" 2>/dev/null || true
  [ -s "$hold" ] || echo '{"error": "hold-conns printed no report"}' >"$hold"
  printf '{"connections": %d, "idle_kib": %d, "held_kib": %d, "hold": %s}\n' "$n" "$idle_kib" "$held_kib" \
    "$(tr '\n' ' ' <"$hold")" >"$f"
  stop_servers
  record inbound "$test" "$peer" "$round" "$f"
}
idle_small() { idle idle_small "$IDLE_SMALL" "$@"; }
idle_large() { idle idle_large "$IDLE_LARGE" "$@"; }

# The pair suite: a plaintext client through PEER's pair (or straight to the backend for direct).
pair_rr() { # pair_rr TEST CPU PEER ROUND RR-LOAD-ARGS...
  local test=$1 cpu=$2 peer=$3 round=$4 f
  shift 4
  f=$WORK/runs/pair-$peer-$test-$round.json
  start_pair "$peer" "$cpu"
  mapfile -t spid < <(server_pid_args)
  client "$BIN/rr-load" --target "127.0.0.1:${PAIR_ECHO[$peer]}" --threads 1 --size "$RR_SIZE" \
    --duration "${DUR}s" "${spid[@]}" --json "$@" >"$f"
  stop_servers
  record pair "$test" "$peer" "$round" "$f"
}
pair_new_conn_1() { pair_rr new_conn_1 "$CLIENT_CPU" "$@" --new-connection --connections 1; }
pair_new_conn_8() { pair_rr new_conn_8 "$SERVER_CPU" "$@" --new-connection --connections 8; }
pair_rr_keepalive_1() { pair_rr rr_keepalive_1 "$CLIENT_CPU" "$@" --connections 1; }
pair_bulk_down() {
  local f=$WORK/runs/pair-$1-bulk_down-$2.json
  start_pair "$1" "$SERVER_CPU"
  mapfile -t spid < <(server_pid_args)
  client "$BIN/bulk-transfer" --target "127.0.0.1:${PAIR_BULK[$1]}" --threads 1 --bytes "$BULK" \
    --direction down "${spid[@]}" --json >"$f"
  stop_servers
  record pair bulk_down "$1" "$2" "$f"
}

# interleave TEST PEER...: ROUNDS rounds, each running TEST against every peer in turn.
interleave() {
  local test=$1 round peer
  shift
  for round in $(seq "$ROUNDS"); do
    for peer in "$@"; do
      log "$test round $round/$ROUNDS: $peer"
      "$test" "$peer" "$round"
    done
  done
}

# --- run ----------------------------------------------------------------------------------------------------

steal() { awk '/^cpu / {print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
read -r steal0 total0 < <(steal)
STARTED=$(date +%s)
start backend "$CLIENT_CPU" "$BIN/bench-backend" --echo "127.0.0.1:$BACKEND_ECHO" --bulk "127.0.0.1:$BACKEND_BULK"
log "$MODE mode, $ROUNDS rounds, ${DUR}s runs; server on vCPU $SERVER_CPU, client and backend on vCPU $CLIENT_CPU; work in $WORK"

if [ "$ONLY" != pair ]; then
  for test in hs_saturation hs_unloaded; do
    interleave "$test" "${INBOUND_HS[@]}"
  done
  for test in hs_rate rr_keepalive_1 rr_keepalive_8 bulk_down bulk_up idle_small idle_large; do
    interleave "$test" "${INBOUND[@]}"
  done
fi
if [ "$ONLY" != inbound ]; then
  for test in pair_new_conn_1 pair_new_conn_8 pair_rr_keepalive_1 pair_bulk_down; do
    interleave "$test" "${PAIRS[@]}"
  done
fi
read -r steal1 total1 < <(steal)

# --- meta and report ----------------------------------------------------------------------------------------

json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=false
[ -n "$(git -C "$ROOT" status --porcelain -- sidecar policy 2>/dev/null)" ] && dirty=true
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
steal_pct=$(awk -v s="$((steal1 - steal0))" -v t="$((total1 - total0))" 'BEGIN {printf "%.1f", (t > 0 ? 100 * s / t : 0)}')
nginx_v=$(nginx -v 2>&1 | sed 's/.*nginx\///')
haproxy_v=$(haproxy -v | sed -n '1s/^HAProxy version \([^ ]*\).*/\1/p')
stunnel_v=$(stunnel4 -version 2>&1 | sed -n 's/^stunnel \([0-9.]*\).*/\1/p' | head -n 1)
openssl_v=$(openssl version | awk '{print $2}')
rustls_v=$(grep -A1 '^name = "rustls"$' "$ROOT/Cargo.lock" | sed -n 's/version = "\(.*\)"/\1/p')
awslc_v=$(grep -A1 '^name = "aws-lc-rs"$' "$ROOT/Cargo.lock" | sed -n 's/version = "\(.*\)"/\1/p')
bulk_text=$([ "$BULK" = 1G ] && echo "1 GiB" || echo "${BULK%M} MiB")
setup=(
  "Peers: sidecar (release, RUST_LOG=warn, one inbound listener per backend port, limits.max_connections 20000), bare-proxy (tokio-rustls with the sidecar's crypto provider, WebPkiClientVerifier, no policy, metrics or SVID checks), nginx $nginx_v stream (1 worker, ssl_verify_client on), HAProxy $haproxy_v (TCP mode, nbthread 1, verify required), stunnel $stunnel_v (verifyChain = yes). OpenSSL $openssl_v for the last three; rustls $rustls_v with aws-lc-rs $awslc_v for ours."
  "All: TLS 1.3 only, AES-128-GCM-SHA256 preferred by the server, X25519, no session resumption and no tickets, the same P-256 CA and leaf from certs-agent; the client verifies every server as the X.509-SVID $SERVER_ID. \"nginx, stock TLS settings\" (handshake tests only, not used for the targets): the same nginx without those settings, i.e. with its default stateless session tickets (two per handshake, each carrying the client certificate) and the client's suite order."
  "Every run starts a fresh server; each measurement runs $ROUNDS rounds with the peers interleaved. Backend: bench-backend (echo and bulk) on vCPU $CLIENT_CPU."
  "(a) handshake-load, closed loop, 8 in flight, 1 thread, a new connection with a $HS_SEND-byte echo each, ${DUR} s; server alone on vCPU $SERVER_CPU, client on vCPU $CLIENT_CPU; server CPU from /proc/PID/stat."
  "(b) handshake-load with 1 connection at a time, and open loop at $RATE/s, ${DUR} s; client, server and backend on vCPU $CLIENT_CPU. Latency: connect start (open loop: scheduled start) to the client's handshake completion."
  "(c) rr-load, $RR_SIZE-byte request and response, 1 and 8 kept-alive mTLS connections, ${DUR} s, closed loop; everything on vCPU $CLIENT_CPU."
  "(d) bulk-transfer, one mTLS connection, $bulk_text each way separately; server on vCPU $SERVER_CPU."
  "(e) VmRSS summed over the server's processes (nginx: master and worker), fresh server after one handshake, then with N idle mTLS connections held by hold-conns (each echoed once); server on vCPU $SERVER_CPU. Larger N: $IDLE_LARGE (fd limit $NOFILE)."
  "Pair: a plaintext client (rr-load) through client-side proxy -> mTLS -> server-side proxy -> backend, against the backend directly; nginx pair: proxy_ssl with a client certificate, chain verified by OpenSSL (VerifyMode Peer). New-connection latency and kept-alive latency on one vCPU; 8-client throughput with both proxies on vCPU $SERVER_CPU."
  "Steal time over the whole run: $steal_pct% of all CPU time; wall time $(( ($(date +%s) - STARTED) / 60 )) min."
)
{
  printf '{\n  "schema": "compare-meta/1",\n  "mode": "%s",\n  "commit": "%s",\n  "dirty": %s,\n' "$MODE" "$commit" "$dirty"
  printf '  "date": "%s",\n  "machine": %s,\n' "$(date -u +%Y-%m-%dT%H:%MZ)" \
    "$(json_str "$(nproc) vCPUs $cpu_model, Linux $(uname -r)")"
  printf '  "rounds": %d,\n  "duration_s": %d,\n  "rate": %d,\n  "bulk": "%s",\n' "$ROUNDS" "$DUR" "$RATE" "$bulk_text"
  printf '  "idle_small": %d,\n  "idle_large": %d,\n  "nofile": %d,\n  "steal_percent": %s,\n' \
    "$IDLE_SMALL" "$IDLE_LARGE" "$NOFILE" "$steal_pct"
  printf '  "versions": {"nginx": "%s", "haproxy": "%s", "stunnel": "%s", "openssl": "%s", "rustls": "%s", "aws_lc_rs": "%s"},\n' \
    "$nginx_v" "$haproxy_v" "$stunnel_v" "$openssl_v" "$rustls_v" "$awslc_v"
  printf '  "peers": {"inbound": ["sidecar", "bare", "nginx", "haproxy", "stunnel", "nginx_stock"], "pair": ["direct", "sidecar", "nginx"]},\n'
  printf '  "peer_names": {"inbound": {"sidecar": "sidecar", "bare": "bare tokio-rustls", "nginx": "nginx stream", "haproxy": "HAProxy", "stunnel": "stunnel", "nginx_stock": "nginx, stock TLS settings"}, "pair": {"direct": "direct (no proxy)", "sidecar": "sidecar pair", "nginx": "nginx stream pair"}},\n'
  printf '  "setup": [\n'
  for i in "${!setup[@]}"; do
    printf '    %s%s\n' "$(json_str "${setup[$i]}")" "$([ "$i" -lt $(( ${#setup[@]} - 1 )) ] && echo ,)"
  done
  printf '  ]\n}\n'
} >"$WORK/meta.json"

mkdir -p "$OUT"
"$BIN/compare-report" "$WORK" --json "$OUT/$NAME.json" --markdown "$OUT/$NAME.md"
log "results: $OUT/$NAME.md and $OUT/$NAME.json (raw runs and logs: $WORK)"
