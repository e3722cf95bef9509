#!/usr/bin/env bash
# Creates (idempotently) a virtualenv with GRR from PyPI for the GRR end-to-end test, and prints
# its path. GRR pins protobuf 3.20.3 and fleetspeak 0.1.12, so it cannot share the peers'
# virtualenv. The install compiles pytsk3, libfsntfs-python, psutil and mysqlclient (about six
# minutes of CPU), so it is cached per machine outside the clone, keyed by the pin list and the
# interpreter. Usage: .ci/grr.sh [VENV_DIR]
#   export FLEETGATE_GRR_VENV=$(.ci/grr.sh)
set -euo pipefail

# Python 3.10 where it exists: on 3.11 protobuf 3.20.3 has no binary wheel and the pure-Python
# one trips GRR when a flow errors.
find_python() {
  if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"; return; fi
  if python3.10 --version >/dev/null 2>&1; then command -v python3.10; return; fi
  local root
  if root=$(pyenv root 2>/dev/null); then
    for p in "$root"/versions/3.10*/bin/python3.10; do
      [[ -x "$p" ]] && { echo "$p"; return; }
    done
  fi
  echo python3
}
python="$(find_python)"
pyver="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# GRR's own packages, then the fixes GRR 4.0.0.post0 needs on a current machine:
# - grr_response_core imports pkg_resources, which setuptools 70 dropped;
# - GRR's pin mysqlclient<=1.4.6, linked against MariaDB Connector/C 3.x, does not set
#   MULTI_STATEMENTS and GRR's migrations fail with MySQL error 1064; 2.1.1 works.
grr_packages=(
  "grr-response-server==4.0.0.post0"
  "grr-response-client==4.0.0.post0"
  "grr-api-client==4.0.0.post0"
  "grr-response-test==4.0.0.post0"
)
fix_packages=(
  "setuptools<70"
  "mysqlclient==2.1.1"
)
want="$(printf '%s\n' "python$pyver" "${grr_packages[@]}" "${fix_packages[@]}")"
key="$(printf '%s' "$want" | sha256sum | cut -c1-12)"
venv="${1:-${FLEETGATE_CACHE_DIR:-/var/cache/fleetgate}/grr-venv-$key}"
stamp="$venv/.fleetgate-grr"

check() {
  "$venv/bin/python" -c 'import grr_response_server, grr_response_client, grr_api_client, MySQLdb' \
    >/dev/null 2>&1
}

# One installer at a time per cache entry (two CI jobs on one machine share it).
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && check; then
  echo "$venv"
  exit 0
fi

# mysqlclient builds against MariaDB Connector/C.
if ! command -v mariadb_config >/dev/null 2>&1 && ! command -v mysql_config >/dev/null 2>&1; then
  apt-get update -qq >&2 && apt-get install -y -qq libmariadb-dev pkg-config >&2
fi

rm -rf "$venv"
"$python" -m venv "$venv" >&2
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
"${pip[@]}" "setuptools<70" wheel >&2
"${pip[@]}" "${grr_packages[@]}" "setuptools<70" >&2
# Separately: it contradicts GRR's declared pin, which pip would refuse in one resolution.
"${pip[@]}" "${fix_packages[@]}" >&2
check || {
  echo "grr.sh: GRR does not import from $venv after install" >&2
  "$venv/bin/python" -c 'import grr_response_server, grr_response_client, grr_api_client, MySQLdb' >&2
  exit 1
}
printf '%s\n' "$want" > "$stamp"
echo "$venv"
