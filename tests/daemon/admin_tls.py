#!/usr/bin/env python3
"""A plain grpcio client of the locked admin listener, for the Fleetgate end-to-end tests.

  admin_tls.py ADDR CA_PEM CALL...

Each CALL is `CERT_PEM,KEY_PEM,RPC[,SERVICE]` (CERT_PEM and KEY_PEM `-` for no client
certificate). RPC is one of ListClients, KeepAlive, BlacklistClient, or InsertMessage (to the
server service SERVICE, with a fresh 32-byte message id). Prints one JSON object per call:

  {"rpc": RPC, "code": "OK" | grpc.StatusCode name, "details": TEXT, "id": HEX}
"""

import json
import os
import sys

import grpc
from fleetspeak.src.common.proto.fleetspeak import common_pb2
from fleetspeak.src.server.proto.fleetspeak_server import admin_pb2
from fleetspeak.src.server.proto.fleetspeak_server import admin_pb2_grpc


def read(path):
  with open(path, "rb") as f:
    return f.read()


def call(addr, ca, cert, key, rpc, service):
  if cert == "-":
    creds = grpc.ssl_channel_credentials(root_certificates=ca)
  else:
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=read(key), certificate_chain=read(cert))
  result = {"rpc": rpc, "code": "OK", "details": "", "id": ""}
  with grpc.secure_channel(addr, creds) as channel:
    stub = admin_pb2_grpc.AdminStub(channel)
    try:
      if rpc == "ListClients":
        stub.ListClients(admin_pb2.ListClientsRequest(), timeout=20)
      elif rpc == "KeepAlive":
        stub.KeepAlive(common_pb2.EmptyMessage(), timeout=20)
      elif rpc == "BlacklistClient":
        stub.BlacklistClient(
            admin_pb2.BlacklistClientRequest(client_id=os.urandom(8)), timeout=20)
      elif rpc == "InsertMessage":
        m = common_pb2.Message(
            message_id=os.urandom(32),
            source=common_pb2.Address(service_name="admin-tls-test"),
            destination=common_pb2.Address(service_name=service),
            message_type="Test")
        result["id"] = m.message_id.hex()
        stub.InsertMessage(m, timeout=20)
      else:
        raise ValueError("unknown rpc %r" % rpc)
    except grpc.RpcError as e:
      result["code"] = e.code().name
      result["details"] = e.details() or ""
  return result


def main():
  addr, ca_path = sys.argv[1:3]
  ca = read(ca_path)
  for spec in sys.argv[3:]:
    parts = spec.split(",")
    cert, key, rpc = parts[:3]
    service = parts[3] if len(parts) > 3 else ""
    print(json.dumps(call(addr, ca, cert, key, rpc, service), sort_keys=True), flush=True)


if __name__ == "__main__":
  main()
