"""The short form of the reliability check (make reliability runs 20 cycles)."""

import pytest

from tests.reliability import cycles

pytestmark = pytest.mark.e2e


def test_three_up_destroy_cycles_leak_nothing():
    cycles(3)
