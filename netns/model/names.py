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
# ``ngw``: a NAT gateway (a namespace of its own); ``snat``: one of its SNAT entries (rules in that namespace and in the
# VPC router; an id here so that a crashed run's leftovers are pruned like any other object's).
_ID_RE = re.compile(r"^(vpc|vsw|i|eni|sg|sgr|lb|rsp|acl|cert|ngw|snat)-[0-9a-f]{8}$")
# Pods are not cloud objects: their namespaces carry a hash of "<k8s namespace>/<pod name>" (stable, short).
_POD_RE = re.compile(r"^pod-[0-9a-f]{10}$")
# Lab-wide segments that are no cloud object of their own: the sealed "internet" an internet SLB faces, and
# the SSH mode's controller with its management segment (acklab/sshmode.py).
SEGMENTS = ("internet", "mgmt")
# A Kubernetes cluster (ACK's managed control plane): ``c`` and hex, as ACK's cluster ids, without a dash. Eight hex
# digits, like every other id, keep ``acklab-<lab>-<id>`` within the namespace budget and the id an interface name.
_CLUSTER_RE = re.compile(r"^c[0-9a-f]{8}$")


def check_lab(lab: str) -> str:
    """Return ``lab`` if it is a valid lab (stack) name, else raise a ValidationError."""
    if not _LAB_RE.match(lab or ""):
        raise ValidationError(
            f"lab {lab!r}",
            "stack name",
            "must be 1-16 lower-case letters and digits, starting with a letter "
            "(it becomes part of every namespace name of the lab)",
            hint="pick another name with --lab NAME (or ACKLAB_LAB=NAME), e.g. --lab lab1",
        )
    return lab


def mark(lab: str) -> str:
    """The prefix every namespace of ``lab`` carries."""
    return f"{PREFIX}{check_lab(lab)}-"


def netns_name(lab: str, cloud_id: str) -> str:
    """The namespace that realizes the cloud object ``cloud_id`` (a VPC router, an ECS, an SLB) or a segment."""
    if not _ID_RE.match(cloud_id) and cloud_id not in SEGMENTS and not is_cluster_id(cloud_id):
        raise ValueError(f"not an acklab cloud id: {cloud_id!r}")
    return mark(lab) + cloud_id


def new_id(kind: str) -> str:
    """A fresh Alibaba-style id: ``vpc-``, ``vsw-``, ``i-`` or ``eni-`` and 8 hex digits.

    Eight hex digits keep ids short enough to serve as interface names (15 characters at most).
    """
    if kind not in ("vpc", "vsw", "i", "eni", "sg", "sgr", "lb", "rsp", "acl", "cert", "ngw", "snat"):
        raise ValueError(f"unknown id kind {kind!r}")
    return f"{kind}-{secrets.token_hex(4)}"


def new_cluster_id() -> str:
    """A fresh cluster id: ``c`` and 8 hex digits (ACK's are ``c`` and 32; see _CLUSTER_RE for why 8)."""
    return f"c{secrets.token_hex(4)}"


def is_cluster_id(value: str) -> bool:
    return bool(_CLUSTER_RE.match(value or ""))


def is_cloud_id(value: str, kind: str) -> bool:
    return bool(_ID_RE.match(value or "")) and value.startswith(kind + "-")


def is_any_cloud_id(value: str) -> bool:
    """True for an id acklab hands out (any kind)."""
    return bool(_ID_RE.match(value or ""))


def lab_of(namespace: str) -> str | None:
    """The lab a namespace belongs to, or None if it carries no acklab mark."""
    if not namespace.startswith(PREFIX):
        return None
    rest = namespace[len(PREFIX):]
    lab, sep, cloud_id = rest.partition("-")
    if not sep or not _LAB_RE.match(lab) or not (_ID_RE.match(cloud_id) or _POD_RE.match(cloud_id)
                                                or cloud_id in SEGMENTS or is_cluster_id(cloud_id)):
        return None
    return lab


def pod_id(namespace: str, name: str) -> str:
    """``pod-`` and 10 hex digits of a hash of the pod's key: the same pod always gets the same id."""
    return "pod-" + hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:10]


def pod_netns_name(lab: str, namespace: str, name: str) -> str:
    """The namespace of a pod: ``acklab-<lab>-pod-<hash>`` (38 characters at most)."""
    return mark(lab) + pod_id(namespace, name)


# --- kernel name limits ------------------------------------------------------------------------------------
# An interface name is at most IFNAMSIZ - 1 = 15 bytes, not "." or "..", without "/", ":" or white space
# (the kernel's dev_valid_name). An interface alias (ifalias) is at most IFALIASZ - 1 = 255 bytes.
IFNAME_MAX = 15
IFALIAS_MAX = 255
# Ids that name an interface: a vSwitch is the bridge named by its id, an ENI (an SLB, a NAT gateway) the router port
# named by its id.
IFNAME_KINDS = ("vsw", "eni", "lb", "ngw")
KIND_NAMES = {"vpc": "VPC", "vsw": "vSwitch", "i": "ECS instance", "eni": "network interface",
              "sg": "security group", "sgr": "security group rule", "vtb": "route table", "lb": "load balancer",
              "rsp": "server group", "acl": "access control list", "ngw": "NAT gateway", "stb": "SNAT table"}
_REFERENCE_RE = re.compile(rf"^({'|'.join(KIND_NAMES)})-[0-9a-f]{{8}}$")
# Input fields that refer to another acklab object by id, and the kind of id each one takes.
REFERENCE_FIELDS = {"vpc_id": "vpc", "vswitch_id": "vsw", "security_group_id": "sg", "source_security_group_id": "sg",
                    "security_groups": "sg", "security_group_ids": "sg", "network_interface_id": "eni",
                    "instance_id": "i", "nexthop_id": "i", "route_table_id": "vtb", "load_balancer_id": "lb",
                    "server_group_id": "rsp", "acl_id": "acl", "nat_gateway_id": "ngw", "snat_table_id": "stb",
                    "source_vswitch_id": "vsw"}
