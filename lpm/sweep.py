"""Parameter sweeps: every point of a grid of intervention parameters is an arm, all run in one batch.

A scenario with a ``sweep`` function (``(graph, **params) -> [interventions]``, see
:class:`lpm.scenario.Scenario`) turns plain parameters into one arm's interventions. A grid such as
``label_h=1,6,24,none x prebunk_share=0,0.1,0.3`` is its cartesian product: 12 arms, each run under
the same seeds (common random numbers), arms x seeds stacked into the batch dimension of a single
:func:`lpm.counterfactual` simulation. Because a scenario's draws depend only on its seed, splitting
the arms into several batches (``chunk``) to bound memory gives the same numbers; on the CPU,
large batches are split by default (:data:`lpm.counterfactual.CPU_BATCH_AGENTS`), as they run faster so.

``lpm sweep NAME --grid key=v1,v2 [--grid ...]`` writes ``<out>/<name>/sweep.parquet`` (one row per
arm and seed, one column per grid key) and ``sweep.png`` (final reach against the first key).
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from lpm.counterfactual import OUTCOMES, CounterfactualResult, arm_batches, check_chunk, counterfactual
from lpm.errors import ConfigError
from lpm.executor import Executor
from lpm.graph import Graph
from lpm.interventions import Intervention
from lpm.provenance import check_run_folder, provenance, to_yaml
from lpm.io_atomic import (atomic_path, atomic_write_json, atomic_write_text, file_sha256,
                           marked_incomplete)

__all__ = ["parse_grid", "grid_points", "grid_arms", "arm_name", "format_value", "sweep_keywords", "run_sweep",
           "outcomes_of", "plot_sweep", "write_sweep", "SUMMARY"]

#: A sweep folder's record, written last (:func:`write_sweep`).
SUMMARY = "summary.json"

log = logging.getLogger(__name__)

GridValue = Union[int, float, None]
Grid = dict[str, list[Any]]


# ---------------------------------------------------------------------------------------------- the grid
def _parse_value(token: str, entry: str) -> GridValue:
    if token.lower() == "none":
        return None
    try:
        return int(token)
    except ValueError:
        pass
    try:
        value = float(token)
    except ValueError:
        raise ConfigError(f"Expected grid values that are ints, floats or 'none' in {entry!r} "
                          f"(got {token!r})") from None
    if not math.isfinite(value):
        raise ConfigError(f"Expected finite grid values in {entry!r} (got {token!r})")
    return value


def parse_grid(entries: Sequence[str]) -> Grid:
    """``["label_h=1,6,none", "prebunk_share=0,0.1"]`` -> ``{"label_h": [1, 6, None], "prebunk_share": [0, 0.1]}``.

    Each entry is ``key=v1,v2,...``; a value is an int, a float, or ``none`` (any case). Keys keep the
    order they are given in (the first key is the x axis of the plot).

    Raises:
        ConfigError: an entry that is not ``key=values``, a key that is not an identifier, an empty
            value list or an empty value, a value that is not a number or ``none``, a key given
            twice, or a value repeated within a key.
    """
    if isinstance(entries, str):
        entries = [entries]
    grid: Grid = {}
    for entry in entries:
        if not isinstance(entry, str) or "=" not in entry:
            raise ConfigError(f"Expected a grid entry of the form key=v1,v2,... (got {entry!r})")
        key, _, text = entry.partition("=")
        key = key.strip()
        if not key.isidentifier():
            raise ConfigError(f"Expected a grid key that is a Python identifier in {entry!r} (got {key!r})")
        if key in grid:
            raise ConfigError(f"Expected each grid key once (got {key!r} twice)")
        if not text.strip():
            raise ConfigError(f"Expected at least one value for grid key {key!r} (got {entry!r})")
        tokens = [t.strip() for t in text.split(",")]
        if any(not t for t in tokens):
            raise ConfigError(f"Expected comma-separated values without empty ones in {entry!r}")
        grid[key] = [_parse_value(t, entry) for t in tokens]
    return _checked(grid)


def _checked(grid: Mapping[str, Sequence[Any]] | Sequence[str]) -> Grid:
    """A grid as ``{key: [values]}`` (parsing ``key=...`` strings), with non-empty, distinct values."""
    if isinstance(grid, str) or (isinstance(grid, Sequence) and not isinstance(grid, Mapping)):
        return parse_grid(grid)
    if not isinstance(grid, Mapping):
        raise ConfigError(f"Expected a grid {{key: [values]}} or key=v1,v2 strings (got {type(grid).__name__})")
    checked: Grid = {}
    for key, values in grid.items():
        if not (isinstance(key, str) and key.isidentifier()):
            raise ConfigError(f"Expected grid keys that are Python identifiers (got {key!r})")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise ConfigError(f"Expected a list of values for grid key {key!r} (got {values!r})")
        values = list(values)
        if not values:
            raise ConfigError(f"Expected at least one value for grid key {key!r} (got none)")
        for i, value in enumerate(values):
            if any(_same(value, other) for other in values[:i]):
                raise ConfigError(f"Expected distinct values for grid key {key!r} (got {format_value(value)} twice)")
        checked[key] = values
    return checked


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return bool(a == b)


def format_value(value: Any) -> str:
    """A grid value as ``--grid`` and arm names write it (``none``, ``1``, ``0.1``)."""
    if value is None:
        return "none"
    if isinstance(value, float):
        return repr(value)
    return str(value)


_format = format_value


def arm_name(point: Mapping[str, Any]) -> str:
    """``{"label_h": 1, "prebunk_share": 0.1}`` -> ``"label_h=1,prebunk_share=0.1"``."""
    return ",".join(f"{key}={format_value(value)}" for key, value in point.items())


def grid_points(grid: Mapping[str, Sequence[Any]] | Sequence[str]) -> list[dict[str, Any]]:
    """The cartesian product of the grid, in order (the last key varies fastest)."""
    grid = _checked(grid)
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def sweep_keywords(scenario) -> Optional[tuple[str, ...]]:
    """The keywords the scenario's ``sweep`` function accepts (``None``: any, it takes ``**kwargs``).

    Raises:
        ConfigError: the scenario has no ``sweep`` function.
    """
    sweep = getattr(scenario, "sweep", None)
    if sweep is None:
        raise ConfigError(f"Expected scenario {scenario.name!r} to define sweep=(graph, **params) -> [interventions] "
                          f"to be swept (got none)")
    params = list(inspect.signature(sweep).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                  inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    graph_param = positional[0].name if positional else None  # the graph
    return tuple(p.name for p in params if p.name != graph_param and p.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))


def _check_keys(scenario, grid: Grid) -> None:
    accepted = sweep_keywords(scenario)
    if not grid:
        raise ConfigError("Expected at least one grid key (got none)")
    if accepted is None:
        return
    unknown = [key for key in grid if key not in accepted]
    if unknown:
        raise ConfigError(f"Expected grid keys among the keywords of {scenario.name}'s sweep function "
                          f"{list(accepted)} (got {unknown})")


def grid_arms(scenario, graph: Graph,
              grid: Mapping[str, Sequence[Any]] | Sequence[str]) -> dict[str, list[Intervention]]:
    """``{arm name: interventions}`` for every point of the grid, built by ``scenario.sweep(graph, **point)``.

    Raises:
        ConfigError: a scenario without ``sweep``, an empty grid, or a key the sweep function does
            not accept (the message names the keywords it does accept); whatever ``sweep`` raises
            for a value out of its domain.
    """
    grid = _checked(grid)
    _check_keys(scenario, grid)
    arms: dict[str, list[Intervention]] = {}
    for point in grid_points(grid):
        interventions = list(scenario.sweep(graph, **point))
        for intervention in interventions:
            if not isinstance(intervention, Intervention):
                raise ConfigError(f"Expected {scenario.name}'s sweep to return interventions for {arm_name(point)} "
                                  f"(got {type(intervention).__name__})")
        arms[arm_name(point)] = interventions
    return arms


# ---------------------------------------------------------------------------------------------- running
def _column(values: list[Any]):
    """A table column for one grid key: ints (nullable when ``none`` appears), floats (NaN for none), or objects."""
    import pandas as pd

    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pd.array(values, dtype="Int64") if len(present) < len(values) else np.array(values, dtype=np.int64)
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return np.array(values, dtype=object)


def run_sweep(
    scenario,
    grid: Mapping[str, Sequence[Any]] | Sequence[str],
    *,
    seeds: int | Sequence[int] | None = None,
    device: str | torch.device = "cpu",
    steps: Optional[int] = None,
    chunk: Optional[int] = None,
    progress: bool = False,
    baseline: Optional[str] = None,
    timings: Optional[dict] = None,
    executor: Optional[Executor] = None,
):
    """Run every point of ``grid`` as an arm of ``scenario``, arms x seeds in one batch.

    Args:
        scenario: a :class:`lpm.scenario.Scenario` with a ``sweep`` function.
        grid: ``{key: [values]}`` or ``["key=v1,v2", ...]`` (see :func:`parse_grid`); keys are
            keywords of ``scenario.sweep``.
        seeds: seeds per arm: a count ``K`` (seeds ``scenario.seed * 1000 + 0..K-1``, as ``lpm run``
            uses) or the seeds themselves; default ``scenario.seeds``. Every arm gets the same ones.
        device: where to simulate.
        steps: simulated steps (default: the scenario's horizon).
        chunk: at most this many scenarios (arms x seeds) per batch; whole arms go together, so it
            must be at least the number of seeds. Default: one batch on a GPU, batches of at most
            :data:`lpm.counterfactual.CPU_BATCH_AGENTS` agents x scenarios on the CPU. Chunking
            changes memory and speed, not the numbers.
        progress: show a progress bar per batch.
        baseline: the arm differences are taken against (default: the first arm without
            interventions, else the first arm).
        timings: a dict to fill with ``graph_s``, ``setup_s``, ``simulate_s``, ``batches`` and
            ``batch_size`` (the largest batch).
        executor: where the batches run (:mod:`lpm.executor`; default here), one task per batch;
            the numbers do not depend on it.

    Returns:
        ``(table, result)``: ``table`` is ``result.table`` with one column per grid key after
        ``arm`` (one row per arm and seed); ``result`` is the :class:`CounterfactualResult` over all
        arms (batches concatenated in arm order when chunked).

    Raises:
        ConfigError: see :func:`grid_arms`; fewer than 2 seeds, a ``chunk`` below the number of
            seeds, an unknown baseline, or CUDA requested without CUDA.
    """
    grid = _checked(grid)
    _check_keys(scenario, grid)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("Expected a CUDA device to be available for --device cuda (none found)")
    seeds = scenario.seeds if seeds is None else seeds
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seed_list = [scenario.seed * 1000 + s for s in range(seeds)]
    else:
        seed_list = [int(s) for s in seeds]
    if len(seed_list) < 2:
        raise ConfigError(f"Expected at least 2 seeds per arm (got {len(seed_list)})")
    check_chunk(chunk, len(seed_list))  # before anything is built
    steps = scenario.steps if steps is None else steps
    timings = {} if timings is None else timings

    start = time.perf_counter()
    graph = scenario.build_graph(scenario.agents, scenario.seed, device)
    timings["graph_s"] = time.perf_counter() - start
    start = time.perf_counter()
    population = scenario.build_population(graph, 1, scenario.seed)
    model = scenario.build_model(graph, scenario.dt, scenario.seed)
    build_record = getattr(scenario, "build_record", None)  # outcomes of models without a cascade, as lpm run
    record = None if build_record is None else build_record(graph, scenario.seed)
    arms = grid_arms(scenario, graph, grid)
    names = list(arms)
    if baseline is None:
        baseline = next((name for name in names if not arms[name]), names[0])
    elif baseline not in arms:
        raise ConfigError(f"Expected the baseline to be one of the arms {names} (got {baseline!r})")
    timings["setup_s"] = time.perf_counter() - start

    groups = arm_batches(len(names), len(seed_list), graph.num_nodes, device, chunk)
    start = time.perf_counter()
    with torch.no_grad():
        result = counterfactual(model, population, graph, arms, steps=steps, seeds=seed_list, device=device,
                                baseline=baseline, record=record, chunk=chunk, progress=progress, executor=executor)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timings["simulate_s"] = time.perf_counter() - start
    timings["ms_per_step"] = 1e3 * timings["simulate_s"] / max(steps, 1)
    timings["batches"] = len(groups)
    timings["batch_size"] = max(len(g) for g in groups) * len(seed_list)

    table = result.table.copy()
    points = grid_points(grid)
    for k, key in enumerate(grid):
        table.insert(1 + k, key, _column([point[key] for point in points for _ in seed_list]))
    return table, result


# ---------------------------------------------------------------------------------------------- reporting
def outcomes_of(result: CounterfactualResult) -> tuple[str, ...]:
    """The outcomes a result tabulates (the first is the headline one: reach for cascades)."""
    return tuple(getattr(result, "outcomes", OUTCOMES))


def _arm_rows(result: CounterfactualResult, grid: Grid) -> list[tuple[dict, Any]]:
    summary = result.summary().set_index("arm")
    return [(point, summary.loc[arm_name(point)]) for point in grid_points(grid)]


def plot_sweep(result: CounterfactualResult, grid: Mapping[str, Sequence[Any]] | Sequence[str],
               outcome: Optional[str] = None, *, scenario: str = "", level: float = 0.9):
    """The headline figure of a sweep (:func:`lpm.plots.sweep_figure`): every arm's paired difference
    of ``outcome`` (default: the headline of :func:`lpm.tables.sweep_table`) from the baseline with its
    interval, also against the first grid key. Returns a :class:`matplotlib.figure.Figure`."""
    from lpm.plots import sweep_figure  # matplotlib is loaded only when drawing

    grid = _checked(grid)
    return sweep_figure(result, {arm_name(point): point for point in grid_points(grid)}, outcome,
                        scenario=scenario, level=level)


def write_sweep(table, result: CounterfactualResult, grid: Mapping[str, Sequence[Any]] | Sequence[str],
                folder: str | os.PathLike, *, scenario: str = "", config: Optional[Mapping[str, Any]] = None,
                argv: Optional[Sequence[str]] = None, overwrite: bool = False,
                timings: Optional[Mapping[str, float]] = None) -> dict[str, Path]:
    """``sweep.parquet`` (the table), ``sweep.png``, ``config.yaml`` and ``summary.json`` under ``folder``,
    with an ``INCOMPLETE-sweep`` marker there until all are in place.

    ``summary.json`` (written last) holds the grid, the per-arm summary and paired differences, how
    the sweep was made (:func:`lpm.provenance.provenance`, with ``config`` and ``argv``) and every
    output's SHA-256; ``config.yaml`` is ``config``, which ``lpm sweep --config`` reads back.

    Raises:
        ConfigError: ``folder`` holds a finished sweep or run and ``overwrite`` is false.
    """
    from lpm.plots import save_figure

    grid = _checked(grid)
    check_run_folder(folder, overwrite=overwrite, summary=SUMMARY)
    config = {"grid": grid} if config is None else dict(config)
    with marked_incomplete(folder, "sweep") as folder:  # the outputs appear together
        paths = {"table": folder / "sweep.parquet"}
        with atomic_path(paths["table"]) as tmp:
            table.to_parquet(tmp, index=False)
        paths["plot"] = save_figure(plot_sweep(result, grid, scenario=scenario), folder / "sweep.png")
        paths["config"] = atomic_write_text(folder / "config.yaml", to_yaml(config))
        summary = {
            "kind": "sweep",
            "grid": grid,
            "arms": len(result.arms),
            "baseline": result.baseline,
            "timings_s": dict(timings or {}),
            "provenance": provenance(config=config, seeds=result.seeds, argv=argv),
            "summary": result.summary().to_dict(orient="records"),
            "differences": result.differences().to_dict(orient="records"),
            "outputs": {name: {"file": path.name, "sha256": file_sha256(path)} for name, path in paths.items()},
        }
        paths["summary"] = atomic_write_json(folder / SUMMARY, summary)
    log.info("wrote %d outputs to %s", len(paths), folder)
    return paths
