#!/usr/bin/env python
"""Runs flows on one GRR client through GRR's HTTP API (`grr_api_client`), as an analyst would,
and prints one JSON line per step: {"step", "ms", "results", "detail"}. Run it with the GRR
virtualenv's python.

  flows.py API_URL USER PASSWORD FILE1 FILE2

Once the API answers it prints {"event": "ready"} and reads the GRR client id (`C.<hex>`) from
stdin: the caller starts the client on that line, so that `enrolled` times the client's start
to its enrolment, not this script's imports.

Steps, each timed from its start and each waited for by polling the API every 0.2 s (the API
client's own WaitUntilDone polls every 15 s, which would hide every difference):
  enrolled          the client is known to GRR with the startup record its first message
                    carries (GRR refuses to interrogate a client without one)
  Interrogate       finishes, and the client's record names the OS and the host
  ListProcesses     finishes with processes, one of them the Fleetspeak client
  ClientFileFinder  downloads FILE1; the bytes GRR stored equal the file's
  FileFinder        downloads FILE2 the same way (the server-side variant)
Exits non-zero, naming the step and what was wrong, on the first failure.
"""

import json
import sys
import time

from grr_api_client import api as grr_api
from grr_api_client import errors
from grr_response_proto.api import flow_pb2

POLL = 0.2
TIMEOUT = 300


class StepError(Exception):
  pass


def emit(step, started, results, detail):
  print(
      json.dumps({
          "step": step,
          "ms": round((time.monotonic() - started) * 1000),
          "results": results,
          "detail": detail,
      }),
      flush=True,
  )


def wait(step, what, check):
  deadline = time.monotonic() + TIMEOUT
  last = None
  while time.monotonic() < deadline:
    try:
      value = check()
      if value is not None:
        return value
    except errors.Error as e:  # Not found yet, or the API not up yet.
      last = e
    except OSError as e:
      last = e
    time.sleep(POLL)
  raise StepError(f"{step}: no {what} within {TIMEOUT} s (last error: {last!r})")


def run_flow(step, client, name, args=None):
  flow = client.CreateFlow(name=name, args=args) if args is not None else None
  if flow is None:
    flow = client.CreateFlow(name=name)

  def done():
    f = flow.Get()
    return f if f.data.state != flow_pb2.ApiFlow.State.RUNNING else None

  f = wait(step, f"end of flow {flow.flow_id}", done)
  if f.data.state != flow_pb2.ApiFlow.State.TERMINATED:
    raise StepError(
        f"{step}: flow {flow.flow_id} ended in state {f.data.state}: "
        f"{f.data.context.status or f.data.error_description}"
    )
  return flow, list(flow.ListResults())


def download(step, api, client, name, path):
  started = time.monotonic()
  args = api.types.CreateFlowArgs(name)
  args.paths.append(path)
  args.action.action_type = args.action.DOWNLOAD
  _, results = run_flow(step, client, name, args)
  if not results:
    raise StepError(f"{step}: no result for {path}")
  with open(path, "rb") as f:
    want = f.read()
  got = b"".join(client.File("fs/os" + path).GetBlob())
  if got != want:
    raise StepError(f"{step}: GRR stored {len(got)} bytes for {path}, the file has {len(want)}")
  emit(step, started, len(results), f"{path}: {len(got)} bytes, equal")


def main(argv):
  url, user, password, file1, file2 = argv
  api = grr_api.InitHttp(api_endpoint=url, auth=(user, password))
  # The flow descriptors: proves the API answers, and CreateFlowArgs needs them later.
  wait("ready", "answer from the API", lambda: api.types.CreateFlowArgs("ListProcesses"))
  print(json.dumps({"event": "ready"}), flush=True)
  started = time.monotonic()
  client_id = sys.stdin.readline().strip()
  if not client_id.startswith("C."):
    raise StepError(f"enrolled: expected a client id C.<hex> on stdin, got {client_id!r}")
  client = api.Client(client_id)
  def enrolled():
    data = client.Get().data
    return data if data.agent_info.client_version > 0 else None

  data = wait("enrolled", f"client {client_id} with its startup record in GRR", enrolled)
  emit("enrolled", started, 1, data.client_id)

  started = time.monotonic()
  run_flow("Interrogate", client, "Interrogate")
  data = client.Get().data
  system = data.os_info.system
  fqdn = data.os_info.fqdn or data.knowledge_base.fqdn
  if system != "Linux" or not fqdn:
    raise StepError(f"Interrogate: the client record says system={system!r} fqdn={fqdn!r}")
  emit("Interrogate", started, 1, f"{system} {fqdn}")

  started = time.monotonic()
  _, results = run_flow("ListProcesses", client, "ListProcesses")
  names = [r.payload.name for r in results]
  if not any(n.startswith("fleetspeak-clie") for n in names):
    raise StepError(f"ListProcesses: {len(names)} processes, none is fleetspeak-client: {names[:20]}")
  emit("ListProcesses", started, len(results), f"{len(results)} processes")

  download("ClientFileFinder", api, client, "ClientFileFinder", file1)
  download("FileFinder", api, client, "FileFinder", file2)


if __name__ == "__main__":
  if len(sys.argv) != 6:
    sys.exit(__doc__)
  try:
    main(sys.argv[1:])
  except StepError as e:
    sys.exit(f"flows.py: {e}")
