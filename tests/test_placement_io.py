"""Placement files: round trip, atomic writes, the serving export, and one clear error per malformation."""

import json

import numpy as np
import pytest

from mozart.model.config import load_config
from mozart.model.errors import PlacementError
from mozart.model.placement import Placement
from mozart.model.placement_io import (ep_rank_dict, load_placement, placement_to_dict, save_ep_rank,
                                       save_placement)


@pytest.fixture
def cfg():
    return load_config("tiny")  # 2 groups x 2 chiplets, 8 experts


@pytest.fixture
def placement():
    return Placement(np.array([[3, 0, 1, 2, 0, 1, 2, 3], [0, 0, 1, 1, 2, 2, 3, 3]]), 2, "mozart")


def test_round_trip_is_exact(tmp_path, cfg, placement):
    path = tmp_path / "p.json"
    save_placement(placement, path, cfg)
    back = load_placement(path, cfg)
    assert np.array_equal(back.expert_to_chiplet, placement.expert_to_chiplet)
    assert back.method == "mozart" and back.chiplets_per_group == 2
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1 and data["config"] == "tiny"
    assert data["chiplet_to_group"] == [0, 0, 1, 1]
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]  # no temporary file left behind


def test_failed_write_leaves_the_old_file(tmp_path, cfg, placement):
    path = tmp_path / "p.json"
    save_placement(placement, path, cfg)
    before = path.read_text()
    bad = Placement(np.zeros((1, 8), int), 2, "bad")  # does not fit the config: nothing is written
    with pytest.raises(PlacementError):
        save_placement(bad, path, cfg)
    assert path.read_text() == before


def test_ep_rank_export(tmp_path, placement):
    assert ep_rank_dict(placement, layer=1) == {"expert_to_ep_rank": [0, 0, 1, 1, 2, 2, 3, 3]}
    assert ep_rank_dict(placement)["expert_to_ep_rank"][0] == [3, 0, 1, 2, 0, 1, 2, 3]
    one = Placement(placement.expert_to_chiplet[:1], 2)
    assert ep_rank_dict(one) == {"expert_to_ep_rank": [3, 0, 1, 2, 0, 1, 2, 3]}
    save_ep_rank(placement, tmp_path / "ep.json", 0)
    assert json.loads((tmp_path / "ep.json").read_text()) == {"expert_to_ep_rank": [3, 0, 1, 2, 0, 1, 2, 3]}
    with pytest.raises(PlacementError, match="layer must be in 0..1, not 2"):
        ep_rank_dict(placement, 2)


def _edit(data, change):
    change(data)
    return data


@pytest.mark.parametrize("change,message", [
    (lambda d: d.pop("layers"), "field 'layers' is missing"),
    (lambda d: d.update(format="other"), "format must be 'mozart-placement', not 'other'"),
    (lambda d: d.update(schema_version=2), "schema_version must be 1, not 2"),
    (lambda d: d.update(experts=0), "experts must be a positive integer, not 0"),
    (lambda d: d.update(chiplets=6), r"chiplets must be groups x chiplets_per_group \(4\), not 6"),
    (lambda d: d.update(chiplet_to_group=[0, 1, 0, 1]), r"chiplet_to_group\[1\] must be 0 .*not 1"),
    (lambda d: d.update(layers=[]), "layers must be a non-empty list"),
    (lambda d: d["layers"][1].update(layer=5), "layer 1: layer must be 1 \\(layers in order\\), not 5"),
    (lambda d: d["layers"][1].update(expert_to_chiplet=[0] * 7),
     "layer 1: expert_to_chiplet must be a list of 8 integers, not a list of 7"),
    (lambda d: d["layers"][0]["expert_to_chiplet"].__setitem__(2, 4),
     r"layer 0: expert_to_chiplet\[2\] must be an integer in 0..3, not 4"),
    (lambda d: d["layers"][0]["expert_to_chiplet"].__setitem__(2, "1"),
     r"layer 0: expert_to_chiplet\[2\] must be an integer in 0..3, not '1'"),
    (lambda d: d["layers"][1].update(expert_to_chiplet=[0, 0, 0, 1, 2, 2, 3, 3]),
     "layer 1: chiplet 0 must hold experts / chiplets = 2 experts, not 3"),
    (lambda d: d.update(method=3), "method must be a string, not 3"),
])
def test_malformed_files_name_file_layer_and_field(tmp_path, cfg, placement, change, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_edit(placement_to_dict(placement, cfg), change)))
    with pytest.raises(PlacementError, match=message) as exc:
        load_placement(path)
    assert str(exc.value).startswith(str(path))


def test_not_json_and_wrong_config(tmp_path, cfg, placement):
    path = tmp_path / "p.json"
    path.write_text('{"format": ')
    with pytest.raises(PlacementError, match=r"p.json: not valid JSON \(line 1"):
        load_placement(path)
    path.write_text("[1, 2]")
    with pytest.raises(PlacementError, match="must be a JSON object, not list"):
        load_placement(path)
    save_placement(placement, path, cfg)
    with pytest.raises(PlacementError, match="p.json: placement places 8 experts but config 'wafer4x4' has"):
        load_placement(path, load_config("wafer4x4"))
    with pytest.raises(FileNotFoundError):
        load_placement(tmp_path / "missing.json")
