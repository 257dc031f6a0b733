"""A TCP relay from a listening socket made in one network namespace to an address seen from another.

The caller makes and binds the listening socket (``listener``) in the namespace the clients are in and hands it
to a relay process it starts inside the namespace the target is in (``argv``: the socket travels as an inherited
file descriptor). A socket keeps the namespace it was created in, so the relay accepts where the caller bound
the socket and connects from where it runs: nothing is added to either namespace but that one listening socket,
no address, route or rule. Each connection is copied both ways until both sides have finished; half-closes are
passed on.

Run as ``python -m netns.kernel.forward --fd N --to HOST:PORT [--label TEXT]``; ``--label`` only marks the
command line so that whoever started the relay can recognise it again (in ``/proc/<pid>/cmdline``).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
from collections.abc import Sequence

CHUNK = 1 << 16
CONNECT_TIMEOUT = 5.0


def listener(sock: socket.socket, host: str, port: int = 0, backlog: int = 128) -> int:
    """Bind ``sock`` (a fresh TCP socket) to ``host:port`` and listen; return the port it got.

    ``port`` is a preference: when it is taken (another process got it meanwhile), any free port is used.
    SO_REUSEADDR lets a restarted relay take its old port again while connections of the previous one
    are still in TIME_WAIT (it never lets two sockets listen on one port).
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        if port == 0:
            raise
        sock.bind((host, 0))
    sock.listen(backlog)
    return int(sock.getsockname()[1])


def argv(fd: int, target: tuple[str, int], label: str = "") -> list[str]:
    """The relay's command line: it serves the listening socket inherited as ``fd`` (pass it with pass_fds)."""
    line = [sys.executable, "-m", "netns.kernel.forward", "--fd", str(fd), "--to", f"{target[0]}:{target[1]}"]
    return [*line, "--label", label] if label else line


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy until ``source`` ends, then tell ``sink`` nothing more comes (a half-close, like TCP's FIN)."""
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _serve_connection(client: socket.socket, target: tuple[str, int]) -> None:
    with client:
        try:
            upstream = socket.create_connection(target, timeout=CONNECT_TIMEOUT)
        except OSError:
            return  # the target is down: the client sees its connection closed
        with upstream:
            upstream.settimeout(None)
            forward = threading.Thread(target=_pump, args=(client, upstream), daemon=True)
            forward.start()
            _pump(upstream, client)
            forward.join()


def relay(listening: socket.socket, target: tuple[str, int]) -> None:
    """Accept forever; every connection gets its own thread (a handful of kubectl clients, long watches)."""
    while True:
        try:
            client, _ = listening.accept()
        except InterruptedError:
            continue
        threading.Thread(target=_serve_connection, args=(client, target), daemon=True).start()


def _target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m netns.kernel.forward", description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    parser.add_argument("--to", type=_target, required=True, help="HOST:PORT to connect to, from this namespace")
    parser.add_argument("--label", default="", help="free text that marks this command line")
    options = parser.parse_args(args)
    relay(socket.socket(fileno=options.fd), options.to)


if __name__ == "__main__":
    main()
