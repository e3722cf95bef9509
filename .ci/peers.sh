#!/usr/bin/env bash
# Creates (idempotently) a virtualenv with the real Fleetspeak peers used by the end-to-end
# tests (tests/), and prints its path. Usage: .ci/peers.sh [VENV_DIR]
# Default VENV_DIR: <repo>/target/peers-venv.
#   export FLEETGATE_PEERS_VENV=$(.ci/peers.sh)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo_root/target/peers-venv}"
python="${PYTHON:-python3}"

# Exactly these versions; `fleetspeak` needs protobuf >= 6.31.1 but does not declare it.
packages=(
  "fleetspeak==0.1.19"
  "fleetspeak-client-bin==0.1.19"
  "fleetspeak-server-bin==0.1.19"
  "protobuf>=6.31.1,<7"
)
stamp="$venv/.fleetgate-peers"
want="$(printf '%s\n' "${packages[@]}")"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" \
      && -x "$venv/fleetspeak-client-bin/usr/bin/fleetspeak-client" ]] \
   && "$venv/bin/python" -c 'import fleetspeak.client_connector.connector' >/dev/null 2>&1; then
  echo "$venv"
  exit 0
fi

mkdir -p "$(dirname "$venv")"
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --disable-pip-version-check -q "${packages[@]}" >&2
"$venv/bin/python" -c 'import fleetspeak.client_connector.connector' >&2
test -x "$venv/fleetspeak-client-bin/usr/bin/fleetspeak-client" || {
  echo "peers.sh: $venv/fleetspeak-client-bin/usr/bin/fleetspeak-client is missing after install" >&2
  exit 1
}
printf '%s\n' "${packages[@]}" > "$stamp"
echo "$venv"
