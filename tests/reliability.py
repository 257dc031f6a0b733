"""Up/destroy cycles of the default lab through the real engine: nothing may leak, the root netns never changes.

    python -m tests.reliability 20     (make reliability; the e2e suite runs a short form)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from netns.kernel.namespace import list_namespaces
from netns.model.names import mark
from netns.realize import state_dir
from tests.labtools import clean_lab, new_lab, root_netns_state


def cycles(count: int) -> None:
    from tests.e2e.test_pulumi_up import PROJECT, Stack

    lab = new_lab()
    before = root_netns_state()
    with tempfile.TemporaryDirectory() as backend:
        stack = Stack(PROJECT, lab, Path(backend))
        stack.init()
        try:
            for n in range(1, count + 1):
                stack.run("up", "--yes")
                stack.run("destroy", "--yes")
                leaked = [ns.name for ns in list_namespaces(mark(lab))]
                leaked += [str(p) for p in state_dir(lab).glob("*") if p.name != "lock"]
                assert not leaked, f"cycle {n} leaked {leaked}"
                print(f"cycle {n}/{count}: clean", flush=True)
        finally:
            stack.run("destroy", "--yes", check=False)
            stack.run("stack", "rm", "--yes", "--force", check=False)
            clean_lab(lab)
    assert root_netns_state() == before, "the root network namespace changed"
    print(f"{count} up/destroy cycles: nothing leaked, root namespace unchanged")


if __name__ == "__main__":
    cycles(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
