"""A cluster-wide controller's process: one per lab, in the control plane's namespace (removing it ends the
process), with a client identity and RBAC of its own. The cloud controller and the ingress controller are two
of them; what differs (module, files, identity, RBAC) is class data.

Files in the controller's folder (mode 700): ``kubeconfig`` (its client certificate, 600), ``<stem>.pid``,
``<stem>.log``, ``ready`` (the PID, written by the process once it has listed everything it watches).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from netns.kernel import process
from netns.kernel.files import read_text, tail, write_atomic
from netns.kernel.namespace import end_processes
from netns.model.errors import LabError, NotFoundError

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ClusterController:
    lab: str
    module: ClassVar[str]  # python -m <module> --lab <lab> --kubeconfig <file>
    title: ClassVar[str]  # "the cloud controller", for messages
    stem: ClassVar[str]  # the pid and log files' name
    user: ClassVar[str]  # its client certificate's user
    rbac: ClassVar[str]  # the ClusterRole and binding it needs, applied before it starts
    listed: ClassVar[str]  # what it lists before it is ready, for messages

    @property
    def folder(self) -> Path:
        raise NotImplementedError

    @property
    def kubeconfig_path(self) -> Path:
        return self.folder / "kubeconfig"

    @property
    def pidfile(self) -> Path:
        return self.folder / f"{self.stem}.pid"

    @property
    def ready_file(self) -> Path:
        return self.folder / "ready"

    @property
    def log(self) -> Path:
        return self.folder / f"{self.stem}.log"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", self.module, "--lab", self.lab, "--kubeconfig", str(self.kubeconfig_path)]

    def pid(self) -> int | None:
        """The controller's PID when the pidfile names a live process with exactly our command line."""
        pid = process.read_pidfile(self.pidfile)
        return pid if pid is not None and process.alive(pid) and process.cmdline(pid) == self.argv() else None

    def ensure(self, timeout: float = 30.0) -> int:
        """Run the controller (start it if it does not run; restart it when its kubeconfig changed); wait until
        it has listed what it watches. Returns its PID."""
        from netns.realize.control_plane import control_planes, kubectl_apply

        planes = control_planes(self.lab)
        if not planes or not planes[0].namespace.exists():
            raise NotFoundError(f"lab {self.lab} has no Kubernetes control plane for {self.title}")
        kubectl_apply(self.lab, self.rbac, f"{self.title}'s RBAC")
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)  # the kubeconfig carries a key
        kubeconfig = planes[0].client_kubeconfig(self.user)
        pid = self.pid()
        if read_text(self.kubeconfig_path) != kubeconfig:
            if pid is not None:
                end_processes([pid])
                pid = None
            write_atomic(self.kubeconfig_path, kubeconfig, 0o600)
        if pid is None:
            self.ready_file.unlink(missing_ok=True)
            pid = process.spawn_in(planes[0].namespace.name, self.argv(), self.pidfile, self.log, REPO)
        failed = process.wait_ready(self.ready_file, pid, self.pid, timeout)
        if failed == "exited":
            raise LabError(f"{self.title} of lab {self.lab} exited; its log ends:\n{tail(self.log)}")
        if failed == "timeout":
            raise LabError(f"{self.title} of lab {self.lab} did not list {self.listed} in time; its log "
                           f"ends:\n{tail(self.log)}")
        return pid

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            end_processes([pid])
        self.pidfile.unlink(missing_ok=True)
        self.ready_file.unlink(missing_ok=True)

    def end_leftovers(self) -> list[int]:
        """SIGKILL the lab's processes of this controller (by command line), for ``acklab clean``."""
        wanted = self.argv()[1:]
        return process.kill_all(process.find(lambda argv: argv[1:] == wanted))

