"""The command line: lpm run writes its outputs; bad input is a clear error, not a traceback."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lpm.cli import main
from lpm.errors import ConfigError
from lpm.scenario import load_scenario


def test_run_default_scenario_small(tmp_path, capsys):
    code = main(["run", "default", "--agents", "2000", "--steps", "30", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    folder = tmp_path / "default"
    frame = pd.read_parquet(folder / "observables.parquet")
    assert len(frame) == 31 and frame["step"].max() == 30
    assert {"polarization", "posts", "negative_share", "emotion_mean[1]"} <= set(frame.columns)
    for name in ("polarization", "posts", "emotion_mean", "negative_share"):
        assert (folder / f"{name}.png").stat().st_size > 1000
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["agents"] == 2000 and summary["steps"] == 30 and summary["timings_s"]["ms_per_step"] > 0
    out = capsys.readouterr().out
    assert "ms/step" in out and "polarization" in out


def test_unknown_scenario_is_a_clear_error(capsys):
    assert main(["run", "no_such_scenario", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "ConfigError" in err and "default" in err


def test_scenario_from_file_must_define_scenario(tmp_path):
    path = tmp_path / "empty.py"
    path.write_text("X = 1\n")
    with pytest.raises(ConfigError, match="SCENARIO"):
        load_scenario(str(path))


def test_cuda_requested_without_cuda(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    assert main(["run", "default", "--agents", "100", "--steps", "1", "--device", "cuda", "--quiet"]) == 2
    assert "CUDA" in capsys.readouterr().err


def test_run_misinformation_arms_small(tmp_path, capsys):
    code = main(["run", "misinformation", "--agents", "800", "--seeds", "2", "--steps", "12", "--out", str(tmp_path),
                 "--quiet"])
    assert code == 0
    table = pd.read_parquet(tmp_path / "misinformation" / "arms.parquet")
    assert {"arm", "seed", "final_reach", "half_time_h", "max_depth"} <= set(table.columns)
    assert len(table) == 11 * 2 and table.arm.nunique() == 11
    assert (table.final_reach >= 3).all()  # at least the three sources' own posts
    summary = json.loads((tmp_path / "misinformation" / "summary.json").read_text())
    assert {row["arm"] for row in summary["differences"]} == set(table.arm)
    assert (tmp_path / "misinformation" / "arms.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "final_reach_adjusted vs none" in out and "label@1h" in out
