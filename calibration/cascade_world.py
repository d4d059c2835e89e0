"""The synthetic platform cascades are simulated on, its parameters, and exact simulation of cascades.

:class:`CascadeWorld` builds the follower graph, the items' sources and a cascade-only
:class:`~lpm.Model` from named parameter values (:data:`PARAMS`, stored behind the constraint maps
of ``_RAW``); :func:`simulate_cascades` samples exact reshare trees from it. The fit itself is in
:mod:`lpm.calibration.fit_cascades`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from lpm.calibration.common import split_index
from lpm.data.cascades import CascadeTable
from lpm.dynamics.base import inverse_softplus, logit
from lpm.dynamics.cascade import Cascade, Item, init_cascade_state
from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.model import Model
from lpm.params import positive_value
from lpm.relax import Hard
from lpm.simulate import simulate
from lpm.state import PopulationState
from lpm.targets import GROWTH_HOURS

__all__ = ["PARAMS", "RESHARER_PARAMS", "DEFAULTS", "DEFAULT_FIXED", "RECORD", "LEVEL_RECORD", "CascadeWorld", "model_params",
           "simulate_cascades", "set_params", "apply_params", "world_from_meta", "load_cascades"]

PARAMS = ("transmissibility", "audience", "audience_spread", "attention", "attention_spread", "feed_half_life_h",
          "feed_tail", "resharer_audience", "resharer_audience_spread", "resharer_item_spread",
          "first_level_audience_ratio", "feed_item_spread", "resharer_half_life_h")
#: parameters of the resharer-audience mechanism, present only in worlds with ``resharer_audience=True``
RESHARER_PARAMS = ("resharer_audience", "resharer_audience_spread", "resharer_item_spread",
                   "first_level_audience_ratio", "resharer_half_life_h")
#: present only in worlds with ``resharer_item_spread=True`` (an addition to the resharer mechanism)
ITEM_SPREAD_PARAMS = ("resharer_item_spread",)
#: present only in worlds with ``first_level_audience=True`` (an addition to the resharer mechanism)
FIRST_LEVEL_PARAMS = ("first_level_audience_ratio",)
#: present only in worlds with ``feed_item_spread=True``
FEED_ITEM_PARAMS = ("feed_item_spread",)
#: present only in worlds with ``resharer_novelty=True`` (an addition to the resharer mechanism)
NOVELTY_PARAMS = ("resharer_half_life_h",)
DEFAULTS: dict[str, float] = dict(transmissibility=0.004, audience=30000.0, audience_spread=1.0, attention=0.3,
                                  attention_spread=1.0, feed_half_life_h=0.25, feed_tail=1.5, resharer_audience=30.0,
                                  resharer_audience_spread=1.5, resharer_item_spread=1.0)
#: the starting ratio of worlds with ``first_level_audience`` (kept out of :data:`DEFAULTS`, which fits
#: and tests pass whole to worlds without it): 1 is the model without the ratio
FIRST_LEVEL_DEFAULT = 1.0
#: the starting feed half-life spread of worlds with ``feed_item_spread`` (kept out of :data:`DEFAULTS`
#: for the same reason)
FEED_ITEM_DEFAULT = 0.5
#: the starting resharer half-life (hours) of worlds with ``resharer_novelty``: half a day, slow against
#: the feed's minutes, so a fit starts near the model without it
NOVELTY_DEFAULT = 12.0
#: held fixed by default: not separately identifiable from ``transmissibility`` (see the module docstring)
DEFAULT_FIXED = ("attention",)

#: each parameter's raw (unconstrained) attribute on the Cascade and the map from its value to it
_RAW = {"transmissibility": ("raw_transmissibility", logit), "audience": ("raw_audience", math.log),
        "audience_spread": ("raw_audience_spread", inverse_softplus), "attention": ("raw_attention", logit),
        "attention_spread": ("raw_attention_spread", inverse_softplus),
        "feed_half_life_h": ("raw_feed_half_life", inverse_softplus),
        "feed_tail": ("raw_feed_tail", lambda tail: inverse_softplus(tail - 1.0)),  # read as 1 + softplus
        "resharer_audience": ("raw_resharer_audience", math.log),
        "resharer_audience_spread": ("raw_resharer_audience_spread", inverse_softplus),
        "resharer_item_spread": ("raw_resharer_item_spread", inverse_softplus),
        "first_level_audience_ratio": ("raw_first_level_ratio", math.log),
        "feed_item_spread": ("raw_feed_item_spread", inverse_softplus),
        "resharer_half_life_h": ("raw_resharer_half_life", inverse_softplus)}


def _direct(state, events) -> Tensor:
    if events.direct_reshares is None:
        return torch.zeros_like(state.reshared[:, 0, :])
    return events.direct_reshares


def _second_level(state, events) -> Tensor:
    if events.second_level_reshares is None:
        return torch.zeros_like(state.reshared[:, 0, :])
    return events.second_level_reshares


def _sizes(state, events) -> Tensor:
    return state.reshared.sum(1)


RECORD = {"size": _sizes, "direct": _direct}
#: also the expected reshares at depth 2, from a world whose initial state follows levels
LEVEL_RECORD = {**RECORD, "second": _second_level}


@dataclass(frozen=True)
class CascadeWorld:
    """The synthetic platform cascades are simulated on.

    Args:
        agents: N.
        m, p_triad: Holme-Kim graph parameters (mean degree ~ 2 m, clustering via triads).
        items: C cascades per scenario (each scenario also draws its own source audiences).
        dt_h: step length (hours).
        reading_interval_h: hours one reading of the feed stands for (``attention`` is the share of
            the feed seen per reading; see :class:`~lpm.dynamics.Cascade`), so a finer ``dt_h``
            splits a post's exposures over more steps instead of multiplying them. Fits saved before
            this option load with their own ``dt_h``: one reading per step, as they were fitted.
        seed: seed of the graph and the sources.
        resharer_audience: resharers other than the source have out-of-graph audiences too
            (:data:`RESHARER_PARAMS`); fits saved before this option load with ``False``.
        resharer_item_spread: those audiences also vary across items (``resharer_item_spread``): with
            one spread across agents only, every simulated cascade attached the same share of its
            reshares to the root (0.70-0.85 on Twitter15 fits) while real ones spread from 0.2 to
            1.0, so simulated trees were all about one level too deep. Applies only with
            ``resharer_audience``; fits saved before this option load with ``False``.
        first_level_audience: resharers attached to the source have larger out-of-graph audiences
            (``first_level_audience_ratio``; see :class:`~lpm.dynamics.Cascade`): with one audience
            for every resharer, fits to Twitter15 put too few reshares at depth 2 and far too many
            at depth 5 and below. Applies only with ``resharer_audience``; its runs follow levels.
            Fits saved before this option load with ``False``.
        feed_item_spread: the feed half-life varies across items (``feed_item_spread``; see
            :class:`~lpm.dynamics.Cascade`): with one half-life, the model's growth after the first
            hour hardly varies between cascades of the same first-hour size, while real growth
            factors spread over an order of magnitude. Off by default until a fit shows it helps.
        feed_item_pace: with ``feed_item_spread``, items differ in pace only (``feed_item_pace``; see
            :class:`~lpm.dynamics.Cascade`): a slow item's posts give as many exposures in all as a
            fast one's, spread over more time, so small first hours can grow late, as they do in
            data (first-hour size and later growth correlate at -0.56 on the Twitter15 test split).
            Without it, slow items also grew into the largest and deepest cascades.
        resharer_novelty: resharers' out-of-graph reach for an item halves ``resharer_half_life_h``
            hours after its post (see :class:`~lpm.dynamics.Cascade`): with a reach that never ages,
            the items whose resharers reach far branch at one rate all the way down, and simulated
            trees are deeper than real ones. Applies only with ``resharer_audience``; fits saved
            before this option load with ``False``.
    """

    agents: int = 10_000
    m: int = 5
    p_triad: float = 0.3
    items: int = 16
    dt_h: float = 1.0 / 6.0
    seed: int = 0
    reading_interval_h: float = 1.0 / 6.0
    resharer_audience: bool = True
    resharer_item_spread: bool = True
    first_level_audience: bool = True
    feed_item_spread: bool = False
    resharer_novelty: bool = False
    feed_item_pace: bool = False

    def __post_init__(self) -> None:
        if self.agents < 10 * self.m or self.items < 1 or not self.dt_h > 0 or not self.reading_interval_h > 0:
            raise ConfigError(f"Expected agents >= 10 m, items >= 1, dt_h > 0 and reading_interval_h > 0 (got {self})")
        if self.feed_item_pace and not self.feed_item_spread:
            raise ConfigError("Expected feed_item_spread=True with feed_item_pace=True (got feed_item_spread=False)")

    def graph(self, device: str | torch.device = "cpu") -> Graph:
        return Graph.holme_kim(self.agents, self.m, self.p_triad, seed=self.seed, device=device)

    def sources(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + 1)
        return torch.randperm(self.agents, generator=generator)[: self.items].tolist()

    def model(self, params: Mapping[str, float]) -> Model:
        """A cascade-only :class:`~lpm.Model` with ``params`` (any missing name takes :data:`DEFAULTS`)."""
        names = self.params
        unknown = set(params) - set(names)
        if unknown:
            raise ConfigError(f"Expected parameters among {names} (got {sorted(unknown)})")
        p = {**DEFAULTS, "first_level_audience_ratio": FIRST_LEVEL_DEFAULT, "feed_item_spread": FEED_ITEM_DEFAULT,
             "resharer_half_life_h": NOVELTY_DEFAULT, **params}
        resharers = dict(resharer_audience=p["resharer_audience"],
                         resharer_audience_spread=p["resharer_audience_spread"]) if self.resharer_audience else {}
        if self.resharer_audience and self.resharer_item_spread:
            resharers["resharer_item_spread"] = p["resharer_item_spread"]
        if self.resharer_audience and self.first_level_audience:
            resharers["first_level_audience_ratio"] = p["first_level_audience_ratio"]
        if self.resharer_audience and self.resharer_novelty:
            resharers["resharer_half_life_h"] = p["resharer_half_life_h"]
        items = [Item(source=s) for s in self.sources()]
        cascade = Cascade(items, transmissibility=p["transmissibility"], attention=p["attention"],
                          attention_spread=p["attention_spread"], audience=p["audience"],
                          audience_spread=p["audience_spread"], feed_half_life_h=p["feed_half_life_h"],
                          feed_tail=p["feed_tail"], reading_interval_h=self.reading_interval_h, **resharers,
                          **({"feed_item_spread": p["feed_item_spread"], "feed_item_pace": self.feed_item_pace}
                             if self.feed_item_spread else {}))
        return Model(cascade=cascade, dt=self.dt_h)

    @property
    def params(self) -> tuple[str, ...]:
        """The names of this world's parameters."""
        feed = () if self.feed_item_spread else FEED_ITEM_PARAMS
        if not self.resharer_audience:
            return tuple(n for n in PARAMS if n not in RESHARER_PARAMS + feed)
        absent = ((ITEM_SPREAD_PARAMS if not self.resharer_item_spread else ())
                  + (FIRST_LEVEL_PARAMS if not self.first_level_audience else ())
                  + (NOVELTY_PARAMS if not self.resharer_novelty else ()) + feed)
        return tuple(n for n in PARAMS if n not in absent)

    def initial_state(self, batch: int, device: str | torch.device = "cpu",
                      dtype: torch.dtype = torch.float32, *, levels: bool = False) -> PopulationState:
        """Nobody exposed yet; ``levels``: the cascade state also follows depth-1 reshares
        (:class:`~lpm.dynamics.cascade_state.LevelCascadeState`, for :data:`LEVEL_RECORD`)."""
        state = PopulationState.create(torch.zeros(batch, self.agents, 1, dtype=dtype, device=device),
                                       torch.zeros(batch, self.agents, 2, dtype=dtype, device=device))
        levels = levels or (self.resharer_audience and self.first_level_audience)  # its dynamics need them
        return init_cascade_state(state, self.items, levels=levels)


