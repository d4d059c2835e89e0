"""Command line: ``lpm run | sweep | scenarios | report | optimize | archetypes | calibrate | evaluate | forecast | plan | bench``.

Results (tables, what was written where) go to stdout; what the library logs (``logging``: warnings,
with ``-v`` progress too) and warns goes to stderr through one handler set up here, with Lightning's
and wandb's chatter turned down to warnings.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence

from lpm import __version__
from lpm.errors import ConfigError, LPMError
from lpm.executor import add_executor_options, make_executor
from lpm.provenance import LOGGERS

__all__ = ["main", "build_parser"]

log = logging.getLogger("lpm.cli")

#: Loggers of libraries lpm drives whose INFO lines are noise in a command's output.
NOISY = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "wandb", "urllib3", "httpx",
         "sentence_transformers", "transformers")


def _check_device(device: str) -> None:
    """``cpu``, ``cuda`` or ``cuda:K`` (checked before anything is built)."""
    import re

    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ConfigError(f"Expected --device cpu, cuda or cuda:K (got {device!r})")


def _check_out(out: str) -> None:
    """The output folder exists or can be created, and is writable (checked before simulating)."""
    import os

    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"Expected --out to be a folder that can be created (got {out!r}: {exc.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"Expected --out to be a writable folder (got {out!r})")


def _console(stderr: bool = False):
    """A rich console; off a terminal (a file, a pipe, a test) wide enough that tables never wrap."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    return console if console.is_terminal else Console(stderr=stderr, highlight=False, width=max(console.width, 200))


@contextlib.contextmanager
def _logging(verbose: int) -> Iterator[None]:
    """lpm's log records (warnings; with ``-v`` progress too, ``-vv`` debug) and Python warnings to
    stderr, one line each, for the length of one command, then as before (``main`` may run many times
    in one process, as in the tests). Without ``-v`` a failing command's stderr is its error alone."""
    from rich.logging import RichHandler

    handler = RichHandler(console=_console(stderr=True), show_time=False, show_path=False, markup=False,
                          rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    targets = [logging.getLogger("lpm"), logging.getLogger("py.warnings")]
    saved = [(t, t.level, t.propagate) for t in targets]
    noisy = [(logging.getLogger(name), logging.getLogger(name).level) for name in NOISY]
    for target in targets:
        target.addHandler(handler)
        target.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG))
        target.propagate = False
    for logger, _ in noisy:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # one line per warning, its category and message (where in lpm it was raised helps nobody here)
            warnings.showwarning = lambda message, category, *_, **__: logging.getLogger("py.warnings").warning(
                "%s: %s", category.__name__, message)
            # Lightning's advice about dataloader workers and logging intervals does not apply to fits
            # that simulate their own data in one process
            warnings.filterwarnings("ignore", message=r".*(num_workers|log_every_n_steps|does not have many workers).*")
            yield
    finally:
        for target, level, propagate in saved:
            target.removeHandler(handler)
            target.setLevel(level)
            target.propagate = propagate
        for logger, level in noisy:
            logger.setLevel(level)


def _record(args: argparse.Namespace, folder: Path, kind: str, name: str, config: dict, metrics: dict,
            tables: dict) -> None:
    """The run in wandb too (``--logger wandb``, offline by default); its outputs are already written, so
    a failure here is reported as a warning, not an error of the run."""
    if args.logger == "none":
        return
    from lpm.provenance import record_wandb

    try:
        record_wandb(folder, kind=kind, name=name, config=config, metrics=metrics, tables=tables)
    except Exception as exc:  # noqa: BLE001 - any wandb failure; the run itself is complete
        warnings.warn(f"wandb did not record the {kind} in {folder} ({type(exc).__name__}: {exc}); its outputs "
                      f"are complete", stacklevel=2)


