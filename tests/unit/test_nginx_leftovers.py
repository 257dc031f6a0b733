"""`acklab clean`'s safety net for nginx: a controller pod's nginx whose namespace is gone is found by the lab's
prefix path on its command line and ended with its workers; another lab's nginx is left alone. Stand-in processes
(a shell titled as nginx's master, its `sleep` as a worker): no root, no nginx."""

from __future__ import annotations

import subprocess

from acklab.k8s.realize.ingress import end_leftover_nginx, ingress_dir
from netns.kernel.namespace import alive
from netns.kernel.process import children
from tests.labtools import wait_for


def fake_master(lab: str) -> subprocess.Popen:
    """A shell whose argv[0] is nginx's master title for a controller pod of ``lab``, with one child."""
    title = f"nginx: master process nginx -p {ingress_dir(lab)}/kube-system.nginx-1 -e /dev/null"
    return subprocess.Popen(["bash", "-c", f'exec -a "{title}" bash -c "sleep 300 & wait"'])


def test_a_labs_leftover_nginx_and_its_workers_are_ended_and_no_other():
    ours, theirs = fake_master("tnginx0001"), fake_master("tnginx0002")
    try:
        wait_for(lambda: children([ours.pid]), "the stand-in master's worker")
        workers = children([ours.pid])
        ended = end_leftover_nginx("tnginx0001")
        assert set(ended) == {ours.pid, *workers}
        assert ours.wait(timeout=10) == -9
        wait_for(lambda: not any(alive(pid) for pid in workers), "the workers' end")
        assert theirs.poll() is None  # another lab's nginx runs on
        assert end_leftover_nginx("tnginx0001") == []
    finally:
        for process in (ours, theirs):
            for pid in children([process.pid]):
                subprocess.run(["kill", "-9", str(pid)], check=False)
            process.kill()
            process.wait()
