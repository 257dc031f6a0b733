"""``acklab``: status, exec and clean for the labs on this machine.

Exit codes: 0 success, 1 a command run by ``exec`` failed or nothing matched, 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from acklab.inventory import read_lab, resolve_target
from netns.model.errors import LabError
from netns.realize.cleanup import clean_lab, labs_present

EPILOG = """examples:
  acklab status                      the default lab, as a table
  acklab status --lab t1 --json      another lab, for scripts
  acklab exec ecs-1 -- ping -c1 192.168.2.10
  acklab exec demo/web-0 -- ip addr   a pod, as namespace/name
  acklab clean --lab t1              remove every namespace (and process in it) of lab t1
  acklab recover --lab t1            after a crashed pulumi up: stale lock, interrupted creates, leftovers
"""


def default_lab() -> str:
    return os.environ.get("ACKLAB_LAB", "default")


def cmd_status(args: argparse.Namespace) -> int:
    view = read_lab(args.lab)
    if args.json:
        json.dump(view.to_dict(), sys.stdout, indent=2)
        print()
        return 0
    if not view.vpcs:
        print(f"lab {args.lab}: nothing on this machine")
        return 0
    for vpc in view.vpcs:
        print(f"VPC {vpc.id}  {vpc.cidr_block}  netns {vpc.netns}")
        for vsw in vpc.vswitches:
            print(f"  vSwitch {vsw.id}  {vsw.cidr_block}  zone {vsw.zone_id}  gateway {vsw.gateway_ip}")
    print()
    print(f"{'ECS':<12} {'ID':<12} {'PRIVATE IP':<16} {'VSWITCH':<13} NETNS")
    for ecs in view.ecs:
        groups = ",".join(ecs.security_groups) or "-"
        print(f"{ecs.name:<12} {ecs.id:<12} {ecs.private_ip:<16} {ecs.vswitch_id:<13} {ecs.netns}  sg {groups}")
    if view.pods:
        print(f"\n{'POD':<40} {'IP':<16} {'NODE':<10} NETNS")
        for pod in view.pods:
            print(f"{pod.namespace + '/' + pod.name:<40} {pod.ip:<16} {pod.node:<10} {pod.netns}")
    if view.services:
        print(f"\n{'SERVICE':<30} {'TYPE':<13} {'CLUSTER-IP':<14} {'EXTERNAL-IP':<14} PORT(S)")
        for svc in view.services:
            ports = ",".join(f"{p.port}{':' + str(p.node_port) if p.node_port else ''}/{p.protocol}"
                             for p in svc.ports)
            print(f"{svc.namespace + '/' + svc.name:<30} {svc.type:<13} {svc.cluster_ip:<14} "
                  f"{svc.load_balancer or '<none>':<14} {ports}")
    for group in view.security_groups:
        print(f"\nsecurity group {group.id} ({group.type}, inner {group.inner_access_policy})")
        for rule in group.rules:
            peer = rule["cidr"] or rule["peer_group"]
            ports = "/".join(map(str, rule["ports"])) if rule["ports"] else "-1/-1"
            print(f"  {rule['priority']:>3} {rule['direction']:<7} {rule['policy']:<6} {rule['protocol']:<4} "
                  f"{ports:<11} {peer}")
    for lb in view.slbs:
        print(f"\nSLB {lb.id} {lb.name} {lb.address_type} {lb.address}  netns {lb.netns}")
        for listener in lb.listeners:
            backends = " ".join(f"{b['server_id']}:{b['port']}={b['status']}" for b in listener.backends) or "-"
            print(f"  {listener.protocol}:{listener.frontend_port} {listener.scheduler}  {backends}")
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("acklab exec: no command given (acklab exec TARGET -- CMD ...)", file=sys.stderr)
        return 2
    netns = resolve_target(args.lab, args.target)
    os.execvp("ip", ["ip", "netns", "exec", netns, *command])
    return 1  # not reached


def cmd_clean(args: argparse.Namespace) -> int:
    labs = sorted(labs_present()) if args.all else [args.lab]
    removed = [item for lab in labs for item in clean_lab(lab)]
    for item in removed:
        print(f"removed {item}")
    print(f"{len(removed)} item(s) removed")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    from acklab.recover import main as recover

    return recover(args.lab)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acklab", description=__doc__.splitlines()[0], epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)

    status = sub.add_parser("status", help="what a lab consists of")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    run = sub.add_parser("exec", help="run a command in an ECS (name or id), pod (namespace/name) or VPC router")
    run.add_argument("target")
    run.add_argument("command", nargs=argparse.REMAINDER)
    run.set_defaults(func=cmd_exec)

    clean = sub.add_parser("clean", help="remove every leftover that carries a lab's mark")
    clean.add_argument("--all", action="store_true", help="every acklab lab on this machine")
    clean.set_defaults(func=cmd_clean)

    recover = sub.add_parser("recover", help="run by make up in the project folder: after an interrupted pulumi up, "
                             "clear a dead process's stack lock and interrupted creates, remove their leftovers")
    recover.set_defaults(func=cmd_recover)

    for p in (status, run, clean, recover):
        p.add_argument("--lab", default=default_lab(), help="lab (Pulumi stack) name, default: %(default)s")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (LabError, LookupError) as exc:
        print(f"acklab: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
