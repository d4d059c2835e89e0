"""``lpm bench ndlib`` on a tiny graph: the row schema, finite positive numbers, the time cap, the CLI; and
``lpm bench cpu|gpu``: the rows of the step benchmark, its JSON and its error without CUDA."""

from __future__ import annotations

import argparse
import json
import math

import pytest

pytest.importorskip("ndlib")
pytest.importorskip("scipy")

from lpm.bench import MODELS, add_arguments, bench_ndlib, format_table  # noqa: E402
from lpm.errors import ConfigError  # noqa: E402

REQUIRED = {"model", "n", "ndlib_s_per_iter", "lpm_s_per_iter", "ratio"}


def _positive_finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_rows_schema_and_json(tmp_path):
    out = tmp_path / "bench.json"
    rows = bench_ndlib(sizes=(500,), iterations=2, hk_time_cap_s=10.0, ab_time_budget_s=10.0, ic_runs=4,
                       out_json=out, verbose=False)
    assert [r["model"] for r in rows] == ["algorithmic_bias", "hegselmann_krause", "independent_cascade"]
    assert json.loads(out.read_text()) == json.loads(json.dumps(rows))
    keys = set(rows[0])
    for row in rows:
        assert REQUIRED <= set(row) and set(row) == keys  # every row has the same keys
        assert row["n"] == 500 and row["device"] == "cpu" and row["threads"] == 1
        for name in ("ndlib_s_per_iter", "lpm_s_per_iter", "ratio", "ndlib_setup_s", "lpm_setup_s",
                     "lpm_graph_s", "ndlib_graph_s"):
            assert _positive_finite(row[name]), (row["model"], name, row[name])
        assert row["ndlib_capped"] is False and row["ndlib_iterations"] >= 1
        assert _positive_finite(row["ratio_cpu"]) and _positive_finite(row["lpm_cpu_s_per_iter"])
        assert row["lpm_steps"] >= 2 * row["ndlib_iterations"]
        assert 0.0 <= row["ks"] <= 1.0
    assert rows[0]["runs"] is None and rows[0]["lpm_batched_s_per_iter"] is None
    hk = rows[1]
    if hk["hk_rule_agents"]:
        # NDlib's HK rule, recomputed with lpm's aggregation kernel, for the agents it moved.
        assert hk["hk_rule_max_abs_diff"] < 1e-6
    table = format_table(rows)
    assert "algorithmic_bias" in table and "hegselmann_krause" in table and "independent_cascade" in table


def test_independent_cascade_row():
    rows = bench_ndlib(sizes=(500,), iterations=3, ic_runs=6, models=("independent_cascade",), verbose=False)
    assert len(rows) == 1
    row = rows[0]
    assert row["model"] == "independent_cascade" and row["n"] == 500
    for name in ("ndlib_s_per_iter", "lpm_s_per_iter", "ratio", "lpm_batched_s_per_iter", "mean_size_lpm",
                 "mean_size_ndlib", "ndlib_setup_s", "lpm_setup_s"):
        assert _positive_finite(row[name]), (name, row[name])
    assert row["runs"] == 6 and 0.0 <= row["ks"] <= 1.0 and 0.0 <= row["ks_pvalue"] <= 1.0
    ic = row["ic"]
    assert ic["seeds_per_run"] == 5 and ic["ndlib_runs_capped"] is False
    assert ic["lpm_active_at_end"] == 0  # every lpm cascade stopped within the run
    # Sizes count the seeds and never exceed the population.
    for name in ("mean_size_lpm", "mean_size_ndlib"):
        assert 5 <= row[name] <= 500
    assert 1 <= row["ndlib_iterations"] <= 3 * 6  # the first 3 iterations of each run are timed
    assert "independent_cascade" in format_table(rows)


def test_independent_cascade_budget_stops_ndlib_runs():
    # A tiny budget lets NDlib finish its first run only; the KS test then uses that one run.
    rows = bench_ndlib(sizes=(500,), iterations=2, ic_runs=4, ic_time_budget_s=1e-9,
                       models=("independent_cascade",), verbose=False)
    row = rows[0]
    assert row["runs"] == 1 and row["ic"]["ndlib_runs_capped"] is True and row["ic"]["runs_requested"] == 4
    assert _positive_finite(row["ratio"]) and "NDlib budget" in format_table(rows)


