"""Warnings for the user, through the engine's log: Pulumi's Check and Create responses carry no warnings, so a
provider says "accepted, but not done" the way upstream providers do, with the engine's ``Log`` call (the engine
shows it under the resource, as ``warning: ...``).

The engine passes its own address as the plugin's last command-line argument; without one (unit tests, a plugin
started by hand) warnings go to stderr, which the engine keeps in its own logs.
"""

from __future__ import annotations

import sys
from threading import Lock

import grpc
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc

_address: str | None = None
_stub: engine_pb2_grpc.EngineStub | None = None
_lock = Lock()


def set_address(argv: list[str]) -> None:
    """Remember the engine's address (``127.0.0.1:<port>``, the last argument the engine starts plugins with)."""
    global _address
    last = argv[-1] if argv else ""
    _address = last if ":" in last and not last.startswith("-") else None


def _engine() -> engine_pb2_grpc.EngineStub | None:
    global _stub
    with _lock:
        if _stub is None and _address:
            _stub = engine_pb2_grpc.EngineStub(grpc.insecure_channel(_address))
        return _stub


def warn(urn: str, message: str) -> None:
    """A warning on the resource ``urn``; never fails the operation it is part of."""
    stub = _engine()
    if stub is not None:
        try:
            stub.Log(engine_pb2.LogRequest(severity=engine_pb2.WARNING, message=message, urn=urn), timeout=5)
            return
        except grpc.RpcError:
            pass  # the engine went away: the message still reaches stderr
    sys.stderr.write(f"warning: {message}\n")
