"""Loading cost models: the presets, and one clear error naming the key for every unusable file."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from rcc.backends.chip import PRESETS, ChipError, chip_from_dict, load_chip


def isaac_data() -> dict:
    return tomllib.loads(resources.files("rcc.backends").joinpath("presets", "isaac.toml").read_text())


@pytest.mark.parametrize("name", PRESETS)
def test_every_figure_of_every_preset_names_its_source(name) -> None:
    chip = load_chip(name)
    assert chip.source and all(component.source for component in chip.components)
    assert {event for c in chip.components for event in c.events} >= {"array_read", "conversion", "row_drive"}


def test_a_file_loads_like_the_preset(tmp_path) -> None:
    path = tmp_path / "chip.toml"
    path.write_text(resources.files("rcc.backends").joinpath("presets", "isaac.toml").read_text())
    assert load_chip(path) == load_chip("isaac")


BAD = {
    "negative figure": (("cost", "adc", "power_mw"), -1.0, "cost.adc.power_mw must be positive"),
    "zero figure": (("chip", "xbar_read_ns"), 0, "chip.xbar_read_ns must be positive"),
    "zero area": (("cost", "dac", "area_mm2"), 0.0, "cost.dac.area_mm2 must be positive"),
    "string figure": (("chip", "tiles_per_chip"), "many", "chip.tiles_per_chip must be a whole number"),
    "unknown event": (("cost", "adc", "event"), "sparkle", "cost.adc.event must be one of"),
    "unknown level": (("cost", "adc", "level"), "rack", "cost.adc.level must be one of"),
    "unknown key": (("cost", "adc", "colour"), "red", "unknown key 'cost.adc.colour'"),
    "missing rate": (("cost", "edram", "events_per_cycle"), None, "missing key 'cost.edram.events_per_cycle'"),
    "missing power": (("cost", "adc", "power_mw"), None, "missing key 'cost.adc.power_mw'"),
    "missing chip key": (("chip", "clock_ghz"), None, "missing key 'chip.clock_ghz'"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_figures_name_the_key(kind) -> None:
    keys, value, message = BAD[kind]
    data = isaac_data()
    table = data
    for key in keys[:-1]:
        table = table[key]
    if value is None:
        del table[keys[-1]]
    else:
        table[keys[-1]] = value
    with pytest.raises(ChipError) as error:
        chip_from_dict(data, "x.toml")
    text = str(error.value)
    assert "\n" not in text and text.startswith("x.toml: ") and message in text, text


def test_bad_names_and_files(tmp_path) -> None:
    with pytest.raises(ChipError, match="--cost-model 'sparkle': choose a preset"):
        load_chip("sparkle")
    with pytest.raises(ChipError, match="no such file"):
        load_chip(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[chip\nname=")
    with pytest.raises(ChipError, match="bad.toml: invalid TOML"):
        load_chip(tmp_path / "bad.toml")
