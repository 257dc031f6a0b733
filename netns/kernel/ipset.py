"""Add and delete ipset members over netlink inside a named namespace, without forking ``ipset``.

The socket is made by a thread that enters the namespace (``socket_in``: only that thread moves, the
process never changes namespace; see ``netns/kernel/namespace.py``). The requests are pyroute2's ipset
messages (``pyroute2.netlink.nfnetlink.ipset``), sent in one write and acknowledged one by one. The
semantics are those of ``ipset -exist``: adding a member already present or deleting one that is absent is
not an error; a set that does not exist is.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Sequence

from netns.kernel.namespace import NETNS_DIR, Namespace, socket_in

NETLINK_NETFILTER = 12
# the kernel's ABI numbers (linux/netlink.h, linux/netfilter/nfnetlink.h, linux/netfilter/ipset/ip_set.h): named
# here, so that importing this module does not import pyroute2 (netns/kernel/netlink.py says why)
NLM_F_REQUEST, NLM_F_ACK, NLMSG_ERROR = 0x1, 0x4, 0x2
NFNL_SUBSYS_IPSET = 6
IPSET_CMD_ADD, IPSET_CMD_DEL = 9, 10
IPSET_PROTOCOL = 6  # the oldest protocol the kernel accepts (IPSET_PROTOCOL_MIN): every kernel with ipset speaks it
_NLMSGHDR = struct.Struct("=IHHII")
_ERRNO = struct.Struct("=i")
# errors of ipset's own range (include/uapi/linux/netfilter/ipset/ip_set.h)
_IPSET_ERRORS = {4097: "the set does not exist", 4098: "the set type does not exist", 4106: "the set is full"}

Change = tuple[str, str]  # (set name, member: "a.b.c.d" or "a.b.c.d/len")


class IpsetError(RuntimeError):
    """The kernel refused a change (typically: the set does not exist)."""


def _request(command: int, name: str, member: str, seq: int) -> bytes:
    address, _, prefix = member.partition("/")
    data = [["IPSET_ATTR_IP_FROM", {"attrs": [["IPSET_ATTR_IPADDR_IPV4", address]]}]]
    if prefix:
        data.insert(0, ["IPSET_ATTR_CIDR", int(prefix)])
    from pyroute2.netlink.nfnetlink.ipset import ipset_msg  # the encoder, at the first change (see above)

    msg = ipset_msg()
    msg["nfgen_family"] = socket.AF_INET
    msg["attrs"] = [["IPSET_ATTR_PROTOCOL", IPSET_PROTOCOL], ["IPSET_ATTR_SETNAME", name],
                    ["IPSET_ATTR_DATA", {"attrs": data}]]
    msg["header"]["type"] = (NFNL_SUBSYS_IPSET << 8) | command
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK  # no NLM_F_EXCL: like ``ipset -exist``
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


SPEC = (socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)  # the socket ``update_members`` may be handed


def update_members(namespace_name: str, add: Sequence[Change] = (), delete: Sequence[Change] = (),
                   sock: socket.socket | None = None) -> None:
    """Add, then delete, members of ``hash:net`` sets in the named namespace: one socket, one write.

    ``sock``: a socket of ``SPEC`` already made in that namespace (e.g. with a session's, by the same thread);
    left open. Without it, one is made for the call."""
    changes = [(IPSET_CMD_ADD, *c) for c in add] + [(IPSET_CMD_DEL, *c) for c in delete]
    if not changes:
        return
    if sock is None:
        with socket_in(os.path.join(NETNS_DIR, namespace_name), *SPEC) as own:
            _send(own, changes)
    else:
        _send(sock, changes)


def _send(sock: socket.socket, changes: list[tuple[int, str, str]]) -> None:
    """The changes in one write; then every acknowledgement (bound on first send: netlink autobind)."""
    sock.sendall(b"".join(_request(cmd, name, member, seq) for seq, (cmd, name, member) in enumerate(changes, 1)))
    failures, pending = [], set(range(1, len(changes) + 1))
    while pending:
        data, offset = sock.recv(65536), 0
        while offset + _NLMSGHDR.size <= len(data):
            length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
            if kind == NLMSG_ERROR and seq in pending:
                pending.discard(seq)
                code = -_ERRNO.unpack_from(data, offset + _NLMSGHDR.size)[0]
                if code:
                    cmd, name, member = changes[seq - 1]
                    what = _IPSET_ERRORS.get(code) or (os.strerror(code) if code < 4096 else f"ipset error {code}")
                    failures.append(f"{'add' if cmd == IPSET_CMD_ADD else 'del'} {name} {member}: {what}")
            if length < _NLMSGHDR.size:
                break
            offset += (length + 3) & ~3
    if failures:
        raise IpsetError("; ".join(failures))



IN_USE = "in use by a kernel component"


def destroy_sets(namespace: Namespace, names: Sequence[str], timeout: float = 10.0) -> dict[str, str]:
    """Destroy sets no rule refers to any more; returns the ones the kernel still refused (name → reason).

    A set whose last rule was just replaced can still be "in use" for a moment: with iptables-nft the kernel
    drops a replaced rule's set reference in the deferred destroy work that runs after the transaction has
    committed, so ``iptables-restore`` has already returned. Such a set is retried until ``timeout``."""
    deadline, refused = time.monotonic() + timeout, {}
    pending = list(names)
    while pending:
        refused = {}
        for name in pending:
            result = namespace.run(["ipset", "destroy", name], check=False)
            if result.returncode != 0 and "does not exist" not in result.stderr:
                refused[name] = result.stderr.strip()
        pending = [name for name, reason in refused.items() if IN_USE in reason]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.05)  # polling the kernel's deferred work: there is nothing to wait on
    return refused
