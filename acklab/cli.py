"""``acklab``: status, wait, graph, exec, kubectl, logs, clean and bench for the labs on this machine.

Exit codes: 0 success; 1 failure (a lab or object not found, a kernel or tool error; ``exec`` returns the
command's own exit code); 2 usage or validation error (bad arguments, an invalid lab name).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from acklab import graph as lab_graph
from acklab import logs as lab_logs
from acklab import readiness, render
from acklab.inventory import read_lab, resolve_target
from netns.model.errors import LabError, ValidationError
from netns.realize.cleanup import clean_lab, labs_present

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
PROJECT = Path(__file__).resolve().parents[1]  # the checkout (bench/ and reports/ live there)

EPILOG = """examples:
  acklab status                      the default lab, as a table
  acklab status --lab t1 --json      another lab, for scripts
  acklab wait --lab t1 --timeout 120 until every SLB listener and pod of lab t1 answers (make up's last step)
  kubectl --kubeconfig "$(acklab kubeconfig)" get nodes   the lab's API server, from the host (loopback port)
  acklab kubectl get pods -A -o wide  the same, shorter: kubectl with the lab's kubeconfig
  acklab exec ecs-1 -- ping -c1 192.168.2.10
  acklab exec demo/web-0 -- ip addr   a pod, as namespace/name
  acklab clean --lab t1              remove every namespace (and process in it) of lab t1
  acklab recover --lab t1            after a crashed pulumi up: stale lock, interrupted creates, leftovers
  acklab graph --format svg -o lab.svg   the topology picture (Graphviz); --format mermaid for docs
  acklab logs ecs-1 --tail 20        logs of a lab object: HAProxy of SLBs, user data, pod agents, nginx
  acklab bench ecs_scale             run a benchmark of bench/ and print its Markdown report

exit codes:
  0  success
  1  failure: lab or object not found, a kernel or tool error, wait timed out (exec: the command's own exit code)
  2  usage or validation error: bad arguments, an invalid lab name
"""

GRAPH_EPILOG = """examples:
  acklab graph                           Graphviz dot text on stdout
  acklab graph --format mermaid          Mermaid text, for Markdown
  acklab graph --format svg -o lab.svg   SVG (needs Graphviz's dot); png likewise
"""

LOGS_EPILOG = """examples:
  acklab logs --list                 every log of the lab, with its kind and owner
  acklab logs ecs-1                  logs of ECS ecs-1 (user data; pod agent if it is a node)
  acklab logs --kind haproxy         HAProxy of every SLB
  acklab logs kube-apiserver         the API server's log (labs with a control plane)
  acklab logs ecs-1 --kind kube-proxy   kube-proxy of node ecs-1
  acklab logs web --tail 0           the whole log of SLB web (a name or an id)
"""

BENCH_EPILOG = """examples:
  acklab bench                       every benchmark of bench/ (what `make bench` runs), then the reports
  acklab bench slb_wrk               one benchmark
  acklab bench ecs_scale --args '10 --repeats 1 --skip-pulumi'   a quick run of one, with its own arguments
  acklab bench --report              print the last reports only (reports/bench/*.md)
"""


def default_lab() -> str:
    return os.environ.get("ACKLAB_LAB", "default")


@contextmanager
def progress(what: str) -> Iterator[None]:
    """``what… done (1.2 s)`` on stderr for a long step, when stderr is a terminal (scripts get clean output)."""
    show = sys.stderr.isatty()
    if show:
        print(f"{what}…", end="", file=sys.stderr, flush=True)
    start = time.monotonic()
    try:
        yield
    except BaseException:
        if show:
            print(" failed", file=sys.stderr)
        raise
    if show:
        print(f" done ({time.monotonic() - start:.1f} s)", file=sys.stderr)


def cmd_status(args: argparse.Namespace) -> int:
    view = read_lab(args.lab)
    if args.json:
        json.dump(view.to_dict(), sys.stdout, indent=2)
        print()
        return 0
    sys.stdout.write(render.status_text(view.to_dict()))
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    outcome = readiness.wait(args.lab, args.timeout)
    text = readiness.message(args.lab, outcome, args.timeout)
    if not outcome.ready:
        print(f"acklab wait: {text}", file=sys.stderr)
        return EXIT_FAILURE
    print(text)
    return EXIT_OK


def lab_kubeconfig(lab: str, command: str) -> Path | None:
    """The lab's kubeconfig; None (said on stderr, for ``acklab COMMAND``) when the lab has no control plane."""
    from netns.realize import control_plane

    path = control_plane.kubeconfig_path(lab)
    if not path.exists():
        print(f"acklab {command}: lab {lab} has no Kubernetes control plane (no {path})", file=sys.stderr)
        return None
    return path


def after_dashes(argv: list[str]) -> list[str]:
    """A command line passed on (``exec``, ``kubectl``) without the ``--`` that separates it from acklab's."""
    return argv[1:] if argv[:1] == ["--"] else argv


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    from netns.realize import control_plane

    path = lab_kubeconfig(args.lab, "kubeconfig")
    if path is None:
        return EXIT_FAILURE
    if args.merge:  # only when asked: the user's kubeconfig is theirs
        control_plane.merge_kubeconfig(args.lab, Path(args.merge).expanduser())
        print(f"merged context acklab-{args.lab} into {args.merge}", file=sys.stderr)
    print(path)
    return EXIT_OK


def seconds(text: str) -> float:
    """A --timeout: seconds, 0 or more (0: check once)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds, 0 or more")
    return value


def cmd_kubectl(args: argparse.Namespace) -> int:
    """kubectl (the one built with the control plane) with the lab's kubeconfig, as ``kind``'s contexts save typing;
    its exit code is kubectl's."""
    from netns.realize import control_plane

    path = lab_kubeconfig(args.lab, "kubectl")
    if path is None:
        return EXIT_FAILURE
    kubectl = control_plane.binary("kubectl")
    os.execv(kubectl, [kubectl, "--kubeconfig", str(path), *after_dashes(args.arguments)])
    return EXIT_FAILURE  # not reached


def cmd_exec(args: argparse.Namespace) -> int:
    command = after_dashes(args.command)
    if not command:
        print("acklab exec: no command given (acklab exec TARGET -- CMD ...)", file=sys.stderr)
        return 2
    netns = resolve_target(args.lab, args.target)
    os.execvp("ip", ["ip", "netns", "exec", netns, *command])
    return 1  # not reached


def cmd_clean(args: argparse.Namespace) -> int:
    labs = sorted(labs_present()) if args.all else [args.lab]
    removed = []
    for lab in labs:
        with progress(f"removing lab {lab}"):
            removed += clean_lab(lab)
    for item in removed:
        print(f"removed {item}")
    print(f"{len(removed)} item(s) removed")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    from acklab.recover import main as recover

    return recover(args.lab)


def cmd_graph(args: argparse.Namespace) -> int:
    view = read_lab(args.lab).to_dict()
    if not view["vpcs"]:
        raise LookupError(f"lab {args.lab}: nothing on this machine to draw; expected a built lab: "
                          f"run `make up LAB={args.lab}` first (labs present: {_present()})")
    picture = lab_graph.build(view)
    if args.title:
        picture.title = args.title
    if args.format == "mermaid":
        data = lab_graph.to_mermaid(picture).encode()
    elif args.format == "dot":
        data = lab_graph.to_dot(picture).encode()
    else:
        with progress(f"rendering {args.format} with Graphviz"):
            data = lab_graph.render_image(lab_graph.to_dot(picture), args.format)
    if args.output and args.output != "-":
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_bytes(data)
        print(f"wrote {args.output}", file=sys.stderr)
    elif args.format == "png" and sys.stdout.isatty():
        print("acklab graph: PNG is binary; write it with -o FILE (or pipe stdout)", file=sys.stderr)
        return EXIT_USAGE
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return EXIT_OK


def _present() -> str:
    return ", ".join(sorted(labs_present())) or "none"


def cmd_logs(args: argparse.Namespace) -> int:
    found = lab_logs.find_logs(args.lab)
    keys: set[str] = set()
    if args.target:
        keys = {args.target}
        view = read_lab(args.lab)
        for ecs in view.ecs:  # an ECS by name or id: its instance id, and its node name
            if args.target in (ecs.id, ecs.name):
                keys = {ecs.id, ecs.name}
        for lb in view.slbs:  # an SLB by name or id: its id
            if args.target in (lb.id, lb.name):
                keys = {lb.id}
    chosen = lab_logs.select(found, keys, args.kind)
    if not chosen:
        what = f" of {args.target!r}" if args.target else ""
        kinds = f" of kind {args.kind}" if args.kind else ""
        raise LookupError(f"lab {args.lab}: no logs{what}{kinds}; expected *.log files under /run/acklab/{args.lab}/ "
                          f"(see `acklab logs --list --lab {args.lab}`; labs present: {_present()})")
    if args.list:
        for log in chosen:
            print(f"{log.kind:<10} {log.owner:<16} {log.path}")
        return EXIT_OK
    for index, log in enumerate(chosen):
        if len(chosen) > 1:
            print(f"{chr(10) if index else ''}==> {log.describe()}: {log.path} <==")
        sys.stdout.writelines(lab_logs.tail(log.path, args.tail))
    return EXIT_OK


def bench_modules() -> list[str]:
    folder = PROJECT / "bench"
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")) if folder.is_dir() else []


def cmd_bench(args: argparse.Namespace) -> int:
    available = bench_modules()
    if not available:
        raise LookupError(f"no benchmarks: expected bench/*.py in {PROJECT}; run acklab bench from a checkout "
                          "installed with `make setup`")
    unknown = [m for m in args.modules if m not in available]
    if unknown:
        print(f"acklab bench: unknown benchmark {', '.join(unknown)}; expected one of {', '.join(available)}",
              file=sys.stderr)
        return EXIT_USAGE
    reports = PROJECT / "reports" / "bench"
    started = time.time()
    if not args.report:
        for module in args.modules or available:
            with progress(f"bench.{module}"):
                result = subprocess.run([sys.executable, "-m", f"bench.{module}", *shlex.split(args.args)],
                                        cwd=PROJECT, check=False, stdout=sys.stderr)
            if result.returncode != 0:
                print(f"acklab bench: bench.{module} failed (exit {result.returncode}); its output is above",
                      file=sys.stderr)
                return EXIT_FAILURE
    shown = sorted(p for p in reports.glob("*.md") if args.report or p.stat().st_mtime >= started - 1)
    if not shown:
        raise LookupError(f"no benchmark reports in {reports}; run `acklab bench` (or `make bench`) first")
    for index, path in enumerate(shown):
        print(f"{chr(10) if index else ''}<!-- {path.relative_to(PROJECT)} -->")
        print(path.read_text().rstrip())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acklab", description=__doc__.splitlines()[0], epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)

    status = sub.add_parser("status", help="what a lab consists of")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    wait = sub.add_parser("wait", help="until the lab serves: every SLB listener has a healthy backend and answers a "
                          "request, every pod answers on its ports (make up's last step)")
    wait.add_argument("--timeout", type=seconds, default=readiness.DEFAULT_TIMEOUT, metavar="S",
                      help="give up after S seconds, naming what is not ready (exit 1), default: %(default)g")
    wait.set_defaults(func=cmd_wait)

    kubeconfig = sub.add_parser("kubeconfig", help="print the path of the lab's kubeconfig (context acklab-LAB; "
                                "kubectl --kubeconfig $(acklab kubeconfig) get nodes)")
    kubeconfig.add_argument("--merge", metavar="FILE", help="also merge its context into FILE, e.g. ~/.kube/config")
    kubeconfig.set_defaults(func=cmd_kubeconfig)

    kubectl = sub.add_parser("kubectl", help="kubectl with the lab's kubeconfig (acklab kubectl get pods -A); "
                             "options before the subcommand go after --: acklab kubectl -- -n demo get pods")
    kubectl.add_argument("arguments", nargs=argparse.REMAINDER)
    kubectl.set_defaults(func=cmd_kubectl)

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

    raw = argparse.RawDescriptionHelpFormatter
    picture = sub.add_parser("graph", help="the topology picture: VPCs, vSwitches, ECS, pods, SLBs (and Services, "
                             "Ingress when present)", epilog=GRAPH_EPILOG, formatter_class=raw)
    picture.add_argument("--format", choices=("dot", "mermaid", "svg", "png"), default="dot",
                         help="output format (svg and png need Graphviz), default: %(default)s")
    picture.add_argument("-o", "--output", help="write to this file instead of stdout")
    picture.add_argument("--title", help="the picture's title (default: lab NAME)")
    picture.set_defaults(func=cmd_graph)

    logs = sub.add_parser("logs", help="logs of a lab: HAProxy (SLBs), user data (ECS), pod agents, nginx",
                          epilog=LOGS_EPILOG, formatter_class=raw)
    logs.add_argument("target", nargs="?", help="ECS name or id, SLB id, node name (default: every log)")
    logs.add_argument("--kind", choices=lab_logs.KINDS)
    logs.add_argument("--list", action="store_true", help="list the log files instead of printing them")
    logs.add_argument("--tail", type=int, default=50, metavar="N", help="last N lines of each (0: all), "
                      "default: %(default)s")
    logs.set_defaults(func=cmd_logs)

    bench = sub.add_parser("bench", help="run benchmarks (bench/) and print their Markdown reports",
                           epilog=BENCH_EPILOG, formatter_class=raw)
    bench.add_argument("modules", nargs="*", metavar="BENCHMARK", help="e.g. ecs_scale pods_scale slb_wrk "
                       "(default: all)")
    bench.add_argument("--report", action="store_true", help="only print the last reports")
    bench.add_argument("--args", default="", metavar="ARGS", help="arguments for the benchmark module, e.g. "
                       "--args '10 --repeats 1 --skip-pulumi' for ecs_scale")
    bench.set_defaults(func=cmd_bench)

    for p in (status, wait, kubeconfig, kubectl, run, clean, recover, picture, logs):
        p.add_argument("--lab", default=default_lab(), help="lab (Pulumi stack) name, default: %(default)s")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValidationError as exc:
        print(f"acklab: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"  what to do: {exc.hint}", file=sys.stderr)
        return EXIT_USAGE
    except (LabError, LookupError) as exc:
        print(f"acklab: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:  # `acklab status --json | head`: the reader left, not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
