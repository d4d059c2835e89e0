"""Calibration targets of reshare cascades, computed by the same code from real data and from simulations.

Everything here reads a :class:`~lpm.data.CascadeTable` (a loader's output, or
``CascadeTable.from_state`` of a simulation with exact trees), so observed and simulated cascades
are measured identically. :func:`cascade_metrics` compares two sets the way papers report it:
NRMSE of the mean size, depth and max-breadth curves over time (as OASIS reports for Twitter15/16),
and two-sample Kolmogorov-Smirnov distances of final sizes and reshare delays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from lpm import kernels
from lpm.data.cascades import CascadeTable
from lpm.metrics.trees import tree_curves
from lpm.errors import ConfigError

__all__ = ["GROWTH_HOURS", "DEPTH_LEVELS", "CascadeTargets", "cascade_targets", "cascade_metrics", "ks_statistic", "nrmse"]

#: Times (hours since the source post) at which growth, depth and breadth curves are read.
GROWTH_HOURS: tuple[float, ...] = (1 / 6, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 24.0, 48.0, 72.0)
#: Depth levels the depth profile counts reshares in: ``(first, last)`` hops from the root, the last open.
DEPTH_LEVELS: tuple[tuple[int, Optional[int]], ...] = ((1, 1), (2, 2), (3, 4), (5, 7), (8, None))


@dataclass(frozen=True, eq=False)
class CascadeTargets:
    """Summary statistics of ``M`` cascades.

    Shapes:
        hours: ``(T,)`` reading times.
        size: ``(M, T)`` nodes (root included) that joined by each time.
        depth: ``(M, T)`` maximum depth reached by each time.
        breadth: ``(M, T)`` largest number of nodes at one depth by each time.
        root_share: ``(M,)`` share of non-root nodes attached to the root (NaN for a lone root).
        delays: ``(R,)`` hours from the source post to each non-root node, within the window.
        delay_owner: ``(R,)`` the cascade each delay belongs to (``None`` if unknown), so that
            :meth:`resample` can draw whole cascades.
        depth_profile: ``(M, L)`` non-root nodes within the window at each of :data:`DEPTH_LEVELS`
            (``None`` if unknown): where in the tree the reshares sit, which the mean depth curve
            alone does not tell (a few very deep cascades move it as much as many slightly deeper ones).
    """

    hours: Tensor
    size: Tensor
    depth: Tensor
    breadth: Tensor
    root_share: Tensor
    delays: Tensor
    delay_owner: Optional[Tensor] = None
    depth_profile: Optional[Tensor] = None

    @property
    def num_cascades(self) -> int:
        return self.size.size(0)

    @property
    def final_size(self) -> Tensor:
        """``(M,)`` size at the last reading time."""
        return self.size[:, -1]

    def resample(self, index: Tensor) -> "CascadeTargets":
        """The targets of the cascades at ``index`` (repeats allowed, as in a bootstrap), delays included.

        Shapes:
            index: ``(M',)`` int64 cascade indices; returns targets of ``M'`` cascades.
        """
        if self.delay_owner is None:
            raise ConfigError("Expected targets with delay_owner to resample (got None; use cascade_targets)")
        index = torch.as_tensor(index, dtype=torch.int64)
        order = torch.argsort(self.delay_owner, stable=True)
        counts = torch.bincount(self.delay_owner, minlength=self.num_cascades)
        starts = torch.cumsum(counts, 0) - counts
        owner, rows, _ = kernels.expand_segments(starts[index], counts[index])
        profile = self.depth_profile[index] if self.depth_profile is not None else None
        return CascadeTargets(self.hours, self.size[index], self.depth[index], self.breadth[index],
                              self.root_share[index], self.delays[order[rows]], owner, profile)

    def summary(self) -> dict[str, float]:
        """Headline numbers (medians over cascades), and with a depth profile the share of all
        reshares at each of :data:`DEPTH_LEVELS` (pooled over cascades: ``share_depth_3_4`` ...)."""
        finite = self.root_share[torch.isfinite(self.root_share)]
        levels: dict[str, float] = {}
        if self.depth_profile is not None:
            pooled = self.depth_profile.double().sum(0)
            shares = pooled / pooled.sum() if float(pooled.sum()) > 0 else torch.full_like(pooled, float("nan"))
            levels = {f"share_depth_{_level_name(level)}": float(v) for level, v in zip(DEPTH_LEVELS, shares)}
        return {
            "cascades": float(self.num_cascades),
            "median_final_size": float(self.final_size.median()),
            "median_final_depth": float(self.depth[:, -1].median()),
            "median_final_breadth": float(self.breadth[:, -1].median()),
            "root_share": float(finite.mean()) if finite.numel() else float("nan"),
            "share_delays_within_1h": float((self.delays <= 1.0).double().mean()) if self.delays.numel() else float("nan"),
            "share_delays_within_24h": float((self.delays <= 24.0).double().mean()) if self.delays.numel() else float("nan"),
            **levels,
        }


_DEEPEST = torch.iinfo(torch.int64).max


def _level_name(level: tuple[int, Optional[int]]) -> str:
    first, last = level
    return f"{first}_plus" if last is None else str(first) if last == first else f"{first}_{last}"


def cascade_targets(table: CascadeTable, hours: Sequence[float] = GROWTH_HOURS) -> CascadeTargets:
    """Growth, depth and breadth curves, root attachment and delays of every cascade in ``table``.

    Nodes later than the last reading time are ignored (the window, e.g. 72 h).
    """
    hours_t = torch.as_tensor(list(hours), dtype=torch.float64)
    if hours_t.numel() == 0 or bool((hours_t[1:] <= hours_t[:-1]).any()) or bool((hours_t <= 0).any()):
        raise ConfigError(f"Expected increasing positive reading hours (got {list(hours)})")
    m = table.num_cascades
    cascade, time_h, depth = table.cascade, table.time_h.double(), table.depth
    # simulated times are float32 multiples of dt: read "by h" with a tolerance far below a step
    tolerance = 1e-5
    curves = tree_curves(cascade, time_h, depth, m, hours_t + tolerance)
    size = curves["size"].double()
    deepest = curves["depth"].clamp_min(0).double()
    # breadth of the reshares (levels >= 1): the root level is one node, so the curve over all levels
    # is that breadth wherever a cascade has a reshare, and 0 where it has none yet
    breadth = torch.where(curves["size"] > 1, curves["max_breadth"], 0).double()
    window = time_h <= hours_t[-1] + tolerance
    child = (table.parent >= 0) & window
    on_root = child & (table.depth == 1)
    children = torch.bincount(cascade[child], minlength=m).double()
    root_share = torch.bincount(cascade[on_root], minlength=m).double() / children
    profile = torch.stack([torch.bincount(cascade[child & (depth >= first) & (depth <= (last if last is not None else _DEEPEST))],
                                          minlength=m) for first, last in DEPTH_LEVELS], 1)
    return CascadeTargets(hours_t, size, deepest, breadth, root_share, time_h[child], cascade[child], profile)


def ks_statistic(a: Tensor, b: Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov distance ``sup_x |F_a(x) - F_b(x)|``."""
    a, b = a.double().flatten().sort().values, b.double().flatten().sort().values
    if a.numel() == 0 or b.numel() == 0:
        raise ConfigError(f"Expected two non-empty samples (got {a.numel()} and {b.numel()} values)")
    grid = torch.cat([a, b])
    cdf_a = torch.searchsorted(a, grid, right=True).double() / a.numel()
    cdf_b = torch.searchsorted(b, grid, right=True).double() / b.numel()
    return float((cdf_a - cdf_b).abs().max())


def nrmse(predicted: Tensor, observed: Tensor) -> float:
    """Root-mean-square error normalised by the observed range (by the observed mean when flat)."""
    predicted, observed = predicted.double(), observed.double()
    rmse = float(((predicted - observed) ** 2).mean().sqrt())
    spread = float(observed.max() - observed.min())
    scale = spread if spread > 0 else float(observed.abs().mean())
    return rmse / scale if scale > 0 else rmse


def cascade_metrics(simulated: CascadeTargets, observed: CascadeTargets) -> dict[str, float]:
    """The cascade evaluation metrics of ``simulated`` against ``observed`` (same reading hours).

    Returns ``nrmse_size``, ``nrmse_depth``, ``nrmse_breadth`` (mean curves over time), ``ks_size``
    (final sizes), ``ks_delay`` (reshare delays) and ``root_share_error`` (absolute difference of
    mean root attachment).
    """
    if not torch.equal(simulated.hours, observed.hours):
        raise ConfigError(f"Expected the same reading hours (got {simulated.hours.tolist()} and {observed.hours.tolist()})")
    share = lambda t: float(t.root_share[torch.isfinite(t.root_share)].mean())  # noqa: E731
    return {
        "nrmse_size": nrmse(simulated.size.mean(0), observed.size.mean(0)),
        "nrmse_depth": nrmse(simulated.depth.mean(0), observed.depth.mean(0)),
        "nrmse_breadth": nrmse(simulated.breadth.mean(0), observed.breadth.mean(0)),
        "ks_size": ks_statistic(simulated.final_size, observed.final_size),
        "ks_delay": ks_statistic(simulated.delays, observed.delays),
        "root_share_error": abs(share(simulated) - share(observed)),
    }
