"""``lpm calibrate | evaluate | check | forecast``: fitting to real data from the command line."""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from lpm.errors import ConfigError
from lpm.executor import add_executor_options, make_executor
from lpm.io_atomic import atomic_savefig, file_in_the_way

__all__ = ["add_parsers"]

_DEFAULT_SPLIT = {"calibrate": "train", "evaluate": "test"}


def _module(kind: str):
    from lpm.calibration.common import KINDS

    if kind not in KINDS:
        raise ConfigError(f"Expected a calibration kind among {sorted(KINDS)} (got {kind!r})")
    return importlib.import_module(KINDS[kind])


def _check_fit_options(args: argparse.Namespace) -> None:
    """Options every fitting command shares, checked before any data is read or simulated."""
    import re

    import torch

    device = getattr(args, "device", "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ConfigError(f"Expected --device cpu, cuda or cuda:K (got {device!r})")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"Expected a CUDA device for --device {device} (got none: torch {torch.__version__} "
                          f"sees no GPU; use --device cpu)")
    if getattr(args, "max_steps", 1) < 1:
        raise ConfigError(f"Expected --max-steps >= 1 (got {args.max_steps})")
    budget = getattr(args, "budget_s", None)
    if budget is not None and not budget > 0:
        raise ConfigError(f"Expected --budget-s > 0 seconds (got {budget})")
    _check_output_file("--out", getattr(args, "out", None))
    _check_output_file("--json", getattr(args, "json", None))


def _check_output_file(flag: str, path: str | None) -> None:
    """An output file's folder must exist or be creatable: checked before any fitting or simulation,
    so a typo does not cost a whole run."""
    if path is None:
        return
    blocker = file_in_the_way(path)
    if blocker is not None:
        raise ConfigError(f"Expected {flag} {path!r} under a folder (got {str(blocker)!r}, a file)")


def _data(paths: list[str]) -> list[Path]:
    found = [Path(p) for p in paths]
    missing = [str(p) for p in found if not p.exists()]
    if missing:
        raise ConfigError(f"Expected existing --data paths (not found: {missing})")
    return found


def _launched_rank() -> int:
    """This process's rank as its launcher set it (torchrun: ``RANK``; Lightning's launcher:
    ``NODE_RANK``/``LOCAL_RANK``; SLURM: ``SLURM_PROCID``): nonzero on every process but the first."""
    import os

    return max(int(os.environ.get(name, "0") or 0) for name in ("RANK", "NODE_RANK", "LOCAL_RANK", "SLURM_PROCID"))


def _silent(*args, **kwargs) -> None:
    """The printer of a DDP fit's other ranks: rank 0 reports."""


def _cmd_calibrate(args: argparse.Namespace) -> int:
    _check_fit_options(args)
    module = _module(args.kind)
    out = Path(args.out)
    work_dir = Path(args.work_dir) if args.work_dir else out.with_suffix("").parent / f"{out.stem}_work"
    processes = {k: v for k, v in dict(devices=args.devices, num_nodes=args.num_nodes).items() if v != 1}
    if args.strategy != "auto":
        processes["strategy"] = args.strategy
    if processes and args.kind != "cascades":
        raise ConfigError(f"Expected --devices / --num-nodes / --strategy only with 'cascades', the fit whose "
                          f"simulated ensemble splits across processes (got {args.kind!r})")
    say = _silent if processes and _launched_rank() else print  # one report, from rank 0
    say(f"lpm calibrate {args.kind}: data {', '.join(args.data)} (split {args.split}), device {args.device}, "
        f"budget {args.budget_s if args.budget_s is not None else 'none'} s, at most {args.max_steps} steps; "
        f"checkpoints and logs in {work_dir}")
    world = {k: v for k, v in dict(agents=args.agents, items=args.items, batch=args.batch,
                                   checkpoint_every=args.checkpoint_every).items() if v is not None}
    world.update(processes)
    if args.debias:
        world["debias"] = args.debias
    if args.posterior:
        world["posterior"] = True
    if args.mechanism or args.step_minutes is not None:
        from lpm.calibration.cascade_world import CascadeWorld

        # feed_item_pace paces the spread of half-lives, so it brings the spread
        flags = set(args.mechanism) | ({"feed_item_spread"} if "feed_item_pace" in args.mechanism else set())
        step = {} if args.step_minutes is None else {"dt_h": args.step_minutes / 60.0}
        world["world"] = CascadeWorld(**{name: True for name in sorted(flags)}, **step)
    if args.growth_weight is not None:
        world["growth_weight"] = args.growth_weight
    if world and args.kind != "cascades":
        raise ConfigError(f"Expected --agents / --items / --batch / --debias / --posterior / --mechanism / "
                          f"--step-minutes / --growth-weight / --checkpoint-every only with 'cascades' (got {args.kind!r})")
    if (args.executor != "inprocess" or args.address is not None) and not args.posterior:
        raise ConfigError(f"Expected --executor / --address with 'cascades --posterior' (the posterior's independent "
                          f"simulations; got --executor {args.executor} without --posterior)")
    start = time.perf_counter()
    with make_executor(args.executor, args.address) as executor:
        if args.posterior:
            world["executor"] = executor
        result = module.calibrate(_data(args.data), out, budget_s=args.budget_s, device=args.device, seed=args.seed,
                                  work_dir=work_dir, resume=args.resume, progress=not args.quiet,
                                  max_steps=args.max_steps, split=args.split, logger=args.logger, **world)
    wall = time.perf_counter() - start
    say(f"best loss {result['loss']:.4g} after {result['steps']} steps in {wall:.0f} s; wrote {out}")
    if args.posterior and result.get("global_rank", 0) == 0:  # rank 0 writes it
        from lpm.calibration.posterior import load_posterior, posterior_path

        posterior = load_posterior(posterior_path(out))
        say(f"posterior (80% credible intervals) in {posterior_path(out)}:")
        for name, (low, high) in posterior.interval(0.8).items():
            say(f"  {name:>18} in [{low:.6g}, {high:.6g}]")
    for name, value in sorted(result["params"].items()):
        say(f"  {name:>18} = {value:.6g}")
    return 0


def _write_metrics(metrics: dict, path: str | None) -> None:
    for name, value in metrics.items():
        print(f"  {name:>28} = {value:.4g}" if isinstance(value, float) else f"  {name:>28} = {value}")
    if path:
        from lpm.calibration.common import atomic_write_json

        atomic_write_json(path, metrics)
        print(f"wrote {path}")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    _check_fit_options(args)
    module = _module(args.kind)
    print(f"lpm evaluate {args.kind}: params {args.params}, data {', '.join(args.data)} (split {args.split})")
    metrics = module.evaluate(Path(args.params), _data(args.data), device=args.device, seed=args.seed, split=args.split)
    _write_metrics(metrics, args.json)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    _check_fit_options(args)
    from lpm.calibration.check import format_report

    import matplotlib

    matplotlib.use("Agg")  # the CLI draws to files; the library's check functions return Figures
    module = _module(args.kind)
    print(f"lpm check {args.kind}: params {args.params}, data {', '.join(args.data)} (split {args.split})")
    report = module.check(Path(args.params), _data(args.data), split=args.split, device=args.device, seed=args.seed)
    print(format_report(report))
    if args.json:
        from lpm.calibration.common import atomic_write_json

        atomic_write_json(args.json, report.to_json())
        print(f"wrote {args.json}")
    if args.plots and report.figures:
        folder = Path(args.plots)
        folder.mkdir(parents=True, exist_ok=True)
        for name, figure in report.figures.items():
            atomic_savefig(figure, folder / f"check_{args.kind}_{name}.png", dpi=110, bbox_inches="tight")
        print(f"wrote {len(report.figures)} plots to {folder}")
    return 0


def _cmd_forecast(args: argparse.Namespace) -> int:
    _check_fit_options(args)
    if args.kind != "cascades":
        raise ConfigError(f"Expected 'cascades' (forecasting is defined for cascades; got {args.kind!r})")
    from lpm.calibration.fit_cascades import forecast

    print(f"lpm forecast cascades: params {args.params}, observe {args.observe_h} h, horizon {args.horizon_h} h, "
          f"split {args.split}")
    posterior = None
    if args.posterior:
        from lpm.calibration.posterior import load_posterior, posterior_path

        posterior = load_posterior(posterior_path(args.params), kind="cascades")
    with make_executor(args.executor, args.address) as executor:
        metrics = forecast(Path(args.params), _data(args.data), observe_h=args.observe_h, horizon_h=args.horizon_h,
                           split=args.split, batch=args.ensemble, device=args.device, seed=args.seed,
                           postprocess=args.postprocess, posterior=posterior, chunk=args.chunk, executor=executor,
                           reading_h=args.reading_minutes / 60)
    _write_metrics(metrics, args.json)
    return 0


def _positive_int(flag: str):
    """An argparse type: an int >= 1, else a one-line usage error naming ``flag``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"Expected an integer >= 1 for {flag} (got {text!r})") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"Expected an integer >= 1 for {flag} (got {value})")
        return value
    return parse


def add_parsers(sub) -> None:
    """Add ``calibrate``, ``evaluate``, ``check`` and ``forecast`` to the ``lpm`` sub-command parser."""
    kinds = ["cascades", "sentiment", "stance"]
    calibrate = sub.add_parser("calibrate", help="fit model parameters to real data by gradient descent")
    calibrate.add_argument("kind", choices=kinds)
    calibrate.add_argument("--data", action="append", required=True, metavar="PATH",
                           help="data file or folder; repeat for several (e.g. one CSV per disaster event)")
    calibrate.add_argument("--out", required=True, metavar="FITTED.json", help="fitted parameters (best so far)")
    calibrate.add_argument("--budget-s", type=float, default=None,
                           help="wall-time budget in seconds (cascades: the fit and its --debias refits together, each refit as long as the fit)")
    calibrate.add_argument("--max-steps", type=int, default=200, help="optimiser steps at most (default 200)")
    calibrate.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K")
    calibrate.add_argument("--seed", type=int, default=0)
    calibrate.add_argument("--split", default="train", choices=["train", "test", "all"],
                           help="which part of the deterministic 80/20 hold-out split to fit (default train)")
    calibrate.add_argument("--work-dir", default=None, help="checkpoints and logs (default: next to --out)")
    calibrate.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --work-dir")
    calibrate.add_argument("--logger", default="wandb", choices=["wandb", "csv", "none"],
                           help="wandb runs offline unless WANDB_MODE=online")
    calibrate.add_argument("--agents", type=int, default=None, help="cascades: agents in the simulated world")
    calibrate.add_argument("--items", type=int, default=None, help="cascades: cascades per simulated scenario")
    calibrate.add_argument("--debias", type=int, default=0, metavar="ROUNDS",
                           help="cascades: correct the mean-field fit's bias by simulation, this many rounds")
    calibrate.add_argument("--mechanism", action="append", default=[], metavar="NAME",
                           choices=["feed_item_spread", "feed_item_pace", "resharer_novelty"],
                           help="cascades: an opt-in mechanism of the simulated world (repeat for several): "
                                "feed_item_spread, feed_item_pace (brings feed_item_spread), resharer_novelty")
    calibrate.add_argument("--step-minutes", type=_positive_int("--step-minutes"), default=None, metavar="M",
                           help="cascades: the simulated world's step (default 10; finer steps let trees deepen "
                                "within the first 10 minutes, as real ones do, at proportionally more cost per step)")
    calibrate.add_argument("--checkpoint-every", type=_positive_int("--checkpoint-every"), default=None, metavar="K",
                           help="cascades: keep every K-th step's state for the backward pass and recompute the rest "
                                "(memory no longer grows with the steps; about one more forward pass)")
    calibrate.add_argument("--growth-weight", type=float, default=None, metavar="W",
                           help="cascades: weight of the loss's growth-after-the-first-hour term (default 0)")
    calibrate.add_argument("--posterior", action="store_true",
                           help="cascades: also write the parameters' posterior beside --out (FITTED.posterior.json)")
    calibrate.add_argument("--batch", type=_positive_int("--batch"), default=None,
                           help="cascades: simulated scenarios per step (default 2; a multiple of devices x nodes)")
    calibrate.add_argument("--devices", type=_positive_int("--devices"), default=1,
                           help="cascades: processes per node (CPU processes, or GPUs with --device cuda), each "
                                "simulating its share of the step's scenarios; Lightning's DDP all-reduces gradients")
    calibrate.add_argument("--num-nodes", type=_positive_int("--num-nodes"), default=1,
                           help="cascades: nodes of a multi-node fit (start it on each with torchrun; see "
                                "docs/concepts/distributed.md)")
    calibrate.add_argument("--strategy", default="auto", choices=["auto", "ddp"],
                           help="Lightning strategy: auto (one process unless --devices/--num-nodes > 1) or ddp")
    calibrate.add_argument("--quiet", action="store_true", help="no progress bar")
    add_executor_options(calibrate)  # cascades --posterior: its seed replicates are independent simulations
    calibrate.set_defaults(func=_cmd_calibrate)

    evaluate = sub.add_parser("evaluate", help="metrics of fitted parameters on data (by default the held-out split)")
    evaluate.add_argument("kind", choices=kinds)
    evaluate.add_argument("--params", required=True, metavar="FITTED.json")
    evaluate.add_argument("--data", action="append", required=True, metavar="PATH")
    evaluate.add_argument("--json", default=None, metavar="METRICS.json")
    evaluate.add_argument("--split", default="test", choices=["train", "test", "all"])
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.set_defaults(func=_cmd_evaluate)

    check = sub.add_parser("check", help="posterior-predictive check: the fitted model's simulations against the "
                                         "data and naive references (copy the training data, constants)")
    check.add_argument("kind", choices=kinds)
    check.add_argument("--params", required=True, metavar="FITTED.json")
    check.add_argument("--data", action="append", required=True, metavar="PATH")
    check.add_argument("--split", default="test", choices=["train", "test", "all"])
    check.add_argument("--json", default=None, metavar="CHECK.json")
    check.add_argument("--plots", default=None, metavar="DIR", help="write one PNG per metric family here")
    check.add_argument("--device", default="cpu")
    check.add_argument("--seed", type=int, default=0)
    check.set_defaults(func=_cmd_check)

    forecast = sub.add_parser("forecast", help="forecast unfolding cascades from their first hours")
    forecast.add_argument("kind", choices=["cascades"])
    forecast.add_argument("--params", required=True, metavar="FITTED.json")
    forecast.add_argument("--data", action="append", required=True, metavar="PATH")
    forecast.add_argument("--observe-h", type=float, default=1.0)
    forecast.add_argument("--horizon-h", type=float, default=72.0)
    forecast.add_argument("--reading-minutes", type=float, default=10.0,
                          help="read the first hours every this many minutes, whatever the fit's step (a whole "
                               "number of its steps)")
    forecast.add_argument("--ensemble", type=_positive_int("--ensemble"), default=24,
                          help="scenarios in the ensemble (each with C items; more is a finer conditioning)")
    forecast.add_argument("--postprocess", default="emos", choices=["emos", "none"],
                          help="calibrate the ensemble on the training cascades (emos) or report it raw")
    forecast.add_argument("--posterior", action="store_true",
                          help="draw the ensemble's parameters from the fit's posterior (FITTED.posterior.json)")
    forecast.add_argument("--json", default=None, metavar="METRICS.json")
    forecast.add_argument("--split", default="test", choices=["train", "test", "all"])
    forecast.add_argument("--device", default="cpu")
    forecast.add_argument("--seed", type=int, default=0)
    forecast.add_argument("--chunk", type=_positive_int("--chunk"), default=None,
                          help="at most this many ensemble scenarios per batch (default: one batch per parameter "
                               "set); batches run side by side with --executor ray; the forecast is the same")
    add_executor_options(forecast)
    forecast.set_defaults(func=_cmd_forecast)
