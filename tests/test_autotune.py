"""Tests of cellcount.models.autotune: the measured backend choice, its cache and the user's overrides,
with fake timing tables (no real timing)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from cellcount.cli import build_parser, main
from cellcount.errors import ParameterError
from cellcount.models import autotune
from cellcount.models.autotune import BACKEND_ENV, CHOICES, choose_backend, requested_backend

MACHINE = {"cpu": "Test CPU 9000", "flags_sha": "abc", "machine": "x86_64", "torch": "2.13.0", "onnxruntime": "1.0",
           "threads": 2}


class FakeTimer:
    """A measure function returning a fixed timing table (s/Mpx) and recording what it was asked to time."""

    def __init__(self, table: dict[str, float]) -> None:
        self.table, self.calls = table, []

    def __call__(self, nets: dict) -> dict[str, float]:
        self.calls.append(sorted(nets))
        return {k: self.table[k] for k in nets}


@pytest.fixture(autouse=True)
def _quiet_machine(monkeypatch):
    """A quiet machine unless a test says otherwise: a busy one's timings are timed again later (see below)."""
    monkeypatch.setattr(autotune, "load_per_core", lambda: 0.1)


def choose(path, timer, *, digest="w1", machine=MACHINE, candidates=("onnxruntime", "torch"), requested="auto"):
    built = []

    def build(name: str) -> str:
        built.append(name)
        return name

    choice = choose_backend(digest, build, requested=requested, candidates=candidates, path=path, measure=timer,
                            fingerprint=machine)
    return choice, built


def test_the_fastest_backend_wins_and_is_written_then_read(tmp_path):
    path = tmp_path / "cellcount" / "backends.json"
    timer = FakeTimer({"bf16": 3.0, "onnxruntime": 0.4, "torch": 0.6})
    choice, built = choose(path, timer, candidates=("bf16", "onnxruntime", "torch"))
    assert (choice.backend, choice.reason) == ("onnxruntime", "measured")
    assert built == ["bf16", "onnxruntime", "torch"] and timer.calls == [["bf16", "onnxruntime", "torch"]]
    entry = next(iter(json.loads(path.read_text()).values()))
    assert entry["backend"] == "onnxruntime" and entry["timings_s_per_mpx"]["torch"] == 0.6
    assert entry["fingerprint"]["cpu"] == "Test CPU 9000" and entry["weights"] == "w1"
    # a second process on the same machine: read, nothing built or timed
    again, built = choose(path, timer, candidates=("bf16", "onnxruntime", "torch"))
    assert (again.backend, again.reason) == ("onnxruntime", "cached") and built == [] and len(timer.calls) == 1
    assert again.timings_s_per_mpx == choice.timings_s_per_mpx
    assert "s/Mpx on a 256 px tile: onnxruntime 0.400, torch 0.600, bf16 3.000" in again.describe()
    assert autotune.timings_text({}, 256) == ""


def test_the_backends_are_timed_in_turns_after_a_pause(monkeypatch):
    """A B A B ..., not A A A B B B: a shared machine's slow moment then falls on both (one after the other, the
    two fp32 backends of a Zen 3 came out in either order from run to run)."""
    log: list[str] = []
    monkeypatch.setattr(autotune.time, "sleep", lambda s: log.append(f"pause {s}"))

    def net(name):
        def call(x):
            log.append(f"{name} {x.shape[-1]}")
            return x
        return call

    t = autotune.time_backends({"onnxruntime": net("onnxruntime"), "torch": net("torch")}, budget_s=0.0)
    assert set(t) == {"onnxruntime", "torch"} and all(v >= 0 for v in t.values())
    pause = f"pause {autotune.SETTLE_S}"
    # one warm-up call each, then at least two rounds, each timed call after a pause
    assert log == ["onnxruntime 256", "torch 256", pause, "onnxruntime 256", pause, "torch 256",
                   pause, "onnxruntime 256", pause, "torch 256"]