def model_params(model: Model) -> dict[str, float]:
    """The constrained values of a world model's parameters."""
    c = model.cascade
    with torch.no_grad():
        return _params_of(c)


def _params_of(c: Cascade) -> dict[str, float]:
    sp = nn.functional.softplus
    return {"transmissibility": float(torch.sigmoid(c.raw_transmissibility)), "audience": float(c.raw_audience.exp()),
            "audience_spread": float(sp(c.raw_audience_spread)), "attention": float(torch.sigmoid(c.raw_attention)),
            "attention_spread": float(sp(c.raw_attention_spread)), "feed_half_life_h": float(c.feed_half_life_h),
            "feed_tail": float(c.feed_tail),
            **({"resharer_audience": float(c.raw_resharer_audience.exp()),
                "resharer_audience_spread": float(sp(c.raw_resharer_audience_spread))}
               if c.raw_resharer_audience is not None and c.raw_resharer_audience_spread is not None else {}),
            **({"resharer_item_spread": float(sp(c.raw_resharer_item_spread))} if c.raw_resharer_item_spread is not None else {}),
            **({"first_level_audience_ratio": float(c.raw_first_level_ratio.exp())}
               if c.raw_first_level_ratio is not None else {}),
            **({"feed_item_spread": float(sp(c.raw_feed_item_spread))} if c.raw_feed_item_spread is not None else {}),
            **({"resharer_half_life_h": float(sp(c.raw_resharer_half_life))}
               if c.raw_resharer_half_life is not None else {})}


