#!/usr/bin/env python3
"""A gRPC client that no one at Spoke wrote the stubs for.

Uses only PyPI's grpcio, grpcio-health-checking and grpcio-reflection:
checks grpc.health.v1, lists services through server reflection, then builds
the ListConnectors request/response classes from the reflected descriptors and
calls the hub with them. Prints one JSON object on stdout.

usage: grpc_probe.py HOST:PORT
"""
import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> int:
    target = sys.argv[1]
    out = {}
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        health = health_pb2_grpc.HealthStub(channel)
        out["health"] = {
            service: health_pb2.HealthCheckResponse.ServingStatus.Name(
                health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            )
            for service in ["", "spoke.v1.Hub", "spoke.v1.ConnectorHub"]
        }

        database = ProtoReflectionDescriptorDatabase(channel)
        out["services"] = sorted(database.get_services())
        pool = descriptor_pool.DescriptorPool(database)
        hub = pool.FindServiceByName("spoke.v1.Hub")
        out["hub_methods"] = sorted(m.name for m in hub.methods)

        method = hub.FindMethodByName("ListConnectors")
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        call = channel.unary_unary(
            "/spoke.v1.Hub/ListConnectors",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        response = call(request_cls(), timeout=5)
        out["list_connectors"] = json_format.MessageToDict(response, preserving_proto_field_name=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