def test_a_damaged_cache_entry_is_timed_again(tmp_path):
    path = tmp_path / "backends.json"
    key = autotune.cache_key("w1", MACHINE)
    path.write_text(json.dumps({key: {"backend": "torch", "timings_s_per_mpx": {"torch": None}, "tile_px": "abc"}}))
    choice, built = choose(path, FakeTimer({"onnxruntime": 0.4, "torch": 0.6}))
    assert (choice.backend, choice.reason) == ("onnxruntime", "measured") and built == ["onnxruntime", "torch"]


def test_a_choice_timed_by_the_earlier_rule_is_timed_again(tmp_path):
    """Entries written when each backend was timed in one block (before the turns) are not read back."""
    path = tmp_path / "backends.json"
    old_key = autotune.hashlib.sha256(json.dumps({**MACHINE, "weights": "w1"}, sort_keys=True).encode()).hexdigest()[:32]
    path.write_text(json.dumps({old_key: {"backend": "torch", "timings_s_per_mpx": {"torch": 0.5, "onnxruntime": 0.6},
                                          "tile_px": 256, "measure_s": 0.4}}))
    choice, built = choose(path, FakeTimer({"onnxruntime": 0.4, "torch": 0.6}))
    assert (choice.backend, choice.reason) == ("onnxruntime", "measured") and built == ["onnxruntime", "torch"]


@pytest.mark.parametrize("change", [
    {"digest": "w2"},  # other weights
    {"machine": {**MACHINE, "cpu": "Other CPU"}},
    {"machine": {**MACHINE, "flags_sha": "def"}},
    {"machine": {**MACHINE, "torch": "2.14.0"}},
    {"machine": {**MACHINE, "onnxruntime": None}},
])
def test_a_changed_key_times_again_and_keeps_the_other_entries(tmp_path, change):
    path = tmp_path / "backends.json"
    choose(path, FakeTimer({"onnxruntime": 0.4, "torch": 0.6}))
    timer = FakeTimer({"onnxruntime": 0.9, "torch": 0.5})
    choice, built = choose(path, timer, **change)
    assert (choice.backend, choice.reason) == ("torch", "measured") and built == ["onnxruntime", "torch"]
    assert len(json.loads(path.read_text())) == 2
    assert autotune.cache_key("w1", MACHINE) != autotune.cache_key(change.get("digest", "w1"),
                                                                   change.get("machine", MACHINE))


def test_a_cached_backend_no_longer_available_is_timed_again(tmp_path):
    path = tmp_path / "backends.json"
    choose(path, FakeTimer({"onnxruntime": 0.4, "torch": 0.6}))
    choice, _ = choose(path, FakeTimer({"bf16": 0.1, "torch": 0.6}), candidates=("bf16", "torch"))
    assert (choice.backend, choice.reason) == ("bf16", "measured")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "\x00\x01"])
def test_a_broken_cache_file_is_ignored_with_a_warning_and_replaced(tmp_path, caplog, content):
    path = tmp_path / "backends.json"
    path.write_text(content)
    with caplog.at_level(logging.WARNING, logger="cellcount.models.autotune"):
        choice, _ = choose(path, FakeTimer({"onnxruntime": 0.7, "torch": 0.6}))
    assert (choice.backend, choice.reason) == ("torch", "measured")
    assert any("ignoring the backend cache" in r.getMessage() for r in caplog.records)
    assert next(iter(json.loads(path.read_text()).values()))["backend"] == "torch"


def test_an_unwritable_cache_only_warns(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING, logger="cellcount.models.autotune"):
        choice, _ = choose(blocker / "backends.json", FakeTimer({"onnxruntime": 0.4, "torch": 0.6}))
    assert choice.backend == "onnxruntime"
    assert any("cannot write the backend cache" in r.getMessage() for r in caplog.records)


def test_a_requested_backend_wins_over_the_measurement_and_keeps_the_timings(tmp_path):
    path = tmp_path / "backends.json"
    choose(path, FakeTimer({"onnxruntime": 0.4, "torch": 0.6}))
    timer = FakeTimer({})
    choice, built = choose(path, timer, requested="torch")
    assert (choice.backend, choice.reason) == ("torch", "requested") and built == [] and timer.calls == []
    assert choice.timings_s_per_mpx == {"onnxruntime": 0.4, "torch": 0.6}
    with pytest.raises(ParameterError, match="'auto', 'bf16', 'int8', 'onnxruntime', 'openvino', 'torch'"):
        choose(path, timer, requested="tensorrt")


