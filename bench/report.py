#!/usr/bin/env python3
"""Turns bench/compare.sh's results.tsv (flavor, key, value) into a Markdown table with the
ratios Fleetgate vs Go and the targets.
Usage: report.py RESULTS MACHINE LEVELS MAX_CLIENTS [ADMIN_LEVELS]"""

import sys

results, machine, levels, max_clients = sys.argv[1], sys.argv[2], sys.argv[3].split(), int(sys.argv[4])
admin_levels = sys.argv[5].split() if len(sys.argv) > 5 else []
data = {}
for line in open(results):
    flavor, key, value = line.rstrip("\n").split("\t")
    data[(flavor, key)] = value


def get(flavor, key):
    return data.get((flavor, key), "")


def num(flavor, key):
    try:
        return float(get(flavor, key))
    except ValueError:
        return None


def ratio(key, better_low, fg="fleetgate"):
    g, f = num("go", key), num(fg, key)
    if g is None or f is None or g == 0 or f == 0:
        return "", None
    r = f / g
    text = f"{r:.2f}×"
    if better_low:
        text += f" (Go / Fleetgate = {g / f:.1f})"
    return text, r


rows = []


def row(label, key, unit, better_low, target=None, fg="fleetgate"):
    text, r = ratio(key, better_low, fg)
    verdict = ""
    if target is not None and r is not None:
        verdict = "met" if target(r) else "missed"
    rows.append((label, get("go", key), get(fg, key), unit, text, verdict))


for n in levels:
    if not (get("go", f"idle{n}.clients") or get("fleetgate", f"idle{n}.clients")):
        continue  # the idle workload did not run
    capped = f" (capped: {max_clients})" if int(n) > max_clients else ""
    rows.append((f"**idle {n}{capped}**: clients connected", get("go", f"idle{n}.clients"),
                 get("fleetgate", f"idle{n}.clients"), "", "", ""))
    row(f"idle {n}: server RSS before → after", f"idle{n}.rss_after_kib", "KiB", True)
    rows[-1] = (rows[-1][0],
                f"{get('go', f'idle{n}.rss_before_kib')} → {get('go', f'idle{n}.rss_after_kib')}",
                f"{get('fleetgate', f'idle{n}.rss_before_kib')} → {get('fleetgate', f'idle{n}.rss_after_kib')}",
                "KiB", "", "")
    row(f"idle {n}: RSS per idle streaming client", f"idle{n}.kib_per_client", "KiB", True,
        target=lambda r: r <= 1 / 3)
    rows.append((f"idle {n}: load average (before / after)", get("go", f"idle{n}.load"),
                 get("fleetgate", f"idle{n}.load"), "", "", ""))
if get("go", "top.clients") or get("fleetgate", "top.clients"):
    rows.append(("**top level**: streams open during the inserts", get("go", "top.clients"),
                 get("fleetgate", "top.clients"), "", "", ""))
    row("top level: delivery p50", "top.p50", "ms", True)
    row("top level: delivery p99", "top.p99", "ms", True, target=lambda r: r <= 0.1)
    row("top level: lost", "top.lost", "", True)
row("**upload**: processed by the NOOP service (database, steady state)", "upload.processed_per_s",
    "msg/s", False, target=lambda r: r >= 3)
offered = num("fleetgate", "upload.offered_per_s")
done = num("fleetgate", "upload.processed_per_s")
if offered and done and done >= 0.95 * offered:
    rows[-1] = rows[-1][:4] + (rows[-1][4] + ", a lower bound: Fleetgate kept up with the offered "
                               f"{offered:.0f} msg/s; raise --upload-rate", rows[-1][5])
rows.append(("upload: offered by the clients", get("go", "upload.offered_per_s"),
             get("fleetgate", "upload.offered_per_s"), "msg/s", "", ""))
row("upload: acked frames' messages, as the loadgen counts them", "upload.acked_per_s", "msg/s", False)
row("upload: sent by the clients (whole run)", "upload.sent", "", False)
row("upload: processed (whole run, database)", "upload.processed", "", False)
row("upload: stored but not processed", "upload.unprocessed", "", True)
row("upload: server CPU", "upload.cpu_s", "s", True)
row("upload: server CPU per processed message", "upload.cpu_us_per_msg", "µs", True)
row("upload: MariaDB CPU per processed message", "upload.db_cpu_us_per_msg", "µs", True)
row("upload: server RSS at the end", "upload.rss_kib", "KiB", True)
rows.append(("upload: load average (before / after)", get("go", "upload.load"),
             get("fleetgate", "upload.load"), "", "", ""))
row("**delivery** (100 clients): p50", "deliver.p50", "ms", True)
row("delivery: p90", "deliver.p90", "ms", True)
row("delivery: p99", "deliver.p99", "ms", True, target=lambda r: r <= 0.1)
row("delivery: InsertMessage call p50", "deliver.insert_p50", "ms", True)
row("delivery: lost", "deliver.lost", "", True)
rows.append(("delivery: load average (before / after)", get("go", "deliver.load"),
             get("fleetgate", "deliver.load"), "", "", ""))
