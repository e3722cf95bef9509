#!/usr/bin/env python3
"""Daemon service that talks first, for the Fleetgate plugin end-to-end tests.

Run by the real Go `fleetspeak-client` as a Daemon service:

  sender.py RECORD_FILE SERVICE:TYPE:COUNT...

At start it sends COUNT messages of type TYPE to the server service SERVICE
for each argument, with source_message_id "<SERVICE>-<TYPE>-<i>" and a payload
that mixes text and binary bytes. Then it records every message it receives.
RECORD_FILE gets one JSON object per line, in the format of echo.py plus
"sent" lines:

  {"event": "start", "pid": 123}
  {"event": "sent", "service": "Echo", "type": "t", "smid": "<hex>",
   "payload": "<hex>", "pid": 123}
  {"event": "msg", "id": "<hex message_id>", "type": "<message_type>",
   "payload": "<hex of data.value>", "source": "<source service>",
   "pid": 123}
"""

import json
import os
import sys

from fleetspeak.client_connector import connector
from fleetspeak.src.common.proto.fleetspeak import common_pb2

TYPE_URL = "type.googleapis.com/fleetgate.e2e.Payload"


def main():
  out = open(sys.argv[1], "a", buffering=1)

  def record(obj):
    obj["pid"] = os.getpid()
    out.write(json.dumps(obj, sort_keys=True) + "\n")
    out.flush()

  conn = connector.FleetspeakConnection(version="fleetgate-e2e-sender-1")
  record({"event": "start"})
  for spec in sys.argv[2:]:
    service, message_type, count = spec.split(":")
    for i in range(int(count)):
      smid = ("%s-%s-%d" % (service, message_type, i)).encode()
      payload = ("%s payload %d " % (message_type, i)).encode() + bytes(
          [0, i % 256, 0xFF, 0x80, 0x0A])
      msg = common_pb2.Message(
          message_type=message_type,
          source_message_id=smid,
          destination=common_pb2.Address(service_name=service),
      )
      msg.data.type_url = TYPE_URL
      msg.data.value = payload
      conn.Send(msg)
      record({
          "event": "sent",
          "service": service,
          "type": message_type,
          "smid": smid.hex(),
          "payload": payload.hex(),
      })
  while True:
    msg, _ = conn.Recv()
    record({
        "event": "msg",
        "id": msg.message_id.hex(),
        "type": msg.message_type,
        "payload": msg.data.value.hex(),
        "source": msg.source.service_name,
    })


if __name__ == "__main__":
  main()
