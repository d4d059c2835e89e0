"""Executors: Ray runs the batches the in-process executor runs and gives the same numbers, bit for bit
on the CPU, also after a worker died mid-run; without Ray the same code runs here.

The Ray tests share one local Ray instance (2 CPUs), started once for the module: starting Ray and
its worker processes is what takes the time.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
import math
import os
import signal
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import lpm
from lpm.cli import build_parser, main
from lpm.dynamics import Cascade, Item
from lpm.errors import ConfigError, DependencyError
from lpm.executor import InProcessExecutor, RayExecutor, make_executor, resolve_executor, task_device
from lpm.interventions import FactCheckLabel, Prebunking
from lpm.levers import LabelTiming, TargetedPrebunking, agent_features
from lpm.optimize import evaluate_plans, final_reach, optimize
from lpm.scenario import load_scenario
from lpm.sweep import run_sweep

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed (pip install 'lpm[ray]')")

AGENTS, STEPS, SEEDS = 500, 16, (0, 1, 2)  # 16 steps: 2.7 h, every arm below acts


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    from ray import cloudpickle

    # the killing wrapper below travels by value: workers need not import this test file
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def world():
    scenario = dataclasses.replace(load_scenario("misinformation"), agents=AGENTS)
    graph = scenario.build_graph(scenario.agents, scenario.seed, "cpu")
    population = scenario.build_population(graph, 1, scenario.seed)
    model = scenario.build_model(graph, scenario.dt, scenario.seed)
    arms = {name: interventions for name, interventions in scenario.arms(graph).items()
            if name in ("none", "label@1h", "rebuttal_early", "suspend_top10", "prebunk30")}
    return scenario, graph, population, model, arms


def _assert_same_result(a, b) -> None:
    """Tables, recorded observables and final states equal bit for bit."""
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    assert a.arms == b.arms and a.seeds == b.seeds and a.baseline == b.baseline
    for name in a.trajectory.values:
        assert torch.equal(a.trajectory.values[name], b.trajectory.values[name]), name
    for x, y in zip(a.trajectory.final.flat(), b.trajectory.final.flat()):
        assert torch.equal(x, y)


class _TransmissibilityDraws:
    """A posterior over the cascade's transmissibility: evenly spread draws in [lo, hi]."""

    def draw(self, count: int, seed: int = 0) -> list[dict[str, float]]:
        return [{"transmissibility": 0.01 + 0.04 * (k + 0.5) / count} for k in range(count)]

    def apply(self, model, values) -> list[str]:
        q = values["transmissibility"]
        with torch.no_grad():
            model.cascade.raw_transmissibility.fill_(math.log(q / (1 - q)))
        return ["transmissibility"]


