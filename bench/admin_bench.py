#!/usr/bin/env python3
"""Admin calls as GRR makes them: GRR's own connector (`fleetspeak` 0.1.19 on PyPI),
`OutgoingConnection` over `grpc.insecure_channel`, one call at a time.

Measures the InsertMessage call (p50/p99) to clients that are connected, and ListClients of
every client (p50/p99). Run by bench/compare.sh (workload `admin`) against the Go server and
Fleetgate alike; prints one `key value` line per figure.

    admin_bench.py --admin 127.0.0.1:9091 --clients 200 [--inserts 500] [--lists 200]
"""

import argparse
import sys
import time

import grpc
from fleetspeak.server_connector.connector import OutgoingConnection
from fleetspeak.src.common.proto.fleetspeak import common_pb2
from fleetspeak.src.server.proto.fleetspeak_server import admin_pb2


def percentile(sorted_ms, p):
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * p / 100))]


def timed(n, gap, call):
    """Calls `call(i)` n times, `gap` seconds apart (start to start at most), and returns the
    sorted durations in milliseconds."""
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        dt = time.perf_counter() - t0
        out.append(dt * 1e3)
        if gap > dt:
            time.sleep(gap - dt)
    return sorted(out)


def wait_for_clients(conn, want, timeout):
    deadline = time.monotonic() + timeout
    while True:
        clients = conn.ListClients(admin_pb2.ListClientsRequest()).clients
        if len(clients) >= want or time.monotonic() > deadline:
            return [c.client_id for c in clients]
        time.sleep(0.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--admin", required=True, help="admin API address, host:port")
    ap.add_argument("--clients", type=int, required=True, help="clients expected to be listed")
    ap.add_argument("--inserts", type=int, default=500)
    ap.add_argument("--lists", type=int, default=200)
    ap.add_argument("--service", default="loadgen", help="client-side service of the inserts")
    ap.add_argument(
        "--gap-ms",
        type=float,
        default=20,
        help="start-to-start spacing of calls: GRR's calls are independent, not back to back",
    )
    args = ap.parse_args()

    # What GRR's fleetspeak_connector builds (InsecureGRPCServiceClient.outgoing).
    conn = OutgoingConnection(grpc.insecure_channel(args.admin), "GRR")
    ids = wait_for_clients(conn, args.clients, 120)
    if len(ids) < args.clients:
        sys.exit(f"admin_bench: {len(ids)} clients listed, {args.clients} expected")
    gap = args.gap_ms / 1e3

    def insert(i):
        m = common_pb2.Message()
        m.destination.client_id = ids[i % len(ids)]
        m.destination.service_name = args.service
        m.message_type = "bench"
        m.data.value = b"x" * 100
        conn.InsertMessage(m)

    def list_all(_):
        n = len(conn.ListClients(admin_pb2.ListClientsRequest()).clients)
        if n < args.clients:
            sys.exit(f"admin_bench: ListClients returned {n} clients, {args.clients} expected")

    timed(20, gap, insert)  # warm-up: connection, server caches
    ins = timed(args.inserts, gap, insert)
    timed(5, gap, list_all)
    ls = timed(args.lists, gap, list_all)
    print(f"clients {len(ids)}")
    print(f"insert_p50 {percentile(ins, 50):.2f}")
    print(f"insert_p99 {percentile(ins, 99):.2f}")
    print(f"list_p50 {percentile(ls, 50):.2f}")
    print(f"list_p99 {percentile(ls, 99):.2f}")
    conn.Shutdown()


if __name__ == "__main__":
    main()