def simulate_cascades(world: CascadeWorld, params: Mapping[str, float], *, hours: Sequence[float] = GROWTH_HOURS,
                      batch: int = 4, seed: int = 0, device: str = "cpu", graph: Optional[Graph] = None,
                      continuous_times: bool = True) -> CascadeTable:
    """Exact reshare trees of ``batch x C`` simulated cascades up to ``max(hours)``, as a table.

    A step records its reshares at the step's end; with ``continuous_times`` each reshare's time is
    drawn uniformly within its step instead (``t - U dt``), as a continuous-time process would place
    it. Real delays are continuous, so step-end times alone would give a staircase delay CDF whose
    Kolmogorov-Smirnov distance to any real one is at least the share of reshares in the first step.
    Order within trees is kept: a parent reshared in an earlier step than its child.
    """
    graph = world.graph(device) if graph is None else graph
    model = world.model(params).to(device)
    steps = math.ceil(max(hours) / world.dt_h)
    with torch.no_grad():
        trajectory = simulate(model, world.initial_state(batch, device), graph, steps=steps, record={},
                              seed=[seed * 1_000_003 + b for b in range(batch)], estimator=Hard())
    table = CascadeTable.from_state(trajectory.final.to("cpu"), [0.0] * world.items)
    if not continuous_times:
        return table
    within = torch.rand(table.time_h.shape, generator=torch.Generator().manual_seed(seed + 7), dtype=torch.float64)
    time_h = torch.where(table.parent >= 0, table.time_h - world.dt_h * within, table.time_h)
    return replace(table, time_h=time_h)


