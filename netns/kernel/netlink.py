"""pyroute2, loaded at the first netlink call.

Importing pyroute2 costs about 85 ms (its package imports every family it speaks, nl80211 included). Processes
that only plan pay it for nothing: the provider plugin's preview (started anew for every ``pulumi preview`` and
twice per ``pulumi up``), the Pulumi program, the CLI's pure commands. Kernel code therefore reaches pyroute2
through here: ``iproute(fileno)`` makes the session and ``netlink.NetlinkError`` (a module attribute, looked up
when an ``except`` clause meets an exception) is pyroute2's error class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyroute2 import IPRoute


def iproute(fileno: int) -> IPRoute:
    """pyroute2's IPRoute on a route netlink socket the caller made (in the namespace it must act in)."""
    from pyroute2 import IPRoute

    return IPRoute(fileno=fileno)


def __getattr__(name: str) -> Any:
    if name == "NetlinkError":
        from pyroute2.netlink.exceptions import NetlinkError

        return NetlinkError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
