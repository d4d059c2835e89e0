"""The gradient-free baseline of the cascade fit: optuna's TPE on the same loss and budget."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping, Optional

import torch

from lpm.calibration.cascade_world import CascadeWorld, load_cascades, set_params
from lpm.calibration.common import FitResult, fit, save_params
from lpm.calibration.fit_cascades import CascadeCalibration
from lpm.targets import cascade_targets

__all__ = ["TPE_BOUNDS", "fit_tpe", "compare_with_tpe"]


#: search box of the gradient-free baseline (log-uniform where a parameter spans orders of magnitude)
TPE_BOUNDS = {"transmissibility": (1e-4, 0.2, True), "audience": (1e2, 1e6, True), "audience_spread": (0.05, 3.0, False),
              "attention": (0.02, 0.98, False), "attention_spread": (0.05, 4.0, False),
              "feed_half_life_h": (0.02, 10.0, True), "feed_tail": (1.05, 5.0, False),
              "resharer_audience": (1.0, 1e4, True), "resharer_audience_spread": (0.05, 3.0, False),
              "resharer_item_spread": (0.05, 3.0, False), "first_level_audience_ratio": (0.3, 30.0, True),
              "feed_item_spread": (0.05, 3.0, False), "resharer_half_life_h": (0.1, 200.0, True)}


def fit_tpe(module: CascadeCalibration, *, budget_s: float, seed: int = 0) -> FitResult:
    """The gradient-free baseline: optuna's TPE sampler minimising the same loss (same simulation,
    same seeds per evaluation index) over :data:`TPE_BOUNDS` for the parameters ``module`` fits,
    starting from ``module``'s current values, for ``budget_s`` seconds of wall time."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    free = [name for name in module.world.params if name not in module.fixed]
    start_values = module.fitted_params()
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.enqueue_trial({name: start_values[name] for name in free})
    history: list[tuple[float, int, float]] = []
    start = time.perf_counter()

    def objective(trial) -> float:
        values = {name: trial.suggest_float(name, low, high, log=log)
                  for name, (low, high, log) in TPE_BOUNDS.items() if name in free}
        set_params(module.model, values)
        with torch.no_grad():
            loss = float(module.loss_terms(trial.number)["loss"])
        history.append((time.perf_counter() - start, trial.number + 1, loss))
        return loss

    study.optimize(objective, timeout=budget_s)
    best = dict(start_values, **study.best_params)
    set_params(module.model, best)
    return FitResult(params=best, loss=study.best_value, history=history, steps=len(study.trials))


def compare_with_tpe(data: list[Path], out_dir: Path, *, budget_s: float, split: str = "train", seed: int = 0,
                     evaluations: int = 4, world: Optional[CascadeWorld] = None) -> dict:
    """Gradient descent vs TPE on the same loss at the same wall-time budget.

    Both start from :data:`DEFAULTS`. Each method's training losses are single noisy simulations,
    so the final comparison re-evaluates both fitted parameter sets on ``evaluations`` common seeds
    never used in training. Writes ``out_dir/compare.json`` with both loss-vs-time histories.
    """
    from lpm.calibration.common import atomic_write_json

    observed = cascade_targets(load_cascades(data, split=split))
    world = world or CascadeWorld()
    gradient = CascadeCalibration(observed, world, seed=seed)
    grad_result = fit(gradient, kind="cascades", max_steps=10_000, budget_s=budget_s, out=out_dir / "gradient.json",
                      work_dir=out_dir / "gradient_work", logger="csv", progress=False)
    tpe = CascadeCalibration(observed, world, seed=seed)
    tpe_result = fit_tpe(tpe, budget_s=budget_s, seed=seed)
    save_params(out_dir / "tpe.json", "cascades", tpe_result["params"], {"world": world.__dict__, "loss": tpe_result["loss"]})

    def held_out_loss(module: CascadeCalibration, params: Mapping[str, float]) -> float:
        set_params(module.model, params)
        with torch.no_grad():
            return sum(float(module.loss_terms(10**6 + k)["loss"]) for k in range(evaluations)) / evaluations

    report = {"budget_s": budget_s, "world": world.__dict__,
              "gradient": {"steps": grad_result["steps"], "params": grad_result["params"],
                           "eval_loss": held_out_loss(gradient, grad_result["params"]), "history": grad_result["history"]},
              "tpe": {"trials": tpe_result["steps"], "params": tpe_result["params"],
                      "eval_loss": held_out_loss(tpe, tpe_result["params"]), "history": tpe_result["history"]}}
    atomic_write_json(out_dir / "compare.json", report)
    return report
