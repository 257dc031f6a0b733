"""The `alicloud` resource provider plugin: Pulumi's ResourceProvider gRPC service over the lab's kinds.

The engine starts ``pulumi-resource-alicloud`` (found on PATH, see docs/provider.md), reads the port it prints
on its first line of output and talks to it on loopback. The lab is the stack, read from the URN of each call
(``urn:pulumi:<stack>::...``) as the dynamic providers read ``pulumi.get_stack()``; data sources, which carry no
URN, use the stack of the provider's own URN (sent with CheckConfig).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from functools import cache, wraps
from threading import Lock, Thread
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import empty_pb2
from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS
from pulumi.runtime.proto import plugin_pb2, provider_pb2_grpc
from pulumi.runtime.proto import provider_pb2 as pb

from acklab.provider import config, engine, sdk
from acklab.provider.base import Context, Kind
from acklab.provider.wire import Urn, from_struct, to_struct
from netns.model.errors import LabError, ValidationError
from netns.model.names import check_lab

if TYPE_CHECKING:
    from acklab.provider.index import Function


@dataclass(frozen=True)
class Implemented:
    """What the plugin implements: the kinds by type token and the data sources by function token."""

    kinds: dict[str, Kind]
    functions: dict[str, Function]


@cache
def implemented() -> Implemented:
    """The kinds and data sources, imported once. ``main`` starts this in a thread before it prints its port, so
    the imports (the realizations, the Kubernetes side of ``cs``: most of the plugin's start-up) overlap the
    engine's own start-up work (GetPluginInfo, Configure, planning); a call that needs a kind meanwhile imports
    along (Python's import lock makes it wait for the modules, not import them twice)."""
    from acklab.provider import account, cs, ecs, index, slb, vpc

    kinds = {kind.token: kind for kind in (*vpc.KINDS, *ecs.KINDS, *slb.KINDS, *cs.KINDS)}
    functions = {**index.FUNCTIONS, **vpc.FUNCTIONS, **ecs.FUNCTIONS, **slb.FUNCTIONS, **cs.FUNCTIONS,
                 **account.FUNCTIONS}
    return Implemented(kinds, functions)


def __getattr__(name: str) -> Any:
    """``KINDS`` and ``FUNCTIONS`` as module attributes (the docs table and the tests read them)."""
    if name == "KINDS":
        return implemented().kinds
    if name == "FUNCTIONS":
        return implemented().functions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


WORKERS = 8  # the engine's default parallelism is higher; the realizations serialize on the lab's lock anyway
TIMINGS = "ACKLAB_PROVIDER_TIMINGS"  # a file: one JSON line per Create/Update/Delete (bench/provider_scale.py)
_timings_lock = Lock()


def _errors(method: Callable) -> Callable:
    """A failed operation ends the call with its message: a LabError's is meant for people (which resource,
    which field, what is wrong), anything else also gets its traceback."""

    @wraps(method)
    def wrapper(self: AlicloudProvider, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except LabError as exc:
            context.abort(grpc.StatusCode.UNKNOWN, str(exc))
        except Exception:  # anything else reaches the engine too, with its traceback, not gRPC's log
            context.abort(grpc.StatusCode.UNKNOWN, traceback.format_exc())

    return wrapper


def _token(request: Any) -> str:
    try:
        return request.type or Urn.parse(request.urn).type
    except ValueError:
        return ""


def _timed(method: Callable) -> Callable:
    """With ``$ACKLAB_PROVIDER_TIMINGS`` set to a file, append one JSON line per call: the resource's type token,
    the method, ``ok``, the seconds spent inside the plugin and when it started (monotonic clock). Off by default;
    the call itself is unchanged (its result or its abort pass through)."""

    @wraps(method)
    def wrapper(self: AlicloudProvider, request: Any, context: grpc.ServicerContext) -> Any:
        path = os.environ.get(TIMINGS)
        if not path:
            return method(self, request, context)
        ok = False
        start = time.monotonic()
        try:
            result = method(self, request, context)
            ok = True
            return result
        finally:
            seconds = time.monotonic() - start
            line = json.dumps({"type": _token(request), "method": method.__name__, "ok": ok, "seconds": seconds,
                               "start": start, "urn": request.urn})
            with _timings_lock, open(path, "a") as f:
                f.write(line + "\n")

    return wrapper


class AlicloudProvider(provider_pb2_grpc.ResourceProviderServicer):
    def __init__(self) -> None:
        self.config = config.ProviderConfig()
        self.stack: str | None = None  # from CheckConfig's URN: the lab of calls that carry none (data sources)

    # --- plugin and provider configuration -----------------------------------------------------------------
    def GetPluginInfo(self, request: empty_pb2.Empty, context: grpc.ServicerContext) -> plugin_pb2.PluginInfo:
        return plugin_pb2.PluginInfo(version=sdk.version())

    def GetSchema(self, request: pb.GetSchemaRequest, context: grpc.ServicerContext) -> pb.GetSchemaResponse:
        return pb.GetSchemaResponse(schema=json.dumps(package_schema()))

    @_errors
    def CheckConfig(self, request: pb.CheckRequest, context: grpc.ServicerContext) -> pb.CheckResponse:
        if request.urn:
            self.stack = Urn.parse(request.urn).stack
        news = from_struct(request.news)
        problem = config.region_problem(news)
        failures = [pb.CheckFailure(property="region", reason=problem)] if problem else []
        return pb.CheckResponse(inputs=request.news, failures=failures)

    @_errors
    def DiffConfig(self, request: pb.DiffRequest, context: grpc.ServicerContext) -> pb.DiffResponse:
        """A new region or new credentials reconfigure the provider; no object of the lab is replaced for it."""
        olds = from_struct(request.old_inputs if request.HasField("old_inputs") else request.olds)
        news = from_struct(request.news)
        changed = sorted(k for k in olds.keys() | news.keys() if olds.get(k) != news.get(k))
        return pb.DiffResponse(changes=pb.DiffResponse.DIFF_SOME if changed else pb.DiffResponse.DIFF_NONE,
                               diffs=changed)

    @_errors
    def Configure(self, request: pb.ConfigureRequest, context: grpc.ServicerContext) -> pb.ConfigureResponse:
        inputs = from_struct(request.args) if request.HasField("args") else config.from_variables(request.variables)
        self.config = config.resolve(inputs)  # credentials are not kept: the lab has no API to call
        if request.urn:
            self.stack = Urn.parse(request.urn).stack
        # No secrets, resources or outputs: the engine sends plain values and marks outputs secret itself.
        return pb.ConfigureResponse(acceptSecrets=False, acceptResources=False, acceptOutputs=False,
                                    supportsPreview=False)

    # --- resources -----------------------------------------------------------------------------------------
    def _kind(self, type_: str) -> Kind:
        kinds = implemented().kinds
        kind = kinds.get(type_)
        if kind is None:
            raise LabError(f"{type_}: not implemented by acklab's alicloud plugin (yet); it implements "
                           f"{', '.join(sorted(kinds))}")
        return kind

    def _context(self, urn: str, kind: Kind) -> Context:
        parsed = Urn.parse(urn)
        label = f"{kind.label} {parsed.name!r}"
        return Context(lab=check_lab(parsed.stack), name=parsed.name, region=self.config.region, label=label,
                       urn=urn)

    @_errors
    def Check(self, request: pb.CheckRequest, context: grpc.ServicerContext) -> pb.CheckResponse:
        kind = self._kind(request.type or Urn.parse(request.urn).type)
        news = kind.schema.to_python(from_struct(request.news))
        try:
            ctx = self._context(request.urn, kind)
        except ValidationError as exc:  # a stack name that is no lab name: nothing can be made
            return pb.CheckResponse(inputs=request.news, failures=[pb.CheckFailure(reason=str(exc))])
        inputs, failures = kind.check(ctx, news)
        # The engine's message names the resource and the wire property ("resource 'bad': property cidrBlock value
        # {...} has a problem: ..."); the reason adds the argument as the program spells it.
        names = kind.schema.inputs
        return pb.CheckResponse(inputs=to_struct(kind.schema.to_wire(inputs)), failures=[
            pb.CheckFailure(property=names.get(f.field, f.field), reason=f"{f.field}: {f.reason}") for f in failures])

    @_errors
    def Diff(self, request: pb.DiffRequest, context: grpc.ServicerContext) -> pb.DiffResponse:
        kind = self._kind(request.type or Urn.parse(request.urn).type)
        diff = kind.diff(kind.schema.to_python(from_struct(request.olds)),
                         kind.schema.to_python(from_struct(request.news)))
        names = kind.schema.inputs
        return pb.DiffResponse(
            changes=pb.DiffResponse.DIFF_SOME if diff.changed else pb.DiffResponse.DIFF_NONE,
            diffs=[names[k] for k in diff.changed], replaces=[names[k] for k in diff.replaces],
            # the old object holds what the new one needs (its address, its block): it goes first
            deleteBeforeReplace=bool(diff.replaces))

    @_timed
    @_errors
    def Create(self, request: pb.CreateRequest, context: grpc.ServicerContext) -> pb.CreateResponse:
        kind = self._kind(request.type or Urn.parse(request.urn).type)
        ctx = self._context(request.urn, kind)
        id_, outputs = kind.create(ctx, kind.schema.to_python(from_struct(request.properties)))
        return pb.CreateResponse(id=id_, properties=to_struct(kind.schema.to_wire(outputs)))

    @_errors
    def Read(self, request: pb.ReadRequest, context: grpc.ServicerContext) -> pb.ReadResponse:
        kind = self._kind(request.type or Urn.parse(request.urn).type)
        ctx = self._context(request.urn, kind)
        outputs = kind.read(ctx, request.id, kind.schema.to_python(from_struct(request.properties)))
        if outputs is None:
            return pb.ReadResponse(id="")  # gone: the engine drops it from the state
        # A refresh keeps the program's inputs; an import (no inputs yet) gets them from what was read: the engine
        # refuses an import without inputs.
        inputs = request.inputs if request.inputs.fields else to_struct(kind.schema.to_wire(kind.inputs_of(outputs)))
        return pb.ReadResponse(id=request.id, properties=to_struct(kind.schema.to_wire(outputs)), inputs=inputs)

    @_timed
    @_errors
    def Update(self, request: pb.UpdateRequest, context: grpc.ServicerContext) -> pb.UpdateResponse:
        kind = self._kind(request.type or Urn.parse(request.urn).type)
        ctx = self._context(request.urn, kind)
        outputs = kind.update(ctx, request.id, kind.schema.to_python(from_struct(request.olds)),
                              kind.schema.to_python(from_struct(request.news)))
        return pb.UpdateResponse(properties=to_struct(kind.schema.to_wire(outputs)))

    @_timed
    @_errors
    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> empty_pb2.Empty:
        kind = self._kind(request.type or Urn.parse(request.urn).type)
        ctx = self._context(request.urn, kind)
        kind.delete(ctx, request.id, kind.schema.to_python(from_struct(request.properties)))
        return empty_pb2.Empty()

    # --- data sources --------------------------------------------------------------------------------------
    @_errors
    def Invoke(self, request: pb.InvokeRequest, context: grpc.ServicerContext) -> pb.InvokeResponse:
        functions = implemented().functions
        function = functions.get(request.tok)
        if function is None:
            raise LabError(f"{request.tok}: data source not implemented by acklab's alicloud plugin (yet); it "
                           f"implements {', '.join(sorted(functions))}")
        # Data sources carry no URN: the lab is the stack of the provider's own URN (see CheckConfig).
        lab = check_lab(self.stack) if self.stack else None
        return pb.InvokeResponse(**{"return": to_struct(function(self.config, from_struct(request.args), lab))})

    def Cancel(self, request: empty_pb2.Empty, context: grpc.ServicerContext) -> empty_pb2.Empty:
        return empty_pb2.Empty()  # every operation is short and idempotent: nothing to interrupt


def package_schema() -> dict[str, Any]:
    """A Pulumi package schema of what the plugin implements (the real one has every resource of Alibaba Cloud):
    property names and required inputs from the SDK, types left open."""
    anything = {"$ref": "pulumi.json#/Any"}

    def resource(kind: Kind) -> dict[str, Any]:
        schema = kind.schema
        return {"inputProperties": {w: anything for w in schema.inputs.values()},
                "properties": {w: anything for w in schema.outputs.values()},
                "requiredInputs": [schema.inputs[p] for p in schema.required]}

    return {"name": sdk.PACKAGE, "version": sdk.version(),
            "resources": {token: resource(kind) for token, kind in implemented().kinds.items()},
            "functions": {token: {"inputs": {"properties": {}}, "outputs": {"properties": {}}}
                          for token in implemented().functions}}


def main() -> None:
    """Serve on a loopback port and tell the engine which one (the first line of output is all it reads)."""
    engine.set_address(sys.argv[1:])  # the engine's address, for warnings in its log
    # The engine ends the plugin with SIGINT. Python raises KeyboardInterrupt for it only if SIGINT was not ignored
    # when the process started, and a shell starts background jobs (`make up &`, a CI runner) with SIGINT ignored,
    # which the engine and then the plugin inherit: the engine would wait out its 5 s cool-down and kill it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    executor = futures.ThreadPoolExecutor(max_workers=WORKERS)
    server = grpc.server(executor, options=_GRPC_CHANNEL_OPTIONS)
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(AlicloudProvider(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        sys.stdout.write(f"{port}\n")
        sys.stdout.flush()
        Thread(target=implemented, name="implemented", daemon=True).start()  # after the port: the engine waits for it
        # Woken every 0.1 s, not parked on a lock: the kernel hands the engine's SIGINT to any thread of the process
        # (gRPC's, most often), and Python raises KeyboardInterrupt only when the main thread next runs; a main thread
        # asleep on a lock for good never would (the engine then waits out its cool-down and kills the plugin).
        while True:
            time.sleep(0.1)
    except KeyboardInterrupt:  # the engine's SIGINT: the deployment ended (or was cancelled)
        server.stop(0)
        # A call still running (a cancelled deployment) finishes its kernel work, its record and its rollback.
        executor.shutdown(wait=True)
        sys.stdout.flush()
        sys.stderr.flush()
        # Then out at once: an orderly interpreter exit tears every module down, about 60 ms that the engine
        # waits for twice per `pulumi up`. Nothing is left to write: the calls wrote and closed their files.
        os._exit(0)


if __name__ == "__main__":
    main()
