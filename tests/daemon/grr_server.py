#!/usr/bin/env python3
"""GRR's side of Fleetspeak, for the Fleetgate end-to-end tests.

  grr_server.py SERVICE LISTEN_ADDR ADMIN_ADDR RECORD_FILE

Creates GRR's server connector,
`InsecureGRPCServiceClient(SERVICE, fleetspeak_message_listen_address=LISTEN_ADDR,
fleetspeak_server=ADMIN_ADDR)`, and calls `Listen(callback)`: the Fleetspeak
server's GRPC service delivers client messages there (one `Process` call each).
The callback records every message; for a message of type "Raise" it raises
after recording (the connector answers UNKNOWN), until the "fix" command.

Then it reads commands from stdin, one JSON object per line, and runs them
through the connector's outgoing (admin API) side:

  {"cmd": "send", "client_id": HEX, "service": S, "type": T, "payload": HEX}
      -> Send(): InsertMessage with source unset (the connector fills in
         SERVICE and a random 32-byte id)
  {"cmd": "list_clients", "client_id": HEX}   -> ListClients
  {"cmd": "fix"}   -> from now on, "Raise" messages are processed like any other
  {"cmd": "grr_send", "client_id": HEX, "payload": HEX, "flow_id": F, "request_id": R}
      -> InsertMessage as GRR's SendGrrMessageThroughFleetspeak builds it: type
         GrrMessage to service GRR, annotations flow_id and request_id
  {"cmd": "system", "client_id": HEX, "type": "Die" | "RestartService", "name": S}
      -> InsertMessage to the client's `system` service, as KillFleetspeak (DieRequest)
         and RestartFleetspeakGrrService (RestartServiceRequest{name}) build it
  {"cmd": "pending", "client_id": HEX, "want_data": BOOL}   -> GetPendingMessages
  {"cmd": "count", "client_id": HEX}    -> GetPendingMessageCount
  {"cmd": "delete", "client_id": HEX}   -> DeletePendingMessages
  {"cmd": "usage", "client_id": HEX}    -> FetchClientResourceUsageRecords since 1970

RECORD_FILE gets one flat JSON object per line:

  {"event": "ready"}
  {"event": "msg", "id": HEX, "client_id": HEX, "source_service": S,
   "dest_client_id": HEX, "dest_service": S, "type": T, "payload": HEX,
   "type_url": U, "raised": 0 or 1}
  {"event": "sent", "n": N, "id": HEX}                 (reply to command N)
  {"event": "client", "n": N, "id": HEX, "labels": "svc:label,svc:label"}
  {"event": "done", "n": N, "count": K}                (after the clients)
  {"event": "fixed", "n": N}
  {"event": "pending", "n": N, "id": HEX, "type": T, "data_bytes": K,
   "annotations": "k=v,k=v"}                          (each, then "done")
  {"event": "count", "n": N, "count": K}
  {"event": "deleted", "n": N}
  {"event": "usage", "n": N, "count": K}
ListClients' "client" lines also carry the last-seen fields GRR's UI shows:
  "last_contact_time": SECONDS, "last_contact_address": A, "last_clock": SECONDS,
  "streaming_to": S
  {"event": "error", "n": N, "error": TEXT}
"""

import json
import sys
import threading

from absl import flags
from fleetspeak.server_connector import connector
from fleetspeak.src.common.proto.fleetspeak import common_pb2
from fleetspeak.src.common.proto.fleetspeak import system_pb2
from fleetspeak.src.server.proto.fleetspeak_server import admin_pb2

TYPE_URL = "type.googleapis.com/fleetgate.e2e.Payload"


