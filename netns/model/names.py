"""Lab names, cloud ids and the mark that makes every kernel object of a lab findable.

Every network namespace of a lab is named ``acklab-<lab>-<cloud id>``. Lab names are letters and
digits only, so no lab's mark is a prefix of another lab's mark (``acklab-a-`` never matches a
namespace of lab ``a-b``): ``acklab clean --lab a`` can never touch lab ``ab``'s objects.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from netns.model.errors import ValidationError

PREFIX = "acklab-"
_LAB_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")
_ID_RE = re.compile(r"^(vpc|vsw|i|eni|sg|sgr|lb|rsp|acl|cert)-[0-9a-f]{8}$")
# Pods are not cloud objects: their namespaces carry a hash of "<k8s namespace>/<pod name>" (stable, short).
_POD_RE = re.compile(r"^pod-[0-9a-f]{10}$")
# Lab-wide segments that are no cloud object of their own: the sealed "internet" an internet SLB faces.
SEGMENTS = ("internet",)


def check_lab(lab: str) -> str:
    """Return ``lab`` if it is a valid lab (stack) name, else raise a ValidationError."""
    if not _LAB_RE.match(lab or ""):
        raise ValidationError(
            f"lab {lab!r}",
            "stack name",
            "must be 1-16 lower-case letters and digits, starting with a letter "
            "(it becomes part of every namespace name of the lab)",
        )
    return lab


def mark(lab: str) -> str:
    """The prefix every namespace of ``lab`` carries."""
    return f"{PREFIX}{check_lab(lab)}-"


def netns_name(lab: str, cloud_id: str) -> str:
    """The namespace that realizes the cloud object ``cloud_id`` (a VPC router, an ECS, an SLB) or a segment."""
    if not _ID_RE.match(cloud_id) and cloud_id not in SEGMENTS:
        raise ValueError(f"not an acklab cloud id: {cloud_id!r}")
    return mark(lab) + cloud_id


def new_id(kind: str) -> str:
    """A fresh Alibaba-style id: ``vpc-``, ``vsw-``, ``i-`` or ``eni-`` and 8 hex digits.

    Eight hex digits keep ids short enough to serve as interface names (15 characters at most).
    """
    if kind not in ("vpc", "vsw", "i", "eni", "sg", "sgr", "lb", "rsp", "acl", "cert"):
        raise ValueError(f"unknown id kind {kind!r}")
    return f"{kind}-{secrets.token_hex(4)}"


def is_cloud_id(value: str, kind: str) -> bool:
    return bool(_ID_RE.match(value or "")) and value.startswith(kind + "-")


def lab_of(namespace: str) -> str | None:
    """The lab a namespace belongs to, or None if it carries no acklab mark."""
    if not namespace.startswith(PREFIX):
        return None
    rest = namespace[len(PREFIX):]
    lab, sep, cloud_id = rest.partition("-")
    if not sep or not _LAB_RE.match(lab) or not (_ID_RE.match(cloud_id) or _POD_RE.match(cloud_id)
                                                or cloud_id in SEGMENTS):
        return None
    return lab


def pod_id(namespace: str, name: str) -> str:
    """``pod-`` and 10 hex digits of a hash of the pod's key: the same pod always gets the same id."""
    return "pod-" + hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:10]


def pod_netns_name(lab: str, namespace: str, name: str) -> str:
    """The namespace of a pod: ``acklab-<lab>-pod-<hash>`` (38 characters at most)."""
    return mark(lab) + pod_id(namespace, name)