# ------------------------------------------------------------------------------------- without Ray
def test_in_process_executor_maps_in_order_with_shared_arguments():
    executor = resolve_executor(None)
    assert isinstance(executor, InProcessExecutor) and not executor.remote
    assert executor.map(lambda a, b, task: a * task + b, [3, 1, 2], shared=(10, 1)) == [31, 11, 21]
    assert executor.map(len, []) == []
    assert task_device(executor, "cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="Expected an executor"):
        resolve_executor("ray")


def test_executor_choices_are_checked():
    assert isinstance(make_executor("inprocess"), InProcessExecutor)
    with pytest.raises(ConfigError, match=r"among \['inprocess', 'ray'\] \(got 'dask'\)"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="--executor ray with --address"):
        make_executor("inprocess", "auto")
    for command in (["run"], ["sweep"], ["forecast", "cascades", "--params", "p", "--data", "d"],
                    ["optimize", "misinformation", "--levers", "prebunk"]):
        args = build_parser().parse_args(command + ["--executor", "ray", "--address", "10.0.0.1:6379"])
        assert (args.executor, args.address) == ("ray", "10.0.0.1:6379")


def test_asking_for_ray_without_it_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as where it is not installed
    with pytest.raises(DependencyError, match=r"pip install 'lpm\[ray\]'"):
        RayExecutor()
    with pytest.raises(ImportError):  # a DependencyError is an ImportError too
        make_executor("ray", "auto")
    assert main(["sweep", "misinformation", "--agents", "200", "--steps", "2", "--seeds", "2", "--grid",
                 "label_h=1,none", "--executor", "ray", "--out", str(tmp_path), "--logger", "none", "--quiet"]) == 2
    assert "lpm[ray]" in capsys.readouterr().err


def test_remote_executors_refuse_runs_that_record_gradients(world):
    _, graph, population, model, arms = world

    class Remote(InProcessExecutor):
        remote = True

    with pytest.raises(ConfigError, match="gradients"):
        lpm.counterfactual(model, population, graph, arms, steps=2, seeds=2, estimator=lpm.relax.Expected(),
                           executor=Remote())


# ------------------------------------------------------------------------------------------ on Ray
@needs_ray
def test_ray_addresses_are_checked():
    for address in ("", "localhost", "host:port", "host:70000", 6379):
        with pytest.raises(ConfigError, match="Ray address"):
            RayExecutor(address)
    with pytest.raises(ConfigError, match="num_cpus"):
        RayExecutor(num_cpus=0)
    assert RayExecutor("ray://head:10001").address == "ray://head:10001"


@needs_ray
def test_counterfactual_on_ray_equals_in_process(ray_instance, world):
    """Five arms in batches of one arm, each a Ray task; with a posterior too (one draw per seed)."""
    _, graph, population, model, arms = world
    run = dict(steps=STEPS, seeds=SEEDS, chunk=len(SEEDS))
    here = lpm.counterfactual(model, population, graph, arms, **run)
    there = lpm.counterfactual(model, population, graph, arms, **run, executor=RayExecutor())
    _assert_same_result(here, there)
    # a real comparison: the arms' (control-variate adjusted) reach differs, so does each seed's
    assert len(here.arms) == 5 and here.table.groupby("arm").final_reach_adjusted.mean().nunique() == 5
    assert here.table.groupby("seed").final_reach_adjusted.mean().nunique() == len(SEEDS)

    posterior = dict(posterior=_TransmissibilityDraws(), posterior_seed=3)
    here = lpm.counterfactual(model, population, graph, arms, **run, **posterior)
    there = lpm.counterfactual(model, population, graph, arms, **run, **posterior, executor=RayExecutor())
    _assert_same_result(here, there)
    _assert_same_result(here.fixed_parameters, there.fixed_parameters)


def _die_once(marker: str, attempts: str, fn, *args):
    """Run ``fn``; the first task to finish then kills its own worker process before answering."""
    result = fn(*args)
    with open(attempts, "a") as log:
        log.write(f"{os.getpid()}\n")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return result
    os.kill(os.getpid(), signal.SIGKILL)


class _KillOnce(RayExecutor):
    def __init__(self, marker, attempts) -> None:
        super().__init__(max_retries=2)
        self.marker, self.attempts = str(marker), str(attempts)

    def map(self, fn, tasks, *, shared=(), device="cpu"):
        return super().map(functools.partial(_die_once, self.marker, self.attempts, fn), tasks, shared=shared,
                           device=device)


@needs_ray
def test_sweep_on_ray_equals_in_process_also_after_a_killed_worker(ray_instance, world, tmp_path):
    scenario = world[0]
    grid = {"label_h": [1, None], "prebunk_share": [0, 0.3]}
    run = dict(seeds=len(SEEDS), steps=STEPS, chunk=len(SEEDS))
    here, here_result = run_sweep(scenario, grid, **run)
    there, there_result = run_sweep(scenario, grid, **run, executor=RayExecutor())
    pd.testing.assert_frame_equal(here, there, check_exact=True)
    _assert_same_result(here_result, there_result)

    marker, attempts = tmp_path / "killed", tmp_path / "attempts"
    again, again_result = run_sweep(scenario, grid, **run, executor=_KillOnce(marker, attempts))
    assert marker.exists()  # a worker died mid-run ...
    assert len(attempts.read_text().split()) == 4 + 1  # ... and its batch ran again: 4 batches, 5 runs
    pd.testing.assert_frame_equal(here, again, check_exact=True)
    _assert_same_result(here_result, again_result)


@needs_ray
def test_optimize_evaluations_on_ray_equal_in_process(ray_instance):
    graph = lpm.Graph.holme_kim(80, 3, 0.3, seed=1)
    population = lpm.PopulationState.sample(80, seed=1, batch=1, topics=1, opinion="bimodal", dtype=torch.float64)
    hubs = torch.argsort(graph.out_degree(), descending=True)[:2].tolist()
    model = lpm.Model(cascade=Cascade([Item(source=tuple(hubs), stance=1.0)], transmissibility=0.15), dt=1.0).double()
    plans = [[], [FactCheckLabel(0, at=1.0)], [Prebunking([0], 80, at=0.0, share=0.3)]]
    here = evaluate_plans(model, population, graph, plans, final_reach(), steps=6, seeds=(0, 1))
    there = evaluate_plans(model, population, graph, plans, final_reach(), steps=6, seeds=(0, 1), chunk=1,
                           executor=RayExecutor())
    assert torch.equal(here, there) and here.unique().numel() == 3

    def plan(executor):
        features = agent_features(graph, population)
        levers = [TargetedPrebunking(features, 0.1), LabelTiming(earliest_h=0.5, latest_h=6.0, at=3.0)]
        return optimize(model, population, graph, levers, final_reach(), steps=6, iterations=2, validation_seeds=3,
                        tpe=False, chunk=8, executor=executor)

    here, there = plan(None), plan(RayExecutor())
    assert here.grid == there.grid and here.values == there.values
    pd.testing.assert_frame_equal(here.validation.table, there.validation.table, check_exact=True)


@needs_ray
def test_forecast_ensemble_on_ray_equals_in_process(ray_instance, tmp_path, monkeypatch):
    """The simulated ensemble is the same bit for bit. The metrics computed from it here are equal up
    to MKL's rounding in the least-squares fits, which varies between calls in one process (seen
    without any Ray task, after ray.init alone), so they are compared to 1e-12."""
    import lpm.calibration.cascade_forecast as cascade_forecast
    from lpm.calibration.common import save_params
    from lpm.calibration.fit_cascades import DEFAULTS, CascadeWorld, forecast, simulate_cascades
    from lpm.data import write_rumdetect

    world = CascadeWorld(agents=300, items=3)
    data = write_rumdetect(simulate_cascades(world, dict(DEFAULTS, audience=900.0), hours=[1.0, 12.0], batch=6,
                                             seed=9), tmp_path / "data")
    params = save_params(tmp_path / "fitted.json", "cascades", dict(DEFAULTS, audience=900.0),
                         {"world": world.__dict__})
    ensembles = []
    nearest = cascade_forecast._nearest_growth

    def spy(features, ensemble_features, growth, neighbours):
        ensembles.append((ensemble_features.clone(), growth.clone()))
        return nearest(features, ensemble_features, growth, neighbours)

    monkeypatch.setattr(cascade_forecast, "_nearest_growth", spy)
    run = dict(observe_h=1.0, horizon_h=12.0, split="all", batch=4, neighbours=4)
    here = forecast(params, [data], **run)
    there = forecast(params, [data], **run, chunk=1, executor=RayExecutor())
    assert len(ensembles) == 4  # test and training cascades, each run
    for (features, growth), (features_ray, growth_ray) in zip(ensembles[:2], ensembles[2:]):
        assert features.shape == (4 * 3, 7) and growth.unique().numel() > 1
        assert torch.equal(features, features_ray) and torch.equal(growth, growth_ray)
    assert here.keys() == there.keys() and here["ensemble"] == there["ensemble"] == 4 * 3
    for name, value in here.items():
        if isinstance(value, float):
            assert value == pytest.approx(there[name], rel=1e-12, abs=1e-15, nan_ok=True), name
        else:
            assert value == there[name], name


@needs_ray
def test_cli_sweep_and_run_with_executor_ray_write_the_in_process_tables(ray_instance, tmp_path):
    common = ["sweep", "misinformation", "--agents", "300", "--steps", "4", "--seeds", "2", "--grid", "label_h=1,none",
              "--chunk", "2", "--logger", "none", "--quiet", "--overwrite"]
    assert main(common + ["--out", str(tmp_path / "here")]) == 0
    assert main(common + ["--out", str(tmp_path / "there"), "--executor", "ray"]) == 0
    here = pd.read_parquet(tmp_path / "here" / "misinformation-sweep" / "sweep.parquet")
    there = pd.read_parquet(tmp_path / "there" / "misinformation-sweep" / "sweep.parquet")
    pd.testing.assert_frame_equal(here, there, check_exact=True)
    assert ray_instance.is_initialized()  # the CLI leaves a Ray instance it joined running

    common = ["run", "misinformation", "--agents", "300", "--steps", "4", "--seeds", "2", "--logger", "none", "--quiet"]
    assert main(common + ["--out", str(tmp_path / "here")]) == 0
    assert main(common + ["--out", str(tmp_path / "there"), "--executor", "ray"]) == 0
    here = pd.read_parquet(tmp_path / "here" / "misinformation" / "arms.parquet")
    there = pd.read_parquet(tmp_path / "there" / "misinformation" / "arms.parquet")
    assert here.arm.nunique() == 11
    pd.testing.assert_frame_equal(here, there, check_exact=True)
