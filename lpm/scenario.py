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
import logging
import math
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

import torch

from lpm.counterfactual import CounterfactualResult, counterfactual
from lpm.errors import ConfigError
from lpm.executor import Executor
from lpm.graph import Graph
from lpm.interventions import Intervention
from lpm.io_atomic import atomic_path, atomic_write_json, atomic_write_text, file_sha256, marked_incomplete
from lpm.model import Model
from lpm.observables import DEFAULT, Observable
from lpm.provenance import check_run_folder, provenance, to_yaml
from lpm.simulate import Trajectory, simulate
from lpm.state import PopulationState
from lpm.uncertainty import ParameterDraws, interval_widening

if TYPE_CHECKING:
    from lpm.archetypes import ArchetypeSetup

log = logging.getLogger(__name__)

__all__ = ["Scenario", "ScenarioResult", "load_scenario", "run_scenario", "write_outputs", "summary_rows",
           "with_overrides", "settings", "SCENARIO_KEYS"]

#: The fields of a :class:`Scenario` that are settings of a run (the rest are its builders).
SCENARIO_KEYS = ("agents", "days", "dt", "batch", "seed", "seeds")


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
        opinion_topics: with archetypes, one :class:`lpm.archetypes.OpinionTopic` per opinion
            dimension (what it is about, which side each leaning takes): the agents' personas then
            set the initial opinions and traits (:meth:`lpm.archetypes.ArchetypeSetup.initial_state`);
            empty: every dimension political.
        config: the scenario's own settings (model parameters, shocks, data folder), a dataclass
            instance whose values its builders are bound to; its fields are keys of the run
            configuration beside ``agents``, ``days`` and the rest (:mod:`lpm.config`:
            ``lpm run NAME --set model.cascade.transmissibility=0.01``).
        configure: ``(config) -> Scenario``: the same scenario built with other settings (the
            scenario module's factory); given together with ``config``.
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
    opinion_topics: tuple[Any, ...] = ()
    config: Optional[Any] = None
    configure: Optional[Callable[[Any], "Scenario"]] = None

    def __post_init__(self) -> None:
        if (self.config is None) != (self.configure is None):
            raise ConfigError(f"Expected a scenario's config and configure together (got config="
                              f"{type(self.config).__name__}, configure={type(self.configure).__name__})")
        if self.config is not None and not (dataclasses.is_dataclass(self.config)
                                            and not isinstance(self.config, type)):
            raise ConfigError(f"Expected the scenario's config to be a dataclass instance "
                              f"(got {type(self.config).__name__})")
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

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seeds simulated: each arm's (a counterfactual), else the scenario's."""
        return self.counterfactual.seeds if self.counterfactual is not None else (self.scenario.seed,)


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
                 posterior: Optional[ParameterDraws] = None, executor: Optional[Executor] = None) -> ScenarioResult:
    """Build the graph, population and model of ``scenario`` and simulate it without gradients.

    ``archetypes``: an :class:`lpm.archetypes.ArchetypeSetup` for the scenario's agents and
    ``contexts``, passed on to its ``build_model`` and ``arms``. ``apply_params``: called with the
    built model (on the run's device and dtype) before the run to set fitted parameters, returning
    the names it set, which ``ScenarioResult.fitted`` keeps; ``lpm run --params FILE`` passes one
    applying a ``lpm calibrate cascades`` fit. A hook rather than a file name, because reading fits
    belongs to calibration, which builds on this module. ``posterior``: for scenarios with arms, each
    seed runs under its own draw of the fitted parameters (:func:`lpm.counterfactual`), beside the
    same seeds at the point estimate. ``executor``: where a counterfactual's batches run
    (:mod:`lpm.executor`; default here).
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
    log.info("graph: %s follow edges among %s agents, built in %.1f s", f"{graph.num_edges:,}",
             f"{graph.num_nodes:,}", timings["graph_s"])
    if graph.num_nodes != scenario.agents:  # a scenario on a fixed network (data) ignores agents
        warnings.warn(f"{scenario.name}'s graph has {graph.num_nodes} agents, not the {scenario.agents} asked for; "
                      f"running with {graph.num_nodes}", stacklevel=2)
        scenario = dataclasses.replace(scenario, agents=graph.num_nodes)
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
    if archetypes is not None:  # the personas behind the archetypes are the agents: they set the initial state
        state = archetypes.initial_state(state, scenario.opinion_topics or None, seed=scenario.seed)
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
                                    posterior=posterior, executor=executor)
            trajectory = result.trajectory
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timings["simulate_s"] = time.perf_counter() - start
    timings["ms_per_step"] = 1e3 * timings["simulate_s"] / max(steps, 1)
    return ScenarioResult(scenario, trajectory, graph, timings, str(device), result, fitted)


def write_outputs(result: ScenarioResult, out_dir: str | Path, *, config: Optional[Mapping[str, Any]] = None,
                  argv: Optional[Sequence[str]] = None, overwrite: bool = False) -> dict[str, Path]:
    """``observables.parquet``, PNG plots, ``config.yaml`` and ``summary.json`` under ``out_dir/<name>/``.

    Each file is written atomically; while they are being written the folder holds an
    ``INCOMPLETE-run`` marker (:func:`lpm.io_atomic.marked_incomplete`), and ``summary.json``, written
    last, lists every output of this run with its SHA-256, so files of an earlier run left beside
    them can be told apart. ``summary.json`` also records how the run was made
    (:func:`lpm.provenance.provenance`: versions, command line, seeds, the configuration);
    ``config.yaml`` is that configuration, which ``lpm run --config`` reads back.

    A counterfactual's ``observables.parquet`` has ``arm`` and ``seed`` columns (one row per arm,
    seed and step); a plain run's, ``scenario`` (the batch index).

    Args:
        config: the resolved configuration (:class:`lpm.config.Resolved` ``.values``); default:
            :func:`settings` of the scenario, with the steps and device it ran on.
        argv: the command line after ``lpm``, when run from it.
        overwrite: replace a finished run in the folder (otherwise that is an error).

    Raises:
        ConfigError: the folder holds a finished run and ``overwrite`` is false.
    """
    from lpm.plots import plot_trajectory

    scenario, cf = result.scenario, result.counterfactual
    steps = int(result.trajectory.times_h.numel() - 1)
    config = settings(scenario, steps=steps, device=result.device) if config is None else dict(config)
    folder = Path(out_dir) / scenario.name
    check_run_folder(folder, overwrite=overwrite)
    with marked_incomplete(folder, "run") as folder:
        paths = {"observables": folder / "observables.parquet"}
        with atomic_path(paths["observables"]) as tmp:
            observables_frame(result).to_parquet(tmp, index=False)
        paths["config"] = atomic_write_text(folder / "config.yaml", to_yaml(config))
        if cf is not None:
            paths["arms"] = cf.to_parquet(folder / "arms.parquet")
            paths["arms_plot"] = cf.plot(folder / "arms.png", scenario=scenario.name)
        else:
            for path in plot_trajectory(result.trajectory, folder, title=scenario.name):
                paths[path.stem] = path
        summary = {
            "kind": "run",
            "scenario": scenario.name,
            "agents": scenario.agents,
            "edges": result.graph.num_edges,
            "steps": steps,
            "dt_h": scenario.dt,
            "device": result.device,
            "timings_s": result.timings_s,
            "provenance": provenance(config=config, seeds=result.seeds, argv=argv),
            "summary": summary_rows(result.trajectory),
        }
        if cf is not None:
            summary["arms"] = cf.summary().to_dict(orient="records")
            summary["differences"] = cf.differences().to_dict(orient="records")
            if cf.fixed_parameters is not None:  # run with parameter draws
                summary["parameter_uncertainty"] = interval_widening(cf).to_dict(orient="records")
            if len(cf.seeds) >= 3:  # what pairing bought, and the most it could (see pairing())
                pairing = cf.pairing().to_dict(orient="records")
                # strict JSON has no infinity: an arm identical to the baseline on every seed has no spread
                summary["pairing"] = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                       for k, v in row.items()} for row in pairing]
        summary["outputs"] = {name: {"file": Path(path).name, "sha256": file_sha256(path)}
                              for name, path in paths.items()}
        atomic_write_json(folder / "summary.json", summary)
        paths["summary"] = folder / "summary.json"
    log.info("wrote %d outputs to %s", len(paths), folder)
    return paths