if get("go", "cluster.clients") or get("fleetgate", "cluster.clients"):
    def same(label, key, unit=""):
        rows.append((label, get("go", key), get("fleetgate", key), unit, "", ""))
    same("**cluster**: client-facing servers (+ 1 admin-only server)", "cluster.frontends")
    same("cluster: loadgen processes", "cluster.loadgens")
    same("cluster: clients connected", "cluster.clients")
    same("cluster: TCP connections held by the frontends", "cluster.streams")
    rows.append(("cluster: frontends' summed RSS before → after",
                 f"{get('go', 'cluster.rss_before_kib')} → {get('go', 'cluster.rss_after_kib')}",
                 f"{get('fleetgate', 'cluster.rss_before_kib')} → "
                 f"{get('fleetgate', 'cluster.rss_after_kib')}", "KiB", "", ""))
    same("cluster: each frontend's RSS after", "cluster.rss_each_mib", "MiB")
    same("cluster: frontends' CPU, all streams idle (100 = one core)", "cluster.idle_cpu_pct", "%")
    row("cluster: RSS per idle streaming client", "cluster.kib_per_client", "KiB", True,
        target=lambda r: r <= 1 / 3)
    if (get("go", "cluster.clients") and get("fleetgate", "cluster.clients")
            and get("go", "cluster.clients") != get("fleetgate", "cluster.clients")):
        # Per contacted client: a server that left connections half-open is not comparable.
        rows[-1] = rows[-1][:4] + ("", "not comparable: not the same number of clients connected")
    same("cluster: delivery p50 per frontend's clients", "cluster.p50_each", "ms")
    same("cluster: delivery p99 per frontend's clients", "cluster.p99_each", "ms")
    row("cluster: delivery p99 (worst frontend)", "cluster.p99", "ms", True)
    p99 = num("fleetgate", "cluster.p99")
    if p99 is not None and num("fleetgate", "cluster.clients"):
        met = p99 < 100 and num("fleetgate", "cluster.clients") >= 50000
        rows[-1] = rows[-1][:5] + ("< 100 ms with 50,000 open: " + ("met" if met else "missed"),)
    same("cluster: InsertMessage call p50 per inserting loadgen", "cluster.insert_p50_each", "ms")
    same("cluster: InsertMessage call p99 per inserting loadgen", "cluster.insert_p99_each", "ms")
    same("cluster: inserted / received / lost", "cluster.inserted")
    rows[-1] = (rows[-1][0],
                " / ".join(get("go", k) for k in ("cluster.inserted", "cluster.received", "cluster.lost")),
                " / ".join(get("fleetgate", k) for k in ("cluster.inserted", "cluster.received", "cluster.lost")),
                "", "", "")
    same("cluster: load average (start / connected / inserts done)", "cluster.load")

for n in admin_levels:
    # Go 0.1.19 has no embedded store: the SQLite rows compare with Go on MariaDB.
    for fg, store in (("fleetgate", "MariaDB"), ("fleetgate_sqlite", "SQLite (Go: MariaDB)")):
        if not get(fg, f"admin{n}.insert_p50"):
            continue
        at_most_go = lambda r: r <= 1
        row(f"**admin** via GRR's connector, {n} clients, {store}: InsertMessage p50",
            f"admin{n}.insert_p50", "ms", True, target=at_most_go, fg=fg)
        row(f"admin, {n} clients, {store}: InsertMessage p99", f"admin{n}.insert_p99", "ms", True,
            fg=fg)
        row(f"admin, {n} clients, {store}: ListClients (all) p50", f"admin{n}.list_p50", "ms",
            True, target=at_most_go, fg=fg)
        row(f"admin, {n} clients, {store}: ListClients (all) p99", f"admin{n}.list_p99", "ms",
            True, fg=fg)
        rows.append((f"admin, {n} clients, {store}: load average (before / after)",
                     get("go", f"admin{n}.load"), get(fg, f"admin{n}.load"), "", "", ""))

print("```")
print(open(machine).read().rstrip())
print("```")
print()
print("| figure | Go | Fleetgate | unit | Fleetgate / Go | target |")
print("|---|---|---|---|---|---|")
for label, g, f, unit, r, verdict in rows:
    if not (g or f):
        continue
    print(f"| {label} | {g} | {f} | {unit} | {r} | {verdict} |")
print()
print("Targets: RSS per idle client ≤ 1/3 of Go's; upload ≥ 3× Go's; delivery p99 ≤ 1/10 of Go's;"
      " 50,000 streaming clients with delivery p99 < 100 ms;"
      " admin calls through GRR's connector at or below Go's"
      f" (this machine: at most {max_clients} clients per server process, the fd limit).")
