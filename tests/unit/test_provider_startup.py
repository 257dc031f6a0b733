"""The plugin's start-up (the engine starts it for every preview and twice per `pulumi up`): the SDK's names kept in
a file, no SDK import for the version, no pyroute2 until a netlink call, a quick exit on the engine's SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from acklab.provider import sdk, server

PROJECT = Path(__file__).resolve().parents[2]
CACHED = (sdk.resource_schema, sdk.output_type_names, sdk.input_type_names)


@pytest.fixture
def names_file(monkeypatch, tmp_path):
    """A names file of the test's own, every cached read forgotten before and after."""
    path = tmp_path / "share" / "names.json"
    monkeypatch.setattr(sdk, "names_file", lambda: path)
    _forget()
    yield path
    _forget()


def _forget() -> None:
    sdk._forget()
    for f in CACHED:
        f.cache_clear()


def test_names_are_read_from_the_sdk_once_then_from_the_file(names_file, monkeypatch):
    token = "alicloud:ecs/instance:Instance"
    first = sdk.resource_schema(token)
    written = json.loads(names_file.read_text())
    assert written["format"] == sdk.NAMES_FORMAT and written["sdk"] == sdk.version() and written["pulumi"]
    assert written["entries"][f"resource {token}"]["inputs"]["private_ip"] == "privateIp"

    _forget()
    monkeypatch.setattr(sdk, "_import", lambda name: pytest.fail(f"imported {name}: the file has the names"))
    assert sdk.resource_schema(token) == first
    assert list(sdk.resource_schema(token).inputs) == list(first.inputs)  # the SDK's own order, kept
    assert first.required == ()  # every ecs.Instance argument is optional in the SDK
    assert first.wire_to_py["vswitchId"] == "vswitch_id"


def test_output_and_input_type_names_are_kept_too(names_file):
    out = sdk.output_type_names("pulumi_alicloud.vpc.outputs", "GetNetworksVpcResult")
    nested = sdk.input_type_names("pulumi_alicloud.slb._inputs", "BackendServerBackendServerArgs")
    entries = json.loads(names_file.read_text())["entries"]
    assert entries["output pulumi_alicloud.vpc.outputs.GetNetworksVpcResult"] == out
    assert entries["input pulumi_alicloud.slb._inputs.BackendServerBackendServerArgs"] == nested
    assert out["cidr_block"] == "cidrBlock" and nested["server_id"] == "serverId"


def test_a_file_of_another_format_or_unreadable_is_read_anew(names_file):
    names_file.parent.mkdir(parents=True)
    stale = {"resource alicloud:vpc/network:Network": {"inputs": {}, "outputs": {}, "required": ["x"]}}
    names_file.write_text(json.dumps({"format": sdk.NAMES_FORMAT + 1, "entries": stale}))
    assert "cidr_block" in sdk.resource_schema("alicloud:vpc/network:Network").inputs
    _forget()  # written for another Pulumi SDK: read anew too
    names_file.write_text(json.dumps({**sdk._header(), "pulumi": "0.0.1", "entries": stale}))
    assert "cidr_block" in sdk.resource_schema("alicloud:vpc/network:Network").inputs
    _forget()
    names_file.write_text("{half a file")
    assert sdk.resource_schema("alicloud:vpc/network:Network").required == ()
    assert json.loads(names_file.read_text())["format"] == sdk.NAMES_FORMAT


def test_every_kind_s_names_equal_the_sdk_s(names_file):
    """The set-up's fill (python -m acklab.provider.sdk) gives what reading the SDK gives, kind by kind."""
    names_file.parent.mkdir(parents=True)
    names_file.write_text(json.dumps({**sdk._header(), "entries": {"resource alicloud:old/gone:Gone": {}}}))
    sdk.main()
    _forget()
    assert "resource alicloud:old/gone:Gone" not in json.loads(names_file.read_text())["entries"]  # written anew
    for token in server.KINDS:
        schema = sdk.resource_schema(token)
        read = sdk._read_resource(token)
        # equal, in the same order (a Diff lists changed arguments in the schema's order)
        assert (list(schema.inputs.items()), list(schema.outputs.items()), list(schema.required)) == (
            list(read["inputs"].items()), list(read["outputs"].items()), read["required"]), token


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=60)


