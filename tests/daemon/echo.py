#!/usr/bin/env python3
"""Test daemon service for the Fleetgate end-to-end tests.

Run by the real Go `fleetspeak-client` as a Daemon service. It appends one JSON
object per line to the file named by argv[1]:

  {"event": "start", "pid": 123}
  {"event": "msg", "id": "<hex message_id>", "type": "<message_type>",
   "payload": "<hex of data.value>", "pid": 123}

Messages of type "echo" are answered with a message of type "echo-reply"
(same payload, source_message_id = the original message id) to the server-side
service named by argv[2] (default "TestService"). A message of type "die" makes the process exit with code 3
after recording it, so that the client restarts the daemon and reports a
terminated-process ResourceUsage.
"""

import json
import os
import sys

from fleetspeak.client_connector import connector
from fleetspeak.src.common.proto.fleetspeak import common_pb2


def main():
  out_path = sys.argv[1]
  reply_service = sys.argv[2] if len(sys.argv) > 2 else "TestService"
  out = open(out_path, "a", buffering=1)

  def record(obj):
    obj["pid"] = os.getpid()
    out.write(json.dumps(obj, sort_keys=True) + "\n")
    out.flush()

  conn = connector.FleetspeakConnection(version="fleetgate-e2e-1")
  record({"event": "start"})
  while True:
    msg, _ = conn.Recv()
    record({
        "event": "msg",
        "id": msg.message_id.hex(),
        "type": msg.message_type,
        "payload": msg.data.value.hex(),
    })
    if msg.message_type == "echo":
      # source_message_id = the original message id, so the test can derive the
      # server-side message id: sha256(client_id | 0 | service | 0 | source_message_id).
      reply = common_pb2.Message(
          message_type="echo-reply",
          source_message_id=msg.message_id,
          destination=common_pb2.Address(service_name=reply_service),
      )
      reply.data.CopyFrom(msg.data)
      conn.Send(reply)
    elif msg.message_type == "die":
      out.close()
      sys.exit(3)


if __name__ == "__main__":
  main()
