"""Options and entry points of ``lpm bench ndlib`` (and ``python -m lpm.bench``), ``lpm bench cpu`` and
``lpm bench gpu``."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from lpm.bench import ndlib, step
from lpm.bench.report import format_table
from lpm.bench.common import BA_M, IC_RUNS, MODELS


def _parse_sizes(text: str) -> list[int]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"Expected comma-separated sizes like 1e4,1e5 (got {text!r})") from exc
    if not values or any(v != int(v) or v <= BA_M + 1 for v in values):
        raise argparse.ArgumentTypeError(f"Expected whole sizes > {BA_M + 1} (got {text!r})")
    return [int(v) for v in values]


def _parse_models(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or any(name not in MODELS for name in names):
        raise argparse.ArgumentTypeError(f"Expected a comma-separated subset of {','.join(MODELS)} (got {text!r})")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``lpm bench ndlib``."""
    parser.add_argument("--sizes", type=_parse_sizes, default=[10_000, 100_000],
                        help="comma-separated numbers of agents (default 1e4,1e5)")
    parser.add_argument("--json", dest="json", default=None, help="write the rows to this JSON file")
    parser.add_argument("--hk-cap-s", type=float, default=120.0,
                        help="cap on NDlib HK's stepping time in seconds (default 120)")
    parser.add_argument("--ab-budget-s", type=float, default=120.0,
                        help="NDlib Algorithmic Bias stops starting iterations past this (default 120)")
    parser.add_argument("--ic-budget-s", type=float, default=300.0,
                        help="NDlib Independent Cascade starts no run past this many seconds of stepping; the KS "
                             "test uses the runs that fit (default 300)")
    parser.add_argument("--ic-runs", type=int, default=IC_RUNS,
                        help=f"Independent Cascade seed sets (runs) per size (default {IC_RUNS})")
    parser.add_argument("--models", type=_parse_models, default=list(MODELS),
                        help=f"comma-separated subset of {','.join(MODELS)} (default all)")
    parser.add_argument("--iterations", type=int, default=10,
                        help="NDlib iterations timed per model; for Independent Cascade, the first this many of "
                             "every run (default 10)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for lpm (default 1: NDlib is single-threaded); 0 keeps torch's default")
    parser.add_argument("--seed", type=int, default=0, help="seed of graph, opinions and draws (default 0)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``lpm bench ndlib`` with parsed ``args``, print the table; returns the exit status."""
    rows = ndlib.bench_ndlib(
        args.sizes,
        seed=args.seed,
        iterations=args.iterations,
        hk_time_cap_s=args.hk_cap_s,
        ab_time_budget_s=args.ab_budget_s,
        ic_time_budget_s=args.ic_budget_s,
        ic_runs=args.ic_runs,
        models=args.models,
        threads=args.threads or None,
        out_json=args.json,
    )
    print(format_table(rows))
    return 0


def add_step_arguments(parser: argparse.ArgumentParser, device: str) -> argparse.ArgumentParser:
    """Options of ``lpm bench cpu`` (``device="cpu"``) and ``lpm bench gpu`` (``"cuda"``)."""
    sizes = step.GPU_SIZES if device == "cuda" else step.CPU_SIZES
    default = ",".join(f"{n:.0e}".replace("e+0", "e") for n in sizes)
    parser.add_argument("--sizes", type=_parse_sizes, default=list(sizes),
                        help=f"comma-separated numbers of agents (default {default})")
    parser.add_argument("--json", dest="json", default=None, help="write the rows to this JSON file")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per path and size (default 5)")
    parser.add_argument("--batch", type=int, default=1, help="scenarios per step (default 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads, used by the fused CPU loops too (default 1); 0 keeps torch's default")
    parser.add_argument("--no-backward", dest="backward", action="store_false", help="time the forward step only")
    parser.add_argument("--seed", type=int, default=0, help="seed of graph, population and draws (default 0)")
    parser.set_defaults(bench_device=device)
    return parser


def run_step(args: argparse.Namespace) -> int:
    """Run ``lpm bench cpu|gpu`` with parsed ``args``, print the table; returns the exit status."""
    rows = step.bench_step(args.bench_device, args.sizes, batch=args.batch, seed=args.seed, repeats=args.repeats,
                           threads=args.threads or None, backward=args.backward, out_json=args.json)
    print(step.format_step_table(rows))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Standalone entry: ``python -m lpm.bench [--sizes 1e4,1e5] [--json FILE] ...``."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the progress lines
    parser = add_arguments(argparse.ArgumentParser(prog="lpm bench ndlib", description=ndlib.__doc__.splitlines()[0]))
    return run(parser.parse_args(argv))
