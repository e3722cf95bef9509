#!/usr/bin/env bash
# bench/compare.sh — Fleetgate vs Google's Go `fleetspeak-server` 0.1.19, same machine, same
# MariaDB, same simulated clients (`fleetgate loadgen`), in one invocation.
#
# What it does
#   1. Installs what it needs: the Go binaries (PyPI fleetspeak-server-bin==0.1.19, into a venv
#      through .ci/peers.sh), MariaDB started if it is down, `cargo build --release -p
#      fleetgate-server` (the server and the loadgen are the same `fleetgate` binary).
#   2. Makes a throw-away CA and server certificate (openssl, P-256) and, for every run, a fresh
#      MariaDB database (`fgbench_<flavor>_<run>_<pid>`, READ-COMMITTED) and a fresh server
#      process with the same components/services config for both flavors (templates in
#      bench/templates/; the server-side service `bench` is `factory: "NOOP"` on both).
#   3. Runs, for each workload, Go first and then Fleetgate:
#      idle   Idle streaming clients at each level of --levels: server VmRSS before the
#             clients connect and ~5 s after the last one did; (after − before) / connected.
#             Levels above the machine's file-descriptor hard limit are capped (one fd per
#             client in the server) and the cap is reported. At the top level, once the
#             RSS is sampled, --top-messages messages are inserted into the connected clients
#             (InsertMessage → receipt latency with every stream open).
#      upload 100 streaming clients sending --upload-rate msg/s each (100-byte payloads) to
#             the NOOP service for --upload-secs: messages processed per second of the
#             measured phase (rows of `messages` getting a processed_time, sampled in the
#             database; the loadgen's acked count is printed too but Go skips acks under
#             load), and the server's CPU time (utime+stime from /proc/<pid>/stat, before the
#             run → processing finished) per processed message; MariaDB's CPU per message too.
#             Offered load is 100 × --upload-rate; if Fleetgate keeps up with it, its ratio is
#             a lower bound (the table says so) and a higher --upload-rate finds its ceiling.
#      deliver 100 streaming clients, --messages InsertMessage calls at --rate/s:
#             InsertMessage → receipt p50/p90/p99 at the simulated client.
#      cluster (not in the default set) --cluster-clients idle streaming clients spread over
#             --frontends client-facing servers and one admin-only server on one database,
#             the scaling topology of docs/DISTRIBUTED.md: one process cannot hold more
#             streams than the file-descriptor limit. Each frontend gets its share of clients
#             from its own loadgen processes (each under the fd limit, each to its own
#             127.0.0.k so that no source-port range runs out). Once all are connected:
#             the frontends' summed RSS per client, then --cluster-messages InsertMessage
#             calls on the admin-only server at --rate/s in all, to clients of every
#             frontend (one inserting loadgen per frontend), each delivered through an HTTP
#             notification to the frontend that holds the stream: receipt p50/p99 with
#             every stream open (the worst frontend's figure is the one reported).
#      admin  (not in the default set) GRR's own admin calls, through GRR's Python connector
#             (`fleetspeak` 0.1.19, bench/admin_bench.py): with --admin-levels connected
#             streaming clients (loadgen), --admin-calls InsertMessage calls (p50/p99) and
#             ListClients of every client (p50/p99), one call at a time, 20 ms apart. Go on
#             MariaDB; Fleetgate on MariaDB and on its embedded SQLite (`fleetgate_sqlite`).
#   4. Prints one Markdown table with the figures and the ratios (Fleetgate vs Go) and the
#      targets, and writes it with every log to the output directory. Stops every process it
#      started and drops its databases on exit (--keep keeps the databases).
#
# How long
#   --quick: about 3 minutes (level 1000; 10 s upload; 500 messages).
#   default: about 15 minutes on 2 cores (levels 1000 10000 50000, the last capped at the fd
#   limit; 30 s upload; 2000 messages), mostly the ramp-up of clients at --connect-rate
#   (200/s) against each server.
#
# Flags
#   --quick              the short variant above
#   --levels "A B C"     idle-client levels (default "1000 10000 50000")
#   --connect-rate N     new connections per second during ramp-up (default 200)
#   --upload-rate N      msg/s per client in the upload run (default 100, i.e. 10,000/s offered)
#   --upload-secs N      measured seconds of the upload run (default 30)
#   --messages N --rate N  delivery run (default 2000 at 200/s)
#   --top-messages N     inserts at the top idle level (default 1000; 0 = none)
#   --cluster-clients N  clients of the cluster workload (default 50000)
#   --frontends N        client-facing servers of the cluster workload (default 3)
#   --cluster-messages N inserts of the cluster workload (default 1500)
#   --admin-levels "A B" connected clients of the admin workload (default "5 200")
#   --admin-calls N      InsertMessage and ListClients calls per level (default 300)
#   --only go|fleetgate  run one flavor only (no ratios)
#   --idle-http1         idle clients stream over HTTP/1.1, the real Go client's protocol (the Go
#                        server streams only over h2, so this goes with --only fleetgate)
#   --workloads "idle upload deliver"  subset of workloads
#   --out DIR            logs and results (default target/bench-compare/<UTC time>)
#   --no-build           use target/release/fleetgate as it is
#   --fleetgate-args "A B"  extra flags of every Fleetgate server (e.g. "-trace_messages=false")
#   --keep               keep the databases
#
# Environment: FLEETGATE_PEERS_VENV (venv with the Go binaries; default target/peers-venv),
# FLEETGATE_BIN (the fleetgate binary to use with --no-build; default target/release/fleetgate),
# MYSQL_HOST/MYSQL_PORT (default 127.0.0.1:3306, user root without password, as peers.md).
# Run as a user that can raise `ulimit -n`; with the default hard limit the idle levels stop
# at (hard limit − 1000) clients. Not part of CI: it is too long.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

