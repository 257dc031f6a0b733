"""Stacks for end-to-end tests: each on a private file backend, always destroyed and removed afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.e2e.test_pulumi_up import PROJECT, Stack, temp_project


@pytest.fixture
def stack(lab, tmp_path) -> Iterator[Stack]:
    """A stack of the project's own program (the default lab)."""
    stack = Stack(PROJECT, lab, tmp_path)
    stack.init()
    yield stack
    stack.run("destroy", "--yes", check=False)
    stack.run("stack", "rm", "--yes", "--force", check=False)
    (PROJECT / f"Pulumi.{lab}.yaml").unlink(missing_ok=True)  # the stack's config file, if rm could not run


@pytest.fixture
def program_stack(lab, tmp_path) -> Iterator[Callable[[str], Stack]]:
    """A stack of a test program of its own (give the program's text)."""
    made: list[Stack] = []

    def make(program: str) -> Stack:
        made.append(Stack(temp_project(tmp_path, program), lab, tmp_path))
        made[-1].init()
        return made[-1]

    yield make
    for stack in made:
        stack.run("destroy", "--yes", check=False)
        stack.run("stack", "rm", "--yes", "--force", check=False)
