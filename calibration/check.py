"""Posterior-predictive checks: a fitted model's metrics beside naive references, on one data split.

A fit earns trust only if its simulations reproduce data it was not fitted on better than what needs
no model at all. Every ``check`` (``lpm check cascades|sentiment|stance``) returns a
:class:`CheckReport`: one row per metric (lower is better unless the metric says otherwise), with

* ``model``: the metric of the fitted model's simulations against the observed split;
* ``model_noise``: the standard deviation of that metric due to the simulation's own sampling
  (bootstrap over simulated units), so a difference smaller than it means nothing;
* one column per naive reference (e.g. ``copy_train``: the training split used as the prediction;
  ``constant``: one constant share), computed with the same metric function on the same split;
* ``reference_noise``: the bootstrap standard deviation of the best reference (resampling the
  observed units), the band within which "as good as copying the data" is judged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from lpm.errors import ConfigError

__all__ = ["CheckReport", "bootstrap_sd", "format_report", "rows_from"]


@dataclass
class CheckReport:
    """Metrics of a fitted model and of naive references on one split.

    Args:
        kind: ``cascades``, ``sentiment`` or ``stance``.
        split: ``train``, ``test`` or ``all``.
        rows: ``metric -> {column: value}``; columns ``model``, ``model_noise``, each reference's
            name, and optionally ``reference_noise``.
        references: the names of the reference columns, in display order.
        higher_is_better: metrics where a larger value is better (e.g. a correlation).
        meta: counts and settings (simulated units, observed units, parameters file).
        figures: named matplotlib figures (observed, simulated band, reference), not serialised.
    """

    kind: str
    split: str
    rows: dict[str, dict[str, float]]
    references: list[str]
    higher_is_better: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for metric, row in self.rows.items():
            missing = [c for c in ("model", *self.references) if c not in row]
            if missing:
                raise ConfigError(f"Expected columns {missing} in check row {metric!r} (got {sorted(row)})")

    def best_reference(self, metric: str) -> tuple[str, float]:
        """The best naive reference for ``metric``: ``(name, value)``."""
        row = self.rows[metric]
        pick = max if metric in self.higher_is_better else min
        name = pick(self.references, key=lambda r: row[r])
        return name, row[name]

    def verdict(self, metric: str) -> str:
        """``better``, ``within noise`` or ``worse`` than the best reference, the band being the sum
        of the model's and the reference's sampling noise (0 where not measured)."""
        row = self.rows[metric]
        _, ref = self.best_reference(metric)
        band = row.get("model_noise", 0.0) + row.get("reference_noise", 0.0)
        sign = 1.0 if metric in self.higher_is_better else -1.0
        gain = sign * (row["model"] - ref)
        if gain > band:
            return "better"
        return "within noise" if gain >= -band else "worse"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "split": self.split, "references": list(self.references),
                "higher_is_better": list(self.higher_is_better), "meta": self.meta,
                "rows": {m: {**row, "best_reference": self.best_reference(m)[0], "verdict": self.verdict(m)}
                         for m, row in self.rows.items()}}


def format_report(report: CheckReport) -> str:
    """A plain-text table: one line per metric, the model with its noise, each reference, the verdict."""
    columns = ["model", "+-noise", *report.references, "verdict"]
    width = max([len(m) for m in report.rows] + [6])
    lines = [f"lpm check {report.kind} (split {report.split}): lower is better"
             + (f" except {', '.join(report.higher_is_better)}" if report.higher_is_better else ""),
             " " * (width + 2) + "".join(f"{c:>14}" for c in columns)]
    for metric, row in report.rows.items():
        values = [row["model"], row.get("model_noise", math.nan), *[row[r] for r in report.references]]
        lines.append(f"  {metric:<{width}}" + "".join(f"{v:>14.4f}" for v in values) + f"{report.verdict(metric):>14}")
    return "\n".join(lines)


def bootstrap_sd(statistic: Callable[[torch.Tensor], float], units: int, *, draws: int = 200, seed: int = 0) -> float:
    """Standard deviation of ``statistic(index)`` over bootstrap resamples of ``units`` units.

    ``statistic`` takes a ``(units,)`` int64 index of resampled units (with replacement) and returns
    the metric computed on them; the spread of those values is the metric's sampling noise.
    """
    if units < 2 or draws < 2:
        raise ConfigError(f"Expected at least 2 units and 2 draws for a bootstrap (got {units}, {draws})")
    generator = torch.Generator().manual_seed(seed)
    values = [statistic(torch.randint(0, units, (units,), generator=generator)) for _ in range(draws)]
    return float(torch.tensor(values, dtype=torch.float64).std())


def rows_from(model: Mapping[str, float], model_noise: Mapping[str, float],
              references: Mapping[str, Mapping[str, float]], reference_noise: Mapping[str, float] | None = None,
              metrics: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Assemble report rows from per-column metric dictionaries (same metric names in each)."""
    names = list(metrics) if metrics is not None else list(model)
    rows = {}
    for m in names:
        row = {"model": float(model[m]), "model_noise": float(model_noise.get(m, 0.0))}
        row.update({ref: float(values[m]) for ref, values in references.items()})
        if reference_noise is not None and m in reference_noise:
            row["reference_noise"] = float(reference_noise[m])
        rows[m] = row
    return rows
