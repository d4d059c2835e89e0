"""Outputs are written atomically with the umask's mode, under unique temporary names; JSON is strict."""

from __future__ import annotations

import json
import math
import os
import stat

import pytest
import torch

import lpm
from lpm.io_atomic import atomic_path, atomic_write_json, atomic_write_text
from lpm.testing import small_graph


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_write_respects_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert _mode(path) == 0o640


def test_outputs_of_a_run_are_0644(tmp_path, umask_022):
    graph, state = small_graph(20, seed=0), lpm.PopulationState.sample(20, seed=0)
    model = lpm.Model(activity=lpm.dynamics.Hawkes(mu=0.6, alpha=0.8, beta=1.5))
    snapshot = tmp_path / "run.pt"
    trajectory = lpm.simulate(model, state, graph, steps=2, seed=0, save_path=snapshot, save_every=1)
    parquet = trajectory.to_parquet(tmp_path / "observables.parquet")
    from lpm.calibration.common import atomic_write_json as calibration_json

    fit = calibration_json(tmp_path / "fit.json", {"a": 1.0})
    for path in (snapshot, parquet, fit):
        assert _mode(path) == 0o644, path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.json", "observables.parquet", "run.pt"]


def test_llm_usage_json_is_0644(tmp_path, umask_022):
    from lpm.archetypes import cache

    cache._atomic_write(tmp_path / "llm_usage.json", "{}\n")
    assert _mode(tmp_path / "llm_usage.json") == 0o644


def test_temporary_names_are_unique_in_a_shared_folder(tmp_path):
    target = tmp_path / "summary.json"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second and first.parent == second.parent == tmp_path
        first.write_text("1")
        second.write_text("2")
    assert target.read_text() == "1"  # the outer block ends last: its content wins, nothing collided
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_failed_write_leaves_target_and_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "out.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_json_is_strict_nan_becomes_null(tmp_path):
    path = atomic_write_json(tmp_path / "bench.json", [{"ks": math.nan, "x": 1.0, "inf": [math.inf]}])
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == [{"ks": None, "x": 1.0, "inf": [None]}]


def test_bench_writes_strict_json():
    import inspect

    from lpm.bench import ndlib  # the module of lpm.bench that writes the rows

    source = inspect.getsource(ndlib)
    assert "allow_nan=True" not in source and "atomic_write_json" in source


def test_no_private_atomic_writers_left():
    import pathlib

    root = pathlib.Path(lpm.__file__).parent
    offenders = [str(p) for p in root.rglob("*.py") if p.name != "io_atomic.py"
                 and any(s in p.read_text() for s in ("mkstemp(", "NamedTemporaryFile(", '.json.tmp"', '.parquet.tmp"'))]
    assert offenders == []


def test_run_outputs_are_marked_incomplete_until_all_are_written(tmp_path, monkeypatch):
    """A crash between a run's outputs leaves an INCOMPLETE-run marker naming the error and the earlier
    summary.json untouched; a finished run removes the marker and lists its outputs with their hashes."""
    import json

    import lpm.plots
    from lpm.io_atomic import file_sha256
    from lpm.scenario import load_scenario, run_scenario, with_overrides, write_outputs

    scenario = with_overrides(load_scenario("default"), agents=200)
    result = run_scenario(scenario, steps=2, progress=False)
    paths = write_outputs(result, tmp_path)
    folder = tmp_path / "default"
    assert not list(folder.glob("INCOMPLETE-*"))
    summary = json.loads((folder / "summary.json").read_text())
    for name, entry in summary["outputs"].items():
        assert file_sha256(folder / entry["file"]) == entry["sha256"], name
    assert set(summary["outputs"]) == set(paths) - {"summary"}
    before = (folder / "summary.json").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full while plotting")

    monkeypatch.setattr(lpm.plots, "plot_trajectory", crash)
    with pytest.raises(OSError, match="disk full"):
        write_outputs(result, tmp_path, overwrite=True)
    marker = (folder / "INCOMPLETE-run").read_text()
    assert "disk full while plotting" in marker and "process" in marker
    assert (folder / "summary.json").read_bytes() == before  # the last complete run's record is intact
    monkeypatch.undo()
    write_outputs(result, tmp_path)  # a folder marked incomplete holds no finished run: no overwrite needed
    assert not list(folder.glob("INCOMPLETE-*"))
    with pytest.raises(lpm.errors.ConfigError, match="overwrite"):  # now it does
        write_outputs(result, tmp_path)
