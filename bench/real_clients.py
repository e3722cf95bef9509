#!/usr/bin/env python3
"""InsertMessage → the daemon service of real Go clients, one-way latency.

    real_clients.py --bin target/release/fleetgate --venv VENV [--clients 20] [--messages 400]
                    [--rate 20] [--database URL]

Starts `fleetgate quickstart` (SQLite in a temp state dir, or --database), N real Go
`fleetspeak-client` 0.1.19 (streaming) each running a Python daemon service that records the
wall-clock time it received each message, and inserts --messages messages through GRR's
connector (`fleetspeak` 0.1.19, OutgoingConnection) round-robin at --rate/s. Each payload
carries its send time, so the latency is measured on one clock. Prints the InsertMessage call
p50/p99, the one-way p50/p90/p99 (the client's share as well as the server's), and the mean
time of each store operation during the measured phase (the server's /metrics).
"""

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

RECORDER = r'''
import json, sys, time
from fleetspeak.client_connector import connector
out = open(sys.argv[1], "a", buffering=1)
conn = connector.FleetspeakConnection(version="bench")
while True:
    msg, _ = conn.Recv()
    now = time.time()
    out.write(json.dumps({"sent": float(msg.data.value.decode()), "recv": now}) + "\n")
'''


def store_ops(stats):
    """{operation: (seconds, calls)} of the server's store, from its /metrics."""
    import re
    import urllib.request

    text = urllib.request.urlopen(f"http://{stats}/metrics").read().decode()
    out = {}
    for kind, op, v in re.findall(
            r'fleetgate_store_operation_seconds_(sum|count)\{operation="(\w+)",errored="false"\} (\S+)',
            text):
        s, n = out.get(op, (0.0, 0.0))
        out[op] = (s + float(v), n) if kind == "sum" else (s, n + float(v))
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--venv", required=True)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--messages", type=int, default=400)
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--database")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    python = os.path.join(args.venv, "bin", "python")
    client_bin = os.path.join(args.venv, "fleetspeak-client-bin/usr/bin/fleetspeak-client")
    root = tempfile.mkdtemp(prefix="fg-realclients-")
    procs = []
    try:
        ready = os.path.join(root, "ready")
        cmd = [args.bin, "quickstart", "--state_dir", os.path.join(root, "state"),
               "--listen", "127.0.0.1:0", "--admin_listen", "127.0.0.1:0", "--ready_file", ready,
               "--stats_listen", "127.0.0.1:0"]
        if args.database:
            cmd += ["--database", args.database]
        log = open(os.path.join(root, "server.log"), "w")
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=log))
        while not (os.path.exists(ready) and "admin=" in open(ready).read()
                   and "stats=" in open(ready).read()):
            if procs[0].poll() is not None:
                sys.exit(open(log.name).read()[-3000:])
            time.sleep(0.1)
        fields = dict(l.split("=", 1) for l in open(ready).read().split() if "=" in l)
        admin = fields["admin"]
        generated = open(os.path.join(root, "state/client/client.config")).read()
        recorder = os.path.join(root, "recorder.py")
        open(recorder, "w").write(RECORDER)
        for i in range(args.clients):
            d = os.path.join(root, f"clients/{i}")
            os.makedirs(os.path.join(d, "config/textservices"))
            open(os.path.join(d, "client.state"), "w").close()
            open(os.path.join(d, "config/communicator.txt"), "w").write(
                "min_failure_delay_seconds: 1\n")
            open(os.path.join(d, "config/textservices/TestService.txt"), "w").write(
                'name: "TestService"\nfactory: "Daemon"\nconfig {\n'
                '  [type.googleapis.com/fleetspeak.daemonservice.Config] {\n'
                f'    argv: "{python}"\n    argv: "{recorder}"\n    argv: "{d}/received.jsonl"\n'
                '  }\n}\n')
            conf = []
            for line in generated.splitlines():
                t = line.strip()
                if t.startswith("configuration_directory:"):
                    line = f'  configuration_directory: "{d}/config"'
                elif t.startswith("state_file:"):
                    line = f'  state_file: "{d}/client.state"'
                elif t.startswith("streaming:"):
                    line = "streaming: true"
                conf.append(line)
            if not any(l.strip().startswith("streaming:") for l in conf):
                conf.append("streaming: true")
            open(os.path.join(d, "client.config"), "w").write("\n".join(conf) + "\n")
            clog = open(os.path.join(d, "client.log"), "w")
            procs.append(subprocess.Popen([client_bin, "-config", os.path.join(d, "client.config"),
                                           "-logtostderr"], stdout=clog, stderr=clog))
            time.sleep(0.05)

        import grpc
        from fleetspeak.server_connector.connector import OutgoingConnection
        from fleetspeak.src.common.proto.fleetspeak import common_pb2
        from fleetspeak.src.server.proto.fleetspeak_server import admin_pb2

        conn = OutgoingConnection(grpc.insecure_channel(admin), "GRR")
        deadline = time.time() + 120
        while True:
            ids = [c.client_id for c in conn.ListClients(admin_pb2.ListClientsRequest()).clients]
            if len(ids) >= args.clients or time.time() > deadline:
                break
            time.sleep(1)
        # Every daemon started: the stream is up and the client's pipe to its daemon too.
        while len(glob.glob(os.path.join(root, "clients/*/received.jsonl"))) < len(ids):
            for cid in ids:
                m = common_pb2.Message(message_type="warmup")
                m.destination.client_id = cid
                m.destination.service_name = "TestService"
                m.data.value = repr(time.time()).encode()
                conn.InsertMessage(m)
            if time.time() > deadline + 60:
                break
            time.sleep(3)
        time.sleep(3)
        for f in glob.glob(os.path.join(root, "clients/*/received.jsonl")):
            open(f, "w").close()
        m0 = store_ops(fields["stats"])
        calls = []
        for i in range(args.messages):
            t0 = time.time()
            m = common_pb2.Message(message_type="bench")
            m.destination.client_id = ids[i % len(ids)]
            m.destination.service_name = "TestService"
            m.data.value = repr(t0).encode()
            conn.InsertMessage(m)
            calls.append((time.time() - t0) * 1e3)
            sleep = t0 + 1 / args.rate - time.time()
            if sleep > 0:
                time.sleep(sleep)
        time.sleep(5)
        m1 = store_ops(fields["stats"])
        lat = []
        for f in glob.glob(os.path.join(root, "clients/*/received.jsonl")):
            for line in open(f):
                r = json.loads(line)
                lat.append((r["recv"] - r["sent"]) * 1e3)
        print(f"clients {len(ids)} messages {args.messages} received {len(lat)} rate {args.rate}/s")
        print(f"insert_call p50 {pct(calls, 50):.1f} ms p99 {pct(calls, 99):.1f} ms")
        print(f"one_way p50 {pct(lat, 50):.1f} ms p90 {pct(lat, 90):.1f} ms p99 {pct(lat, 99):.1f} ms")
        for op in sorted(m1):
            n = m1[op][1] - m0.get(op, (0, 0))[1]
            if n:
                took = m1[op][0] - m0.get(op, (0, 0))[0]
                print(f"store {op}: {n:.0f} calls, mean {took / n * 1e3:.2f} ms")
        conn.Shutdown()
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")


if __name__ == "__main__":
    main()