fleetgate_args=()
quick=0 levels="" connect_rate=200 upload_rate=100 upload_secs="" messages="" rate=200
top_messages="" only="" idle_proto=() workloads="idle upload deliver" out="" build=1 keep=0
cluster_clients=50000 frontends=3 cluster_messages=1500 admin_levels="5 200" admin_calls=300
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    --levels) levels="$2"; shift ;;
    --connect-rate) connect_rate="$2"; shift ;;
    --upload-rate) upload_rate="$2"; shift ;;
    --upload-secs) upload_secs="$2"; shift ;;
    --messages) messages="$2"; shift ;;
    --rate) rate="$2"; shift ;;
    --top-messages) top_messages="$2"; shift ;;
    --cluster-clients) cluster_clients="$2"; shift ;;
    --frontends) frontends="$2"; shift ;;
    --cluster-messages) cluster_messages="$2"; shift ;;
    --admin-levels) admin_levels="$2"; shift ;;
    --admin-calls) admin_calls="$2"; shift ;;
    --only) only="$2"; shift ;;
    --idle-http1) idle_proto=(--http2=false) ;;
    --workloads) workloads="$2"; shift ;;
    --out) out="$2"; shift ;;
    --no-build) build=0 ;;
    --keep) keep=1 ;;
    --fleetgate-args) read -r -a fleetgate_args <<< "$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown flag $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [[ $quick == 1 ]]; then
  : "${levels:=1000}" "${upload_secs:=10}" "${messages:=500}" "${top_messages:=300}"
else
  : "${levels:=1000 10000 50000}" "${upload_secs:=30}" "${messages:=2000}" "${top_messages:=1000}"
fi
flavors="go fleetgate"
[[ -n $only ]] && flavors="$only"
out="${out:-$root/target/bench-compare/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
mysql_host="${MYSQL_HOST:-127.0.0.1}" mysql_port="${MYSQL_PORT:-3306}"

say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$out/progress.log" >&2; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

# ---------------------------------------------------------------- cleanup
pids=() dbs=()
cleanup() {
  local p
  # Loadgens first (SIGKILL, see idle_level), then the servers (SIGTERM, graceful).
  for p in "${pids[@]}"; do
    if [[ $(cat "/proc/$p/cmdline" 2>/dev/null | tr '\0' ' ') == *" loadgen "* ]]; then
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ $keep == 0 ]]; then
    for p in "${dbs[@]}"; do sql "DROP DATABASE IF EXISTS \`$p\`" 2>/dev/null || true; done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
sql() { mysql -uroot -h"$mysql_host" -P"$mysql_port" -N -B -e "$1"; }

# ---------------------------------------------------------------- prerequisites
say "file descriptors"
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fd_limit="$(ulimit -n)"
# The server holds one fd per client, plus listeners, database connections and logs.
max_clients=$(( fd_limit - 1000 ))
# One loadgen process per at most this many clients: its own fds, and the ~28k ephemeral
# ports to one destination address (each shard targets its own 127.0.0.k).
shard_size=$(( fd_limit - 1000 < 15000 ? fd_limit - 1000 : 15000 ))
say "ulimit -n = $fd_limit (hard $(ulimit -Hn)): at most $max_clients clients per server"