def observables_frame(result: ScenarioResult):
    """The recorded observables as a long table: one row per scenario and step; a counterfactual's
    scenarios named by ``arm`` and ``seed`` (scenario ``a * S + s`` is arm ``a``, seed ``s``)."""
    import numpy as np

    frame = result.trajectory.to_pandas()
    cf = result.counterfactual
    if cf is None:
        return frame
    index = frame.pop("scenario").to_numpy()
    if index.max(initial=0) >= len(cf.arms) * len(cf.seeds):
        raise ConfigError(f"Expected {len(cf.arms)} arms x {len(cf.seeds)} seeds of scenarios in the trajectory "
                          f"(got {result.trajectory.num_scenarios})")
    frame.insert(0, "arm", np.array(cf.arms, dtype=object)[index // len(cf.seeds)])
    frame.insert(1, "seed", np.array(cf.seeds, dtype=np.int64)[index % len(cf.seeds)])
    return frame


def settings(scenario: Scenario, **options: Any) -> dict[str, Any]:
    """The scenario's settings as the plain tree :mod:`lpm.config` resolves: its name, the
    :data:`SCENARIO_KEYS`, then ``options`` (``steps``, ``device``, ...), then its own ``config``."""
    values: dict[str, Any] = {"scenario": scenario.name, **{k: getattr(scenario, k) for k in SCENARIO_KEYS}}
    values.update(options)
    if scenario.config is not None:
        values.update(dataclasses.asdict(scenario.config))
    return values


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


def with_overrides(scenario: Scenario, **overrides) -> Scenario:
    """``scenario`` with the non-``None`` overrides applied."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    known = {f.name for f in dataclasses.fields(Scenario)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ConfigError(f"Expected overrides among the scenario's fields {sorted(known)} (got {unknown})")
    return dataclasses.replace(scenario, **changes) if changes else scenario
