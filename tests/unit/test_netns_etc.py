"""netns/kernel/netns_etc.py on a temporary /etc/netns and /run/netns: write only on change, remove, sweep the
folders of namespaces that are gone (and only the wanted ones)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netns.kernel import netns_etc


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    etc, run = tmp_path / "etc-netns", tmp_path / "run-netns"
    run.mkdir()
    monkeypatch.setattr(netns_etc, "ETC_NETNS", etc)
    monkeypatch.setattr(netns_etc, "NETNS_DIR", str(run))
    return etc, run


def test_write_makes_the_folder_and_writes_only_changes(dirs):
    etc, _ = dirs
    assert netns_etc.write("acklab-t-pod-1", "resolv.conf", "nameserver 172.21.0.10\n")
    assert (etc / "acklab-t-pod-1" / "resolv.conf").read_text() == "nameserver 172.21.0.10\n"
    assert not netns_etc.write("acklab-t-pod-1", "resolv.conf", "nameserver 172.21.0.10\n")
    assert netns_etc.remove("acklab-t-pod-1") and not (etc / "acklab-t-pod-1").exists()
    assert not netns_etc.remove("acklab-t-pod-1")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b"])
def test_names_that_would_leave_the_folder_are_refused(dirs, name):
    with pytest.raises(ValueError):
        netns_etc.folder(name)


def test_sweep_removes_wanted_folders_whose_namespace_is_gone(dirs):
    _, run = dirs
    for name in ("acklab-t-pod-1", "acklab-t-pod-2", "acklab-u-pod-3"):
        netns_etc.write(name, "resolv.conf", "")
    (run / "acklab-t-pod-2").touch()  # still exists
    assert netns_etc.sweep(lambda name: name.startswith("acklab-t-")) == ["acklab-t-pod-1"]
    assert netns_etc.folder("acklab-t-pod-2").exists() and netns_etc.folder("acklab-u-pod-3").exists()


def test_sweep_without_etc_netns(dirs):
    assert netns_etc.sweep(lambda _name: True) == []