say "Go fleetspeak-server 0.1.19 (venv)"
venv="${FLEETGATE_PEERS_VENV:-$root/target/peers-venv}"
if [[ ! -x "$venv/fleetspeak-server-bin/usr/bin/fleetspeak-server" ]]; then
  venv="$(bash "$root/.ci/peers.sh" "$venv")"
fi
go_bin="$venv/fleetspeak-server-bin/usr/bin/fleetspeak-server"
test -x "$go_bin"

say "MariaDB"
if ! mysqladmin -uroot -h"$mysql_host" -P"$mysql_port" --connect-timeout=2 ping >/dev/null 2>&1; then
  command -v mariadbd >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq mariadb-server; }
  start-stop-daemon --start --oknodo --background --exec "$(command -v mariadbd)" || true
  for _ in $(seq 1 30); do mysqladmin -uroot ping >/dev/null 2>&1 && break; sleep 1; done
  mysql -uroot -e "ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')" 2>/dev/null || true
fi
sql "SELECT 1" >/dev/null
# Thousands of clients enrolling at once need more than the default 151 connections.
sql "SET GLOBAL max_connections = GREATEST(@@max_connections, 1000)" || true
mysqld_pid="$(pgrep -xo mariadbd || pgrep -xo mysqld || true)"

if [[ $build == 1 ]]; then
  say "cargo build --release -p fleetgate-server"
  cargo build --release -p fleetgate-server 2>&1 | tail -3 >&2
fi
fg_bin="${FLEETGATE_BIN:-$root/target/release/fleetgate}"
test -x "$fg_bin"

say "certificates"
pki="$out/pki"
mkdir -p "$pki"
openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key" 2>/dev/null
openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=fgbench CA" -days 2 -out "$pki/ca.pem" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$pki/server.key" 2>/dev/null
openssl req -new -key "$pki/server.key" -subj "/CN=localhost" -out "$pki/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$pki/ext"
openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 2 -extfile "$pki/ext" -out "$pki/server.pem" 2>/dev/null

