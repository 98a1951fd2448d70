from __future__ import annotations

import math

import pytest

from annotation import protocol


def test_presets_have_the_agin_dimensions():
    assert protocol.PRESETS["overall"] == ("overall",)
    assert protocol.PRESETS["perspectives"] == ("overall", "technical", "rationality")
    assert len(protocol.PRESETS["agin"]) == 13
    groups = protocol.grouped_dimensions("agin")
    assert [g for g, _ in groups] == ["overall", "technical", "rationality"]
    assert [d.key for d in groups[1][1]] == [
        "technical",
        "luminance",
        "contrast",
        "detail",
        "blur",
        "artifacts",
    ]
    assert [d.key for d in groups[2][1]] == [
        "rationality",
        "existence",
        "color",
        "layout",
        "context",
        "sensory_clarity",
    ]
    for dim in protocol.DIMENSIONS:
        assert dim.label and len(dim.definition) > 20


def test_scales():
    cont, acr = protocol.SCALES["continuous"], protocol.SCALES["acr5"]
    assert (cont.minimum, cont.maximum) == (0, 100)
    assert cont.anchors == ("Bad", "Poor", "Fair", "Good", "Excellent")
    assert [v for v, _ in cont.anchor_positions()] == [0, 25, 50, 75, 100]
    assert acr.contains(3) and not acr.contains(3.5) and not acr.contains(0)


def test_validate_scores_accepts_clean_input():
    assert protocol.validate_scores(
        "perspectives",
        "continuous",
        {
            "overall": 0,
            "technical": 100,
            "rationality": 55.5,
        },
    ) == {"overall": 0.0, "technical": 100.0, "rationality": 55.5}


@pytest.mark.parametrize(
    "scores, field",
    [
        ({"overall": 101}, "overall"),
        ({"overall": -1}, "overall"),
        ({"overall": math.nan}, "overall"),
        ({"overall": math.inf}, "overall"),
        ({"overall": "abc"}, "overall"),
        ({"overall": "50"}, "overall"),
        ({"overall": True}, "overall"),
        ({"overall": None}, "overall"),
        ({}, "overall"),
        ({"overall": 50, "bogus": 1}, "bogus"),
    ],
)
def test_validate_scores_refuses(scores, field):
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.validate_scores("overall", "continuous", scores)
    assert field in info.value.errors


def test_validate_scores_reports_every_problem():
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.validate_scores("perspectives", "acr5", {"overall": 2.5, "technical": 9})
    assert set(info.value.errors) == {"overall", "technical", "rationality"}
    assert "integer" in info.value.errors["overall"]


def test_unknown_preset_and_scale():
    with pytest.raises(ValueError, match="unknown protocol preset"):
        protocol.dimensions_for("all")
    with pytest.raises(ValueError, match="unknown scale"):
        protocol.get_scale("acr7")