def test_one_candidate_is_not_timed(tmp_path):
    timer = FakeTimer({"torch": 1.0})
    choice, built = choose(tmp_path / "b.json", timer, candidates=("torch",))
    assert (choice.backend, choice.reason) == ("torch", "only one available") and timer.calls == [] and built == []


def test_requested_backend_option_then_environment_then_auto():
    assert requested_backend(None, environ={}) == "auto"
    assert requested_backend(None, environ={BACKEND_ENV: "torch"}) == "torch"
    assert requested_backend("onnxruntime", environ={BACKEND_ENV: "torch"}) == "onnxruntime"
    assert requested_backend(None, environ={BACKEND_ENV: " ONNXRuntime "}) == "onnxruntime"
    with pytest.raises(ParameterError, match=BACKEND_ENV):
        requested_backend(None, environ={BACKEND_ENV: "gpu"})
    with pytest.raises(ParameterError, match="backend must be one of"):
        requested_backend("gpu", environ={})


def test_cache_file_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert autotune.cache_file() == tmp_path / "cellcount" / "backends.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert autotune.cache_file().parts[-3:] == (".cache", "cellcount", "backends.json")


def test_real_timing_of_two_networks_returns_seconds_per_megapixel():
    import torch

    slow = torch.nn.Sequential(*[torch.nn.Conv2d(1, 1, 3, padding=1) for _ in range(8)]).eval()
    fast = torch.nn.Conv2d(1, 1, 1).eval()
    t = autotune.time_backends({"slow": slow, "fast": fast}, tile_px=64, budget_s=0.01)
    assert set(t) == {"slow", "fast"} and all(v > 0 for v in t.values())
    assert isinstance(t.cpu_share, float) and t.cpu_share >= 0  # the cores the fastest calls got, for the busy check