# A protobuf text-format string literal of a file's contents.
pbstr() { python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$1"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------- one server
# start_server FLAVOR RUN LISTEN_HOST: fresh database and process; sets srv_pid srv_https
# srv_admin srv_db srv_log.
start_server() {
  local flavor=$1 run=$2 host=$3 dir="$out/$1-$2"
  mkdir -p "$dir"
  srv_db="fgbench_${flavor}_${run}_$$"
  dbs+=("$srv_db")
  sql "DROP DATABASE IF EXISTS \`$srv_db\`; CREATE DATABASE \`$srv_db\`"
  local https_port admin_port
  https_port=$(free_port) admin_port=$(free_port)
  srv_https="127.0.0.1:$https_port" srv_admin="127.0.0.1:$admin_port"
  fill_template components.config "$dir/components.config" "$(dsn "$srv_db")" \
    "HTTPS=$host:$https_port" "ADMIN=$srv_admin"
  srv_log="$dir/server.log"
  launch "$flavor" "$dir" "$https_port" "$admin_port"
  srv_pid=$launched
  sleep 3 # schema creation, pools, first GC: let the baseline settle
}

# launch FLAVOR DIR PORT...: starts a server with DIR/components.config and the bench services
# config, logging to DIR/server.log, and waits until every PORT accepts; sets launched (pid).
launch() {
  local flavor=$1 dir=$2 port i
  shift 2
  cp "$here/templates/services.config" "$dir/services.config"
  if [[ $flavor == go ]]; then
    "$go_bin" -logtostderr -components_config "$dir/components.config" \
      -services_config "$dir/services.config" > "$dir/server.log" 2>&1 &
  else
    "$fg_bin" server --components_config "$dir/components.config" \
      --services_config "$dir/services.config" --logtostderr "${fleetgate_args[@]}" "${server_args[@]}" \
      > "$dir/server.log" 2>&1 &
  fi
  launched=$!
  pids+=("$launched")
  for port in "$@"; do
    for i in $(seq 1 600); do
      if ! kill -0 "$launched" 2>/dev/null; then
        tail -20 "$dir/server.log" >&2; echo "compare.sh: $flavor server exited at start" >&2; exit 1
      fi
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      sleep 0.1
    done
  done
}

server_args=() # extra flags of the next Fleetgate server (the admin workload's SQLite store)

dsn() { echo "root@tcp($mysql_host:$mysql_port)/$1?tx_isolation=%27READ-COMMITTED%27"; }

# fill_template TEMPLATE OUT DSN [PLACEHOLDER=VALUE...]: a components config with the run's
# database, certificate and key, and the given listen addresses.
fill_template() {
  local template=$1 outfile=$2 dsn=$3 kv
  shift 3
  local args=(-e "s|@DSN@|$dsn|"
    -e "s|@CERT@|$(pbstr "$pki/server.pem" | sed 's/[|&\\]/\\&/g')|"
    -e "s|@KEY@|$(pbstr "$pki/server.key" | sed 's/[|&\\]/\\&/g')|")
  for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|"); done
  sed "${args[@]}" "$here/templates/$template" > "$outfile"
}

stop_server() {
  kill "$srv_pid" 2>/dev/null || true
  wait "$srv_pid" 2>/dev/null || true
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# utime+stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || true; }
tck=$(getconf CLK_TCK)

# loadgen ARGS...: runs `fleetgate loadgen` against the current server.
loadgen() {
  "$fg_bin" loadgen --server_name localhost --ca "$pki/ca.pem" --admin "$srv_admin" \
    --connect_rate "$connect_rate" "$@"
}

# Fields of a loadgen report.
lg_field() { # FILE REGEX → first capture group
  sed -nE "s/$2/\1/p" "$1" | head -1
}

results="$out/results.tsv"
: > "$results"
record() { # FLAVOR KEY VALUE
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$results"
  say "  $1 $2 = $3"
}

# ---------------------------------------------------------------- workload 1: idle clients
# One loadgen process of a sharded workload, in the background; its pid goes to the caller's
# `lg_pids` and to `pids` (stopped on exit). Each shard connects from its own 127.0.0.k.
shard() { # DIR K SERVER ADMIN CLIENTS CONNECT_RATE LOADGEN_ARGS...
  local dir=$1 k=$2 server=$3 admin=$4 c=$5 rate=$6
  shift 6
  rm -f "$dir/ready.$k"
  "$fg_bin" loadgen --server "$server" --server_name localhost \
    --ca "$pki/ca.pem" --admin "$admin" --clients "$c" --connect_rate "$rate" \
    --ready_file "$dir/ready.$k" "$@" > "$dir/loadgen.$k.log" 2>&1 &
  lg_pids+=($!)
  pids+=($!)
}

# Waits until every shard has written its ready file; a shard that died ends the run.
wait_shards() { # DIR SHARDS
  local dir=$1 k
  for (( k = 0; k < $2; k++ )); do
    while [[ ! -s "$dir/ready.$k" ]]; do
      kill -0 "${lg_pids[$k]}" 2>/dev/null || { cat "$dir/loadgen.$k.log" >&2; exit 1; }
      sleep 0.5
    done
  done
}

idle_level() { # FLAVOR N TOP(0/1)
  local flavor=$1 want=$2 top=$3 n=$2
  (( n > max_clients )) && n=$max_clients
  local shards=$(( (n + shard_size - 1) / shard_size ))
  local host=127.0.0.1
  (( shards > 1 )) && host=0.0.0.0
  start_server "$flavor" "idle$want" "$host"
  local dir="$out/$flavor-idle$want" rss0 l0
  rss0=$(rss_kib "$srv_pid") l0=$(load)
  say "$flavor: $n idle streaming clients ($shards loadgen process(es)), server RSS before ${rss0} KiB"
  local k per=$(( (n + shards - 1) / shards )) left=$n lg_pids=() port=${srv_https##*:}
  local per_rate
  per_rate=$(python3 -c "print($connect_rate / $shards)")
  for (( k = 0; k < shards; k++ )); do
    local c=$(( left < per ? left : per )) extra=("${idle_proto[@]}")
    left=$(( left - c ))
    if (( k == 0 )); then
      extra+=(--settle 20 --duration 0)
      if (( top == 1 && top_messages > 0 )); then
        extra+=(--messages "$top_messages" --rate "$rate")
      fi
    else
      extra+=(--duration 3600)
    fi
    shard "$dir" "$k" "127.0.0.$((k + 1)):$port" "$srv_admin" "$c" "$per_rate" "${extra[@]}"
  done
  wait_shards "$dir" "$shards"
  sleep 5
  local rss1 connected=0 streams
  rss1=$(rss_kib "$srv_pid")
  for (( k = 0; k < shards; k++ )); do
    connected=$(( connected + $(cut -d' ' -f1 "$dir/ready.$k") ))
  done
  streams=$(ss -Htn state established "( sport = :$port )" | wc -l)
  wait "${lg_pids[0]}" || true
  # The other shards hold their streams until now. SIGKILL: `fleetgate` turns SIGTERM into a
  # graceful shutdown of its server, which the loadgen does not watch.
  for (( k = 1; k < shards; k++ )); do kill -KILL "${lg_pids[$k]}" 2>/dev/null || true; wait "${lg_pids[$k]}" 2>/dev/null || true; done
  local per_client
  per_client=$(python3 -c "print(f'{($rss1 - $rss0) / max($connected, 1):.1f}')")
  record "$flavor" "idle$want.clients" "$connected"
  record "$flavor" "idle$want.streams" "$streams"
  record "$flavor" "idle$want.rss_before_kib" "$rss0"
  record "$flavor" "idle$want.rss_after_kib" "$rss1"
  record "$flavor" "idle$want.kib_per_client" "$per_client"
  record "$flavor" "idle$want.load" "$l0 / $(load)"
  record "$flavor" "idle$want.loadgen_rss" "$(lg_field "$dir/loadgen.0.log" '^loadgen RSS: ([0-9.]+ MiB) now.*')"
  if (( top == 1 && top_messages > 0 )); then
    local f="$dir/loadgen.0.log"
    record "$flavor" "top.clients" "$connected"
    record "$flavor" "top.p50" "$(lg_field "$f" '^latency: +p50 ([0-9.]+) ms.*')"
    record "$flavor" "top.p99" "$(lg_field "$f" '^latency: .* p99 ([0-9.]+) ms.*')"
    record "$flavor" "top.lost" "$(lg_field "$f" '^download: .* ([0-9]+) lost.*')"
  fi
  stop_server
}

# ---------------------------------------------------------------- workload 2: upload
upload_run() { # FLAVOR
  local flavor=$1
  start_server "$flavor" upload 127.0.0.1
  local dir="$out/$flavor-upload" f
  f="$dir/loadgen.log"
  local l0 c0 m0
  mysqld_pid="$(pgrep -xo mariadbd || pgrep -xo mysqld || true)" # MariaDB may have restarted
  l0=$(load) c0=$(cpu_ticks "$srv_pid") m0=${mysqld_pid:+$(cpu_ticks "$mysqld_pid")}
  say "$flavor: 100 clients × $upload_rate msg/s to NOOP for ${upload_secs}s (load $l0)"
  # No --admin: an overloaded server may not answer ListClients in time, and it is not needed.
  "$fg_bin" loadgen --server "$srv_https" --server_name localhost --ca "$pki/ca.pem" \
    --connect_rate "$connect_rate" --clients 100 --outbound_rate "$upload_rate" \
    --outbound_size 100 --outbound_service bench --duration "$upload_secs" \
    --ready_file "$dir/ready" > "$f" 2>&1 &
  local lg=$!
  pids+=("$lg")
  # The rate: messages the NOOP service finished (processed_time set in the database) per
  # second of the measured phase, skipping its first 2 s. The loadgen's own count is of acked
  # frames, and the Go server skips the ack of a frame whose processing failed or overran.
  local q="SELECT COUNT(*) FROM \`$srv_db\`.messages WHERE destination_service_name='bench' AND processed_time_seconds IS NOT NULL"
  while [[ ! -s "$dir/ready" ]]; do
    kill -0 "$lg" 2>/dev/null || { cat "$f" >&2; exit 1; }
    sleep 0.2
  done
  sleep 2
  local t0 n0 t1 n1
  t0=$(date +%s.%N) n0=$(sql "$q")
  sleep $(( upload_secs - 2 ))
  t1=$(date +%s.%N) n1=$(sql "$q")
  wait "$lg" || { cat "$f" >&2; exit 1; }
  # Whatever the server still has in hand: let it finish (count stable for 2 s, at most 60 s)
  # before reading its clock.
  local processed last=-1 i
  for i in $(seq 1 60); do
    processed=$(sql "$q")
    [[ $processed == "$last" ]] && break
    last=$processed
    sleep 2
  done
  local c1 m1 pending
  c1=$(cpu_ticks "$srv_pid") m1=${mysqld_pid:+$(cpu_ticks "$mysqld_pid")}
  pending=$(sql "SELECT COUNT(*) FROM \`$srv_db\`.messages WHERE destination_service_name='bench' AND processed_time_seconds IS NULL")
  record "$flavor" upload.offered_per_s "$(( 100 * upload_rate ))"
  record "$flavor" upload.processed_per_s "$(python3 -c "print(f'{($n1 - $n0) / ($t1 - $t0):.0f}')")"
  record "$flavor" upload.acked_per_s "$(lg_field "$f" '^upload: .*\(([0-9.]+)\/s over.*')"
  record "$flavor" upload.sent "$(lg_field "$f" '^upload: +([0-9]+) sent.*')"
  record "$flavor" upload.acked "$(lg_field "$f" '^upload: +[0-9]+ sent, ([0-9]+) acked.*')"
  record "$flavor" upload.processed "$processed"
  record "$flavor" upload.unprocessed "$pending"
  record "$flavor" upload.cpu_s "$(python3 -c "print(f'{($c1 - $c0) / $tck:.2f}')")"
  record "$flavor" upload.cpu_us_per_msg "$(python3 -c "print(f'{($c1 - $c0) / $tck / max($processed, 1) * 1e6:.1f}')")"
  if [[ -n $m0 && -n $m1 ]]; then # empty if MariaDB restarted during the run
    record "$flavor" upload.db_cpu_us_per_msg "$(python3 -c "print(f'{($m1 - $m0) / $tck / max($processed, 1) * 1e6:.1f}')")"
  fi
  record "$flavor" upload.rss_kib "$(rss_kib "$srv_pid")"
  record "$flavor" upload.load "$l0 / $(load)"
  stop_server
  sleep 15 # let MariaDB flush and the load settle before the next run
}

# ---------------------------------------------------------------- workload 3: delivery
deliver_run() { # FLAVOR
  local flavor=$1
  start_server "$flavor" deliver 127.0.0.1
  local dir="$out/$flavor-deliver" f l0
  f="$dir/loadgen.log" l0=$(load)
  say "$flavor: 100 clients, $messages inserts at $rate/s (load $l0)"
  loadgen --server "$srv_https" --clients 100 --messages "$messages" --rate "$rate" \
    --duration 0 > "$f" 2>&1 &
  local lg=$!
  pids+=("$lg")
  wait "$lg" || { cat "$f" >&2; exit 1; }
  record "$flavor" deliver.p50 "$(lg_field "$f" '^latency: +p50 ([0-9.]+) ms.*')"
  record "$flavor" deliver.p90 "$(lg_field "$f" '^latency: .* p90 ([0-9.]+) ms.*')"
  record "$flavor" deliver.p99 "$(lg_field "$f" '^latency: .* p99 ([0-9.]+) ms.*')"
  record "$flavor" deliver.lost "$(lg_field "$f" '^download: .* ([0-9]+) lost.*')"
  record "$flavor" deliver.insert_p50 "$(lg_field "$f" '^insert call: p50 ([0-9.]+) ms.*')"
  record "$flavor" deliver.load "$l0 / $(load)"
  stop_server
}

# ---------------------------------------------------------------- workload 4: cluster
cluster_run() { # FLAVOR
  local flavor=$1 dir="$out/$1-cluster" f k
  mkdir -p "$dir"
  local db="fgbench_${flavor}_cluster_$$"
  dbs+=("$db")
  sql "DROP DATABASE IF EXISTS \`$db\`; CREATE DATABASE \`$db\`"
  # The admin-only server first: it creates the schema before the frontends race for it.
  local admin_port fe_pids=() fe_ports=() fe_dirs=()
  admin_port=$(free_port)
  mkdir -p "$dir/admin"
  fill_template admin.config "$dir/admin/components.config" "$(dsn "$db")" "ADMIN=127.0.0.1:$admin_port"
  launch "$flavor" "$dir/admin" "$admin_port"
  local admin_pid=$launched
  for (( f = 0; f < frontends; f++ )); do
    local https_port notify_port
    https_port=$(free_port) notify_port=$(free_port)
    mkdir -p "$dir/fe$f"
    # 0.0.0.0: each loadgen connects to its own 127.0.0.k, a separate source-port range.
    fill_template frontend.config "$dir/fe$f/components.config" "$(dsn "$db")" \
      "HTTPS=0.0.0.0:$https_port" "NOTIFY=127.0.0.1:$notify_port"
    launch "$flavor" "$dir/fe$f" "$https_port" "$notify_port"
    fe_pids+=("$launched") fe_ports+=("$https_port") fe_dirs+=("$dir/fe$f")
  done
  sleep 3
  local rss0=0 p
  for p in "${fe_pids[@]}"; do rss0=$(( rss0 + $(rss_kib "$p") )); done
  # Clients per frontend, then loadgen processes per frontend so each stays under the fd limit.
  local per_fe=$(( (cluster_clients + frontends - 1) / frontends ))
  (( per_fe > max_clients )) && { echo "compare.sh: $per_fe clients per frontend exceed the fd limit; use more --frontends" >&2; exit 1; }
  local lg_per_fe=$(( (per_fe + shard_size - 1) / shard_size ))
  local shards=$(( frontends * lg_per_fe )) per_rate per_msgs per_msg_rate
  per_rate=$(python3 -c "print($connect_rate / $shards)")
  per_msgs=$(( (cluster_messages + frontends - 1) / frontends ))
  per_msg_rate=$(python3 -c "print($rate / $frontends)")
  local l0 lg_pids=() left=$cluster_clients
  l0=$(load)
  say "$flavor cluster: $cluster_clients idle streaming clients on $frontends frontends ($shards loadgen processes), admin-only server inserts (load $l0)"
  for (( k = 0; k < shards; k++ )); do
    f=$(( k % frontends ))
    local c=$(( (per_fe + lg_per_fe - 1) / lg_per_fe ))
    (( c > left )) && c=$left
    left=$(( left - c ))
    local extra=()
    if (( k < frontends )); then
      # One inserting loadgen per frontend. The settle covers the other loadgens' connect
      # phase (same rate, same size) so that the inserts find every stream open. Each starts
      # inserting when its own connect phase ends, so they finish 1-2 s apart; the duration
      # keeps each one's streams open 20 s after its inserts began (they take ~8 s), so no
      # loadgen measures while another closes its thousands of streams.
      extra=(--settle 30 --duration 20 --messages "$per_msgs" --rate "$per_msg_rate")
    else
      extra=(--duration 7200)
    fi
    shard "$dir" "$k" "127.0.0.$((k + 1)):${fe_ports[$f]}" "127.0.0.1:$admin_port" "$c" \
      "$per_rate" "${extra[@]}"
  done
  wait_shards "$dir" "$shards"
  # The servers' CPU while every stream sits idle (over the 5 s before the RSS sample).
  local c0=0 c1=0
  for p in "${fe_pids[@]}"; do c0=$(( c0 + $(cpu_ticks "$p") )); done
  sleep 5
  for p in "${fe_pids[@]}"; do c1=$(( c1 + $(cpu_ticks "$p") )); done
  local rss1=0 connected=0 streams=0 rss_each=""
  for p in "${fe_pids[@]}"; do
    local r
    r=$(rss_kib "$p")
    rss1=$(( rss1 + r )) rss_each+="$(( r / 1024 )) "
  done
  for (( k = 0; k < shards; k++ )); do
    connected=$(( connected + $(cut -d' ' -f1 "$dir/ready.$k") ))
  done
  for (( f = 0; f < frontends; f++ )); do
    streams=$(( streams + $(ss -Htn state established "( sport = :${fe_ports[$f]} )" | wc -l) ))
  done
  local l1
  l1=$(load)
  say "$flavor cluster: $connected connected, $streams TCP connections held by the frontends; inserting"
  for (( k = 0; k < frontends; k++ )); do wait "${lg_pids[$k]}" || true; done
  local l2
  l2=$(load)
  for (( k = frontends; k < shards; k++ )); do kill -KILL "${lg_pids[$k]}" 2>/dev/null || true; wait "${lg_pids[$k]}" 2>/dev/null || true; done
  record "$flavor" cluster.frontends "$frontends"
  record "$flavor" cluster.loadgens "$shards"
  record "$flavor" cluster.clients "$connected"
  record "$flavor" cluster.streams "$streams"
  record "$flavor" cluster.rss_before_kib "$rss0"
  record "$flavor" cluster.rss_after_kib "$rss1"
  record "$flavor" cluster.rss_each_mib "$rss_each"
  record "$flavor" cluster.idle_cpu_pct "$(python3 -c "print(f'{($c1 - $c0) / $tck / 5 * 100:.0f}')")"
  record "$flavor" cluster.kib_per_client "$(python3 -c "print(f'{($rss1 - $rss0) / max($connected, 1):.1f}')")"
  # Every inserting loadgen's figures; the table shows the worst p99 and the summed counts.
  local p50s="" p99s="" ip50s="" ip99s="" lost=0 received=0 inserted=0
  for (( k = 0; k < frontends; k++ )); do
    f="$dir/loadgen.$k.log"
    p50s+="$(lg_field "$f" '^latency: +p50 ([0-9.]+) ms.*') "
    p99s+="$(lg_field "$f" '^latency: .* p99 ([0-9.]+) ms.*') "
    ip50s+="$(lg_field "$f" '^insert call: p50 ([0-9.]+) ms.*') "
    ip99s+="$(lg_field "$f" '^insert call: .* p99 ([0-9.]+) ms.*') "
    lost=$(( lost + $(lg_field "$f" '^download: .* ([0-9]+) lost.*') ))
    received=$(( received + $(lg_field "$f" '^download: .* ([0-9]+) received.*') ))
    inserted=$(( inserted + $(lg_field "$f" '^download: +([0-9]+) inserted.*') ))
  done
  record "$flavor" cluster.p50_each "$p50s"
  record "$flavor" cluster.p99_each "$p99s"
  record "$flavor" cluster.p50 "$(python3 -c "print(max(float(x) for x in '$p50s'.split()))")"
  record "$flavor" cluster.p99 "$(python3 -c "print(max(float(x) for x in '$p99s'.split()))")"
  # The InsertMessage call alone (admin-only server: store, then notify the frontend).
  record "$flavor" cluster.insert_p50_each "$ip50s"
  record "$flavor" cluster.insert_p99_each "$ip99s"
  record "$flavor" cluster.inserted "$inserted"
  record "$flavor" cluster.received "$received"
  record "$flavor" cluster.lost "$lost"
  record "$flavor" cluster.load "$l0 / $l1 / $l2"
  for p in "${fe_pids[@]}" "$admin_pid"; do kill "$p" 2>/dev/null || true; done
  for p in "${fe_pids[@]}" "$admin_pid"; do wait "$p" 2>/dev/null || true; done
  sleep 15
}

# ---------------------------------------------------------------- workload 5: admin calls
admin_run() { # FLAVOR STORE(mysql|sqlite)
  local flavor=$1 store=$2 key=$1
  local dir="$out/$flavor-admin-$store"
  server_args=()
  if [[ $store == sqlite ]]; then
    key="${flavor}_sqlite" server_args=(--database "sqlite://$dir/fleetgate.db?mode=rwc")
  fi
  start_server "$flavor" "admin-$store" 127.0.0.1
  server_args=()
  local have=0 n lg_pids=() k=0
  for n in $admin_levels; do
    # More streaming clients connect (and stay) until n are there.
    shard "$dir" "$k" "$srv_https" "$srv_admin" "$(( n - have ))" "$connect_rate" --duration 3600
    wait_shards "$dir" "$(( k + 1 ))"
    have=$n k=$(( k + 1 ))
    sleep 2
    local l0 f="$dir/admin$n.log"
    l0=$(load)
    say "$flavor ($store): GRR's connector, $n clients, $admin_calls InsertMessage + ListClients (load $l0)"
    "$venv/bin/python" "$here/admin_bench.py" --admin "$srv_admin" --clients "$n" \
      --inserts "$admin_calls" --lists "$admin_calls" > "$f" 2>"$dir/admin$n.err" \
      || { cat "$dir/admin$n.err" >&2; exit 1; }
    local m
    for m in insert_p50 insert_p99 list_p50 list_p99; do
      record "$key" "admin$n.$m" "$(lg_field "$f" "^$m ([0-9.]+)")"
    done
    record "$key" "admin$n.load" "$l0 / $(load)"
  done
  for (( k = 0; k < ${#lg_pids[@]}; k++ )); do kill -KILL "${lg_pids[$k]}" 2>/dev/null || true; wait "${lg_pids[$k]}" 2>/dev/null || true; done
  stop_server
  sleep 10 # let MariaDB flush and the load settle before the next run
}

# ---------------------------------------------------------------- run
{
  echo "date: $(date -u)"
  echo "machine: nproc $(nproc), $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/^Mem:/ {print $2}') GiB"
  echo "fleetgate: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- host || echo '+dirty')"
  echo "fleetgate flags: ${fleetgate_args[*]:-(none)}"
  echo "go: $go_bin ($(cat "$venv/fleetspeak-server-bin/usr/VERSION" 2>/dev/null || echo 0.1.19))"
  echo "mariadb: $(sql 'SELECT VERSION()')"
  echo "fd limit: $fd_limit"
} > "$out/machine.txt"
cat "$out/machine.txt" >&2

top_level=$(echo "$levels" | tr ' ' '\n' | sort -n | tail -1)
for w in $workloads; do
  case "$w" in
    idle)
      for n in $levels; do
        for fl in $flavors; do idle_level "$fl" "$n" "$([[ $n == "$top_level" ]] && echo 1 || echo 0)"; done
      done ;;
    upload) for fl in $flavors; do upload_run "$fl"; done ;;
    deliver) for fl in $flavors; do deliver_run "$fl"; done ;;
    cluster) for fl in $flavors; do cluster_run "$fl"; done ;;
    admin)
      for fl in $flavors; do
        admin_run "$fl" mysql
        if [[ $fl == fleetgate ]]; then admin_run "$fl" sqlite; fi
      done ;;
    *) echo "compare.sh: unknown workload $w" >&2; exit 2 ;;
  esac
done

python3 "$here/report.py" "$results" "$out/machine.txt" "$levels" "$max_clients" "$admin_levels" \
  > "$out/summary.md"
cat "$out/summary.md"
say "logs and results in $out"
