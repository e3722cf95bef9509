#!/usr/bin/env bash
# bench/grr-breakdown.sh — where one GRR flow's time goes, from the databases of a GRR
# installation that tests/tests/grr_flows.rs kept (run it with FLEETGATE_E2E_KEEP=1; the test
# prints "GRR installation kept in DIR"). Usage: bench/grr-breakdown.sh DIR [FLOW_NAME]
# (default ListProcesses). Prints, for the flow's last run, the GRR flow's creation and last
# update (GRR's own database) and every Fleetspeak message of that time window (the Fleetspeak
# server's database): created (the server's insertion of a message to the client; the client's
# own clock for a message from it) and processed (acknowledged by the client, or handed to
# GRR's frontend and answered).
set -euo pipefail
dir="$1"
flow="${2:-ListProcesses}"
grr_db=$(awk '/^Mysql.database:/ {print $2}' "$dir/server.local.yaml")
fs_db=$(grep -o 'tcp([^)]*)/[A-Za-z0-9_]*' "$dir/fleetspeak/server.components.config" | head -1 | sed 's|.*/||')
mysql=(mysql -uroot -h127.0.0.1 -P3306 --batch)
read -r start end < <("${mysql[@]}" -N -e "SELECT UNIX_TIMESTAMP(timestamp), UNIX_TIMESTAMP(last_update) FROM $grr_db.flows WHERE name = '$flow' ORDER BY timestamp DESC LIMIT 1")
echo "GRR flow $flow: created $(date -u -d @"$start" +%T.%3N), last update $(date -u -d @"$end" +%T.%3N) ($(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }') s)"
"${mysql[@]}" -e "
SELECT IF(source_client_id IS NULL, 'to client', 'from client') AS direction,
       destination_service_name AS service, message_type AS type,
       ROUND(creation_time_seconds + creation_time_nanos / 1e9 - $start, 3) AS created_s,
       ROUND(processed_time_seconds + processed_time_nanos / 1e9 - $start, 3) AS processed_s
FROM $fs_db.messages
WHERE creation_time_seconds + creation_time_nanos / 1e9 BETWEEN $start AND $end
ORDER BY creation_time_seconds, creation_time_nanos"