def set_params(model: Model, values: Mapping[str, float]) -> None:
    """Write constrained parameter values into a world model's raw parameters (in place)."""
    c = model.cascade
    with torch.no_grad():
        for name, value in values.items():
            attribute, transform = _RAW[name]
            getattr(c, attribute).fill_(transform(float(value)))


def apply_params(model: Model, values: Mapping[str, float], *,
                 reading_interval_h: Optional[float] = None) -> list[str]:
    """Set a scenario model's cascade parameters to fitted values; returns the names applied.

    A fitted parameter applies where the scenario's :class:`~lpm.dynamics.Cascade` has that
    ingredient (e.g. ``feed_tail`` only with a power-law feed); the others are left as the scenario
    set them, and the caller reports which. ``reading_interval_h``: the fit's reading interval
    (:attr:`CascadeWorld.reading_interval_h`), set on the scenario's cascade so that ``attention``
    means one reading per that many hours at the scenario's own step too (a 20-minute step then sees
    two readings' worth of posts); ``None`` leaves the cascade's as it is.
    """
    cascade = getattr(model, "cascade", None)
    if not isinstance(cascade, Cascade):
        raise ConfigError(f"Expected a scenario model with a Cascade to take cascade parameters (got {type(cascade).__name__})")
    applicable = {name: value for name, value in values.items()
                  if name in _RAW and getattr(cascade, _RAW[name][0], None) is not None}
    set_params(model, applicable)
    if reading_interval_h is not None:
        cascade.reading_interval_h = positive_value("reading_interval_h", reading_interval_h)
    return sorted(applicable)


def world_from_meta(meta: Mapping) -> CascadeWorld:
    if "world" not in meta:
        return CascadeWorld()
    # fits saved before resharer audiences (or their spread across items) existed ran without them
    return CascadeWorld(**{"resharer_audience": False, "resharer_item_spread": False, "first_level_audience": False,
                           "reading_interval_h": meta["world"].get("dt_h", CascadeWorld.dt_h), **meta["world"]})


def load_cascades(paths: Sequence[Path], *, window_h: float = 72.0, split: str = "all", holdout: float = 0.2,
                  split_seed: int = 0) -> CascadeTable:
    """Cascades from rumdetect2017 zips/folders, restricted to a deterministic hold-out ``split``."""
    from lpm.data.rumdetect import load_rumdetect

    tables = [load_rumdetect(path, window_h=window_h)[0] for path in paths]
    table = tables[0] if len(tables) == 1 else CascadeTable.concat(tables)
    return table.select(split_index(list(table.ids), split, holdout=holdout, seed=split_seed))
