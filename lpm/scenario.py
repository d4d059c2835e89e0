"""A scenario: a plain description of a run (graph, population, model, horizon), and how to run it.

Scenarios live as modules in ``scenarios/`` (installed as ``lpm.scenarios``), each exposing a
``SCENARIO`` object; ``lpm run NAME`` imports ``lpm.scenarios.NAME``. A scenario is a frozen
dataclass, so variants are ``dataclasses.replace(SCENARIO, agents=...)`` and a sweep is a list
comprehension.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Sequence

import torch

from lpm.counterfactual import CounterfactualResult, counterfactual
from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.interventions import Intervention
from lpm.io_atomic import atomic_write_json
from lpm.model import Model
from lpm.observables import DEFAULT, Observable
from lpm.simulate import Trajectory, simulate
from lpm.state import PopulationState
from lpm.uncertainty import ParameterDraws, interval_widening

if TYPE_CHECKING:
    from lpm.archetypes import ArchetypeSetup

__all__ = ["Scenario", "ScenarioResult", "load_scenario", "run_scenario"]


@dataclass(frozen=True)
class Scenario:
    """Everything needed to run one simulation.

    Args:
        name: short name; outputs go to ``<out>/<name>/``.
        description: one paragraph for humans.
        build_graph: ``(agents, seed, device) -> Graph``.
        build_population: ``(graph, batch, seed) -> PopulationState`` on the graph's device.
        build_model: ``(graph, dt, seed) -> Model``.
        agents: N.
        days: simulated horizon in days.
        dt: step length in hours.
        batch: scenarios simulated together (B).
        seed: seed of graph, population and dynamics.
        record: observables to record.
        arms: optional ``(graph) -> {arm: [interventions]}``; a scenario with arms runs as a
            counterfactual (:func:`lpm.counterfactual`), arms x seeds in one batch.
        seeds: seeds per arm (with ``arms``).
        sweep: optional ``(graph, **params) -> [interventions]``: one arm's interventions from plain
            keyword parameters, so that ``lpm sweep`` (:func:`lpm.sweep.run_sweep`) can build an arm
            for every point of a grid of them; its keyword names are the keys a grid may use.
        contexts: texts that archetypes are asked about (items, rebuttals, guidance messages). A
            scenario with contexts can run with archetypes (``lpm run --archetypes K``): its
            ``build_model`` and ``arms`` then also receive ``archetypes=`` an
            :class:`lpm.archetypes.ArchetypeSetup` whose decision table covers these texts.
    """

    name: str
    description: str
    build_graph: Callable[[int, int, torch.device], Graph]
    build_population: Callable[[Graph, int, int], PopulationState]
    build_model: Callable[[Graph, float, int], Model]
    agents: int = 100_000
    days: float = 7.0
    dt: float = 1.0 / 6.0
    batch: int = 1
    seed: int = 0
    record: Mapping[str, Observable] = field(default_factory=lambda: dict(DEFAULT))
    arms: Optional[Callable[[Graph], Mapping[str, Sequence[Intervention]]]] = None
    seeds: int = 8
    build_record: Optional[Callable[[Graph, int], Mapping[str, Observable]]] = None
    sweep: Optional[Callable[..., Sequence[Intervention]]] = None
    contexts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (isinstance(self.agents, int) and self.agents >= 2):
            raise ConfigError(f"Expected agents >= 2 (got {self.agents!r})")
        if not self.days > 0 or not self.dt > 0:
            raise ConfigError(f"Expected positive days and dt (got days={self.days}, dt={self.dt})")
        if not (isinstance(self.batch, int) and self.batch >= 1):
            raise ConfigError(f"Expected batch >= 1 (got {self.batch!r})")
        if isinstance(self.seeds, bool) or not (isinstance(self.seeds, int) and self.seeds >= 1):
            raise ConfigError(f"Expected seeds >= 1 per arm (got {self.seeds!r})")

    @property
    def steps(self) -> int:
        return max(1, round(self.days * 24.0 / self.dt))


@dataclass(frozen=True, eq=False)
class ScenarioResult:
    """A finished run: the trajectory, the counterfactual (for scenarios with arms), and what it cost."""

    scenario: Scenario
    trajectory: Trajectory
    graph: Graph
    timings_s: dict[str, float]
    device: str
    counterfactual: Optional[CounterfactualResult] = None
    fitted: tuple[str, ...] = ()


def load_scenario(name_or_path: str) -> Scenario:
    """``SCENARIO`` from ``lpm.scenarios.<name>`` or from a ``.py`` file path.

    Raises:
        ConfigError: unknown name, unreadable file, or a module without a ``SCENARIO``.
    """
    if name_or_path.endswith(".py"):
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"Expected a scenario file at {path} (not found)")
        spec = importlib.util.spec_from_file_location(f"lpm_user_scenario_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except SyntaxError as exc:
            raise ConfigError(f"Expected a scenario file of valid Python at {path} (got a syntax error at line "
                              f"{exc.lineno}: {exc.msg})") from None
        except Exception as exc:  # noqa: BLE001 - user code: any failure is reported as the file's
            line = next((f.lineno for f in reversed(traceback.extract_tb(exc.__traceback__))
                         if Path(f.filename) == path), None)
            where = f"{path}, line {line}" if line is not None else str(path)
            raise ConfigError(f"Expected the scenario file {where} to run (got {type(exc).__name__}: {exc})") from None
    else:
        if not name_or_path.isidentifier():
            raise ConfigError(f"Expected a scenario name (a Python identifier) or a .py path (got {name_or_path!r})")
        try:
            module = importlib.import_module(f"lpm.scenarios.{name_or_path}")
        except ModuleNotFoundError as exc:
            import lpm.scenarios as pkg

            known = sorted(p.stem for p in Path(pkg.__file__).parent.glob("*.py") if not p.stem.startswith("_"))
            raise ConfigError(f"Expected one of the scenarios {known} or a .py path (got {name_or_path!r})") from exc
    scenario = getattr(module, "SCENARIO", None)
    if not isinstance(scenario, Scenario):
        raise ConfigError(f"Expected {name_or_path} to define SCENARIO = lpm.Scenario(...) (got {type(scenario).__name__})")
    return scenario


def run_scenario(scenario: Scenario, *, device: str | torch.device = "cpu", steps: Optional[int] = None,
                 progress: bool = True, archetypes: Optional["ArchetypeSetup"] = None,
                 apply_params: Optional[Callable[[Model], Sequence[str]]] = None,
                 posterior: Optional[ParameterDraws] = None) -> ScenarioResult:
    """Build the graph, population and model of ``scenario`` and simulate it without gradients.

    ``archetypes``: an :class:`lpm.archetypes.ArchetypeSetup` for the scenario's agents and
    ``contexts``, passed on to its ``build_model`` and ``arms``. ``apply_params``: called with the
    built model (on the run's device and dtype) before the run to set fitted parameters, returning
    the names it set, which ``ScenarioResult.fitted`` keeps; ``lpm run --params FILE`` passes one
    applying a ``lpm calibrate cascades`` fit. A hook rather than a file name, because reading fits
    belongs to calibration, which builds on this module. ``posterior``: for scenarios with arms, each
    seed runs under its own draw of the fitted parameters (:func:`lpm.counterfactual`), beside the
    same seeds at the point estimate.
    """
    if posterior is not None and scenario.arms is None:
        raise ConfigError(f"Expected a scenario with arms to run with a posterior (got none in {scenario.name!r})")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("Expected a CUDA device to be available for --device cuda (none found)")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    graph = scenario.build_graph(scenario.agents, scenario.seed, device)
    timings["graph_s"] = time.perf_counter() - start
    extra = {}
    if archetypes is not None:
        if not scenario.contexts:
            raise ConfigError(f"Expected a scenario with contexts to run with archetypes "
                              f"(got none in {scenario.name!r})")
        if archetypes.num_agents != graph.num_nodes:
            raise ConfigError(f"Expected archetypes for {graph.num_nodes} agents (got {archetypes.num_agents})")
        extra = {"archetypes": archetypes}
    start = time.perf_counter()
    state = scenario.build_population(graph, scenario.batch, scenario.seed)
    model = scenario.build_model(graph, scenario.dt, scenario.seed, **extra)
    model = model.to(device=device, dtype=state.opinion.dtype)
    fitted: tuple[str, ...] = ()
    if apply_params is not None:
        fitted = tuple(apply_params(model))
    timings["setup_s"] = time.perf_counter() - start
    steps = scenario.steps if steps is None else steps
    start = time.perf_counter()
    result = None
    record = scenario.record if scenario.build_record is None else scenario.build_record(graph, scenario.seed)
    with torch.no_grad():
        if scenario.arms is None:
            trajectory = simulate(model, state, graph, steps=steps, seed=scenario.seed, record=record,
                                  progress=progress)
        else:
            seeds = [scenario.seed * 1000 + s for s in range(scenario.seeds)]
            arms = scenario.arms(graph, **extra)
            result = counterfactual(model, state.select(0), graph, arms, steps=steps, seeds=seeds,
                                    device=device, progress=progress,
                                    record=record if scenario.build_record is not None else None,
                                    posterior=posterior)
            trajectory = result.trajectory
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timings["simulate_s"] = time.perf_counter() - start
    timings["ms_per_step"] = 1e3 * timings["simulate_s"] / max(steps, 1)
    return ScenarioResult(scenario, trajectory, graph, timings, str(device), result, fitted)


def write_outputs(result: ScenarioResult, out_dir: str | Path) -> dict[str, Path]:
    """``observables.parquet``, PNG plots and ``summary.json`` under ``out_dir/<name>/``.

    Each file is written atomically; while they are being written the folder holds an
    ``INCOMPLETE-run`` marker (:func:`lpm.io_atomic.marked_incomplete`), and ``summary.json``, written
    last, lists every output of this run with its SHA-256, so files of an earlier run left beside
    them can be told apart.
    """
    from lpm.io_atomic import file_sha256, marked_incomplete
    from lpm.plots import plot_trajectory

    with marked_incomplete(Path(out_dir) / result.scenario.name, "run") as folder:
        paths = {"observables": result.trajectory.to_parquet(folder / "observables.parquet")}
        if result.counterfactual is not None:
            paths["arms"] = result.counterfactual.to_parquet(folder / "arms.parquet")
            paths["arms_plot"] = result.counterfactual.plot(folder / "arms.png", scenario=result.scenario.name)
        else:
            for path in plot_trajectory(result.trajectory, folder, title=result.scenario.name):
                paths[path.stem] = path
        summary = {
            "scenario": result.scenario.name,
            "agents": result.scenario.agents,
            "edges": result.graph.num_edges,
            "steps": int(result.trajectory.times_h.numel() - 1),
            "dt_h": result.scenario.dt,
            "device": result.device,
            "timings_s": result.timings_s,
            "summary": summary_rows(result.trajectory),
        }
        if result.counterfactual is not None:
            summary["arms"] = result.counterfactual.summary().to_dict(orient="records")
            summary["differences"] = result.counterfactual.differences().to_dict(orient="records")
            if result.counterfactual.fixed_parameters is not None:  # run with parameter draws
                summary["parameter_uncertainty"] = interval_widening(result.counterfactual).to_dict(orient="records")
            if len(result.counterfactual.seeds) >= 3:  # what pairing bought, and the most it could (see pairing())
                pairing = result.counterfactual.pairing().to_dict(orient="records")
                # strict JSON has no infinity: an arm identical to the baseline on every seed has no spread
                summary["pairing"] = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                       for k, v in row.items()} for row in pairing]
        summary["outputs"] = {name: {"file": Path(path).name, "sha256": file_sha256(path)}
                              for name, path in paths.items()}
        atomic_write_json(folder / "summary.json", summary)
        paths["summary"] = folder / "summary.json"
    return paths


def summary_rows(trajectory: Trajectory) -> list[dict[str, float | str]]:
    """Start, end, min and max of every scalar component, averaged over the batch."""
    rows = []
    for name, value in trajectory.values.items():
        series = value.detach().double().cpu().reshape(value.size(0), value.size(1), -1).mean(1)  # (S, K)
        for k in range(series.size(1)):
            label = name if series.size(1) == 1 else f"{name}[{k}]"
            column = series[:, k]
            peak = int(torch.argmax(column))
            rows.append({
                "observable": label,
                "start": float(column[0]),
                "end": float(column[-1]),
                "min": float(column.min()),
                "max": float(column.max()),
                "peak_time_h": float(trajectory.times_h[peak]),
            })
    return rows


def format_summary(rows: list[dict[str, float | str]]) -> str:
    header = f"{'observable':<18}{'start':>12}{'end':>12}{'min':>12}{'max':>12}{'peak at (h)':>13}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['observable']:<18}{row['start']:>12.4g}{row['end']:>12.4g}{row['min']:>12.4g}"
            f"{row['max']:>12.4g}{row['peak_time_h']:>13.1f}"
        )
    return "\n".join(lines)


def format_arms(result: CounterfactualResult, columns: int = 3) -> str:
    """Per arm: the first outcomes as mean [5%, 95%] over seeds, and the headline outcome's difference
    from the baseline with a 90% bootstrap interval (adjusted reach for cascades: see
    :class:`lpm.counterfactual.CounterfactualResult`)."""
    summary = result.summary().set_index("arm")
    headline = result.headline
    diff = result.differences(headline).set_index("arm")
    shown = result.outcomes[:columns]
    header = f"{'arm':<16}" + "".join(f"{name:>32}" for name in shown) + f"{headline + ' vs ' + result.baseline:>44}"
    lines = [header, "-" * len(header)]
    for arm in result.arms:
        row, d = summary.loc[arm], diff.loc[arm]
        cells = ""
        for name in shown:
            band = f"{row[name]:.4g} [{row[name + '_lo']:.3g}, {row[name + '_hi']:.3g}]"
            cells += f"{band:>32}"
        difference = f"{d.difference:+.4g} [{d.lo:+.3g}, {d.hi:+.3g}]"
        lines.append(f"{arm:<16}{cells}{difference:>44}")
    return "\n".join(lines)


def with_overrides(scenario: Scenario, **overrides) -> Scenario:
    """``scenario`` with the non-``None`` overrides applied."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    known = {f.name for f in dataclasses.fields(Scenario)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ConfigError(f"Expected overrides among the scenario's fields {sorted(known)} (got {unknown})")
    return dataclasses.replace(scenario, **changes) if changes else scenario
