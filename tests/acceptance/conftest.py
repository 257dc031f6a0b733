"""One lab for the whole acceptance session: the default lab under a stack of its own, taken down at the end
(also when a test or the bring-up fails). With ACKLAB_ACCEPTANCE_LAB=<lab> the tests run against that lab,
which is already up, and leave it as it is (the harness self-test runs the matrix that way)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import testinfra

from tests.acceptance.harness import LAB_ENV, LabUnderTest
from tests.labtools import new_lab


@pytest.fixture(scope="session")
def lab_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabUnderTest]:
    if os.geteuid() != 0:
        pytest.skip("needs root: builds network namespaces")
    existing = os.environ.get(LAB_ENV)
    if existing:
        yield LabUnderTest.existing(existing)
        return
    made = LabUnderTest.up(new_lab(), tmp_path_factory.mktemp("acceptance"))
    try:
        yield made
    finally:
        made.down()


@pytest.fixture(scope="session")
def host_of(lab_up: LabUnderTest):
    """``host_of("ecs-1")``, ``host_of("demo/client-1")``: testinfra hosts in the lab's namespaces."""
    def get(target: str) -> testinfra.host.Host:
        return lab_up.host(target)
    return get
