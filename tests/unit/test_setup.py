"""Set-up on a fresh machine, without root or network: scripts/setup.sh and scripts/build-engine.sh run in a
temporary copy of the repository, with stand-ins for go, apt-get, dpkg-query, id and python3 first on PATH.

Every stand-in records its call, so the tests see what set-up would have done. Nothing of the checkout itself
is touched (its .venv/bin links are never rewritten): each test works in its own copy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]

# go: writes what `go build -o OUT` and `go mod download` would (GOMODCACHE made as go makes it), and answers
# `go list -m -f {{.Dir}} MODULE` with a folder holding the two scripts that the sdk/v3 module ships (or, for
# pulumi-kubernetes' provider/v4, its cmd/pulumi-resource-kubernetes).
FAKE_GO = r"""#!/usr/bin/env bash
echo "go $*" >> "$STANDIN_LOG"
mkdir -p "$GOMODCACHE/cache/download"
case "$1" in
  mod) echo module > "$GOMODCACHE/cache/download/zip" ;;
  build)  # -o FILE PKG, or -o DIR/ PKG... (one binary per package, named after its last element)
    out=""; pkgs=(); shift
    while [ $# -gt 0 ]; do
      case "$1" in -o) out=$2; shift ;; -ldflags) shift ;; -*) ;; *) pkgs+=("$1") ;; esac; shift
    done
    if [ "${out%/}" != "$out" ]; then targets=(); for p in "${pkgs[@]}"; do targets+=("$out${p##*/}"); done
    else targets=("$out"); fi
    for t in "${targets[@]}"; do printf '#!/bin/sh\necho built\n' > "$t"; chmod +x "$t"; done ;;
  list)
    case "$*" in *pulumi-kubernetes/provider/v4)  # upstream's main package, as the module zip has it
      provider="$GOMODCACHE/github.com/pulumi/pulumi-kubernetes/provider/v4@v0"
      mkdir -p "$provider/cmd/pulumi-resource-kubernetes"
      printf 'package main\n' > "$provider/cmd/pulumi-resource-kubernetes/main.go"
      echo "$provider"; exit ;;
    esac
    sdk="$GOMODCACHE/github.com/pulumi/pulumi/sdk/v3@v0"
    mkdir -p "$sdk/python/cmd" "$sdk/python/dist"
    printf '#!/bin/sh\n' > "$sdk/python/cmd/pulumi-language-python-exec"
    printf '#!/bin/sh\n' > "$sdk/python/dist/pulumi-resource-pulumi-python"
    echo "$sdk" ;;
esac
"""

# python3 -m venv DIR: a venv whose python records pip's arguments instead of installing.
FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "python3 $*" >> "$STANDIN_LOG"
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"
  printf '#!/bin/sh\necho "venv-python $*" >> "$STANDIN_LOG"\n' > "$3/bin/python"
  chmod +x "$3/bin/python"
fi
"""

FAKE_APT = '#!/bin/sh\necho "apt-get $*" >> "$STANDIN_LOG"\n'
FAKE_DPKG_QUERY = '#!/bin/sh\nexit 1\n'  # nothing installed: a fresh machine
FAKE_ID = '#!/bin/sh\n[ "$1" = -u ] && echo 0 || /usr/bin/id "$@"\n'  # set-up checks for root


def _copy_repository(dest: Path) -> Path:
    repo = dest / "repo"
    for part in ("scripts", "engine", "kube", "dns", "k8sprovider"):
        shutil.copytree(PROJECT / part, repo / part)
    shutil.copy(PROJECT / "pyproject.toml", repo / "pyproject.toml")
    return repo


def _standins(folder: Path, **scripts: str) -> Path:
    folder.mkdir()
    for name, text in scripts.items():
        path = folder / name.replace("_", "-")
        path.write_text(text)
        path.chmod(0o755)
    return folder


@pytest.fixture
def fresh(tmp_path: Path) -> dict[str, Path]:
    """A repository copy, a cache root that does not exist yet, and stand-ins first on PATH."""
    repo = _copy_repository(tmp_path)
    bin_dir = _standins(tmp_path / "standins", go=FAKE_GO, python3=FAKE_PYTHON, apt_get=FAKE_APT,
                        dpkg_query=FAKE_DPKG_QUERY, id=FAKE_ID)
    return {"repo": repo, "bin": bin_dir, "cache": tmp_path / "no" / "such" / "cache",
            "log": tmp_path / "calls.log", "home": tmp_path / "home"}