def test_hk_cap_gives_lower_bound():
    # One NDlib HK iteration at n = 3000 takes tens of milliseconds: a 1 ms cap abandons it.
    rows = bench_ndlib(sizes=(3000,), iterations=1, hk_time_cap_s=1e-3,
                       models=("algorithmic_bias", "hegselmann_krause"), verbose=False)
    hk = rows[1]
    assert hk["ndlib_capped"] is True and hk["ratio_is_lower_bound"] is True
    assert hk["ndlib_iterations"] == 0 and hk["ks"] is None
    assert hk["ndlib_s_per_iter"] == pytest.approx(1e-3) and hk["ratio_cpu"] is None
    assert _positive_finite(hk["ratio"]) and _positive_finite(hk["lpm_s_per_iter"])
    assert ">=" in format_table(rows)


def test_arguments_parse_sizes_and_reject_bad_input():
    parser = add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--sizes", "1e4,2e3", "--hk-cap-s", "5", "--json", "out.json", "--seed", "3"])
    assert args.sizes == [10_000, 2_000] and args.hk_cap_s == 5.0 and args.json == "out.json" and args.seed == 3
    assert args.ic_budget_s == 300.0 and args.ic_runs == 100 and args.models == list(MODELS)
    args = parser.parse_args(["--ic-budget-s", "20", "--ic-runs", "7", "--models", "independent_cascade"])
    assert args.ic_budget_s == 20.0 and args.ic_runs == 7 and args.models == ["independent_cascade"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--sizes", "1.5e0"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--models", "sir"])
    with pytest.raises(ConfigError):
        bench_ndlib(sizes=(500,), iterations=0, verbose=False)
    with pytest.raises(ConfigError):
        bench_ndlib(sizes=(500,), ic_runs=1, verbose=False)
    with pytest.raises(ConfigError):
        bench_ndlib(sizes=(500,), models=("sir",), verbose=False)


# ---------------------------------------------------------------- lpm bench cpu|gpu
STEP_KEYS = {"device", "n", "edges", "path", "fwd_ms", "fwd_bwd_ms", "spmv_ms", "fwd_over_spmv", "fwd_bwd_over_spmv",
             "bytes_per_step", "bandwidth_gbs", "floor_ms", "floor_fraction", "peak_bytes", "bytes_per_agent",
             "setup_s"}


def test_bench_cpu_rows_json_and_cli(tmp_path, capsys):
    from lpm.bench.step import bench_step, step_floor_bytes
    from lpm.cli import main

    out = tmp_path / "step.json"
    assert main(["bench", "cpu", "--sizes", "400", "--repeats", "1", "--json", str(out)]) == 0
    assert "fwd/SpMV" in capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert [row["path"] for row in rows] == ["reference", "fused"]
    for row in rows:
        assert STEP_KEYS <= set(row) and row["n"] == 400 and row["threads"] == 1
        for name in ("fwd_ms", "fwd_bwd_ms", "spmv_ms", "fwd_over_spmv", "floor_fraction", "setup_s", "bandwidth_gbs",
                     "fwd_cpu_ms", "fwd_bwd_over_spmv_cpu"):
            assert _positive_finite(row[name]), (name, row[name])
        # three aggregations (activity, opinion: d = 1; emotion: d = 2) over the same CSR arrays
        assert row["bytes_per_step"] == step_floor_bytes(400, row["edges"], (1, 1, 2)) == \
            3 * (401 * 4 + row["edges"] * 4) + 2 * 400 * 4 * 4
    assert rows[0]["implementations"] == [] and any("fused_pull" in name for name in rows[1]["implementations"])
    fwd_only = bench_step("cpu", [300], repeats=1, backward=False, setup=False)
    assert fwd_only[0]["fwd_bwd_ms"] is None and fwd_only[0]["setup_s"] is None


def test_bench_gpu_without_cuda_is_a_typed_error():
    import torch

    from lpm.bench.step import bench_step

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ConfigError, match="Expected a CUDA device"):
        bench_step("cuda", [1000])
