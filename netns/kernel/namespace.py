"""A named network namespace (``/run/netns/NAME``) and what runs inside it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from netns.kernel import netlink
from netns.kernel.process import NETNS_DIR, alive

if TYPE_CHECKING:
    from pyroute2 import IPRoute

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


def _in_own_thread(name: str, work: Callable[[], T]) -> T:
    """Run ``work`` in a short-lived thread and return its result (or raise its error).

    Namespace changes (``setns``, ``unshare``) move only the calling thread; doing them in a thread that
    then ends leaves the process where it was. Forking instead (pyroute2's default) crashes inside the
    multi-threaded gRPC server of a Pulumi provider.
    """
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def socket_in(path: str, family: int, type: int, proto: int = 0) -> socket.socket:
    """A socket that belongs to the namespace at ``path`` (a socket keeps the namespace it was created in),
    made by a thread that enters the namespace; nothing forks and the process never changes namespace."""
    return sockets_in(path, [(family, type, proto)])[0]


def sockets_in(path: str, specs: Sequence[tuple[int, int, int]]) -> list[socket.socket]:
    """Several sockets of the namespace at ``path`` (``(family, type, proto)`` each), made by one thread."""

    def make() -> list[socket.socket]:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.setns(fd, CLONE_NEWNET), f"setns {path}")
        finally:
            os.close(fd)
        made: list[socket.socket] = []
        try:
            for family, type_, proto in specs:
                made.append(socket.socket(family, type_, proto))
        except BaseException:
            for sock in made:
                sock.close()
            raise
        return made

    return _in_own_thread(f"netns-socket:{path}", make)


MS_BIND = 0x1000
MNT_DETACH = 0x2
EINVAL = 22


def _netns_dir_ready() -> bool:
    """True when /run/netns is a mount point (iproute2 makes it a shared one on first use)."""
    with open("/proc/self/mountinfo") as mounts:
        return any(line.split()[4] == NETNS_DIR for line in mounts)


def _bind_new_namespace(path: str, with_socket: bool = False) -> socket.socket | None:
    """Make a new network namespace and pin it at ``path``: a thread ``unshare``s a network namespace
    (only the thread moves), bind-mounts its own namespace on ``path`` and ends. Nothing forks.
    ``with_socket``: the thread also opens a route netlink socket there, returned (one entry for both)."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0)
    os.close(fd)

    def make() -> socket.socket | None:
        _check(_libc.unshare(CLONE_NEWNET), "unshare")
        own = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
        _check(_libc.mount(own, path.encode(), b"none", MS_BIND, None), f"bind mount on {path}")
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE) if with_socket else None

    try:
        return _in_own_thread(f"netns-create:{path}", make)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise


@contextmanager
def _route_session(sock: socket.socket) -> Iterator[IPRoute]:
    """pyroute2's IPRoute on a route netlink socket made in a namespace; closed at the end."""
    ipr = netlink.iproute(sock.detach())
    try:
        yield ipr
    finally:
        ipr.close()


