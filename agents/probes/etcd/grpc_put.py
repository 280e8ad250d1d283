"""The etcd write load over gRPC, etcd's own client protocol (the one ``benchmark put`` and
``etcdctl`` speak), with grpcio's asyncio API.

Why not the JSON gateway: on etcd 3.5/3.6 a write through the gateway costs the member more CPU
than the same write over gRPC (the gateway decodes the JSON, then calls the member's own gRPC
listener: a second hop inside etcd).  On a control plane that CPU is the etcd under test's, so the
gateway measured the gateway as much as etcd (docs/design.md, "Libraries and why").

Only two messages are needed, so they are encoded here by hand (protobuf's wire format: a tag
byte, a varint length, the bytes) instead of generating stubs from etcd's .proto files, which
pull in gogoproto and Google API annotations: ``PutRequest{key=1, value=2}`` and, for the
warm-up, ``RangeRequest{key=1, serializable=7, count_only=9}``.  The answers are not decoded: a
call that returns is a committed write (etcd answers a Put after the raft commit and apply),
and a failed one raises with its status code.

Clients share a few HTTP/2 channels (``channels`` per endpoint), each carrying many concurrent
calls, as ``benchmark put --conns`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from yarl import URL

from talbench.agents.probes.etcd.connection import ConnectionFailed, RequestTimeout

PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"


class RemoteError(Exception):
    """etcd answered the call with an error status (kind: ``grpc-<code>``)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _bytes_field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def put_request(key: bytes, value: bytes) -> bytes:
    """etcdserverpb.PutRequest with ``key`` (field 1) and ``value`` (field 2)."""
    return _bytes_field(1, key) + _bytes_field(2, value)


def count_request(prefix: bytes) -> bytes:
    """etcdserverpb.RangeRequest for a serializable count of one key: no write, no raft round."""
    return _bytes_field(1, prefix) + _varint(7 << 3) + b"\x01" + _varint(9 << 3) + b"\x01"


@dataclass(frozen=True)
class GrpcTls:
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(read(self.cacert), read(self.key), read(self.cert))


def target(url: str) -> str:
    """``http://host:port`` -> ``host:port`` (gRPC's target); etcd serves gRPC on its client port."""
    parsed = URL(url)
    host = parsed.raw_host or ""
    return f"[{host}]:{parsed.port}" if ":" in host else f"{host}:{parsed.port}"


class GrpcPut:
    """``clients`` callers spread over ``channels`` channels per endpoint, the endpoints in turn
    from ``first``.  ``put(client, key, value)`` raises RequestTimeout, ConnectionFailed or
    RemoteError."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        clients: int,
        channels: int,
        first: int,
        timeout: float,
        tls: GrpcTls | None = None,
    ) -> None:
        self.timeout = timeout
        self._channels: list[grpc.aio.Channel] = []
        count = max(1, min(clients, channels * len(endpoints)))
        options = [("grpc.max_receive_message_length", 1 << 20), ("grpc.use_local_subchannel_pool", 1)]
        for index in range(count):
            url = endpoints[(first + index) % len(endpoints)]
            if URL(url).scheme == "https":
                channel = grpc.aio.secure_channel(target(url), (tls or GrpcTls()).credentials(), options=options)
            else:
                channel = grpc.aio.insecure_channel(target(url), options=options)
            self._channels.append(channel)
        self._put = [c.unary_unary(PUT) for c in self._channels]
        self._range = [c.unary_unary(RANGE) for c in self._channels]
        self.clients = clients

    def _slot(self, client: int) -> int:
        return client % len(self._channels)

    async def put(self, client: int, key: bytes, value: bytes) -> None:
        await self._call(self._put[self._slot(client)], put_request(key, value))

    async def warm_up(self, prefix: bytes) -> None:
        """Every channel connected and each member answering a read before the load starts."""
        await asyncio.gather(*(self._call(call, count_request(prefix)) for call in self._range))

    async def _call(self, call: Any, request: bytes) -> None:
        try:
            await call(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            detail = exc.details() or code.name
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                raise RequestTimeout(f"no answer within {self.timeout:g}s") from exc
            if code is grpc.StatusCode.UNAVAILABLE:
                raise ConnectionFailed(detail) from exc
            raise RemoteError(f"grpc-{code.name.lower()}", detail) from exc

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._channels), return_exceptions=True)
