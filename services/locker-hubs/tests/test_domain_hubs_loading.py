import copy
from importlib.resources import files
from typing import Any

import pytest
import yaml

from locker_hubs.domain.hubs import CompartmentSize, CompartmentState, hubs_from_mapping


def _minimal() -> dict[str, Any]:
    return {
        "municipality_id": "aalborg-kommune",
        "layout": [
            {"suffix": "h1", "size": "l", "hazardous_only": True},
            {"suffix": "s1", "size": "s"},
        ],
        "hubs": [
            {"hub_id": "hub-a", "name": "Hub A", "latitude": 57.05, "longitude": 9.92},
            {"hub_id": "hub-b", "name": "Hub B", "latitude": 0, "longitude": 0.0},
        ],
    }


def test_shipped_hubs_yaml_has_fifty_molo_hubs_with_eight_compartments() -> None:
    text = files("locker_hubs").joinpath("data/hubs.yaml").read_text(encoding="utf-8")

    hubs = hubs_from_mapping(yaml.safe_load(text))

    assert len(hubs) == 50
    assert [hub.hub_id for hub in hubs] == [f"molo-aalborg-{n:02d}" for n in range(1, 51)]
    assert hubs[0].name == "MoLo Hub 01"
    assert hubs[49].name == "MoLo Hub 50"
    for hub in hubs:
        assert hub.municipality_id == "aalborg-kommune"
        assert len(hub.compartments) == 8
        hazardous = [c for c in hub.compartments if c.hazardous_only]
        assert [c.compartment_id for c in hazardous] == [f"{hub.hub_id}-h1", f"{hub.hub_id}-h2"]
        assert all(c.size is CompartmentSize.L for c in hazardous)
        general_sizes = sorted(c.size.value for c in hub.compartments if not c.hazardous_only)
        assert general_sizes == ["l", "m", "m", "s", "s", "xl"]
        assert all(c.state is CompartmentState.FREE for c in hub.compartments)


def test_hubs_do_not_share_compartment_objects() -> None:
    hubs = hubs_from_mapping(_minimal())

    hubs[0].compartments[0].state = CompartmentState.RESERVED

    assert hubs[1].compartments[0].state is CompartmentState.FREE
    assert hubs[1].compartments[0].compartment_id == "hub-b-h1"


def test_mapping_builds_hubs_with_defaults_applied() -> None:
    hub = hubs_from_mapping(_minimal())[0]

    assert (hub.hub_id, hub.name, hub.municipality_id) == ("hub-a", "Hub A", "aalborg-kommune")
    assert (hub.latitude, hub.longitude) == (57.05, 9.92)
    assert [(c.compartment_id, c.size, c.hazardous_only) for c in hub.compartments] == [
        ("hub-a-h1", CompartmentSize.L, True),
        ("hub-a-s1", CompartmentSize.S, False),
    ]


def test_hub_may_override_municipality_and_layout() -> None:
    data = _minimal()
    data["hubs"][1]["municipality_id"] = "hjoerring-kommune"
    data["hubs"][1]["layout"] = [{"suffix": "x", "size": "xl"}]

    hub = hubs_from_mapping(data)[1]

    assert hub.municipality_id == "hjoerring-kommune"
    assert [c.compartment_id for c in hub.compartments] == ["hub-b-x"]


def _broken(path: list[Any], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(_minimal())
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["hubs"], [], r"^hubs: "),
        (["hubs", 1, "hub_id"], "", r"^hubs\[1\]\.hub_id: "),
        (["hubs", 1, "hub_id"], "hub-a", r"^hubs\[1\] \(hub-a\)\.hub_id: duplicate"),
        (["hubs", 0, "name"], _DELETE, r"^hubs\[0\] \(hub-a\)\.name: "),
        (["hubs", 0, "latitude"], "57", r"^hubs\[0\] \(hub-a\)\.latitude: expected a number"),
        (["hubs", 0, "latitude"], True, r"^hubs\[0\] \(hub-a\)\.latitude: expected a number"),
        (["hubs", 0, "latitude"], 91.0, r"^hubs\[0\] \(hub-a\)\.latitude: .*outside"),
        (["hubs", 0, "longitude"], -180.5, r"^hubs\[0\] \(hub-a\)\.longitude: .*outside"),
        (["hubs", 0, "lat"], 1.0, r"^hubs\[0\] \(hub-a\): unknown field\(s\) lat"),
        (["municipality_id"], _DELETE, r"^hubs\[0\] \(hub-a\)\.municipality_id: missing"),
        (["layout"], _DELETE, r"^hubs\[0\] \(hub-a\)\.layout: missing"),
        (["layout"], [], r"^layout: "),
        (["layout", 1, "size"], "xxl", r"^layout\[1\]\.size: 'xxl' is not one of s, m, l, xl"),
        (["layout", 1, "suffix"], "h1", r"^layout\[1\]\.suffix: duplicate"),
        (["layout", 0, "hazardous_only"], "yes", r"^layout\[0\]\.hazardous_only: "),
        (["layout", 0, "hazardous"], True, r"^layout\[0\]: unknown field\(s\) hazardous"),
        (["hubs", 1, "layout"], [{"size": "s"}], r"^hubs\[1\] \(hub-b\)\.layout\[0\]\.suffix: "),
        (["extra"], 1, r"^hub data: unknown field\(s\) extra"),
    ],
)
def test_mapping_errors_name_the_entry_and_field(path: list[Any], value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        hubs_from_mapping(_broken(path, value))
