#!/usr/bin/env bash
# GRR's own end-to-end suite (`grr_response_test.run_end_to_end_tests`) against a GRR
# installation that tests/tests/grr_flows.rs kept (run that test with FLEETGATE_E2E_KEEP=1; it
# prints "GRR installation kept in DIR"): restarts the installation's Fleetspeak server (Fleetgate
# or Go, as the test used), GRR's frontend, admin UI and worker, and the client, then runs the
# suite on that client. Usage: tests/grr/run-grr-suite.sh DIR fleetgate|go [--run_only_tests=A,B]
# Needs FLEETGATE_GRR_VENV and FLEETGATE_PEERS_VENV (and FLEETGATE_BIN, default
# target/debug/fleetgate). The suite's output goes to stdout; every process's log to DIR/suite-*.log.
set -euo pipefail
dir="$(cd "$1" && pwd)"
flavor="$2"
shift 2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
grr_python="$FLEETGATE_GRR_VENV/bin/python"
peers="$FLEETGATE_PEERS_VENV"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
cd "$dir"
case "$flavor" in
  go) server=("$peers/fleetspeak-server-bin/usr/bin/fleetspeak-server" -logtostderr) ;;
  fleetgate) server=("${FLEETGATE_BIN:-$root/target/debug/fleetgate}" server) ;;
  *) echo "usage: $0 DIR fleetgate|go [flags of run_end_to_end_tests]" >&2; exit 2 ;;
esac
"${server[@]}" --components_config fleetspeak-server.components.config \
  --services_config fleetspeak-server.services.config > suite-fleetspeak-server.log 2>&1 &
pids+=($!)
for module in grr_response_server.bin.fleetspeak_frontend grr_response_server.gui.admin_ui \
              grr_response_server.bin.worker; do
  "$grr_python" -u -m "$module" --config "$dir/server.yaml" > "suite-$module.log" 2>&1 &
  pids+=($!)
done
port=$(awk '/^AdminUI.port:/ {print $2}' server.yaml)
until curl -s -o /dev/null "http://localhost:$port/"; do sleep 1; done
"$peers/fleetspeak-client-bin/usr/bin/fleetspeak-client" -config client/client.config \
  -logtostderr -v=1 > suite-client.log 2>&1 &
pids+=($!)
id=$(grep -o 'Using [a-z ]*client id: [0-9a-f]*' client/client.log | tail -1 | awk '{print $NF}')
"$grr_python" -u -m grr_response_test.run_end_to_end_tests --config "$dir/server.yaml" \
  --api_endpoint "http://localhost:$port" --api_user admin --api_password admin \
  --client_id "C.$id" --ignore_test_context True "$@"
