"""Tests of the parameter schema (cellcount.params) and of what is generated from it: validation, the
command-line options of every command, card keys and settings files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellcount.cli import build_parser
from cellcount.cliparams import normalize_argv, param_overrides
from cellcount.errors import ModelCardError, ParameterError
from cellcount.evaluate import cli as evaluate
from cellcount.models import ModelCard, validate_card
from cellcount.params import PARAMS, CountParams, resolve_params, seed_area_px, upgrade_keys
from cellcount.postprocess import segment

COUNT = ["count", "x.png", "--model", "m"]


def _bad_values(spec):
    """Values ``spec`` must refuse."""
    if spec.choices:
        return ["nonsense", 3]
    if spec.kind is bool:
        return ["yes", 1.5]
    below = spec.lo - 1 if spec.lo - 1 != spec.off else spec.lo - 2  # the "off" value is allowed
    return [below, spec.hi * 2 + 1, "1", float("nan")]


def _other_value(spec):
    """A valid value different from the default, as text for a command line and as the parsed value."""
    if spec.name == "invert":
        return ["--invert", "yes"], True
    if spec.kind is bool:
        return [f"--no-{spec.option[2:]}" if spec.default else spec.option], not spec.default
    if spec.choices:
        value = next(c for c in spec.choices if c != spec.default)
        return [spec.option, value], value
    value = spec.kind(spec.hi if spec.default is None else min(spec.hi, spec.default + 1))
    return [spec.option, str(value)], value


@pytest.mark.parametrize("spec", PARAMS, ids=lambda s: s.name)
def test_every_parameter_refuses_values_outside_its_schema(spec):
    for bad in _bad_values(spec):
        with pytest.raises(ParameterError, match=spec.name):
            CountParams(**{spec.name: bad})
    if not spec.optional:
        with pytest.raises(ParameterError, match=spec.name):
            CountParams(**{spec.name: None})


@pytest.mark.parametrize("command", ["count", "evaluate"])
@pytest.mark.parametrize("spec", PARAMS, ids=lambda s: s.name)
def test_every_parameter_is_an_option_of_every_counting_command(spec, command):
    flag, value = _other_value(spec)
    if command == "count":
        args = build_parser().parse_args(normalize_argv([*COUNT, *flag]))
    else:
        args = evaluate.build_parser().parse_args(normalize_argv(["--model", "m", "--data", "d", *flag]))
    assert param_overrides(args) == {spec.name: value}
    assert resolve_params(None, param_overrides(args)).to_dict()[spec.name] == value


def test_field_names_work_as_options_and_help_lists_every_parameter(capsys):
    args = build_parser().parse_args(normalize_argv([*COUNT, "--min_area_px", "7", "--no-fill_holes"]))
    assert param_overrides(args) == {"min_area_px": 7, "fill_holes": False}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["count", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help lines
    for spec in PARAMS:
        assert spec.option in text and " ".join(spec.help.split()[:4]) in text
        # with the app's name for it ("Exclude edge objects" is --exclude-border)
        assert f'the app\'s "{spec.label.split(" (")[0]}"' in text


def test_evaluate_reads_the_deprecated_set_form(capsys):
    args = evaluate.build_parser().parse_args(["--model", "m", "--data", "d", "--set", "min_area_px=3",
                                               "--set", "max_area_px=None", "--threshold", "0.4"])
    assert param_overrides(args) == {"min_area_px": 3, "max_area_px": None, "threshold": 0.4}
    assert "deprecated" in capsys.readouterr().err
    args = evaluate.build_parser().parse_args(["--model", "m", "--data", "d", "--set", "threshold=abc"])
    with pytest.raises(ParameterError, match="--set threshold=abc"):
        param_overrides(args)


def test_card_postprocess_keys_are_the_schema_names():
    every = {spec.name: _other_value(spec)[1] for spec in PARAMS}
    every["max_area_px"], every["low_pct"] = None, 1.0  # keep the cross-field rules satisfied
    validate_card(ModelCard(name="m", architecture="unet", output_kind="mask", postprocess=every))
    with pytest.raises(ModelCardError, match="unknown parameters.*threshold_level"):
        validate_card(ModelCard(name="m", architecture="unet", output_kind="mask",
                                postprocess={"threshold_level": 0.5}))


def test_old_keys_are_upgraded_in_one_place():
    assert upgrade_keys({"watershed": False, "min_area_px": 3}) == {"split_mode": "off", "min_area_px": 3}
    args = build_parser().parse_args([*COUNT, "--no-watershed"])
    assert resolve_params(None, param_overrides(args)).split_mode == "off"


def test_split_seeds_follow_min_area():
    """Two 11 x 11 squares joined by a neck, the model's border band around each: cores of 7 x 7 = 49 px.
    The seed size is max(4, min_area_px // 2), so min_area_px 120 ignores both cores and keeps one object."""
    assert seed_area_px(0) == 4 and seed_area_px(30) == 15
    prob = np.zeros((20, 30), np.float32)
    prob[5:16, 3:14] = prob[5:16, 16:27] = prob[9:12, 14:16] = 1
    border = prob.copy()
    border[7:14, 5:12] = border[7:14, 18:25] = 0
    assert segment(prob, split_mode="borders", border_prob=border, min_area_px=0).count == 2
    assert segment(prob, split_mode="borders", border_prob=border, min_area_px=120).count == 1


def test_a_settings_file_round_trips_through_the_schema(tmp_path):
    from cellcount.settingsfile import params_from_file

    p = CountParams(min_area_px=12, split_mode="off", invert=True)
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"model": "m", "params": p.to_dict()}))
    assert resolve_params(None, params_from_file(path)) == p