def test_net_model_measures_once_and_passes_an_explicit_backend(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    # an idle machine, whatever else runs beside the tests: a timing counted as busy is timed again, not "cached"
    monkeypatch.setattr(autotune, "load_per_core", lambda: 0.0)
    monkeypatch.setattr(autotune, "MIN_CPU_SHARE", 0.0)
    monkeypatch.setattr(autotune, "MAX_CPU_SHARE", float("inf"))
    model = tiny_model(seed=11)
    image = np.random.default_rng(0).uniform(0, 1, (40, 40)).astype(np.float32)
    auto = model.predict_maps(image, fast=True)
    choice = model.backend_choice()
    assert choice.reason in ("measured", "only one available") and choice.backend in CHOICES
    assert model.backend_choice() is choice  # remembered for the model's life
    # "auto" runs the choice itself; an fp32 choice matches plain PyTorch within float rounding (bf16, chosen where it
    # measured fastest, rounds more: the bench checks its counts)
    np.testing.assert_allclose(auto, model.predict_maps(image, fast=True, backend=choice.backend), rtol=0, atol=1e-6)
    if choice.backend != "bf16":
        np.testing.assert_allclose(auto, model.predict_maps(image, fast=True, backend="torch"), atol=1e-4)
    if choice.reason == "measured":
        assert (tmp_path / "cellcount" / "backends.json").is_file()
        assert tiny_model(seed=11).backend_choice().reason == "cached"  # same weights: a new process reads it


def test_cli_backend_option_and_environment_variable(tiny_model, tmp_path, monkeypatch, capsys, samples_dir):
    from cellcount.models import save_model

    assert build_parser()._subparsers._group_actions[0].choices["count"]._option_string_actions[
        "--backend"].choices == list(CHOICES)
    model = tiny_model(seed=12)
    folder = save_model(model.net, model.card, tmp_path / "tiny")
    img = samples_dir / "s01_sparse_small.png"
    argv = ["count", str(img), "--model", str(folder), "--out", str(tmp_path / "c.csv"), "--no-progress", "-v"]
    assert main([*argv, "--backend", "torch"]) == 0
    assert "backend: torch (requested" in capsys.readouterr().err
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert main(argv) == 0
    assert "backend: torch (requested" in capsys.readouterr().err
    monkeypatch.setenv(BACKEND_ENV, "tpu")
    assert main(argv) == 2
    assert "CELLCOUNT_BACKEND must be one of" in capsys.readouterr().err


def test_a_model_not_yet_saved_keeps_its_backend_choice_once_saved(tiny_model, tmp_path, monkeypatch):
    """A fine-tune scores its held-out images before the model is saved: the backend chosen then must be the
    saved model's too, or the card's figures come from another backend than the user's counts."""
    from cellcount.models import load_model, save_model

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = tiny_model(seed=13)
    model.card.sha256 = ""  # as a fine-tune's model before saving
    unsaved = model.weights_digest()
    saved = load_model(save_model(model.net, model.card, tmp_path / "tiny"))
    assert saved.card.sha256 == unsaved == saved.weights_digest()


def test_on_a_gpu_the_backend_said_and_recorded_is_torch_on_it(tiny_model, monkeypatch):
    """A GPU always runs PyTorch (``predict_maps``): the CLI's record and the Timing tab must not name the CPU's
    choice there, nor time the CPU backends for nothing."""
    import torch

    import cellcount.inference as inference

    model = tiny_model(seed=13)
    monkeypatch.setattr(inference, "default_device", lambda: torch.device("cuda"))
    monkeypatch.setattr(type(model), "backend_choice", lambda *a, **k: pytest.fail("timed the CPU backends on a GPU"))
    name, why = model.backend_in_use("auto")
    assert name == "torch (cuda)" and "GPU" in why


def test_a_choice_timed_on_a_busy_machine_is_timed_again_when_it_is_quiet(tmp_path, monkeypatch):
    """A timing under a tester's load (bf16 4.64 s/Mpx against its usual 0.27) kept ONNX Runtime for good."""
    path = tmp_path / "backends.json"
    load = {"now": 3.0}
    monkeypatch.setattr(autotune, "load_per_core", lambda: load["now"])
    choice, _ = choose(path, FakeTimer({"bf16": 4.64, "onnxruntime": 1.06}), candidates=("bf16", "onnxruntime"))
    assert choice.backend == "onnxruntime"
    entry = next(iter(json.loads(path.read_text()).values()))
    assert entry["busy"] is True and entry["load_per_core"] == 3.0
    load["now"] = 1.5  # still busy: the choice stands
    still, built = choose(path, FakeTimer({"bf16": 0.27, "onnxruntime": 0.47}), candidates=("bf16", "onnxruntime"))
    assert (still.backend, still.reason, built) == ("onnxruntime", "cached", [])
    load["now"] = 0.2  # quiet: timed again, and kept for good
    quiet = FakeTimer({"bf16": 0.27, "onnxruntime": 0.47})
    again, _ = choose(path, quiet, candidates=("bf16", "onnxruntime"))
    assert (again.backend, again.reason) == ("bf16", "measured") and len(quiet.calls) == 1
    assert next(iter(json.loads(path.read_text()).values()))["busy"] is False
    later, built = choose(path, quiet, candidates=("bf16", "onnxruntime"))
    assert (later.backend, later.reason, built) == ("bf16", "cached", [])


class SharedTimer(FakeTimer):
    """A timing table whose fastest calls got ``share`` of their threads' CPU time."""

    def __init__(self, table: dict[str, float], share: float) -> None:
        super().__init__(table)
        self.share = share

    def __call__(self, nets: dict) -> autotune.Timings:
        out = autotune.Timings(super().__call__(nets))
        out.cpu_share = self.share
        return out


def test_a_timing_whose_calls_lacked_their_cores_counts_as_busy_whatever_the_load_average(tmp_path):
    """The load average lags a minute: a choice timed as other processes started (load 0.59 per core) kept ONNX
    Runtime with bf16 at 5.27 s/Mpx against its usual 0.27, marked quiet, for good."""
    path = tmp_path / "backends.json"
    choice, _ = choose(path, SharedTimer({"bf16": 5.27, "onnxruntime": 2.58}, share=0.45),
                       candidates=("bf16", "onnxruntime"))
    assert choice.backend == "onnxruntime"
    entry = next(iter(json.loads(path.read_text()).values()))
    assert entry["busy"] is True and entry["cpu_share"] == 0.45 and entry["load_per_core"] == 0.1
    # the next process, on a machine the load average calls quiet, times again; with its cores, for good
    again, _ = choose(path, SharedTimer({"bf16": 0.27, "onnxruntime": 0.47}, share=0.95),
                      candidates=("bf16", "onnxruntime"))
    assert (again.backend, again.reason) == ("bf16", "measured")
    assert next(iter(json.loads(path.read_text()).values()))["busy"] is False
    later, built = choose(path, SharedTimer({}, share=1.0), candidates=("bf16", "onnxruntime"))
    assert (later.backend, later.reason, built) == ("bf16", "cached", [])


def test_a_machine_whose_threads_never_get_their_cores_stops_timing_after_a_few_tries(tmp_path):
    """A container allowed fewer CPUs than torch starts threads for would time again at every start."""
    path = tmp_path / "backends.json"
    starved = SharedTimer({"bf16": 0.5, "onnxruntime": 0.9}, share=0.4)
    for _ in range(autotune.MAX_BUSY_TIMINGS):
        assert choose(path, starved, candidates=("bf16", "onnxruntime"))[0].reason == "measured"
    entry = next(iter(json.loads(path.read_text()).values()))
    assert entry["busy"] is False and entry["busy_timings"] == autotune.MAX_BUSY_TIMINGS
    assert choose(path, starved, candidates=("bf16", "onnxruntime"))[0].reason == "cached"
    assert len(starved.calls) == autotune.MAX_BUSY_TIMINGS


def test_calls_sharing_the_process_with_other_work_count_as_busy_and_no_load_average_times_again(tmp_path,
                                                                                                 monkeypatch):
    """A batch thread of the app running during the timing inflates the process's CPU time past its threads' (a
    review); where the system has no load average (Windows) a busy timing was never timed again."""
    path = tmp_path / "backends.json"
    choose(path, SharedTimer({"bf16": 0.9, "onnxruntime": 0.5}, share=1.6), candidates=("bf16", "onnxruntime"))
    assert next(iter(json.loads(path.read_text()).values()))["busy"] is True
    monkeypatch.setattr(autotune, "load_per_core", lambda: None)
    again, _ = choose(path, SharedTimer({"bf16": 0.27, "onnxruntime": 0.5}, share=0.95),
                      candidates=("bf16", "onnxruntime"))
    assert (again.backend, again.reason) == ("bf16", "measured")


def test_a_damaged_busy_count_is_timed_again_not_a_crash(tmp_path):
    path = tmp_path / "backends.json"
    choose(path, SharedTimer({"bf16": 0.3, "onnxruntime": 0.5}, share=0.4), candidates=("bf16", "onnxruntime"))
    entries = json.loads(path.read_text())
    next(iter(entries.values()))["busy_timings"] = None
    path.write_text(json.dumps(entries))
    choice, _ = choose(path, SharedTimer({"bf16": 0.3, "onnxruntime": 0.5}, share=0.95), candidates=("bf16", "onnxruntime"))
    assert choice.reason == "measured"


def test_the_command_lines_offer_exactly_the_backends_there_are():
    """The parsers name the choices without importing torch (a fast --help); they must stay the library's."""
    from cellcount.evaluate.cli import build_parser as evaluate_parser

    def offered(parser):
        return tuple(next(a for a in parser._actions if a.dest == "backend").choices)

    count = next(a for a in build_parser()._actions if a.dest == "command").choices["count"]
    assert offered(count) == CHOICES and offered(evaluate_parser()) == CHOICES