def _fit_applier(path: str):
    """``run_scenario``'s hook setting the parameters of a fit file; joined here because calibration
    builds on the scenario runner, not the other way round."""
    from lpm.calibration.common import apply_fitted

    return lambda model: apply_fitted(model, path)[1]


def _resolve(args: argparse.Namespace, options, flags: dict):
    from lpm.config import resolve

    flags = dict(flags, data_dir=args.data_dir)
    return resolve(args.scenario, configs=args.config or (), flags=flags, overrides=args.set or (), options=options)


def _cmd_run(args: argparse.Namespace) -> int:
    import pandas as pd

    from lpm.config import RUN_OPTIONS
    from lpm.provenance import check_run_folder
    from lpm.scenario import run_scenario, summary_rows, write_outputs
    from lpm.tables import arms_table, frame_table, summary_table

    resolved = _resolve(args, RUN_OPTIONS, {
        "agents": args.agents, "steps": args.steps, "device": args.device, "seed": args.seed, "seeds": args.seeds,
        "params": args.params, "posterior": args.posterior, "archetypes": args.archetypes, "backend": args.backend,
        "llm_model": args.llm_model})
    if args.print_config:
        print(resolved.to_yaml(), end="")
        return 0
    scenario, v = resolved.scenario, resolved.values
    _check_device(v["device"])
    _check_out(args.out)
    check_run_folder(Path(args.out) / scenario.name, overwrite=args.overwrite)  # before anything is simulated
    steps = v["steps"] if v["steps"] is not None else scenario.steps
    print(f"lpm run {scenario.name}: {scenario.agents:,} agents, {steps} steps of {scenario.dt * 60:.0f} min "
          f"({steps * scenario.dt / 24:.2f} days), device {v['device']}, seed {scenario.seed}")
    setup, backend = _archetypes_for_run(args, v, scenario) if v["archetypes"] is not None else (None, None)
    apply_params = _fit_applier(v["params"]) if v["params"] is not None else None
    posterior = None
    if v["posterior"]:
        if v["params"] is None:
            raise ConfigError("Expected --params FITTED.json with --posterior (its posterior lies beside it)")
        from lpm.calibration.posterior import load_posterior, posterior_path

        posterior = load_posterior(posterior_path(v["params"]), kind="cascades")
    with make_executor(args.executor, args.address) as executor:
        result = run_scenario(scenario, device=v["device"], steps=steps, progress=not args.quiet, archetypes=setup,
                              apply_params=apply_params, posterior=posterior, executor=executor)
    if v["params"] is not None:
        print(f"fitted parameters from {v['params']}: {', '.join(result.fitted)}")
    paths = write_outputs(result, args.out, config=v, argv=args.argv, overwrite=args.overwrite)
    t = result.timings_s
    print(f"graph: {result.graph.num_edges:,} follow edges built in {t['graph_s']:.1f} s; "
          f"setup {t['setup_s']:.1f} s; simulated in {t['simulate_s']:.1f} s ({t['ms_per_step']:.1f} ms/step)")
    console = _console()
    folder = paths["summary"].parent
    if result.counterfactual is not None:
        cf = result.counterfactual
        console.print(arms_table(cf, title=f"{len(cf.arms)} arms x {len(cf.seeds)} seeds, common random numbers; "
                                           f"mean [5%, 95%] over seeds; paired differences, 90% intervals"))
        if cf.fixed_parameters is not None:
            from lpm.uncertainty import interval_widening

            console.print(frame_table(interval_widening(cf), title="with parameter uncertainty (one posterior draw "
                                      f"per seed) against the point estimate, paired differences of {cf.headline}"))
        differences = cf.differences()
        metrics = {f"difference/{row.arm}": row.difference for row in differences.itertuples()}
        tables = {"arms": cf.summary(), "differences": differences}
        print(f"wrote {paths['arms']}, {paths['arms_plot']}, {paths['observables']} and {paths['summary'].name}")
    else:
        rows = summary_rows(result.trajectory)
        console.print(summary_table(rows))
        metrics = {f"{row['observable']}/end": row["end"] for row in rows}
        tables = {"summary": pd.DataFrame(rows)}
        print(f"wrote {paths['observables']}, {len(paths) - 3} plots and {paths['summary'].name} in {folder}")
    metrics.update({f"timings/{k}": value for k, value in t.items()})
    _record(args, folder, "run", scenario.name, v, metrics, tables)
    if backend is not None:
        usage = folder / "llm_usage.json"
        load = {k: round(v, 3) for k in ("load_seconds", "load_cpu_seconds")
                if (v := getattr(backend.backend, k, None)) is not None}
        backend.write_usage_json(usage, **load)
        backend.cache.close()
        stats, seconds = backend.stats(), backend.seconds()
        print(f"wrote {usage}")
        loaded = (f", of which model load {load['load_seconds']:.1f} s wall, {load['load_cpu_seconds']:.1f} s CPU"
                  if load else "")
        print(f"backend {backend.name} ({backend.model}): {stats['calls']} calls, {stats['cache_hits']} cache hits, "
              f"{stats['prompt_tokens']} prompt tokens, {stats['completion_tokens']} completion tokens, "
              f"{seconds['wall_s']:.1f} s wall, {seconds['cpu_s']:.1f} s CPU{loaded}")
    return 0


