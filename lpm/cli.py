"""Command line: ``lpm run | sweep | report | archetypes | calibrate | evaluate | forecast | bench``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from lpm.errors import ConfigError, LPMError

__all__ = ["main"]


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


def _fit_applier(path: str):
    """``run_scenario``'s hook setting the parameters of a fit file; joined here because calibration
    builds on the scenario runner, not the other way round."""
    from lpm.calibration.common import apply_fitted

    return lambda model: apply_fitted(model, path)[1]


def _cmd_run(args: argparse.Namespace) -> int:
    from lpm.scenario import (format_arms, format_summary, load_scenario, run_scenario, summary_rows, with_overrides,
                              write_outputs)

    _check_device(args.device)
    _check_out(args.out)

    scenario = with_overrides(load_scenario(args.scenario), agents=args.agents, seed=args.seed, seeds=args.seeds)
    steps = args.steps if args.steps is not None else scenario.steps
    print(f"lpm run {scenario.name}: {scenario.agents:,} agents, {steps} steps of {scenario.dt * 60:.0f} min "
          f"({steps * scenario.dt / 24:.2f} days), device {args.device}, seed {scenario.seed}")
    setup, backend = _archetypes_for_run(args, scenario) if args.archetypes is not None else (None, None)
    apply_params = _fit_applier(args.params) if args.params is not None else None
    posterior = None
    if args.posterior:
        if args.params is None:
            raise ConfigError("Expected --params FITTED.json with --posterior (its posterior lies beside it)")
        from lpm.calibration.posterior import load_posterior, posterior_path

        posterior = load_posterior(posterior_path(args.params), kind="cascades")
    result = run_scenario(scenario, device=args.device, steps=steps, progress=not args.quiet, archetypes=setup,
                          apply_params=apply_params, posterior=posterior)
    if args.params is not None:
        print(f"fitted parameters from {args.params}: {', '.join(result.fitted)}")
    paths = write_outputs(result, args.out)
    t = result.timings_s
    print(f"graph: {result.graph.num_edges:,} follow edges built in {t['graph_s']:.1f} s; "
          f"setup {t['setup_s']:.1f} s; simulated in {t['simulate_s']:.1f} s ({t['ms_per_step']:.1f} ms/step)")
    if result.counterfactual is not None:
        cf = result.counterfactual
        print(f"{len(cf.arms)} arms x {len(cf.seeds)} seeds, common random numbers; mean [5%, 95%] over seeds:")
        print(format_arms(cf))
        if cf.fixed_parameters is not None:
            from lpm.uncertainty import interval_widening

            print("with parameter uncertainty (one posterior draw per seed) against the point estimate, "
                  f"paired differences of {cf.headline}:")
            print(interval_widening(cf).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(f"wrote {paths['arms']}, {paths['arms_plot']} and {paths['observables']}")
    else:
        print(format_summary(summary_rows(result.trajectory)))
        print(f"wrote {paths['observables']} and {len(paths) - 2} plots in {paths['observables'].parent}")
    if backend is not None:
        usage = paths["observables"].parent / "llm_usage.json"
        backend.write_usage_json(usage)
        backend.cache.close()
        stats = backend.stats()
        print(f"wrote {usage}")
        print(f"backend {backend.name} ({backend.model}): {stats['calls']} calls, {stats['cache_hits']} cache hits, "
              f"{stats['prompt_tokens']} prompt tokens, {stats['completion_tokens']} completion tokens")
    return 0


def _archetypes_for_run(args: argparse.Namespace, scenario):
    """``(ArchetypeSetup, CachedBackend)`` for ``lpm run --archetypes K``: personas, k-means, decisions."""
    import time
    from pathlib import Path

    from lpm.archetypes import ArchetypeSetup, CachedBackend, DecisionCache, make_backend
    from lpm.embed import TextEmbedder
    from lpm.errors import ConfigError

    if isinstance(args.archetypes, bool) or args.archetypes < 1:
        raise ConfigError(f"Expected --archetypes K with K >= 1 (got {args.archetypes})")
    if not scenario.contexts:  # before any model is loaded
        raise ConfigError(f"Expected a scenario with contexts to run with --archetypes (got none in {scenario.name!r})")
    start = time.perf_counter()
    embedding = args.backend == "embedding"
    embedder = TextEmbedder(args.llm_model) if embedding and args.llm_model else TextEmbedder()
    kind = make_backend(args.backend, model=args.llm_model, **({"embedder": embedder} if embedding else {}))
    cache = DecisionCache(args.cache if args.cache is not None else Path(args.out) / "decision_cache.sqlite",
                          offline=args.offline)
    backend = CachedBackend(kind, cache)
    setup = ArchetypeSetup.build(scenario.agents, args.archetypes, scenario.contexts, backend, seed=scenario.seed,
                                 embedder=embedder)
    sizes = setup.archetypes.sizes
    print(f"archetypes: {setup.archetypes.k} from {scenario.agents:,} personas (sizes {int(sizes.min()):,} to "
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
    from pathlib import Path

    from lpm.scenario import load_scenario, with_overrides
    from lpm.sweep import format_sweep, grid_points, parse_grid, run_sweep, write_sweep

    scenario = with_overrides(load_scenario(args.scenario), agents=args.agents, seed=args.seed, seeds=args.seeds)
    grid = parse_grid(args.grid)
    steps = args.steps if args.steps is not None else scenario.steps
    arms = len(grid_points(grid))
    shape = " x ".join(f"{len(values)} {key}" for key, values in grid.items())
    print(f"lpm sweep {scenario.name}: {arms} arms ({shape}) x {scenario.seeds} seeds = {arms * scenario.seeds} "
          f"scenarios; {scenario.agents:,} agents, {steps} steps of {scenario.dt * 60:.0f} min "
          f"({steps * scenario.dt / 24:.2f} days), device {args.device}")
    timings: dict = {}
    start = time.perf_counter()
    table, result = run_sweep(scenario, grid, seeds=scenario.seeds, device=args.device, steps=steps, chunk=args.chunk,
                              progress=not args.quiet, timings=timings)
    wall = time.perf_counter() - start
    print(f"graph {timings['graph_s']:.1f} s, setup {timings['setup_s']:.1f} s; simulated in "
          f"{timings['simulate_s']:.1f} s as {timings['batches']} batch(es) of up to {timings['batch_size']} "
          f"scenarios ({timings['ms_per_step']:.1f} ms/step); {wall:.1f} s in all")
    print(f"common random numbers; mean [5%, 95%] over seeds; baseline {result.baseline}:")
    print(format_sweep(result, grid))
    paths = write_sweep(table, result, grid, Path(args.out) / scenario.name, scenario=scenario.name)
    print(f"wrote {paths['table']} and {paths['plot']}")
    return 0


def _cmd_bench_ndlib(args: argparse.Namespace) -> int:
    from lpm import bench

    return bench.run(args) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lpm", description="Large Population Model of social media.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario and write observables, plots and a summary")
    run.add_argument("scenario", nargs="?", default="default", help="scenario name in lpm.scenarios, or a .py file")
    run.add_argument("--agents", type=int, default=None, help="number of agents (default: the scenario's)")
    run.add_argument("--steps", type=int, default=None, help="number of steps (default: the scenario's horizon)")
    run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K")
    run.add_argument("--seed", type=int, default=None, help="seed (default: the scenario's)")
    run.add_argument("--seeds", type=int, default=None, help="seeds per arm, for scenarios with arms")
    run.add_argument("--out", default="runs", help="output folder (default: runs)")
    run.add_argument("--params", default=None, metavar="FITTED.json",
                     help="fitted cascade parameters (lpm calibrate cascades) for the scenario's cascade")
    run.add_argument("--posterior", action="store_true",
                     help="draw each seed's cascade parameters from the posterior beside --params (FITTED.posterior.json)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--archetypes", type=int, default=None, metavar="K",
                     help="group the agents into K archetypes whose decisions about the scenario's texts drive it")
    run.add_argument("--backend", choices=("embedding", "openai", "transformers"), default="embedding",
                     help="who decides for archetypes: embedding (offline, no LLM; default), openai (any "
                          "OpenAI-compatible endpoint: OPENAI_BASE_URL, OPENAI_API_KEY) or transformers (local model)")
    run.add_argument("--llm-model", default=None, help="model name or path for the backend")
    run.add_argument("--cache", default=None, help="decision cache file (default: <out>/decision_cache.sqlite)")
    run.add_argument("--offline", action="store_true",
                     help="take every archetype decision from --cache (opened read-only) and never call the backend; "
                          "a missing decision is an error")
    run.set_defaults(func=_cmd_run)

    archetypes = sub.add_parser("archetypes", help="personas and archetypes")
    archetypes_sub = archetypes.add_subparsers(dest="archetypes_command", required=True)
    build = archetypes_sub.add_parser("build", help="sample personas, cluster them, write the persona table")
    build.add_argument("--agents", type=int, required=True, help="number of personas")
    build.add_argument("--k", type=int, required=True, help="number of archetypes")
    build.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    build.add_argument("--out", default="runs/archetypes", help="output folder (default: runs/archetypes)")
    build.set_defaults(func=_cmd_archetypes_build)

    sweep = sub.add_parser("sweep", help="run a grid of intervention parameters as arms, all in one batch")
    sweep.add_argument("scenario", help="scenario name in lpm.scenarios, or a .py file (it must define sweep=...)")
    sweep.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...",
                       help="a keyword of the scenario's sweep function and its values (ints, floats or none); "
                            "repeat for more keys: the arms are the cartesian product")
    sweep.add_argument("--seeds", type=int, default=None, help="seeds per arm (default: the scenario's)")
    sweep.add_argument("--agents", type=int, default=None, help="number of agents (default: the scenario's)")
    sweep.add_argument("--steps", type=int, default=None, help="number of steps (default: the scenario's horizon)")
    sweep.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K")
    sweep.add_argument("--seed", type=int, default=None, help="seed of graph and population (default: the scenario's)")
    sweep.add_argument("--chunk", type=int, default=None,
                       help="at most this many scenarios (arms x seeds) per batch (default: all in one batch on a "
                            "GPU; on the CPU, batches of whole arms of at most 2^22 agents x scenarios, "
                            "which run faster there; the numbers are the same)")
    sweep.add_argument("--out", default="runs", help="output folder (default: runs)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(func=_cmd_sweep)

    from lpm.cli_calibrate import add_parsers as add_calibration_parsers

    add_calibration_parsers(sub)

    from lpm.report import add_parser as add_report_parser

    add_report_parser(sub)

    bench_parser = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench_parser.add_subparsers(dest="bench", required=True)
    from lpm import bench

    ndlib = bench_sub.add_parser("ndlib", help="lpm vs NDlib on the CPU, side by side (BENCHMARKS.md section 1)")
    bench.add_arguments(ndlib)
    ndlib.set_defaults(func=_cmd_bench_ndlib)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LPMError as exc:
        print(f"lpm: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