def test_a_results_table_lists_only_the_settings_that_act():
    p = CountParams(split_mode="borders", min_distance_px=7, pixel_size_um=0.5)
    mask, density, multihead = p.acting("mask"), p.acting("density"), p.acting("multihead")
    # a density model's count ignores the mask postprocessing; the border split ignores the split distance
    assert "threshold" not in density and density["peak_min_distance_px"] == p.peak_min_distance_px
    assert "min_distance_px" not in mask and mask["threshold"] == p.threshold and "count_source" not in mask
    assert multihead == {**mask, "count_source": p.count_source}
    assert p.replace(split_mode="both").acting("mask")["min_distance_px"] == 7
    for acting in (mask, density, multihead):  # input and measurement settings act for every kind
        assert acting["low_pct"] == p.low_pct and acting["pixel_size_um"] == 0.5
    assert json.loads(p.settings_json("density")) == density
    assert p.acting("something new") == p.to_dict()


def test_an_unset_setting_reads_as_what_it_does():
    """The Models page showed Invert's library default as "none", where the app offers auto / on / off."""
    from cellcount.params import setting_text

    assert setting_text("invert", None) == "auto" and setting_text("max_area_px", None) == "no limit"
    assert setting_text("channel", None) == "all (their mean, or H&E's stain for a model reading stain)"  # as the Count page says it
    assert setting_text("invert", True) == "on" and setting_text("max_area_px", 0) == "0 (no limit)"


def test_the_results_table_by_image_kind_gives_mae_and_percentage_error(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "results_table", Path(__file__).resolve().parents[1] / "scripts" / "results_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (tmp_path / "meta.csv").write_text("filename,bright_background\na.png,0\nb.png,0\nc.png,1\n")
    (tmp_path / "m.csv").write_text("file,abs_error,rel_error\nx/a.png,1,0.1\nb.png,3,-0.3\nc.png,4,0.5\n")
    mod.by_kind([str(tmp_path / "m.csv")], str(tmp_path / "meta.csv"))
    row = capsys.readouterr().out.splitlines()[-1]
    assert row == "| m | 2.00 (n=2) | 20.0% | 4.00 (n=1) | 50.0% |"


@pytest.mark.parametrize("word, value", [("yes", True), ("on", True), ("True", True), ("no", False), ("off", False),
                                         ("false", False), ("auto", None)])
def test_invert_reads_the_words_the_app_and_settings_files_use(word, value):
    """The app says on / off and settings files true / false: --invert refused both."""
    args = build_parser().parse_args(normalize_argv([*COUNT, "--invert", word]))
    assert param_overrides(args) == {"invert": value}


def test_a_whole_number_written_as_a_float_is_kept_as_the_whole_number():
    """"min_area_px": 20.0 in a settings file was echoed as 20.0 (and 1e2 as 100.0), where 20.5 is refused."""
    from cellcount.params import resolve_params

    p = resolve_params(None, {"min_area_px": 20.0, "max_area_px": 1e3})
    assert (p.min_area_px, p.max_area_px) == (20, 1000) and isinstance(p.min_area_px, int)
    assert '"min_area_px": 20,' in p.to_json()