def _archetypes_for_run(args: argparse.Namespace, values: dict, scenario):
    """``(ArchetypeSetup, CachedBackend)`` for ``lpm run --archetypes K``: personas, k-means, decisions."""
    import time

    from lpm.archetypes import ArchetypeSetup, CachedBackend, DecisionCache, make_backend
    from lpm.embed import TextEmbedder

    k, backend_name, llm_model = values["archetypes"], values["backend"], values["llm_model"]
    if isinstance(k, bool) or k < 1:
        raise ConfigError(f"Expected --archetypes K with K >= 1 (got {k})")
    if backend_name not in BACKENDS:
        raise ConfigError(f"Expected backend among {list(BACKENDS)} (got {backend_name!r})")
    if not scenario.contexts:  # before any model is loaded
        raise ConfigError(f"Expected a scenario with contexts to run with --archetypes (got none in {scenario.name!r})")
    start = time.perf_counter()
    embedding = backend_name == "embedding"
    embedder = TextEmbedder(llm_model) if embedding and llm_model else TextEmbedder()
    kind = make_backend(backend_name, model=llm_model, **({"embedder": embedder} if embedding else {}))
    cache = DecisionCache(args.cache if args.cache is not None else Path(args.out) / "decision_cache.sqlite",
                          offline=args.offline)
    backend = CachedBackend(kind, cache)
    setup = ArchetypeSetup.build(scenario.agents, k, scenario.contexts, backend, seed=scenario.seed,
                                 embedder=embedder)
    sizes = setup.archetypes.sizes
    log.info(f"archetypes: {setup.archetypes.k} from {scenario.agents:,} personas (sizes {int(sizes.min()):,} to "
          f"{int(sizes.max()):,}), {len(scenario.contexts)} contexts, decisions from {backend.name} "
          f"via {cache.path}, {time.perf_counter() - start:.1f} s")
    return setup, backend


