"""Lab marks: every kernel object of a lab is findable, and no lab's mark matches another lab."""

import pytest

from netns.model import names
from netns.model.errors import ValidationError
from netns.realize import format_alias, pack_addresses, unpack_addresses


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


# --- kernel name limits: rejected with a ValidationError naming the field, before anything is made ----------

@pytest.mark.parametrize("name", ["eth0", "vsw-0a1b2c3d", "x" * 15])
def test_valid_interface_names(name):
    assert names.ifname_problem(name) is None


@pytest.mark.parametrize("name", ["", "x" * 16, "a b", "a/b", "a:b", ".", "..", "é" * 8])
def test_invalid_interface_names(name):
    assert names.ifname_problem(name)


def test_an_id_too_long_for_an_interface_name_is_refused_naming_the_field():
    with pytest.raises(ValidationError, match="at most 15") as exc:
        names.check_reference("ecs.Instance 'e'", "vswitch_id", "vsw-0123456789abcdef", "vsw")
    assert exc.value.field == "vswitch_id"
    assert str(exc.value).startswith("ecs.Instance 'e': vswitch_id: ")


@pytest.mark.parametrize(("value", "kind"),
                         [("vpc-0a1b2c3d", "vsw"), ("sg-xyz", "sg"), (7, "vpc"), ("i-0A1B2C3D", "i")])
def test_references_take_only_acklab_ids_of_their_kind(value, kind):
    with pytest.raises(ValidationError, match="id"):
        names.check_reference("r", "field", value, kind)


def test_a_well_formed_reference_passes():
    assert names.check_reference("r", "vpc_id", "vpc-0a1b2c3d", "vpc") == "vpc-0a1b2c3d"


@pytest.mark.parametrize("zone", ["cn-hangzhou-h", "z1", "us-east-1a"])
def test_zone_ids(zone):
    assert names.check_zone_id("r", zone) == zone


@pytest.mark.parametrize("zone", ["cn hangzhou", "", "z" * 65, "-z", "zone=x"])
def test_bad_zone_ids_are_refused(zone):
    with pytest.raises(ValidationError, match="zone_id"):
        names.check_zone_id("vpc.Switch 's'", zone)


def test_instance_name_is_bounded_in_bytes():
    assert names.check_instance_name("r", "n" * 128)
    for name in ("n" * 129, "名" * 50):  # 50 CJK characters are 150 bytes
        with pytest.raises(ValidationError, match=r"instance_name: is 1[0-9]{2} bytes long; at most 128"):
            names.check_instance_name("r", name)


def test_an_instance_joins_at_most_five_groups():
    names.check_group_count("r", [f"sg-0000000{n}" for n in range(5)])
    with pytest.raises(ValidationError, match="security_groups: 6 groups"):
        names.check_group_count("r", [f"sg-0000000{n}" for n in range(6)])


def test_the_longest_allowed_eni_alias_fits_the_kernel_limit():
    from netns.realize import IFALIAS_MAX, format_alias
    from netns.realize.eni import alias

    groups = [f"sg-0000000{n}" for n in range(names.GROUPS_PER_INSTANCE_MAX)]
    facts = names.eni_alias_worst_case({"instance_name": "n" * 128, "security_groups": groups})
    assert len(alias(facts).encode()) <= IFALIAS_MAX  # the same layout the realization writes
    names.check_eni_alias("r", {"instance_name": "n" * 128, "security_groups": groups})
    with pytest.raises(ValueError, match="exceeds"):
        format_alias(name="n" * 300)


def test_kernel_layer_refuses_overlong_interface_names():
    from netns.kernel.link import Bridge, Veth
    from netns.kernel.namespace import Namespace

    with pytest.raises(ValueError, match="not a valid interface name"):
        Bridge(Namespace("ns"), "vsw-0123456789abcdef")
    with pytest.raises(ValueError, match="not a valid interface name"):
        Veth(Namespace("a"), "eni-00000001", Namespace("b"), "eth 0")


def test_eni_facts_that_overflow_the_alias_are_refused_naming_the_biggest_input():
    inputs = {"instance_name": "web", "host_name": "h" * 60, "security_groups": ["sg-00000001"],
              "secondary_private_ips": [f"192.168.1.{n}" for n in range(20, 30)]}
    with pytest.raises(ValidationError, match="interface alias") as exc:
        names.check_eni_alias("ecs.Instance 'e'", inputs)
    assert exc.value.field == "secondary_private_ips"
    names.check_eni_alias("ecs.Instance 'e'", {**inputs, "secondary_private_ips": inputs["secondary_private_ips"][:5]})


@pytest.mark.parametrize(("ips", "packed"), [
    ([], ""),
    (["192.168.3.5"], "192.168.3.5"),
    (["192.168.3.5", "192.168.3.6", "192.168.3.7", "192.168.3.9"], "192.168.3.5-7,.9"),
    (["192.168.3.9", "192.168.3.5"], "192.168.3.9,.5"),  # the order is kept
    (["192.168.3.254", "192.168.3.255", "192.168.4.0", "192.168.4.1"], "192.168.3.254-255,192.168.4.0-1"),
    (["10.0.0.1", "192.168.3.2", "10.0.0.3"], "10.0.0.1,192.168.3.2,10.0.0.3"),
])
def test_secondary_addresses_pack_compactly_and_read_back(ips, packed):
    assert pack_addresses(ips) == packed
    assert unpack_addresses(packed) == tuple(ips)
    assert unpack_addresses(",".join(ips)) == tuple(ips), "the plain comma-separated list reads the same"


def test_a_terway_eni_with_thirty_scattered_pod_addresses_fits_its_alias():
    # ecs.g7.4xlarge: 30 secondary IPs per ENI; every other address taken (the worst order in one /24)
    scattered = [f"192.168.35.{n}" for n in range(1, 61, 2)]
    facts = {"ip": "192.168.35.200", "secondary": pack_addresses(scattered), "instance": "i-0123abcd",
             "device": "2", "sg": "sg-0123abcd", "owner": "terway", "name": "terway-eni"}
    assert len(format_alias(**facts).encode()) <= 255
    assert unpack_addresses(facts["secondary"]) == tuple(scattered)


def test_a_stable_mac_is_locally_administered_unicast_and_the_same_for_the_same_key():
    from netns.kernel.link import stable_mac

    mac = stable_mac("lab1/c0000000e")
    first = int(mac.split(":")[0], 16)
    assert first & 0x02 and not first & 0x01  # locally administered, unicast
    assert mac == stable_mac("lab1/c0000000e") != stable_mac("lab2/c0000000e")
    assert len(mac.split(":")) == 6
