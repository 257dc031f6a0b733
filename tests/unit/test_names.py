"""Lab marks: every kernel object of a lab is findable, and no lab's mark matches another lab."""

import pytest

from netns.model import names
from netns.model.errors import ValidationError


def test_netns_name_carries_the_mark():
    assert names.netns_name("default", "vpc-0a1b2c3d") == "acklab-default-vpc-0a1b2c3d"


@pytest.mark.parametrize("lab", ["", "Default", "a-b", "1lab", "x" * 17, "a_b"])
def test_bad_lab_names_are_refused(lab):
    with pytest.raises(ValidationError, match="stack name"):
        names.check_lab(lab)


def test_one_lab_mark_is_never_a_prefix_of_anothers_objects():
    other = names.netns_name("ab", "i-00000001")
    assert not other.startswith(names.mark("a"))
    assert names.lab_of(other) == "ab"


@pytest.mark.parametrize("name", ["acklab-x", "acklab-a-b-i-00000001", "other-a-i-00000001", "acklab-a-i-xyz"])
def test_foreign_names_have_no_lab(name):
    assert names.lab_of(name) is None


def test_new_ids_fit_interface_names():
    for kind in ("vpc", "vsw", "i", "eni"):
        cloud_id = names.new_id(kind)
        assert names.is_cloud_id(cloud_id, kind)
        assert len(cloud_id) <= 15