def _run(fresh: dict[str, Path], *argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{fresh['bin']}:/usr/bin:/bin", "XDG_CACHE_HOME": str(fresh["cache"]),
           "HOME": str(fresh["home"]), "STANDIN_LOG": str(fresh["log"]), "ACKLAB_PROGRESS_EVERY": "1", **extra}
    result = subprocess.run(argv, cwd=fresh["repo"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _calls(fresh: dict[str, Path]) -> list[str]:
    return fresh["log"].read_text().splitlines() if fresh["log"].exists() else []


def test_engine_builds_into_a_cache_root_that_does_not_exist(fresh: dict[str, Path]) -> None:
    assert not fresh["cache"].exists()
    result = _run(fresh, "bash", "scripts/build-engine.sh")
    entries = list((fresh["cache"] / "acklab").glob("pulumi-v*"))
    assert len(entries) == 1, "one cache entry, keyed by version and hash"
    built = entries[0]
    for tool in ("pulumi", "pulumi-language-python", "pulumi-language-python-exec", "pulumi-resource-pulumi-python"):
        assert os.access(built / "bin" / tool, os.X_OK), tool
        link = fresh["repo"] / ".venv" / "bin" / tool
        assert link.is_symlink() and link.resolve() == (built / "bin" / tool).resolve(), tool
    info = json.loads((built / "build-info.json").read_text())
    assert info["version"].startswith("v3.") and info["module_cache_growth_bytes"] > 0
    assert not list((fresh["cache"] / "acklab").glob(".build-*")), "no temporary build folder left"
    assert (fresh["cache"] / "acklab" / "gomod").is_dir(), "modules cached outside the clone"
    assert "compiling the Pulumi CLI" in result.stderr, "the long step says what it does"


def test_kubernetes_builds_into_a_cache_root_that_does_not_exist(fresh: dict[str, Path]) -> None:
    result = _run(fresh, "bash", "scripts/build-kube.sh")
    (built,) = (fresh["cache"] / "acklab").glob("kube-v1.*")
    for tool in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubectl", "etcd"):
        assert os.access(built / "bin" / tool, os.X_OK), tool
        assert (fresh["repo"] / ".venv" / "bin" / tool).resolve() == (built / "bin" / tool).resolve(), tool
    builds = [c for c in _calls(fresh) if c.startswith("go build")]
    assert len(builds) == 1, "every binary in one go build: shared packages compile once"
    assert "gitVersion=v1." in builds[0] and "CGO_ENABLED" not in builds[0]
    assert "compiling kube-apiserver" in result.stderr
    _run(fresh, "bash", "scripts/build-kube.sh")
    assert len([c for c in _calls(fresh) if c.startswith("go build")]) == 1, "cached: nothing rebuilt"


def test_coredns_builds_into_its_own_cache_entry(fresh: dict[str, Path]) -> None:
    result = _run(fresh, "bash", "scripts/build-coredns.sh")
    (built,) = (fresh["cache"] / "acklab").glob("coredns-v1.*")
    assert os.access(built / "bin" / "coredns", os.X_OK)
    assert (fresh["repo"] / ".venv" / "bin" / "coredns").resolve() == (built / "bin" / "coredns").resolve()
    assert json.loads((built / "build-info.json").read_text())["version"].startswith("v1.")
    assert not list((fresh["cache"] / "acklab").glob("kube-*")), "the Kubernetes binaries are not built with it"
    assert "compiling coredns" in result.stderr
    _run(fresh, "bash", "scripts/build-coredns.sh")
    assert len([c for c in _calls(fresh) if c.startswith("go build")]) == 1, "cached: nothing rebuilt"


def test_kubernetes_provider_plugin_builds_into_its_own_cache_entry(fresh: dict[str, Path]) -> None:
    result = _run(fresh, "bash", "scripts/build-k8s-provider.sh")
    (built,) = (fresh["cache"] / "acklab").glob("pulumi-kubernetes-v4.*")
    plugin = built / "bin" / "pulumi-resource-kubernetes"
    assert os.access(plugin, os.X_OK)
    assert (fresh["repo"] / ".venv" / "bin" / "pulumi-resource-kubernetes").resolve() == plugin.resolve()
    info = json.loads((built / "build-info.json").read_text())
    pin = re.search(r'"pulumi-kubernetes==([0-9.]+)"', (PROJECT / "pyproject.toml").read_text())
    assert pin and info["version"] == f"v{pin[1]}", "the plugin is the release of the pinned Python SDK"
    calls = _calls(fresh)
    generate = calls.index("go run generate.go")  # upstream's embedded schema, made as its Makefile makes it
    (build,) = [i for i, c in enumerate(calls) if c.startswith("go build")]
    assert generate < build and f"pkg/version.Version={pin[1]} " in calls[build] + " "
    assert not (built / "src").exists() and not list((fresh["cache"] / "acklab").glob(".build-*"))
    assert not list((fresh["cache"] / "acklab").glob("pulumi-v*")), "the engine is not built with it"
    assert "compiling pulumi-resource-kubernetes" in result.stderr
    _run(fresh, "bash", "scripts/build-k8s-provider.sh")
    assert len([c for c in _calls(fresh) if c.startswith("go build")]) == 1, "cached: nothing rebuilt"


def test_failed_kubernetes_provider_build_leaves_no_cache_entry(fresh: dict[str, Path]) -> None:
    (fresh["bin"] / "go").write_text(FAKE_GO.replace('case "$1" in', '[ "$1" = build ] && exit 3\ncase "$1" in', 1))
    env = {"PATH": f"{fresh['bin']}:/usr/bin:/bin", "XDG_CACHE_HOME": str(fresh["cache"]),
           "HOME": str(fresh["home"]), "STANDIN_LOG": str(fresh["log"])}
    result = subprocess.run(["bash", "scripts/build-k8s-provider.sh"], cwd=fresh["repo"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert sorted(p.name for p in (fresh["cache"] / "acklab").iterdir()) == ["gomod"], "no entry, no scratch folder"
    assert not (fresh["repo"] / ".venv" / "bin" / "pulumi-resource-kubernetes").exists()


def test_engine_build_prints_progress_while_go_runs(fresh: dict[str, Path]) -> None:
    slow_go = FAKE_GO.replace('case "$1" in', '[ "$1" = build ] && sleep 3\ncase "$1" in')
    (fresh["bin"] / "go").write_text(slow_go)
    result = _run(fresh, "bash", "scripts/build-engine.sh")
    assert "compiling the Pulumi CLI: still running" in result.stderr


def test_second_run_uses_the_cache(fresh: dict[str, Path]) -> None:
    _run(fresh, "bash", "scripts/build-engine.sh")
    builds = sum(call.startswith("go build") for call in _calls(fresh))
    shutil.rmtree(fresh["repo"] / ".venv")  # a new clone on the same machine
    _run(fresh, "bash", "scripts/build-engine.sh")
    assert sum(call.startswith("go build") for call in _calls(fresh)) == builds, "nothing rebuilt"
    assert (fresh["repo"] / ".venv" / "bin" / "pulumi").is_symlink()


def test_failed_build_leaves_no_cache_entry(fresh: dict[str, Path]) -> None:
    (fresh["bin"] / "go").write_text('#!/bin/sh\necho "go $*" >> "$STANDIN_LOG"\n[ "$1" = mod ] || exit 3\n')
    env = {"PATH": f"{fresh['bin']}:/usr/bin:/bin", "XDG_CACHE_HOME": str(fresh["cache"]),
           "HOME": str(fresh["home"]), "STANDIN_LOG": str(fresh["log"])}
    result = subprocess.run(["bash", "scripts/build-engine.sh"], cwd=fresh["repo"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert list((fresh["cache"] / "acklab").iterdir()) == [], "neither a cache entry nor a temporary folder"


@pytest.mark.parametrize("profile", ["lab", "test"])
def test_setup_on_a_fresh_machine(fresh: dict[str, Path], profile: str) -> None:
    """No apt lists, no .venv, no .pulumi, no reports, no ~/.ssh, no cache: set-up makes what it needs."""
    _run(fresh, "bash", "scripts/setup.sh", profile, ACKLAB_POLICY_RC=str(fresh["home"].parent / "policy-rc.d"))
    calls = _calls(fresh)
    update = calls.index("apt-get update -qq")
    install = next(i for i, c in enumerate(calls) if c.startswith("apt-get install"))
    assert update < install, "apt's lists are refreshed before the install"
    assert any(c.startswith("python3 -m venv .venv") for c in calls)
    assert any("pip install" in c and "-e .[dev]" in c for c in calls)
    for folder in (".pulumi/state", ".pulumi/home", "reports"):
        assert (fresh["repo"] / folder).is_dir(), folder
    assert (fresh["repo"] / ".venv" / "bin" / "pulumi").is_symlink()
    # make up runs the default lab on its API server: both profiles build the control plane and the cluster DNS
    assert (fresh["repo"] / ".venv" / "bin" / "kube-apiserver").is_symlink()
    assert (fresh["repo"] / ".venv" / "bin" / "coredns").is_symlink()
    assert (fresh["repo"] / ".venv" / "bin" / "pulumi-resource-kubernetes").is_symlink() == (profile == "test")
    assert not fresh["home"].exists(), "set-up writes nothing into the user's home"


def _packages(profile: str) -> set[str]:
    result = subprocess.run(["bash", str(PROJECT / "scripts" / "setup.sh"), profile], capture_output=True,
                            text=True, env={**os.environ, "ACKLAB_SETUP_PRINT_PACKAGES": "1"}, check=True)
    return set(result.stdout.split())


def test_make_up_installs_no_test_tools() -> None:
    lab, test = _packages("lab"), _packages("test")
    assert {"haproxy", "nginx", "iptables", "nftables", "iperf3"} <= lab
    assert not {"vagrant", "wrk", "openssh-server"} & lab, "make up installs what the lab needs only"
    assert {"vagrant", "wrk", "openssh-server"} <= test and lab <= test


def test_makefile_splits_the_profiles() -> None:
    makefile = (PROJECT / "Makefile").read_text()
    assert "scripts/setup.sh lab" in makefile and "scripts/setup.sh test" in makefile
    recipes = {line.split(":")[0]: line.split(":", 1)[1].split() for line in makefile.splitlines()
               if line and not line.startswith(("\t", "#", " ", ".")) and ":" in line and "=" not in line}
    assert "setup" in recipes["up"] and "setup-test" not in recipes["up"]
    for target in ("test", "bench", "unit", "kernel", "e2e", "acceptance"):
        assert "setup-test" in recipes[target], target
