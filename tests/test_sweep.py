"""Sweeps: a grid of intervention parameters runs as one batch, and equals its arms run one by one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from lpm import counterfactual
from lpm.cli import main
from lpm.errors import ConfigError
from lpm.scenario import load_scenario
from lpm.sweep import arm_name, grid_arms, grid_points, parse_grid, run_sweep, sweep_keywords

AGENTS, STEPS, SEEDS = 800, 12, 2
GRID = {"label_h": [1, 6, 24, None], "prebunk_share": [0, 0.1, 0.3, 0.5]}


@pytest.fixture(scope="module")
def scenario():
    return dataclasses.replace(load_scenario("misinformation"), agents=AGENTS)


@pytest.fixture(scope="module")
def swept(scenario):
    timings: dict = {}
    table, result = run_sweep(scenario, GRID, seeds=SEEDS, steps=STEPS, timings=timings)
    return table, result, timings


# ------------------------------------------------------------------------------------------ parse_grid
def test_parse_grid_types_and_order():
    grid = parse_grid(["label_h=1,6,24,none", "prebunk_share=0,0.1,.5", " downrank = 0.5 , NONE ", "x=-3,1e-3"])
    assert list(grid) == ["label_h", "prebunk_share", "downrank", "x"]
    assert grid["label_h"] == [1, 6, 24, None] and all(type(v) is int for v in grid["label_h"][:3])
    assert grid["prebunk_share"] == [0, 0.1, 0.5] and type(grid["prebunk_share"][0]) is int
    assert type(grid["prebunk_share"][1]) is float
    assert grid["downrank"] == [0.5, None]
    assert grid["x"] == [-3, 0.001]
    assert parse_grid("a=2") == {"a": [2]}


@pytest.mark.parametrize("entries, match", [
    (["label_h"], "key=v1,v2"),
    (["=1,2"], "identifier"),
    (["1x=1"], "identifier"),
    (["label_h="], "at least one value"),
    (["label_h=  "], "at least one value"),
    (["label_h=1,,2"], "without empty"),
    (["label_h=1,abc"], "'abc'"),
    (["label_h=inf"], "finite"),
    (["label_h=1", "label_h=2"], "once"),
    (["label_h=1,1.0"], "distinct"),
    (["label_h=none,None"], "distinct"),
])
def test_parse_grid_errors(entries, match):
    with pytest.raises(ConfigError, match=match):
        parse_grid(entries)


def test_grid_points_and_names_follow_the_product_order():
    points = grid_points(GRID)
    assert len(points) == 16
    assert points[0] == {"label_h": 1, "prebunk_share": 0} and points[1] == {"label_h": 1, "prebunk_share": 0.1}
    assert points[-1] == {"label_h": None, "prebunk_share": 0.5}
    assert arm_name(points[1]) == "label_h=1,prebunk_share=0.1"
    assert arm_name(points[-1]) == "label_h=none,prebunk_share=0.5"


# ------------------------------------------------------------------------------------------ arms and errors
def test_sweep_keywords_come_from_the_signature(scenario):
    assert set(sweep_keywords(scenario)) == {"label_h", "label_strength", "prebunk_share", "downrank", "suspend_top",
                                             "rebuttal_every_h"}


def test_grid_arms_builds_each_point(scenario):
    graph = scenario.build_graph(scenario.agents, scenario.seed, "cpu")
    arms = grid_arms(scenario, graph, {"label_h": [1, None], "prebunk_share": [0, 0.3]})
    kinds = {name: sorted(type(i).__name__ for i in interventions) for name, interventions in arms.items()}
    assert kinds == {
        "label_h=1,prebunk_share=0": ["FactCheckLabel"],
        "label_h=1,prebunk_share=0.3": ["FactCheckLabel", "Prebunking"],
        "label_h=none,prebunk_share=0": [],
        "label_h=none,prebunk_share=0.3": ["Prebunking"],
    }
    more = grid_arms(scenario, graph, ["downrank=0.5", "suspend_top=10", "rebuttal_every_h=2"])
    (only,) = more.values()
    assert sorted(type(i).__name__ for i in only) == ["Downranking", "Rebuttal", "Suspension"]


def test_unknown_key_names_the_accepted_keywords(scenario):
    graph = scenario.build_graph(scenario.agents, scenario.seed, "cpu")
    with pytest.raises(ConfigError, match=r"label_h.*prebunk_share.*\['label_hours'\]"):
        grid_arms(scenario, graph, {"label_hours": [1]})
    with pytest.raises(ConfigError, match="label_strength"):
        run_sweep(scenario, ["label_hours=1,2"], seeds=2, steps=1)


def test_scenario_without_sweep_is_a_config_error():
    default = load_scenario("default")
    assert default.sweep is None
    with pytest.raises(ConfigError, match="sweep"):
        run_sweep(default, {"x": [1, 2]}, seeds=2, steps=1)
    with pytest.raises(ConfigError, match="sweep"):
        grid_arms(default, None, {"x": [1]})


def test_sweep_functions_with_kwargs_and_bad_returns(scenario):
    graph = scenario.build_graph(scenario.agents, scenario.seed, "cpu")
    anything = dataclasses.replace(scenario, sweep=lambda graph, **params: [])
    assert sweep_keywords(anything) is None
    assert list(grid_arms(anything, graph, {"whatever": [1, 2]})) == ["whatever=1", "whatever=2"]
    broken = dataclasses.replace(scenario, sweep=lambda graph, *, x=0: ["not an intervention"])
    with pytest.raises(ConfigError, match="interventions"):
        grid_arms(broken, graph, {"x": [1]})


def test_bad_seeds_and_chunk(scenario):
    with pytest.raises(ConfigError, match="2 seeds"):
        run_sweep(scenario, GRID, seeds=1, steps=1)
    with pytest.raises(ConfigError, match="chunk"):
        run_sweep(scenario, GRID, seeds=3, steps=1, chunk=2)


# ------------------------------------------------------------------------------------------ running
def test_sixteen_arms_run_as_one_batch(swept):
    table, result, timings = swept
    assert timings["batches"] == 1 and timings["batch_size"] == 16 * SEEDS
    assert result.trajectory.num_scenarios == 16 * SEEDS
    assert len(table) == 16 * SEEDS and table.arm.nunique() == 16
    assert list(table.columns[:4]) == ["arm", "label_h", "prebunk_share", "seed"]
    assert str(table.label_h.dtype) == "Int64" and table.label_h.isna().sum() == 4 * SEEDS
    assert table.prebunk_share.dtype == np.float64
    assert result.baseline == "label_h=none,prebunk_share=0"  # the arm without interventions
    # the grid does something: early labels and prebunking cut the reach
    reach = table.groupby("arm").final_reach.mean()
    assert reach["label_h=1,prebunk_share=0.5"] < reach["label_h=none,prebunk_share=0"]


def test_batched_arms_equal_arms_run_one_by_one(scenario, swept):
    table, result, _ = swept
    graph = scenario.build_graph(scenario.agents, scenario.seed, "cpu")
    population = scenario.build_population(graph, 1, scenario.seed)
    model = scenario.build_model(graph, scenario.dt, scenario.seed)
    arms = grid_arms(scenario, graph, GRID)
    assert list(arms) == list(result.arms)
    for name, interventions in arms.items():
        alone = counterfactual(model, population, graph, {name: interventions}, steps=STEPS, seeds=result.seeds)
        batched = table[table.arm == name].sort_values("seed")
        np.testing.assert_array_equal(alone.table.seed.to_numpy(), batched.seed.to_numpy())
        np.testing.assert_array_equal(alone.table.final_reach.to_numpy(), batched.final_reach.to_numpy(), err_msg=name)



def test_other_interventions_batched_equal_alone(scenario):
    """Downranking (exposure scale), suspension (source gate) and rebuttals (followers' logits) too."""
    small = dataclasses.replace(scenario, agents=600)
    grid = {"downrank": [0, 0.5], "suspend_top": [0, 10], "rebuttal_every_h": [None, 2]}
    table, result = run_sweep(small, grid, seeds=SEEDS, steps=8)
    assert str(table.suspend_top.dtype) == "int64" and table.downrank.dtype == np.float64
    graph = small.build_graph(small.agents, small.seed, "cpu")
    population = small.build_population(graph, 1, small.seed)
    model = small.build_model(graph, small.dt, small.seed)
    for name, interventions in grid_arms(small, graph, grid).items():
        alone = counterfactual(model, population, graph, {name: interventions}, steps=8, seeds=result.seeds)
        batched = table[table.arm == name].sort_values("seed")
        for outcome in ("final_reach", "final_reshares", "half_time_h", "max_depth"):
            np.testing.assert_array_equal(alone.table[outcome].to_numpy(), batched[outcome].to_numpy(), err_msg=name)


def test_chunked_equals_unchunked(scenario, swept):
    table, result, _ = swept
    timings: dict = {}
    chunked, merged = run_sweep(scenario, GRID, seeds=SEEDS, steps=STEPS, chunk=3 * SEEDS + 1, timings=timings)
    assert timings["batches"] == 6 and timings["batch_size"] == 3 * SEEDS
    pd.testing.assert_frame_equal(chunked, table)
    assert merged.arms == result.arms and merged.baseline == result.baseline
    assert merged.trajectory.num_scenarios == 16 * SEEDS
    np.testing.assert_array_equal(merged.trajectory["reshares"].numpy(), result.trajectory["reshares"].cpu().numpy())
    pd.testing.assert_frame_equal(merged.differences(), result.differences())


# ------------------------------------------------------------------------------------------ command line
def test_cli_writes_table_and_plot(tmp_path, capsys):
    code = main(["sweep", "misinformation", "--grid", "label_h=1,none", "--grid", "prebunk_share=0,0.3",
                 "--grid", "downrank=0,0.5", "--agents", "600", "--seeds", "2", "--steps", "8", "--chunk", "4",
                 "--out", str(tmp_path), "--quiet"])
    assert code == 0
    folder = tmp_path / "misinformation-sweep"
    table = pd.read_parquet(folder / "sweep.parquet")
    expected = {"arm", "seed", "label_h", "prebunk_share", "downrank", "final_reach", "half_time_h", "max_depth"}
    assert expected <= set(table.columns)
    assert len(table) == 8 * 2 and table.arm.nunique() == 8
    assert table.label_h.isna().sum() == 4 * 2 and set(table.prebunk_share) == {0.0, 0.3}
    assert (table.final_reach >= 3).all()
    assert (folder / "sweep.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "8 arms (2 label_h x 2 prebunk_share x 2 downrank) x 2 seeds" in out
    assert "4 batch(es)" in out and "final_reach_adjusted vs baseline" in out and "sweep.parquet" in out


def test_cli_errors_are_clear(capsys):
    assert main(["sweep", "misinformation", "--grid", "label_hours=1", "--agents", "100", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "ConfigError" in err and "prebunk_share" in err
    assert main(["sweep", "default", "--grid", "x=1", "--agents", "100", "--quiet"]) == 2
    assert "sweep" in capsys.readouterr().err
    assert main(["sweep", "misinformation", "--grid", "label_h=", "--quiet"]) == 2
    assert "at least one value" in capsys.readouterr().err
