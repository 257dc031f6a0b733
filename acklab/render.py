"""``acklab status`` as tables a person reads, from the status dictionary (``LabView.to_dict()``). Pure.

Rows are in a stable order (vSwitches by CIDR, ECS by name, pods by namespace/name, SLBs by name), so two labs
built from the same program print the same table apart from their random ids. Keys this module does not know
(lists of objects other parts of acklab add, such as ``services``) are printed as generic tables.
"""

from __future__ import annotations

import ipaddress

KNOWN = {"lab", "vpcs", "ecs", "pods", "services", "security_groups", "slbs", "nodes", "api"}


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    return ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
            for row in [headers, *rows]]


def _net_key(cidr: str) -> tuple:
    try:
        net = ipaddress.ip_network(cidr)
        return (0, int(net.network_address), net.prefixlen)
    except ValueError:
        return (1, 0, 0)


def _ports(rule: dict) -> str:
    return "/".join(map(str, rule["ports"])) if rule.get("ports") else "-1/-1"


def _rule_key(rule: dict) -> tuple:
    """The order rules are evaluated in (priority, then drop before accept), then a stable order of their text."""
    return (rule["priority"], rule["policy"] != "drop", rule["direction"], rule["protocol"], _ports(rule),
            rule.get("cidr") or rule.get("peer_group") or "")


def _service_port(port: dict) -> str:
    node_port = f":{port['node_port']}" if port.get("node_port") else ""
    return f"{port['port']}{node_port}/{port['protocol']}"


def status_text(view: dict) -> str:
    lab = view.get("lab", "?")
    if not view.get("vpcs"):
        return f"lab {lab}: nothing on this machine\n"
    out: list[str] = []

    def section(headers: list[str], rows: list[list[str]]) -> None:
        if rows:
            out.extend(["", *table(headers, rows)])

    vpcs = view["vpcs"]
    section(["VPC", "CIDR", "NETNS"], [[v["id"], v["cidr_block"], v["netns"]] for v in vpcs])
    vswitches = [(vpc, vsw) for vpc in vpcs for vsw in vpc.get("vswitches", [])]
    vswitches.sort(key=lambda pair: (pair[0]["id"], _net_key(pair[1]["cidr_block"])))
    section(["VSWITCH", "CIDR", "ZONE", "GATEWAY", "VPC"],
            [[s["id"], s["cidr_block"], s["zone_id"], s["gateway_ip"], v["id"]] for v, s in vswitches])
    section(["ECS", "ID", "PRIVATE IP", "VSWITCH", "SECURITY GROUPS", "NETNS"],
            [[e["name"] or "-", e["id"], e["private_ip"], e["vswitch_id"], ",".join(e["security_groups"]) or "-",
              e["netns"]] for e in view.get("ecs", [])])
    if view.get("api"):
        out.extend(["", f"kubernetes API {view['api']}"])
    section(["NODE", "STATUS", "INTERNAL-IP", "INSTANCE", "ZONE", "INSTANCE-TYPE"],
            [[n["name"], n["status"], n["internal_ip"] or "-", n["instance_id"] or "-", n["zone"] or "-",
              n["instance_type"] or "-"] for n in view.get("nodes", [])])
    pods = view.get("pods", [])
    if any(p.get("status") for p in pods):  # a lab with an API server: kubectl's STATUS column too
        section(["POD", "STATUS", "IP", "NODE", "PORTS", "NETNS"],
                [[f"{p['namespace']}/{p['name']}", p["status"], p["ip"], p["node"], ",".join(p.get("ports", [])) or "-",
                  p["netns"]] for p in pods])
    else:
        section(["POD", "IP", "NODE", "PORTS", "NETNS"],
                [[f"{p['namespace']}/{p['name']}", p["ip"], p["node"], ",".join(p.get("ports", [])) or "-",
                  p["netns"]] for p in pods])
    section(["SERVICE", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"],
            [[f"{svc['namespace']}/{svc['name']}", svc["type"], svc.get("cluster_ip") or "-",
              svc.get("load_balancer") or "<none>", ",".join(_service_port(p) for p in svc.get("ports", []))]
             for svc in sorted(view.get("services", []), key=lambda svc: (svc["namespace"], svc["name"]))])
    members: dict[str, list[str]] = {}
    for ecs in view.get("ecs", []):
        for group_id in ecs.get("security_groups", []):
            members.setdefault(group_id, []).append(ecs["name"] or ecs["id"])
    groups = sorted(view.get("security_groups", []), key=lambda g: (members.get(g["id"], []), str(g.get("rules"))))
    for group in groups:
        on = f", ECS {', '.join(members[group['id']])}" if group["id"] in members else ""
        out.extend(["", f"security group {group['id']} ({group['type']}, inner {group['inner_access_policy']}, "
                    f"VPC {group['vpc_id']}{on})"])
        rows = [[str(r["priority"]), r["direction"], r["policy"], r["protocol"], _ports(r),
                 r.get("cidr") or r.get("peer_group") or "-"] for r in sorted(group.get("rules", []), key=_rule_key)]
        out.extend("  " + line for line in table(["PRIORITY", "DIRECTION", "POLICY", "PROTOCOL", "PORTS", "PEER"],
                                                  rows)) if rows else out.append("  (no rules)")
    slbs = sorted(view.get("slbs", []), key=lambda lb: (lb.get("name") or "", lb["id"]))
    section(["SLB", "NAME", "TYPE", "ADDRESS", "VSWITCH", "NETNS"],
            [[lb["id"], lb.get("name") or "-", lb["address_type"], lb["address"], lb.get("vswitch_id") or "-",
              lb["netns"]] for lb in slbs])
    names = {e["id"]: e["name"] for e in view.get("ecs", []) if e.get("name")}
    listeners = []
    for lb in slbs:
        for lsn in lb.get("listeners", []):
            name = f"{lb.get('name') or lb['id']} {lsn['protocol']}:{lsn['frontend_port']}"
            backends = lsn.get("backends") or [{"server_id": "-", "port": "-", "status": "-"}]
            rows = [[name, lsn["scheduler"], f"{names.get(b['server_id'], b['server_id'])}:{b['port']}",
                     b["server_id"], b["status"]] for b in backends]
            listeners += sorted(rows, key=lambda row: row[2])  # by backend name: not the order nodes joined in
    section(["LISTENER", "SCHEDULER", "BACKEND", "SERVER ID", "STATUS"], listeners)
    for key in sorted(set(view) - KNOWN):
        items = view[key]
        if isinstance(items, list) and items and all(isinstance(item, dict) for item in items):
            columns = [c for c in items[0] if not isinstance(items[0][c], dict | list)]
            section([c.upper() for c in columns], [[str(item.get(c, "")) for c in columns] for item in items])
    return f"lab {lab}\n" + "\n".join(out) + "\n"