_ZONE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def ifname_problem(name: str) -> str | None:
    """Why ``name`` cannot name a Linux interface, or None if it can."""
    size = len(name.encode())
    if size == 0:
        return "an interface name cannot be empty"
    if size > IFNAME_MAX:
        return f"{name!r} is {size} characters; a Linux interface name has at most {IFNAME_MAX}"
    if name in (".", "..") or any(c in name for c in "/:") or any(c.isspace() for c in name):
        return f"{name!r} cannot name a Linux interface (no '/', ':' or white space)"
    return None


def check_ifname(resource: str, field: str, name: str) -> str:
    problem = ifname_problem(name)
    if problem:
        raise ValidationError(resource, field, problem)
    return name


def check_reference(resource: str, field: str, value: object, kind: str) -> str:
    """A field that names another acklab object by id: it must be an id of that kind, as acklab makes them."""
    what = KIND_NAMES[kind]
    if not isinstance(value, str):
        raise ValidationError(resource, field, f"{value!r} is not a {what} id")
    if kind in IFNAME_KINDS:
        problem = ifname_problem(value)
        if problem:
            raise ValidationError(resource, field, f"{problem} (a {what} id names one)")
    if not (_REFERENCE_RE.match(value) and value.startswith(kind + "-")):
        raise ValidationError(resource, field, f"{value!r} is not a {what} id of acklab ({kind}- and 8 hex digits)")
    return value


def check_alias_part(resource: str, field: str, value: object, limit: int) -> str:
    """A free-text value kept in an interface alias: at most ``limit`` bytes, spaces allowed (stored as _)."""
    if not isinstance(value, str):
        raise ValidationError(resource, field, f"{value!r} is not a string")
    size = len(value.encode())
    if size > limit:
        raise ValidationError(resource, field, f"is {size} bytes long; at most {limit} (it is kept in an interface "
                                               f"alias, which the kernel caps at {IFALIAS_MAX} bytes)")
    return value


# Alibaba's limits, which also keep an ENI's alias (ip, instance, name, groups) within IFALIAS_MAX.
INSTANCE_NAME_MAX = 128
GROUPS_PER_INSTANCE_MAX = 5


def check_instance_name(resource: str, value: object) -> str:
    return check_alias_part(resource, "instance_name", value, INSTANCE_NAME_MAX)


def check_group_count(resource: str, value: object) -> object:
    if isinstance(value, list | tuple) and len(value) > GROUPS_PER_INSTANCE_MAX:
        raise ValidationError(resource, "security_groups", f"{len(value)} groups; an instance joins at most "
                                                           f"{GROUPS_PER_INSTANCE_MAX}")
    return value


# Inputs of the resources that own an ENI (ecs.Instance, ecs.EcsNetworkInterface) whose values end up in the
# ENI port's alias (see netns/realize/eni.py): name, host name, groups, secondary private IPs.
ENI_ALIAS_INPUTS = {"instance_name": "name", "network_interface_name": "name", "host_name": "host",
                    "security_groups": "sg", "security_group_ids": "sg", "secondary_private_ips": "secondary",
                    "private_ip_addresses": "secondary", "secondary_private_ip_address_count": "secondary"}
_WIDEST_IP = "255.255.255.255"


def eni_alias_worst_case(inputs: dict[str, object]) -> dict[str, str]:
    """The widest facts an ENI with these inputs can carry in its alias (every address at its widest)."""
    facts = {"ip": _WIDEST_IP, "instance": "i-00000000", "device": "99"}
    secondary = 0
    for field, key in ENI_ALIAS_INPUTS.items():
        value = inputs.get(field)
        if value is None:
            continue
        if key == "secondary":  # listed addresses and a count add up
            if isinstance(value, int | float):
                secondary += int(value)
            elif isinstance(value, list | tuple):
                secondary += len(value)
            facts[key] = ",".join([_WIDEST_IP] * secondary)
        elif isinstance(value, list | tuple):
            facts[key] = ",".join(str(v) for v in value)
        else:
            facts[key] = "_".join(str(value).split())
    return {k: v for k, v in facts.items() if v}


def check_eni_alias(resource: str, inputs: dict[str, object]) -> None:
    """The ENI's facts must fit the kernel's interface alias; else name the input that takes the most room."""
    facts = eni_alias_worst_case(inputs)
    size = len(" ".join(f"{k}={v}" for k, v in facts.items()).encode())
    if size <= IFALIAS_MAX:
        return
    given = [f for f in ENI_ALIAS_INPUTS if inputs.get(f) is not None]
    field = max(given, key=lambda f: len(facts.get(ENI_ALIAS_INPUTS[f], "").encode()))
    raise ValidationError(resource, field, f"the ENI's facts would take {size} bytes of its interface alias, the "
                                           f"kernel keeps at most {IFALIAS_MAX}: shorten this or "
                                           f"{', '.join(f for f in given if f != field) or 'nothing else'}")


def check_zone_id(resource: str, value: object) -> str:
    """A zone id such as cn-hangzhou-h: letters, digits, '.', '_' and '-', at most 64 (kept in the bridge alias)."""
    if not isinstance(value, str) or not _ZONE_RE.match(value):
        raise ValidationError(resource, "zone_id", f"{value!r} is not a zone id (e.g. cn-hangzhou-h: letters, digits, "
                                                   "'.', '_' and '-', at most 64)")
    return value
