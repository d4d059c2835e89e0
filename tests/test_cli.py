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


# ------------------------------------------------------------------------------------------ provenance
SMALL = ["--agents", "800", "--seeds", "2", "--steps", "12", "--quiet", "--logger", "none"]


def test_counterfactual_run_records_how_it_was_made(tmp_path, capsys):
    """summary.json names the version, command, seeds and config; config.yaml is that config;
    observables.parquet names each scenario's arm and seed, consistent with arms.parquet."""
    import numpy as np
    import yaml

    import lpm

    args = ["run", "misinformation", *SMALL, "--out", str(tmp_path)]
    assert main(args) == 0
    folder = tmp_path / "misinformation"
    summary = json.loads((folder / "summary.json").read_text())
    made = summary["provenance"]
    assert made["lpm_version"] == lpm.__version__ and made["command"] == "lpm " + " ".join(args)
    assert made["seeds"] == [0, 1] and made["config"]["agents"] == 800 and made["config"]["steps"] == 12
    assert yaml.safe_load((folder / "config.yaml").read_text()) == made["config"]
    assert summary["outputs"]["config"]["file"] == "config.yaml"

    observables = pd.read_parquet(folder / "observables.parquet")
    arms = pd.read_parquet(folder / "arms.parquet")
    assert "scenario" not in observables.columns and list(observables.columns[:2]) == ["arm", "seed"]
    assert set(observables.arm) == set(arms.arm) and set(observables.seed) == {0, 1}
    assert len(observables) == 11 * 2 * 13
    last = observables[observables.step == 12].set_index(["arm", "seed"])["reshares[0]"]
    by_arm = arms.set_index(["arm", "seed"])
    np.testing.assert_array_equal(last.loc[by_arm.index].to_numpy(), by_arm.final_reshares.to_numpy())
    # half_time_h: the first hour at which the cascade held half its final size, from the recorded curve
    for (arm, seed), group in observables.groupby(["arm", "seed"]):
        curve = group.sort_values("step")
        first = curve.time_h[curve["reshares[0]"] >= 0.5 * curve["reshares[0]"].iloc[-1]].iloc[0]
        assert by_arm.loc[(arm, seed), "half_time_h"] == pytest.approx(first)


def test_a_finished_run_is_not_overwritten_without_asking(tmp_path, capsys):
    from lpm.io_atomic import file_sha256

    args = ["run", "default", "--agents", "300", "--steps", "3", "--quiet", "--logger", "none", "--out", str(tmp_path)]
    assert main(args) == 0
    folder = tmp_path / "default"
    before = {p.name: file_sha256(p) for p in folder.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(args[:-4] + ["--seed", "1", "--logger", "none", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and str(folder) in err
    assert {p.name: file_sha256(p) for p in folder.iterdir() if p.is_file()} == before  # untouched
    assert main(args + ["--seed", "1", "--overwrite"]) == 0
    assert json.loads((folder / "summary.json").read_text())["provenance"]["seeds"] == [1]
    # a sweep has its own folder, so a run and a sweep of one scenario never collide
    assert main(["sweep", "misinformation", "--grid", "downrank=0,0.5", *SMALL, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "misinformation-sweep" / "summary.json").is_file()
    assert main(["sweep", "misinformation", "--grid", "downrank=0,0.5", *SMALL, "--out", str(tmp_path)]) == 2


def test_version_and_scenarios(capsys):
    import lpm

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"lpm {lpm.__version__}"
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    for name in ("default", "disaster", "misinformation", "polarization", "polarization_polblogs"):
        assert name in out and load_scenario(name).description[:30] in out
    assert "prebunk_share" in out and "rebuttal_every_h" in out  # misinformation's sweep keys


def test_runs_and_sweeps_are_recorded_in_wandb_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline is the default, no account needed
    monkeypatch.setenv("WANDB_API_KEY", "")
    assert main(["-v", "run", "default", "--agents", "300", "--steps", "3", "--quiet", "--out", str(tmp_path)]) == 0
    runs = list((tmp_path / "default" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    assert "recorded in wandb (offline)" in capsys.readouterr().err
    assert main(["sweep", "misinformation", "--grid", "downrank=0,0.5", "--agents", "500", "--seeds", "2",
                 "--steps", "4", "--quiet", "--out", str(tmp_path)]) == 0
    assert list((tmp_path / "misinformation-sweep" / "wandb").glob("offline-run-*/run-*.wandb"))


def test_library_messages_reach_the_cli_as_log_lines(tmp_path, capsys):
    """What the library warns (and with -v logs) shows on stderr, one line each; the tables stay on stdout."""
    assert main(["run", "misinformation", *SMALL, "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "follow edges among" not in captured.err  # progress only with -v
    assert main(["-v", "run", "misinformation", *SMALL, "--out", str(tmp_path / "b")]) == 0
    captured = capsys.readouterr()
    assert "graph:" in captured.err and "follow edges among 800 agents" in captured.err
    warned = [line for line in captured.err.splitlines() if "UserWarning" in line]
    assert warned and all("has no effect" in line for line in warned)  # the arms that start after 2 h
    assert "final_reach_adjusted vs none" in captured.out and "UserWarning" not in captured.out