def main():
  # The connector defines absl flags and reads them for arguments left as None.
  flags.FLAGS(sys.argv[:1])
  service, listen, admin, out_path = sys.argv[1:5]
  out = open(out_path, "a", buffering=1)
  lock = threading.Lock()
  fixed = threading.Event()

  def record(obj):
    with lock:
      out.write(json.dumps(obj, sort_keys=True) + "\n")
      out.flush()

  def process(msg, context):
    del context
    raises = msg.message_type == "Raise" and not fixed.is_set()
    record({
        "event": "msg",
        "id": msg.message_id.hex(),
        "client_id": msg.source.client_id.hex(),
        "source_service": msg.source.service_name,
        "dest_client_id": msg.destination.client_id.hex(),
        "dest_service": msg.destination.service_name,
        "type": msg.message_type,
        "payload": msg.data.value.hex(),
        "type_url": msg.data.type_url,
        "raised": 1 if raises else 0,
    })
    if raises:
      raise RuntimeError("the test Processor raises on type Raise")

  conn = connector.InsecureGRPCServiceClient(
      service,
      fleetspeak_message_listen_address=listen,
      fleetspeak_server=admin,
      # Python gRPC servers bind with SO_REUSEPORT by default: two test processes
      # on one port would silently share the traffic.
      options={"grpc.so_reuseport": 0},
  )
  conn.Listen(process)
  record({"event": "ready"})

  for n, line in enumerate(sys.stdin):
    if not line.strip():
      continue
    try:
      cmd = json.loads(line)
      if cmd["cmd"] == "send":
        msg = common_pb2.Message(
            message_type=cmd["type"],
            destination=common_pb2.Address(
                client_id=bytes.fromhex(cmd["client_id"]),
                service_name=cmd["service"],
            ),
        )
        msg.data.type_url = TYPE_URL
        msg.data.value = bytes.fromhex(cmd["payload"])
        conn.Send(msg)
        record({"event": "sent", "n": n, "id": msg.message_id.hex(),
                "source_service": msg.source.service_name})
      elif cmd["cmd"] == "list_clients":
        req = admin_pb2.ListClientsRequest()
        if cmd.get("client_id"):
          req.client_ids.append(bytes.fromhex(cmd["client_id"]))
        resp = conn.outgoing.ListClients(req)
        for c in resp.clients:
          record({
              "event": "client",
              "n": n,
              "id": c.client_id.hex(),
              "labels": ",".join(
                  sorted("%s:%s" % (l.service_name, l.label) for l in c.labels)),
              "last_contact_time": c.last_contact_time.seconds,
              "last_contact_address": c.last_contact_address,
              "last_clock": c.last_clock.seconds,
              "streaming_to": c.last_contact_streaming_to,
          })
        record({"event": "done", "n": n, "count": len(resp.clients)})
      elif cmd["cmd"] == "grr_send":
        msg = common_pb2.Message(
            message_type="GrrMessage",
            destination=common_pb2.Address(
                client_id=bytes.fromhex(cmd["client_id"]), service_name="GRR"),
        )
        msg.data.type_url = TYPE_URL
        msg.data.value = bytes.fromhex(cmd["payload"])
        msg.annotations.entries.add(key="flow_id", value=cmd["flow_id"])
        msg.annotations.entries.add(key="request_id", value=cmd["request_id"])
        conn.Send(msg)
        record({"event": "sent", "n": n, "id": msg.message_id.hex(),
                "source_service": msg.source.service_name})
      elif cmd["cmd"] == "system":
        if cmd["type"] == "Die":
          data = system_pb2.DieRequest(force=False)
        else:
          data = system_pb2.RestartServiceRequest(name=cmd["name"])
        msg = common_pb2.Message(
            message_type=cmd["type"],
            destination=common_pb2.Address(
                client_id=bytes.fromhex(cmd["client_id"]), service_name="system"),
        )
        msg.data.Pack(data)
        conn.Send(msg)
        record({"event": "sent", "n": n, "id": msg.message_id.hex(),
                "source_service": msg.source.service_name})
      elif cmd["cmd"] == "pending":
        req = admin_pb2.GetPendingMessagesRequest(
            client_ids=[bytes.fromhex(cmd["client_id"])], want_data=cmd["want_data"])
        for m in conn.outgoing.GetPendingMessages(req).messages:
          record({
              "event": "pending", "n": n, "id": m.message_id.hex(),
              "type": m.message_type, "data_bytes": len(m.data.value),
              "annotations": ",".join(
                  "%s=%s" % (e.key, e.value) for e in m.annotations.entries),
          })
        record({"event": "done", "n": n, "count": 0})
      elif cmd["cmd"] == "count":
        req = admin_pb2.GetPendingMessageCountRequest(
            client_ids=[bytes.fromhex(cmd["client_id"])])
        record({"event": "count", "n": n,
                "count": conn.outgoing.GetPendingMessageCount(req).count})
      elif cmd["cmd"] == "delete":
        req = admin_pb2.DeletePendingMessagesRequest(
            client_ids=[bytes.fromhex(cmd["client_id"])])
        conn.outgoing.DeletePendingMessages(req)
        record({"event": "deleted", "n": n})
      elif cmd["cmd"] == "usage":
        req = admin_pb2.FetchClientResourceUsageRecordsRequest(
            client_id=bytes.fromhex(cmd["client_id"]))
        req.start_timestamp.seconds = 0
        req.end_timestamp.GetCurrentTime()
        resp = conn.outgoing.FetchClientResourceUsageRecords(req)
        record({"event": "usage", "n": n, "count": len(resp.records)})
      elif cmd["cmd"] == "fix":
        fixed.set()
        record({"event": "fixed", "n": n})
      else:
        raise ValueError("unknown command %r" % cmd["cmd"])
    except Exception as e:  # pylint: disable=broad-except
      record({"event": "error", "n": n, "error": "%s: %s" % (type(e).__name__, e)})


if __name__ == "__main__":
  main()
