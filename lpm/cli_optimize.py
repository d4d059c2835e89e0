"""``lpm optimize``: the best intervention plan for a scenario under a budget, validated against
doing nothing, a grid and TPE on fresh seeds with the exact dynamics."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Mapping

import torch

from lpm.errors import ConfigError
from lpm.executor import add_executor_options, make_executor

__all__ = ["add_parser", "build_levers", "LEVERS", "OBJECTIVES"]

#: Lever names ``--levers`` accepts, and the ``--budget`` keys each reads (with defaults).
LEVERS: dict[str, dict[str, float]] = {
    "prebunk": {"prebunk_share": 0.1, "prebunk_strength": 1.0},
    "label_timing": {"label_earliest_h": 1.0, "label_latest_h": 24.0, "label_strength": 0.5},
    "downrank": {"downrank_max": 0.9, "engagement_cost": 0.0},
    "guidance": {"guidance_strength": 1.0, "guidance_earliest_h": 0.0, "guidance_latest_h": 48.0},
}
OBJECTIVES = ("final_reach", "final_reshares", "peak_negative_share", "final_polarization")


def _parse_budget(items: list[str]) -> dict[str, float]:
    known = {key for keys in LEVERS.values() for key in keys}
    out: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise ConfigError(f"Expected --budget KEY=VALUE with KEY among {sorted(known)} (got {item!r})")
        try:
            out[key] = float(value)
        except ValueError:
            raise ConfigError(f"Expected a number for --budget {key} (got {value!r})") from None
    return out


def build_levers(names: list[str], graph, population, model, budget: Mapping[str, float], horizon_h: float,
                 scenario_module=None, seed: int = 0) -> list:
    """The levers ``names`` for a built scenario (graph, population of one scenario, model)."""
    from lpm.levers import DownrankSchedule, GuidancePlan, LabelTiming, TargetedPrebunking, agent_features

    unknown = [n for n in names if n not in LEVERS]
    if unknown or not names:
        raise ConfigError(f"Expected --levers among {sorted(LEVERS)} (got {names})")
    values = {k: v for lever in names for k, v in LEVERS[lever].items()}
    values.update(budget)
    cascade = getattr(model, "cascade", None)
    levers = []
    for name in names:
        if name in ("prebunk", "label_timing", "downrank") and cascade is None:
            raise ConfigError(f"Expected a scenario with a cascade for lever {name!r} (this one has none)")
        if name == "prebunk":
            item = cascade.items[0]
            features = agent_features(graph, population, topic=item.topic, stance=item.stance)
            levers.append(TargetedPrebunking(features, values["prebunk_share"], strength=values["prebunk_strength"]))
        elif name == "label_timing":
            latest = min(values["label_latest_h"], horizon_h)
            levers.append(LabelTiming(earliest_h=values["label_earliest_h"], latest_h=latest,
                                      at=0.5 * (values["label_earliest_h"] + latest), strength=values["label_strength"]))
        elif name == "downrank":
            levers.append(DownrankSchedule(max_factor=values["downrank_max"], latest_h=horizon_h, horizon_h=horizon_h,
                                           factor=0.3 * values["downrank_max"], at=min(2.0, horizon_h / 2),
                                           engagement_cost=values["engagement_cost"]))
        elif name == "guidance":
            region = getattr(scenario_module, "in_region", None)
            if region is None:
                raise ConfigError("Expected a scenario with a hit region (in_region) for lever 'guidance'")
            officials = torch.argsort(graph.out_degree(), descending=True)[:10].tolist()
            latest = min(values["guidance_latest_h"], horizon_h)
            levers.append(GuidancePlan(officials, graph, region(graph.num_nodes, seed), strength=values["guidance_strength"],
                                       earliest_h=values["guidance_earliest_h"], latest_h=latest,
                                       at=0.5 * (values["guidance_earliest_h"] + latest)))
    return levers


def _objective(name: str):
    import importlib

    opt = importlib.import_module("lpm.optimize")  # the module: lpm.optimize names the function at the top level
    if name not in OBJECTIVES:
        raise ConfigError(f"Expected --objective among {list(OBJECTIVES)} (got {name!r})")
    return getattr(opt, name)()


def targeting_summary(lever, bins: int = 10) -> list[dict[str, float]]:
    """Share of each follower-count decile the prebunking policy selects (hard top-k)."""
    import numpy as np

    chosen = lever.selection(hard=True).detach().cpu().numpy()
    # counts, stored as log1p: round away the float error of expm1(log1p(n))
    followers = np.rint(np.expm1(lever.features.raw[:, lever.features.names.index("log_followers")].numpy()))
    order = np.argsort(followers, kind="stable")
    rows = []
    for k, part in enumerate(np.array_split(order, bins)):
        rows.append({"decile": k + 1, "followers_min": float(followers[part].min()),
                     "followers_max": float(followers[part].max()), "share_selected": float(chosen[part].mean())})
    return rows


def _cmd_optimize(args: argparse.Namespace) -> int:
    from lpm.io_atomic import atomic_path, atomic_savefig, marked_incomplete
    from lpm.provenance import check_run_folder, provenance
    from lpm.optimize import optimize
    from lpm.scenario import load_scenario

    if args.budget_s is not None and not args.budget_s > 0:
        raise ConfigError(f"Expected --budget-s > 0 seconds (got {args.budget_s})")
    if args.iterations < 1 or args.validation_seeds < 2:
        raise ConfigError(f"Expected --iterations >= 1 and --validation-seeds >= 2 (got {args.iterations}, "
                          f"{args.validation_seeds})")
    budget = _parse_budget(args.budget or [])
    objective = _objective(args.objective)
    scenario = load_scenario(args.scenario)
    out = Path(args.out) / scenario.name / "optimize"
    check_run_folder(out, overwrite=args.overwrite, summary="plan.json")  # before any simulation
    agents = args.agents or scenario.agents
    days = args.days or scenario.days
    steps = max(1, round(days * 24.0 / scenario.dt))
    device = torch.device(args.device)
    start = time.perf_counter()
    graph = scenario.build_graph(agents, scenario.seed, device)
    population = scenario.build_population(graph, 1, scenario.seed)
    model = scenario.build_model(graph, scenario.dt, scenario.seed).to(device=device, dtype=population.opinion.dtype)
    posterior = None
    if args.params is not None:
        from lpm.calibration.common import apply_fitted

        print(f"fitted parameters from {args.params}: {', '.join(apply_fitted(model, args.params)[1])}")
        if args.posterior:
            from lpm.calibration.posterior import load_posterior, posterior_path

            posterior = load_posterior(posterior_path(args.params), kind="cascades")
    elif args.posterior:
        raise ConfigError("Expected --params FITTED.json with --posterior (its posterior lies beside it)")
    module = _scenario_module(args.scenario)
    levers = build_levers(args.levers.split(","), graph, population, model, budget, steps * scenario.dt, module,
                          seed=scenario.seed)  # the scenario's own hit region
    with make_executor(args.executor, args.address) as executor:
        plan = optimize(model, population, graph, levers, objective, steps=steps, iterations=args.iterations,
                        budget_s=args.budget_s, validation_seeds=args.validation_seeds, lr=args.lr, seed=args.seed,
                        checkpoint_every=args.checkpoint_every, posterior=posterior, draws=args.draws,
                        chunk=args.chunk, executor=executor)
    total_s = time.perf_counter() - start
    prebunk = [lever for lever in levers if lever.name == "prebunk"]
    report = {
        "scenario": scenario.name, "agents": agents, "steps": steps, "objective": objective.name,
        "levers": args.levers.split(","), "budget": budget, "values": plan.values,
        "grid_best": min(plan.grid, key=lambda r: r["score"]), "tpe_best": min(plan.tpe, key=lambda r: r["score"]),
        "meta": {**plan.meta, "total_seconds": total_s, "device": str(device)},
        "comparison": plan.comparison.to_dict(orient="records"),
        "targeting": targeting_summary(prebunk[0]) if prebunk else None,
        "provenance": provenance(config={k: v for k, v in vars(args).items() if k not in ("func", "argv")},
                                 seeds=[int(s) for s in plan.validation.seeds], argv=getattr(args, "argv", None)),
    }
    if plan.comparison_point_estimate is not None:
        report["comparison_point_estimate"] = plan.comparison_point_estimate.to_dict(orient="records")
    import pandas as pd

    from lpm.plots_optimize import convergence_figure, effects_figure, targeting_figure

    with marked_incomplete(out, "optimize") as folder:  # plan.json, written last, marks a finished run
        plan.validation.to_parquet(folder / "validation.parquet")
        with atomic_path(folder / "comparison.parquet") as tmp:
            plan.comparison.to_parquet(tmp, index=False)
        with atomic_path(folder / "trace.parquet") as tmp:
            pd.DataFrame(plan.trace).to_parquet(tmp, index=False)
        figures = {"convergence.png": convergence_figure(plan), "effects.png": effects_figure(plan)}
        if prebunk:
            figures["targeting.png"] = targeting_figure(report["targeting"])
        for name, figure in figures.items():
            atomic_savefig(figure, folder / name)
        with atomic_path(folder / "plan.json") as tmp:
            tmp.write_text(json.dumps(report, indent=2, default=float))
    print(plan.comparison.to_string(index=False))
    if plan.comparison_point_estimate is not None:
        print("at the point estimate (no parameter uncertainty), same seeds:")
        print(plan.comparison_point_estimate.to_string(index=False))
    print(f"wrote {out} ({total_s:.0f} s)")
    return 0


def _scenario_module(name: str):
    import importlib

    try:
        return importlib.import_module(f"lpm.scenarios.{name}")
    except ImportError:
        return None


def add_parser(sub) -> None:
    """Add ``optimize`` to the ``lpm`` sub-command parser."""
    p = sub.add_parser("optimize", help="find the best intervention plan under a budget (gradient), validated "
                                        "against a grid and TPE with the exact dynamics on fresh seeds")
    p.add_argument("scenario", help="a built-in scenario (e.g. misinformation, disaster) or a .py file")
    p.add_argument("--levers", required=True, help=f"comma-separated, among {sorted(LEVERS)}")
    p.add_argument("--budget", action="append", metavar="KEY=VALUE",
                   help="budgets and bounds, e.g. prebunk_share=0.1 (keys: " +
                        ", ".join(f"{k} (default {v})" for keys in LEVERS.values() for k, v in keys.items()) + ")")
    p.add_argument("--objective", default="final_reach", choices=OBJECTIVES)
    p.add_argument("--budget-s", type=float, default=None, help="wall time for the gradient search (TPE gets the same)")
    p.add_argument("--iterations", type=int, default=30, help="gradient steps at most (default 30)")
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (default 0.1)")
    p.add_argument("--validation-seeds", type=int, default=16, help="fresh seeds of the exact validation (default 16)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="gradient checkpointing through time")
    p.add_argument("--params", default=None, metavar="FITTED.json", help="a cascade fit to set the model's parameters")
    p.add_argument("--posterior", action="store_true",
                   help="optimise the mean over posterior draws (FITTED.posterior.json beside --params) and "
                        "validate with one draw per seed, beside the point estimate")
    p.add_argument("--draws", type=int, default=4, help="posterior draws the search averages over (default 4)")
    p.add_argument("--agents", type=int, default=None)
    p.add_argument("--days", type=float, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs", help="output folder (default: runs)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished optimisation in the output folder")
    p.add_argument("--chunk", type=int, default=None,
                   help="at most this many plans per batch when scoring the grid and TPE trials (default: all of a "
                        "round in one); batches run side by side with --executor ray")
    add_executor_options(p)
    p.set_defaults(func=_cmd_optimize)