def test_the_version_is_found_without_importing_the_sdk():
    proc = _python("import sys\nfrom acklab.provider import sdk\nprint(sdk.version())\n"
                   "assert 'pulumi_alicloud' not in sys.modules, 'the SDK was imported'")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "4.0.0"


def test_pyroute2_is_imported_at_the_first_netlink_use_only():
    """The plugin's kinds, the Pulumi program's modules and the CLI's import no pyroute2; the kernel layer's
    ``netlink.NetlinkError`` is pyroute2's own class once asked for."""
    proc = _python(
        "import sys\n"
        "import acklab.provider.server as s; s.implemented()\n"
        "import acklab.k8s.realize.pod_network, netns.realize.control_plane, netns.kernel.ipset\n"
        "assert 'pyroute2' not in sys.modules, 'pyroute2 imported at import time'\n"
        "from netns.kernel import netlink\n"
        "from pyroute2.netlink.exceptions import NetlinkError\n"
        "assert netlink.NetlinkError is NetlinkError\n")
    assert proc.returncode == 0, proc.stderr


def test_ipset_numbers_are_the_kernel_s():
    from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR
    from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_IPSET
    from pyroute2.netlink.nfnetlink.ipset import IPSET_CMD_ADD, IPSET_CMD_DEL

    from netns.kernel import ipset

    assert (ipset.NLM_F_REQUEST, ipset.NLM_F_ACK, ipset.NLMSG_ERROR) == (NLM_F_REQUEST, NLM_F_ACK, NLMSG_ERROR)
    assert (ipset.NFNL_SUBSYS_IPSET, ipset.IPSET_CMD_ADD, ipset.IPSET_CMD_DEL) == (
        NFNL_SUBSYS_IPSET, IPSET_CMD_ADD, IPSET_CMD_DEL)


TGKILL = {"x86_64": 234, "aarch64": 131}  # the syscall's number (a signal to one thread of a process)


def _tgkill(pid: int, tid: int, sig: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(TGKILL[os.uname().machine], pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job (and it is inherited)


@pytest.mark.parametrize("to", ["process", "another thread", "process started with SIGINT ignored"])
def test_the_plugin_exits_at_once_on_the_engine_s_sigint(to):
    """The engine's SIGINT ends the plugin with status 0, also when the kernel hands it to a thread other than the
    main one (gRPC's: Python acts on it only when the main thread runs, so that one must not sleep for good) and
    when the plugin was started with SIGINT ignored (an engine run in the background passes that on)."""
    if to == "another thread" and os.uname().machine not in TGKILL:
        pytest.skip(f"tgkill's number on {os.uname().machine} is not known here")
    plugin = subprocess.Popen([str(Path(sys.executable).parent / "pulumi-resource-alicloud"), "127.0.0.1:1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=_ignore_sigint if "ignored" in to else None)
    try:
        assert plugin.stdout.readline().strip().isdigit()  # its port: serving
        if to != "another thread":
            plugin.send_signal(signal.SIGINT)
        else:
            tasks = Path(f"/proc/{plugin.pid}/task")
            grpc_threads = [int(t.name) for t in tasks.iterdir()
                            if t.name != str(plugin.pid) and (t / "comm").read_text().startswith(("grpc", "event_"))]
            assert grpc_threads, "the plugin runs gRPC's threads beside its main one"
            _tgkill(plugin.pid, grpc_threads[0], signal.SIGINT)  # a C thread: Python's handler only flags it
        assert plugin.wait(timeout=10) == 0
    finally:
        if plugin.poll() is None:
            plugin.kill()
            plugin.wait()
