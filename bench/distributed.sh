#!/usr/bin/env bash
# bench/distributed.sh — cross-server delivery latency: a message inserted on an admin-only
# server reaches a client streaming to another server (docs/DISTRIBUTED.md), Fleetgate vs
# Google's Go `fleetspeak-server` 0.1.19 in the same two-process topology, same MariaDB.
#
# Topology, per flavor (Go first, then Fleetgate), on loopback:
#
#   fleetgate loadgen ─ N streaming clients ─TLS─► frontend (https_config,
#        │                                            notification_listen_address)
#        │                                                 ▲ POST /client/<id>
#        └─ InsertMessage ─gRPC─► admin-only server ────────┘ (notification_use_http_notifier)
#                                  both ──► one fresh MariaDB database (READ-COMMITTED)
#
# The loadgen inserts --messages messages at --rate/s through the admin-only server, spread
# over the clients, and reports InsertMessage → receipt at the simulated client (p50/p90/p99)
# and the InsertMessage call alone. Certificates and the frontend's components config come
# from `fleetgate config` (the fleetspeak-config equivalent), as an operator would make them.
# The load average is recorded before and after each run: on a shared machine it is part of
# the figure.
#
# Flags
#   --clients N      streaming clients (default 100)
#   --messages N     messages to insert (default 2000)
#   --rate N         inserts per second (default 100)
#   --only go|fleetgate  one flavor only (no ratio)
#   --out DIR        logs and results (default target/bench-distributed/<UTC time>)
#   --no-build       use target/release/fleetgate as it is
#   --keep           keep the databases
#
# Environment: FLEETGATE_PEERS_VENV (venv with the Go binaries; default target/peers-venv,
# created with .ci/peers.sh), MYSQL_HOST/MYSQL_PORT (default 127.0.0.1:3306, root without a
# password, as peers.md). About 2 minutes with the defaults. Not part of CI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

clients=100 messages=2000 rate=100 only="" out="" build=1 keep=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --clients) clients="$2"; shift ;;
    --messages) messages="$2"; shift ;;
    --rate) rate="$2"; shift ;;
    --only) only="$2"; shift ;;
    --out) out="$2"; shift ;;
    --no-build) build=0 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "distributed.sh: unknown flag $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
flavors="${only:-go fleetgate}"
out="${out:-$root/target/bench-distributed/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
mysql_host="${MYSQL_HOST:-127.0.0.1}" mysql_port="${MYSQL_PORT:-3306}"

say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$out/progress.log" >&2; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
sql() { mysql -uroot -h"$mysql_host" -P"$mysql_port" -N -B -e "$1"; }

pids=() dbs=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ $keep == 0 ]]; then
    for p in "${dbs[@]}"; do sql "DROP DATABASE IF EXISTS \`$p\`" 2>/dev/null || true; done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- prerequisites
venv="${FLEETGATE_PEERS_VENV:-$root/target/peers-venv}"
go_bin="$venv/fleetspeak-server-bin/usr/bin/fleetspeak-server"
if [[ $flavors == *go* && ! -x $go_bin ]]; then
  say "installing the Go peers (.ci/peers.sh)"
  venv="$(bash "$root/.ci/peers.sh" "$venv")"
fi

if ! mysqladmin -uroot -h"$mysql_host" -P"$mysql_port" --connect-timeout=2 ping >/dev/null 2>&1; then
  say "starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  for _ in $(seq 1 30); do mysqladmin -uroot ping >/dev/null 2>&1 && break; sleep 1; done
fi
sql "SELECT 1" >/dev/null

if [[ $build == 1 ]]; then
  say "cargo build --release -p fleetgate-server"
  cargo build --release -p fleetgate-server 2>&1 | tail -3 >&2
