"""Shared fixtures. Kernel and end-to-end tests need root; each uses a lab of its own and removes it."""

from __future__ import annotations

import os

import pytest

from tests.labtools import clean_lab, new_lab, root_netns_state


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: builds network namespaces")
    for item in items:
        if "kernel" in item.keywords or "e2e" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def lab():
    """A fresh lab name; whatever the test leaves of it is removed, also when the test fails."""
    name = new_lab()
    yield name
    clean_lab(name)


@pytest.fixture
def root_unchanged():
    """Fails the test if the root namespace's links, addresses, routes or rules changed during it."""
    before = root_netns_state()
    yield
    assert root_netns_state() == before, "the root network namespace changed"
