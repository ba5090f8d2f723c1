"""The protobuf messages of com.mosnpy.test.EchoServicePb, built at run time.

No protoc needed: the descriptor is written here and turned into message classes by the
real protobuf runtime (PyPI ``protobuf``).  Equivalent .proto::

    syntax = "proto3";
    package com.mosnpy.test;
    message EchoRequest  { string text = 1; string tag = 2; }
    message EchoResponse { string text = 1; string tag = 2; int32 code = 3; }

(the same field numbers and wire types as the anthunder frames in shared/vectors).
``code`` is 0 for a normal answer and 1 for a business error (``bizerror``).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "com.mosnpy.test.EchoServicePb:1.0"

_F = descriptor_pb2.FieldDescriptorProto


def _build() -> tuple[Any, Any]:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="mosnpy_echo_service_pb.proto", package="com.mosnpy.test", syntax="proto3"
    )
    req = fdp.message_type.add(name="EchoRequest")
    req.field.add(name="text", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    req.field.add(name="tag", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    res = fdp.message_type.add(name="EchoResponse")
    res.field.add(name="text", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    res.field.add(name="tag", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    res.field.add(name="code", number=3, type=_F.TYPE_INT32, label=_F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("com.mosnpy.test.EchoRequest")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("com.mosnpy.test.EchoResponse")),
    )


EchoRequest, EchoResponse = _build()