fi
fg="$root/target/release/fleetgate"
test -x "$fg"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_port PID PORT LOG: until PORT accepts connections; fails if PID exits first.
wait_port() {
  local i
  for i in $(seq 1 600); do
    kill -0 "$1" 2>/dev/null || { tail -20 "$3" >&2; echo "distributed.sh: server exited at start ($3)" >&2; exit 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "distributed.sh: port $2 not open after 60 s ($3)" >&2
  exit 1
}

# What one commit costs this MariaDB (fsync of the redo log with the default
# innodb_flush_log_at_trx_commit=1): every delivery waits for at least two.
commit_probe() {
  local db="fgdist_probe_$$" t0 t1
  sql "CREATE DATABASE \`$db\`; CREATE TABLE \`$db\`.t (i INT PRIMARY KEY AUTO_INCREMENT)"
  t0=$(date +%s%N)
  for _ in $(seq 1 100); do echo "INSERT INTO t VALUES ();"; done | mysql -uroot -h"$mysql_host" -P"$mysql_port" "$db"
  t1=$(date +%s%N)
  sql "DROP DATABASE \`$db\`"
  python3 -c "print(f'{($t1 - $t0) / 100 / 1e6:.2f} ms')"
}

# ---------------------------------------------------------------- one topology
# start_pair FLAVOR: a fresh database, the frontend, then the admin-only server; sets
# front_https admin_addr.
start_pair() {
  local flavor=$1 dir="$out/$1" db="fgdist_${1}_$$"
  mkdir -p "$dir"
  dbs+=("$db")
  sql "DROP DATABASE IF EXISTS \`$db\`; CREATE DATABASE \`$db\`"
  local dsn="root@tcp($mysql_host:$mysql_port)/$db?tx_isolation=%27READ-COMMITTED%27"
  local https_port notify_port admin_port
  https_port=$(free_port) notify_port=$(free_port) admin_port=$(free_port)
  front_https="127.0.0.1:$https_port" admin_addr="127.0.0.1:$admin_port"
  # The CA and server certificate are made on the first call and reused by the next.
  "$fg" config -config - > "$dir/configurator.log" 2>&1 <<EOF
configuration_name: "fgdist"
components_config {
  mysql_data_source_name: "$dsn"
  https_config { listen_address: "$front_https" }
  notification_listen_address: "127.0.0.1:$notify_port"
  notification_public_address: "127.0.0.1:$notify_port"
}
trusted_cert_file: "$out/ca.pem"
trusted_cert_key_file: "$out/ca.key"
server_cert_file: "$out/server.pem"
server_cert_key_file: "$out/server.key"
server_component_configuration_file: "$dir/frontend.config"
public_host_port: "localhost:$https_port"
public_host_port: "127.0.0.1:$https_port"
EOF
  cat > "$dir/admin.config" <<EOF
mysql_data_source_name: "$dsn"
admin_config { listen_address: "$admin_addr" }
notification_use_http_notifier: true
EOF
  : > "$dir/services.config" # no server services: only delivery is measured
  local role
  for role in frontend admin; do
    if [[ $flavor == go ]]; then
      "$go_bin" -logtostderr -components_config "$dir/$role.config" \
        -services_config "$dir/services.config" > "$dir/$role.log" 2>&1 &
    else
      "$fg" server --components_config "$dir/$role.config" \
        --services_config "$dir/services.config" --logtostderr > "$dir/$role.log" 2>&1 &
    fi
    pids+=($!)
    # The frontend first: it creates the schema, and the admin server must not race its DDL.
    if [[ $role == frontend ]]; then
      wait_port $! "$https_port" "$dir/$role.log"
      wait_port $! "$notify_port" "$dir/$role.log"
    else
      wait_port $! "$admin_port" "$dir/$role.log"
    fi
  done
  sleep 2 # pools and first GC settle before the clients connect
}

results="$out/results.tsv"
: > "$results"
record() { # FLAVOR KEY VALUE
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$results"
  say "  $1 $2 = $3"
}
field() { sed -nE "s/$2/\1/p" "$1" | head -1; } # FILE REGEX → first capture group

run_flavor() {
  local flavor=$1 f="$out/$1/loadgen.log" l0
  start_pair "$flavor"
  l0=$(load)
  say "$flavor: $clients clients on the frontend, $messages inserts at $rate/s on the admin server (load $l0)"
  "$fg" loadgen --server "$front_https" --server_name localhost --ca "$out/ca.pem" \
    --admin "$admin_addr" --clients "$clients" --messages "$messages" --rate "$rate" \
    --duration 0 > "$f" 2>&1 || { cat "$f" >&2; exit 1; }
  record "$flavor" p50 "$(field "$f" '^latency: +p50 ([0-9.]+) ms.*')"
  record "$flavor" p90 "$(field "$f" '^latency: .* p90 ([0-9.]+) ms.*')"
  record "$flavor" p99 "$(field "$f" '^latency: .* p99 ([0-9.]+) ms.*')"
  record "$flavor" insert_p50 "$(field "$f" '^insert call: p50 ([0-9.]+) ms.*')"
  record "$flavor" insert_p99 "$(field "$f" '^insert call: .* p99 ([0-9.]+) ms.*')"
  record "$flavor" lost "$(field "$f" '^download: .* ([0-9]+) lost.*')"
  record "$flavor" load "$l0 / $(load)"
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
}

# ---------------------------------------------------------------- run
{
  echo "date: $(date -u)"
  echo "machine: nproc $(nproc), $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
  echo "fleetgate: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- host || echo '+dirty')"
  echo "mariadb: $(sql 'SELECT VERSION()'), innodb_flush_log_at_trx_commit=$(sql 'SELECT @@innodb_flush_log_at_trx_commit'), one commit $(commit_probe)"
  echo "workload: $clients streaming clients, $messages inserts at $rate/s"
} | tee "$out/header.txt" >&2
for flavor in $flavors; do
  run_flavor "$flavor"
  sleep 5 # let MariaDB flush before the next flavor
done

value() { awk -F'\t' -v f="$1" -v k="$2" '$1 == f && $2 == k {print $3}' "$results"; }
{
  cat "$out/header.txt"
  echo
  echo "| InsertMessage (admin server) → client (frontend) | Go 0.1.19 | Fleetgate | target |"
  echo "|---|---|---|---|"
  for k in p50 p90 p99 insert_p50 insert_p99 lost load; do
    label="$k (ms)" target=""
    case $k in p50) target="< 20" ;; p99) target="< 100" ;; lost) label=lost target=0 ;; load) label="load average before / after" ;; esac
    echo "| $label | $(value go $k) | $(value fleetgate $k) | $target |"
  done
} | tee "$out/table.md"
