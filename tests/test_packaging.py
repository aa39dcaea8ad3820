"""The package installs: a wheel carries the shipped weights and the console script; commands dispatch."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cellcount import cli
from cellcount.models import list_models
from cellcount.models.loading import CLASSICAL_NAME, DEFAULT_WEIGHTS_DIR

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_carries_weights_and_console_script(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("cellcount-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    shipped = [n for n in list_models() if n != CLASSICAL_NAME and (DEFAULT_WEIGHTS_DIR / n).is_dir()]
    assert shipped
    for name in shipped:
        assert f"cellcount/_weights/{name}/card.json" in names
        assert f"cellcount/_weights/{name}/weights.safetensors" in names
    assert "cellcount/cli.py" in names
    assert "cellcount = cellcount.cli:run" in entry_points


@pytest.mark.parametrize("command", ["evaluate", "train", "finetune"])
def test_module_commands_dispatch(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: cellcount {command} ")  # named as typed


def test_count_without_model_uses_the_default(tmp_path):
    from cellcount.models import default_model_name

    src = ROOT / "data" / "samples" / "s01_sparse_small.png"
    out = tmp_path / "c.csv"
    assert cli.main(["count", str(src), "--out", str(out), "--no-progress", "-q"]) == 0
    assert f",{default_model_name()}," in out.read_text().splitlines()[1]