def _cmd_archetypes_build(args: argparse.Namespace) -> int:
    import time

    import torch

    from lpm.archetypes import build_archetypes

    start = time.perf_counter()
    archetypes = build_archetypes(args.agents, args.k, args.seed)
    paths = archetypes.save(args.out)
    print(f"lpm archetypes build: {args.agents:,} personas -> {archetypes.k} archetypes in "
          f"{time.perf_counter() - start:.1f} s (seed {args.seed})")
    for a in torch.argsort(archetypes.sizes, descending=True)[:5].tolist():  # the largest few
        rep = int(archetypes.representatives[a])
        print(f"  archetype {a:<3} {int(archetypes.sizes[a]):>9,} users, e.g. {archetypes.personas.summary(rep)}")
    print(f"wrote {paths['personas']} and {paths['archetypes']}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    import time

    from lpm.config import SWEEP_OPTIONS
    from lpm.provenance import check_run_folder
    from lpm.sweep import SUMMARY, grid_points, parse_grid, run_sweep, write_sweep
    from lpm.tables import sweep_table

    resolved = _resolve(args, SWEEP_OPTIONS, {
        "agents": args.agents, "steps": args.steps, "device": args.device, "seed": args.seed, "seeds": args.seeds,
        "chunk": args.chunk, "grid": parse_grid(args.grid) if args.grid else None})
    if args.print_config:
        print(resolved.to_yaml(), end="")
        return 0
    scenario, v = resolved.scenario, resolved.values
    # YAML writes an absent value as null; a --grid flag as none
    grid = {key: [None if isinstance(x, str) and x.lower() == "none" else x for x in values]
            for key, values in (v["grid"] or {}).items()}
    if not grid:
        raise ConfigError("Expected at least one --grid KEY=V1,V2,... or a grid: mapping in --config (got none)")
    _check_device(v["device"])
    _check_out(args.out)
    folder = Path(args.out) / f"{scenario.name}-sweep"
    check_run_folder(folder, overwrite=args.overwrite, summary=SUMMARY)  # before anything is simulated
    steps = v["steps"] if v["steps"] is not None else scenario.steps
    arms = len(grid_points(grid))
    shape = " x ".join(f"{len(values)} {key}" for key, values in grid.items())
    print(f"lpm sweep {scenario.name}: {arms} arms ({shape}) x {scenario.seeds} seeds = {arms * scenario.seeds} "
          f"scenarios; {scenario.agents:,} agents, {steps} steps of {scenario.dt * 60:.0f} min "
          f"({steps * scenario.dt / 24:.2f} days), device {v['device']}")
    timings: dict = {}
    start = time.perf_counter()
    with make_executor(args.executor, args.address) as executor:
        table, result = run_sweep(scenario, grid, seeds=scenario.seeds, device=v["device"], steps=steps,
                                  chunk=v["chunk"], progress=not args.quiet, timings=timings, executor=executor)
    wall = time.perf_counter() - start
    print(f"graph {timings['graph_s']:.1f} s, setup {timings['setup_s']:.1f} s; simulated in "
          f"{timings['simulate_s']:.1f} s as {timings['batches']} batch(es) of up to {timings['batch_size']} "
          f"scenarios ({timings['ms_per_step']:.1f} ms/step); {wall:.1f} s in all")
    _console().print(sweep_table(result, grid, title=f"common random numbers; mean [5%, 95%] over seeds; "
                                                      f"baseline {result.baseline}; paired differences, 90% intervals"))
    paths = write_sweep(table, result, grid, folder, scenario=scenario.name, config=v, argv=args.argv, overwrite=args.overwrite, timings=timings)
    print(f"wrote {paths['table']}, {paths['plot']} and {paths['summary'].name}")
    differences = result.differences()
    _record(args, folder, "sweep", scenario.name, v,
            {f"difference/{row.arm}": row.difference for row in differences.itertuples()},
            {"arms": table, "differences": differences})
    return 0


def _cmd_scenarios(args: argparse.Namespace) -> int:
    """``lpm scenarios``: every shipped scenario, its one-line description and its sweepable keys."""
    import pkgutil

    from rich.table import Table

    import lpm.scenarios
    from lpm.scenario import load_scenario
    from lpm.sweep import sweep_keywords

    table = Table(title="scenarios (lpm run NAME; lpm run NAME --print-config shows every setting)",
                  title_justify="left")
    for column in ("scenario", "description", "agents", "days", "arms", "sweep keys (lpm sweep NAME --grid KEY=...)"):
        table.add_column(column)
    for info in sorted(pkgutil.iter_modules(lpm.scenarios.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        scenario = load_scenario(info.name)
        keys = ", ".join(sweep_keywords(scenario) or ("any",)) if scenario.sweep is not None else "-"
        table.add_row(info.name, scenario.description, f"{scenario.agents:,}", f"{scenario.days:g}",
                      "yes" if scenario.arms is not None else "-", keys)
    _console().print(table)
    return 0


def _cmd_bench_ndlib(args: argparse.Namespace) -> int:
    from lpm import bench

    return bench.run(args) or 0


def _cmd_bench_step(args: argparse.Namespace) -> int:
    from lpm import bench

    return bench.run_step(args) or 0


BACKENDS = ("embedding", "openai", "transformers")


def _add_config_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Options ``run`` and ``sweep`` share: configuration layers, where outputs go, how runs are recorded."""
    parser.add_argument("--config", action="append", default=None, metavar="FILE.yaml",
                        help=f"settings from a YAML file (repeatable; later files win); a run folder's config.yaml "
                             f"repeats that {command}. lpm {command} NAME --print-config shows every key")
    parser.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                        help="one setting by its dotted key, e.g. model.cascade.transmissibility=0.01 or agents=5000 "
                             "(repeatable; applied after --config and the other flags)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved configuration as YAML and exit without running")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="data folder of scenarios that read data (polarization_polblogs: DIR/polblogs/); "
                             "default: the LPM_DATA environment variable, else ../shared/data beside the repository")
    parser.add_argument("--out", default="runs", help=f"output folder (default: runs); the {command} goes to "
                                                      f"OUT/{'NAME' if command == 'run' else 'NAME-sweep'}/")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace a finished {command} in that folder (without it, that is an error)")
    parser.add_argument("--logger", choices=LOGGERS, default="wandb",
                        help="also record the run in wandb (default; offline unless WANDB_MODE=online, no account "
                             "needed; under OUT/.../wandb) or not (none)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lpm", description="Large Population Model of social media.",
                                     epilog="Environment: LPM_DATA (data folder when --data-dir is not given), "
                                            "WANDB_MODE (online to upload wandb records; default offline).")
    parser.add_argument("--version", action="version", version=f"lpm {__version__}")
    parser.add_argument("--verbose", "-v", action="count", default=0,
                        help="log progress to stderr (-v: what is built and written; -vv: debug too)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario and write observables, plots and a summary")
    run.add_argument("scenario", nargs="?", default=None,
                     help="scenario name in lpm.scenarios (lpm scenarios lists them), or a .py file (default: the "
                          "--config file's scenario, else default)")
    run.add_argument("--agents", type=int, default=None, help="number of agents (default: the scenario's)")
    run.add_argument("--steps", type=int, default=None, help="number of steps (default: the scenario's horizon)")
    run.add_argument("--device", default=None, help="cpu (default), cuda or cuda:K")
    run.add_argument("--seed", type=int, default=None, help="seed (default: the scenario's)")
    run.add_argument("--seeds", type=int, default=None, help="seeds per arm, for scenarios with arms")
    run.add_argument("--params", default=None, metavar="FITTED.json",
                     help="fitted cascade parameters (lpm calibrate cascades) for the scenario's cascade")
    run.add_argument("--posterior", action="store_const", const=True, default=None,
                     help="draw each seed's cascade parameters from the posterior beside --params (FITTED.posterior.json)")
    run.add_argument("--archetypes", type=int, default=None, metavar="K",
                     help="group the agents into K archetypes whose decisions about the scenario's texts drive it")
    run.add_argument("--backend", choices=BACKENDS, default=None,
                     help="who decides for archetypes: embedding (offline, no LLM; default), openai (any "
                          "OpenAI-compatible endpoint: OPENAI_BASE_URL, OPENAI_API_KEY) or transformers (local model)")
    run.add_argument("--llm-model", default=None, help="model name or path for the backend")
    run.add_argument("--cache", default=None, help="decision cache file (default: <out>/decision_cache.sqlite)")
    run.add_argument("--offline", action="store_true",
                     help="take every archetype decision from --cache (opened read-only) and never call the backend; "
                          "a missing decision is an error")
    _add_config_options(run, "run")
    add_executor_options(run)
    run.set_defaults(func=_cmd_run)

    scenarios = sub.add_parser("scenarios", help="list the scenarios with their descriptions and sweepable keys")
    scenarios.set_defaults(func=_cmd_scenarios)

    archetypes = sub.add_parser("archetypes", help="personas and archetypes")
    archetypes_sub = archetypes.add_subparsers(dest="archetypes_command", required=True)
    build = archetypes_sub.add_parser("build", help="sample personas, cluster them, write the persona table")
    build.add_argument("--agents", type=int, required=True, help="number of personas")
    build.add_argument("--k", type=int, required=True, help="number of archetypes")
    build.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    build.add_argument("--out", default="runs/archetypes", help="output folder (default: runs/archetypes)")
    build.set_defaults(func=_cmd_archetypes_build)

    sweep = sub.add_parser("sweep", help="run a grid of intervention parameters as arms, all in one batch")
    sweep.add_argument("scenario", nargs="?", default=None,
                       help="scenario name in lpm.scenarios, or a .py file (it must define sweep=...; default: the "
                            "--config file's scenario)")
    sweep.add_argument("--grid", action="append", default=None, metavar="KEY=V1,V2,...",
                       help="a keyword of the scenario's sweep function and its values (ints, floats or none); "
                            "repeat for more keys: the arms are the cartesian product (lpm scenarios lists the keys)")
    sweep.add_argument("--seeds", type=int, default=None, help="seeds per arm (default: the scenario's)")
    sweep.add_argument("--agents", type=int, default=None, help="number of agents (default: the scenario's)")
    sweep.add_argument("--steps", type=int, default=None, help="number of steps (default: the scenario's horizon)")
    sweep.add_argument("--device", default=None, help="cpu (default), cuda or cuda:K")
    sweep.add_argument("--seed", type=int, default=None, help="seed of graph and population (default: the scenario's)")
    sweep.add_argument("--chunk", type=int, default=None,
                       help="at most this many scenarios (arms x seeds) per batch (default: all in one batch on a "
                            "GPU; on the CPU, batches of whole arms of at most 2^22 agents x scenarios, "
                            "which run faster there; the numbers are the same)")
    _add_config_options(sweep, "sweep")
    add_executor_options(sweep)
    sweep.set_defaults(func=_cmd_sweep)

    from lpm.cli_calibrate import add_parsers as add_calibration_parsers

    add_calibration_parsers(sub)

    from lpm.cli_optimize import add_parser as add_optimize_parser

    add_optimize_parser(sub)

    from lpm.report import add_parser as add_report_parser

    add_report_parser(sub)

    from lpm.cli_plan import add_parser as add_plan_parser

    add_plan_parser(sub)

    bench_parser = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench_parser.add_subparsers(dest="bench", required=True)
    from lpm import bench

    ndlib = bench_sub.add_parser("ndlib", help="lpm vs NDlib on the CPU, side by side (BENCHMARKS.md section 1)")
    bench.add_arguments(ndlib)
    ndlib.set_defaults(func=_cmd_bench_ndlib)
    for name, device, what in (("cpu", "cpu", "one CPU thread, against a CSR SpMV"), ("gpu", "cuda", "on CUDA")):
        parser_ = bench_sub.add_parser(name, help=f"the default model's step, reference vs fused, {what} "
                                                  "(BENCHMARKS.md section 2)")
        bench.add_step_arguments(parser_, device)
        parser_.set_defaults(func=_cmd_bench_step)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # recorded in run folders
    with _logging(args.verbose):
        try:
            return int(args.func(args) or 0)
        except LPMError as exc:
            print(f"lpm: error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