@dataclass(frozen=True)
class Namespace:
    """One named network namespace. Never the root namespace: a name is always required."""

    name: str

    def exists(self) -> bool:
        return os.path.exists(os.path.join(NETNS_DIR, self.name))

    def create(self, loopback_up: bool = True) -> bool:
        """Create the namespace (with its loopback up unless told otherwise); return False if it existed.

        Done the way ``ip netns add`` does it, without forking it: a new network namespace is bind-mounted
        on ``/run/netns/NAME``. ``ip netns add`` runs once first if ``/run/netns`` is not yet the shared
        mount point it sets up (so that the mounts propagate like iproute2's own).
        """
        if self.exists():
            return False
        if not _netns_dir_ready():
            subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True, text=True)
        else:
            _bind_new_namespace(os.path.join(NETNS_DIR, self.name))
        if loopback_up:
            with self.ipr() as ipr:
                ipr.link("set", ifname="lo", state="up")
        return True

    def remove(self) -> bool:
        """Stop every process inside, then delete the namespace; return False if it was absent.

        Like ``ip netns delete``: unmount and unlink the name. The kernel tears the namespace (and the
        interfaces in it, with their veth peers) down asynchronously once nothing refers to it.
        """
        if not self.exists():
            return False
        self.kill_processes()
        path = os.path.join(NETNS_DIR, self.name)
        if _libc.umount2(path.encode(), MNT_DETACH) != 0:
            errno = ctypes.get_errno()
            if errno != EINVAL:  # EINVAL: not mounted (a half-made name); unlink it all the same
                raise OSError(errno, f"umount {path}: {os.strerror(errno)}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return True

    @contextmanager
    def ipr(self) -> Iterator[IPRoute]:
        """A netlink socket opened inside the namespace (the calling process never enters it)."""
        with _route_session(self.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)) as ipr:
            yield ipr

    @contextmanager
    def create_session(self) -> Iterator[IPRoute]:
        """``create(loopback_up=False)`` then ``ipr()``: when the namespace is made here, the thread that makes
        it opens the session too (one namespace entry for both: on the hot path of every ECS created)."""
        if not self.exists() and _netns_dir_ready():
            sock = _bind_new_namespace(os.path.join(NETNS_DIR, self.name), with_socket=True)
            assert sock is not None
            with _route_session(sock) as ipr:
                yield ipr
            return
        self.create(loopback_up=False)
        with self.ipr() as ipr:
            yield ipr

    @contextmanager
    def session(self, *extra: tuple[int, int, int]) -> Iterator[tuple[IPRoute, list[socket.socket]]]:
        """``ipr()`` and further sockets (``(family, type, proto)`` each) of this namespace, all made by one
        thread: one namespace entry for what one operation needs; closed together."""
        made = sockets_in(os.path.join(NETNS_DIR, self.name),
                          [(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE), *extra])
        try:
            ipr = netlink.iproute(made[0].detach())
        except BaseException:
            for sock in made:
                sock.close()
            raise
        try:
            yield ipr, made[1:]
        finally:
            ipr.close()
            for sock in made[1:]:
                sock.close()

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM, proto: int = 0) -> socket.socket:
        """A socket inside this namespace (see ``socket_in``)."""
        return socket_in(os.path.join(NETNS_DIR, self.name), family, type, proto)

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 30,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace.

        ``nsenter --net`` enters the network namespace only; ``ip netns exec`` would also remount /sys, which
        the tools run here (iptables, ipset, nft, sysctl on /proc/sys/net) do not need. Users' commands
        (``acklab exec``, user data) go through ``ip netns exec``.
        """
        return subprocess.run(
            ["nsenter", f"--net={os.path.join(NETNS_DIR, self.name)}", *argv],
            check=check, capture_output=True, text=True, timeout=timeout, input=input,
        )

    def sysctl(self, key: str, value: str | int) -> None:
        """Set a sysctl of this namespace (net.* keys are per namespace)."""
        if not key.startswith("net."):
            raise ValueError(f"only per-namespace net.* sysctls may be set, not {key}")
        self.run(["sysctl", "-qw", f"{key}={value}"])

    def inode(self) -> int | None:
        try:
            return os.stat(os.path.join(NETNS_DIR, self.name)).st_ino
        except FileNotFoundError:
            return None

    def pids(self) -> list[int]:
        """PIDs of the processes whose network namespace is this one."""
        inode = self.inode()
        return processes_in({inode}) if inode is not None else []

    def kill_processes(self, grace: float = 3.0) -> None:
        """End the processes inside this namespace, by PID: SIGTERM, then SIGKILL after ``grace``."""
        end_processes(self.pids(), grace)


def processes_in(inodes: set[int]) -> list[int]:
    """PIDs of the processes whose network namespace is one of ``inodes`` (one scan of /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                found.append(int(entry))
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return found


def end_processes(pids: list[int], grace: float = 3.0) -> None:
    """SIGTERM these processes (by PID), then SIGKILL those still alive after ``grace`` seconds."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if alive(pid)]
        if pids:
            time.sleep(0.02)
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def own_name(netns_dir: str = NETNS_DIR) -> str | None:
    """The name (``ip netns``) of the network namespace this process runs in, e.g. a lab node's or SSH mode's
    controller; None for an unnamed one, such as the host's."""
    try:
        own = os.stat("/proc/self/ns/net").st_ino
        entries = list(os.scandir(netns_dir))
    except OSError:
        return None
    for entry in entries:
        with contextlib.suppress(OSError):
            if os.stat(entry.path).st_ino == own:
                return entry.name
    return None


def list_namespaces(prefix: str) -> list[Namespace]:
    """Every named namespace whose name starts with ``prefix`` (must be non-empty)."""
    if not prefix:
        raise ValueError("a prefix is required: acklab only lists its own namespaces")
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return [Namespace(n) for n in sorted(names) if n.startswith(prefix)]


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


