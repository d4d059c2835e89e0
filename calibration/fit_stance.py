"""Calibrate the stance of replies to rumours over time, by veracity (RumourEval 2017, PHEME threads).

Mechanism. Each veracity (true / false / unverified) is a scenario of the batch: a population of
potential repliers on a follower graph, who see the source post at ``t = 0``.

* Belief (lpm opinion, one topic in [-1, 1]; +1 = the claim is true): at the source post, beliefs are
  ``tanh(atanh(initial_belief) + z_i)`` with ``z_i ~ N(0, 1)`` (veracity is not known yet, so the
  initial belief is shared). Afterwards repliers average the beliefs of the repliers they saw
  (DeGroot, gated by who posted) and evidence and corrections pull every belief toward the truth
  (+1 for true, -1 for false, 0 for unverified) at a rate ``evidence_rate_<veracity>`` per hour: an
  :class:`Evidence` intervention, the only veracity-specific parameters.
* Engagement (lpm emotion, one dimension: arousal): the source post arouses the users it reached
  (half of them, arousal 1); arousal spreads from seen replies (``coupling``) and decays
  (``arousal_decay`` per hour). Aroused users take a stance; calm ones chat.
* Replies: a network Hawkes process (who replies when). A reply's stance is a softmax over
  ``support: a_s + b x + k u``, ``deny: a_d - b x + k u``, ``query: a_q + k u``, ``comment: 0`` given
  the replier's belief ``x`` and arousal ``u``.

Targets: stance shares of replies per time bin since the source (default bins 0-15 min, 15-60 min,
1-3 h, 3-6 h, 6-12 h, 12-24 h, 1-3 days), per veracity, pooled over threads. Loss: count-weighted KL
of simulated from observed shares (the multinomial log-likelihood of the observed stances, 0 at a
perfect fit), so a bin weighs as much as it holds replies.

Estimator: mean-field (:class:`lpm.targets_series.ExpectedEvents`): the target is a share over
hundreds of replies per bin, so the simulated target is the ratio of expected stance counts; its
gradient is exact. The simulation is seeded with the global step all the same (a sampled estimator
could be swapped in, and a resumed fit replays its draws).

Thread memory (per-thread forecasts). Replies on one thread are not independent draws from the
population shares: a thread has its own audience and framing, so its stance mix persists. Given the
stances of a thread's first ``observe_replies`` annotated replies (``e``, counts per stance, ``n`` of
them), the later replies of that thread are forecast with the Dirichlet-multinomial posterior mean
``(c p + e) / (c + n)``, ``p`` being the population model's shares for the thread's veracity and bin
and ``c`` (``thread_concentration``) how strongly threads follow the population (large ``c``: not at
all; small: each thread repeats its first replies). ``c`` is fitted after the population model, on
the training threads' later replies (:func:`fit_thread_memory`), by the same count-weighted KL.

Check (:func:`check`): on the chosen split, the pooled shares per (veracity, bin) of all replies
(``mae_stance``, ``kl_stance``: the population model alone, since there is nothing to condition on),
and on the replies after each thread's first ``observe_replies`` (``mae_stance_forecast`` pooled,
``mae_stance_thread`` and ``kl_stance_thread`` per thread), each beside constant shares taken from the
training threads. The pooled per-bin metric has a floor set by multinomial noise that no model of
per-bin shares can pass (the check reports it in ``meta["noise_floor"]``); only per-thread
information can move below the references there.

Fixed (not identifiable from pooled shares): the Hawkes rates (shares are ratios within a bin), the
DeGroot self-weight and the belief spread (both shape the belief distribution, which the shares see
only through the softmax's curvature), the share of users the source reaches and their arousal (only
``k * arousal`` enters the stance). ``coupling`` is learnable but weakly identifiable (contagion
spreads arousal but barely changes its mean).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from lpm.calibration.common import (CalibrationModule, FitResult, SeriesModel, config_from_meta, fit, load_params,
                                    save_params, split_index)
from lpm.dynamics.activity import Hawkes
from lpm.dynamics.base import inverse_softplus, logit, softplus
from lpm.dynamics.emotion import EmotionContagion
from lpm.dynamics.opinion import DeGroot
from lpm.errors import ConfigError, DataFormatError
from lpm.graph import Graph
from lpm.interventions import Effects, Intervention, Shape
from lpm.model import Model, StepEvents
from lpm.simulate import simulate
from lpm.state import PopulationState, Traits
from lpm.calibration.check import CheckReport
from lpm.targets_series import STANCES, ExpectedEvents, binned_counts, stance_kl, stance_mae, stance_shares

__all__ = ["VERACITIES", "StanceConfig", "StanceModel", "StanceCalibration", "Evidence", "StanceLink", "LEARNABLE",
           "MEMORY", "ThreadMemory", "ThreadReplies", "thread_replies", "fit_thread_memory", "load_posts",
           "observed_counts", "metrics", "calibrate", "evaluate", "check"]

KIND = "stance"

#: Scenario order of the batch, and the belief that evidence about each veracity pulls toward.
VERACITIES = ("true", "false", "unverified")
_TRUTH = (1.0, -1.0, 0.0)

LEARNABLE = ("support_bias", "deny_bias", "query_bias", "belief_slope", "arousal_slope", "arousal_decay",
             "coupling", "initial_belief", "evidence_rate_true", "evidence_rate_false", "evidence_rate_unverified")

#: The thread-memory parameter's name in a fitted-parameter file (fitted after :data:`LEARNABLE`).
MEMORY = "thread_concentration"

DEFAULT_INIT = {"support_bias": -1.5, "deny_bias": -2.5, "query_bias": -2.5, "belief_slope": 1.0,
                "arousal_slope": 1.0, "arousal_decay": 0.5, "coupling": 0.3, "initial_belief": 0.2,
                "evidence_rate_true": 0.05, "evidence_rate_false": 0.05, "evidence_rate_unverified": 0.05}


@dataclass(frozen=True)
class StanceConfig:
    """Fixed settings of the stance model (stored in the fitted file's meta).

    Args:
        agents: repliers per veracity scenario.
        dt: step length in hours; every bin edge must be a multiple of it.
        edges_h: time-bin edges in hours since the source; replies after the last edge are not used.
        reached_share: share of users aroused by the source post itself.
        belief_spread: standard deviation of initial beliefs in ``atanh`` units.
        self_weight: DeGroot weight on one's own belief per step.
        mu, alpha, beta: Hawkes reply rate (per hour), excitation and decay (1/h).
        observe_replies: annotated replies per thread whose stances condition the forecast of the
            thread's later replies (0: no thread memory).
    """

    agents: int = 300
    dt: float = 0.25
    edges_h: tuple[float, ...] = (0.0, 0.25, 1.0, 3.0, 6.0, 12.0, 24.0, 72.0)
    reached_share: float = 0.5
    belief_spread: float = 1.0
    self_weight: float = 0.98
    mu: float = 0.1
    alpha: float = 0.5
    beta: float = 1.0
    observe_replies: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "edges_h", tuple(float(e) for e in self.edges_h))
        if self.agents < 2:
            raise ConfigError(f"Expected at least 2 agents (got {self.agents})")
        if not self.dt > 0:
            raise ConfigError(f"Expected a positive step dt in hours (got {self.dt})")
        edges = self.edges_h
        if len(edges) < 2 or edges[0] != 0.0 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ConfigError(f"Expected increasing bin edges starting at 0 (got {list(edges)})")
        off = [e for e in edges if abs(e / self.dt - round(e / self.dt)) > 1e-9]
        if off:
            raise ConfigError(f"Expected bin edges that are multiples of dt={self.dt} (got {off})")
        if not 0.0 < self.reached_share <= 1.0:
            raise ConfigError(f"Expected reached_share in (0, 1] (got {self.reached_share})")
        if int(self.observe_replies) != self.observe_replies or self.observe_replies < 0:
            raise ConfigError(f"Expected a whole number observe_replies >= 0 (got {self.observe_replies})")

    @property
    def steps(self) -> int:
        return int(round(self.edges_h[-1] / self.dt))

    @property
    def bins(self) -> int:
        return len(self.edges_h) - 1


class Evidence(Intervention):
    """Evidence and corrections: from the source post on, every belief moves toward the truth of its
    scenario's rumour, a share ``1 - exp(-rate_v dt)`` of the way per step.

    Args:
        rates: evidence rate per hour for each scenario's veracity, ``(B,)`` in :data:`VERACITIES` order.
        truth: the belief evidence points to per scenario, ``(B,)``.
        dt: step length in hours.
    """

    def __init__(self, rates: Sequence[float], truth: Sequence[float], dt: float) -> None:
        super().__init__(at=0.0)
        self.at.requires_grad_(False)  # evidence starts with the source post
        self.raw_rates = nn.Parameter(torch.tensor([inverse_softplus(r) for r in rates]))
        self.register_buffer("truth", torch.tensor(list(truth)))
        self.dt = float(dt)

    @property
    def rates(self) -> Tensor:
        return softplus(self.raw_rates)

    def apply(self, effects: Effects, time_h: float, shape: Shape) -> None:
        if self.raw_rates.numel() != shape.batch:
            raise ConfigError(f"Expected one evidence rate per scenario ({shape.batch}) (got {self.raw_rates.numel()})")
        step = -torch.expm1(-self.rates * self.dt).to(shape.like.dtype)  # (B,)
        rate = step[:, None, None]
        effects.add("opinion_rate", rate)
        effects.add("opinion_pull", rate * self.truth.to(shape.like.dtype)[:, None, None])


class StanceLink(nn.Module):
    """Observable: expected replies per stance in the step, ``(B, 4)`` in :data:`STANCES` order.

    ``sum_i posts_i softmax(a + b x_i (1, -1, 0, 0) + k u_i (1, 1, 1, 0))`` with belief ``x``
    (opinion topic 0) and arousal ``u`` (emotion dimension 0).
    """

    def __init__(self, support_bias: float, deny_bias: float, query_bias: float, belief_slope: float,
                 arousal_slope: float) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([support_bias, deny_bias, query_bias]))
        self.raw_belief_slope = nn.Parameter(torch.tensor(inverse_softplus(belief_slope)))
        self.raw_arousal_slope = nn.Parameter(torch.tensor(inverse_softplus(arousal_slope)))
        self.register_buffer("belief_sign", torch.tensor([1.0, -1.0, 0.0, 0.0]))
        self.register_buffer("arousal_sign", torch.tensor([1.0, 1.0, 1.0, 0.0]))

    @property
    def belief_slope(self) -> Tensor:
        return softplus(self.raw_belief_slope)

    @property
    def arousal_slope(self) -> Tensor:
        return softplus(self.raw_arousal_slope)

    def probabilities(self, belief: Tensor, arousal: Tensor) -> Tensor:
        """``(..., 4)`` stance probabilities for beliefs and arousals of shape ``(...)``."""
        dtype = belief.dtype
        bias = torch.cat([self.bias, self.bias.new_zeros(1)]).to(dtype)  # comment is the reference stance
        logits = (bias + self.belief_slope.to(dtype) * belief[..., None] * self.belief_sign.to(dtype)
                  + self.arousal_slope.to(dtype) * arousal[..., None] * self.arousal_sign.to(dtype))
        return torch.softmax(logits, dim=-1)

    def forward(self, state: PopulationState, events: StepEvents) -> Tensor:
        if events.posts is None:
            return state.opinion.new_zeros(state.batch_size, len(STANCES))
        probs = self.probabilities(state.opinion[..., 0], state.emotion[..., 0])  # (B, N, 4)
        return (events.posts[..., None] * probs).sum(1)


class StanceModel(SeriesModel, nn.Module):
    """Repliers of each veracity (the batch), their beliefs, arousal and replies (module docstring)."""

    def __init__(self, config: StanceConfig, params: Optional[Mapping[str, float]] = None, *, seed: int = 0) -> None:
        super().__init__()
        # a fitted file also holds the thread memory's concentration, which acts after the population model
        values = {**DEFAULT_INIT, **{k: v for k, v in (params or {}).items() if k != MEMORY}}
        unknown = sorted(set(values) - set(LEARNABLE))
        if unknown:
            raise ConfigError(f"Expected stance parameters among {list(LEARNABLE)} (got {unknown})")
        if not -1.0 < values["initial_belief"] < 1.0:
            raise ConfigError(f"Expected initial_belief in (-1, 1) (got {values['initial_belief']})")
        self.config = config
        n = config.agents
        self.graph = Graph.holme_kim(n, min(3, n - 1), 0.3, seed=seed)
        gen = torch.Generator().manual_seed(seed + 202)
        self.register_buffer("belief_noise", torch.randn(n, generator=gen, dtype=torch.float64) * config.belief_spread)
        self.register_buffer("reached", (torch.rand(n, generator=gen, dtype=torch.float64) < config.reached_share).double())
        traits = Traits.sample(n, seed=seed + 1, batch=1, dtype=torch.float64)
        for name in ("susceptibility", "stubbornness", "confidence", "baseline_rate"):
            self.register_buffer(f"trait_{name}", getattr(traits, name).clone())
        self.raw_initial_belief = nn.Parameter(torch.tensor(0.5 * logit(0.5 * (values["initial_belief"] + 1))))  # atanh
        emotion = EmotionContagion(values["coupling"], values["arousal_decay"], order=1)
        emotion.raw_shock_gain.requires_grad_(False)  # no exogenous shock: the source's arousal is the initial state
        opinion = DeGroot(config.self_weight)
        opinion.raw_self_weight.requires_grad_(False)
        activity = Hawkes(config.mu, config.alpha, config.beta, rhythm_amplitude=None)
        for fixed in (activity.raw_mu, activity.raw_alpha, activity.raw_beta):
            fixed.requires_grad_(False)
        rates = [values[f"evidence_rate_{v}"] for v in VERACITIES]
        self.model = Model(opinion=opinion, emotion=emotion, activity=activity,
                           interventions=[Evidence(rates, _TRUTH, config.dt)], dt=config.dt)
        self.link = StanceLink(values["support_bias"], values["deny_bias"], values["query_bias"],
                               values["belief_slope"], values["arousal_slope"])
        self._graphs: dict[str, Graph] = {}

    @property
    def evidence(self) -> Evidence:
        return self.model.interventions.interventions[0]

    def raw_parameters(self) -> dict[str, nn.Parameter]:
        """``{name: unconstrained parameter}``; the biases and evidence rates share a tensor each,
        so their entries are fitted together (``learn`` selects whole tensors)."""
        return {"support_bias": self.link.bias, "deny_bias": self.link.bias, "query_bias": self.link.bias,
                "belief_slope": self.link.raw_belief_slope, "arousal_slope": self.link.raw_arousal_slope,
                "arousal_decay": self.model.emotion.raw_decay, "coupling": self.model.emotion.raw_coupling,
                "initial_belief": self.raw_initial_belief,
                **{f"evidence_rate_{v}": self.evidence.raw_rates for v in VERACITIES}}

    def values(self) -> dict[str, Tensor]:
        """``{name: constrained value}`` (0-dim tensors, differentiable)."""
        rates = self.evidence.rates
        return {"support_bias": self.link.bias[0], "deny_bias": self.link.bias[1], "query_bias": self.link.bias[2],
                "belief_slope": self.link.belief_slope, "arousal_slope": self.link.arousal_slope,
                "arousal_decay": self.model.emotion.decay, "coupling": self.model.emotion.coupling,
                "initial_belief": torch.tanh(self.raw_initial_belief),
                **{f"evidence_rate_{v}": rates[i] for i, v in enumerate(VERACITIES)}}

    def initial_state(self) -> PopulationState:
        """Beliefs at the source post, arousal of the users it reached, one scenario per veracity."""
        like = self.raw_initial_belief
        batch, n = len(VERACITIES), self.config.agents
        belief = torch.tanh(self.raw_initial_belief + self.belief_noise.to(like.dtype))  # (N,)
        opinion = belief.expand(batch, n)[..., None]
        arousal = self.reached.to(like.dtype).expand(batch, n)[..., None]
        traits = Traits(*[getattr(self, f"trait_{f.name}").to(like.dtype).expand(batch, n)
                          for f in dataclasses.fields(Traits)])
        return PopulationState.create(opinion, arousal.contiguous(), traits=traits)

    def simulate_counts(self, seed: int = 0) -> Tensor:
        """Expected replies per veracity, time bin and stance. Shapes: ``(3, K, 4)``."""
        state = self.initial_state()
        trajectory = simulate(self.model, state, self.graph_on(state.device), steps=self.config.steps, seed=seed,
                              estimator=ExpectedEvents(), record={"stance": self.link})
        per_step = trajectory["stance"][1:].transpose(0, 1)  # (B, S, 4); row 0 is the initial state
        # the replies of step t were written during [t dt, (t + 1) dt): bin them at the mid-point
        times = (torch.arange(self.config.steps, dtype=per_step.dtype, device=per_step.device) + 0.5) * self.config.dt
        return binned_counts(times, per_step, self.config.edges_h)


class ThreadMemory(nn.Module):
    """Forecast of a thread's later stance shares from the stances of its first replies.

    ``(c p + e) / (c + n)``: the posterior mean of a Dirichlet(``c p``) thread propensity after the
    thread's first ``n`` replies with stance counts ``e`` (module docstring).

    Args:
        concentration: ``c > 0``, replies' worth of weight on the population shares.
    """

    def __init__(self, concentration: float = 10.0) -> None:
        super().__init__()
        if not concentration > 0:
            raise ConfigError(f"Expected a positive thread concentration (got {concentration})")
        self.raw_concentration = nn.Parameter(torch.tensor(inverse_softplus(concentration), dtype=torch.float64))

    @property
    def concentration(self) -> Tensor:
        return softplus(self.raw_concentration)

    def forward(self, base: Tensor, early: Tensor) -> Tensor:
        """Per-thread shares of later replies.

        Args:
            base: population shares for each thread's veracity and bin (rows sum to 1).
            early: stance counts of each thread's first replies.

        Shapes:
            base: ``(T, K, 4)``; early: ``(T, 4)``; returns ``(T, K, 4)``.
        """
        if base.dim() != 3 or early.shape != (base.size(0), base.size(-1)):
            raise DataFormatError(f"Expected base (T, K, 4) and early (T, 4) (got {tuple(base.shape)} and {tuple(early.shape)})")
        c = self.concentration.to(base.dtype)
        early = early.to(base.dtype)
        return (c * base + early[:, None, :]) / (c + early.sum(-1))[:, None, None]


# ---------------------------------------------------------------------------- data


def load_posts(data: Sequence[Path | str]):
    """The RumourEval posts of ``data`` (one ``posts.csv`` file, or a folder holding one)."""
    from lpm.data.rumoureval import load_rumoureval

    if len(data) != 1:
        raise DataFormatError(f"Expected one RumourEval posts.csv (or its folder) (got {len(data)} paths)")
    path = Path(data[0])
    if path.is_dir():
        path = path / "posts.csv"
    return load_rumoureval(path)


def observed_counts(posts, config: StanceConfig, split: str = "all") -> tuple[Tensor, int]:
    """Observed replies per veracity, time bin and stance for the threads of ``split``.

    Only annotated replies count: sources (depth 0) and posts without a stance label are left out,
    and so are replies after the last bin edge.

    Args:
        posts: a :class:`lpm.data.rumoureval.StancePosts`.

    Returns:
        ``(counts (3, K, 4) float64, number of threads in the split)``.
    """
    from lpm.data.rumoureval import STANCES as DATA_STANCES, VERACITIES as DATA_VERACITIES

    if tuple(DATA_STANCES) != STANCES or tuple(DATA_VERACITIES) != VERACITIES:
        raise DataFormatError(f"Expected stance and veracity codes {STANCES}, {VERACITIES} "
                              f"(got {DATA_STANCES}, {DATA_VERACITIES})")
    threads = [str(t) for t in posts.thread_ids]
    keep = torch.zeros(len(threads), dtype=torch.bool)
    keep[split_index(threads, split)] = True
    chosen = keep[posts.thread] & (posts.depth > 0) & (posts.stance >= 0)
    onehot = torch.nn.functional.one_hot(posts.stance[chosen], len(STANCES)).double()
    veracity = posts.veracity[posts.thread[chosen]]
    delay_h = posts.delay_min[chosen].double() / 60.0
    counts = binned_counts(delay_h, onehot, config.edges_h, groups=veracity, num_groups=len(VERACITIES))
    return counts, int(keep.sum())


@dataclass(frozen=True, eq=False)
class ThreadReplies:
    """Annotated replies of one split's threads, per thread, split into each thread's first
    ``observe`` replies (in time order) and the later ones.

    Shapes:
        veracity: ``(T,)`` int64 index into :data:`VERACITIES`.
        early: ``(T, 4)`` stance counts of each thread's first ``observe`` replies.
        later: ``(T, K, 4)`` stance counts per bin of the replies after those.
        every: ``(T, K, 4)`` stance counts per bin of all its replies (``early`` binned + ``later``).
    """

    veracity: Tensor
    early: Tensor
    later: Tensor
    every: Tensor

    def __post_init__(self) -> None:
        t = self.veracity.numel()
        if self.early.shape != (t, len(STANCES)) or self.later.dim() != 3 or self.later.shape != self.every.shape \
                or self.later.size(0) != t:
            raise DataFormatError(f"Expected veracity (T,), early (T, 4), later and every (T, K, 4) (got "
                                  f"{tuple(self.veracity.shape)}, {tuple(self.early.shape)}, "
                                  f"{tuple(self.later.shape)}, {tuple(self.every.shape)})")

    def select(self, index: Tensor) -> "ThreadReplies":
        """The threads ``index`` (repeats allowed, as in a bootstrap resample)."""
        return ThreadReplies(self.veracity[index], self.early[index], self.later[index], self.every[index])

    def pooled(self, per_thread: Tensor) -> Tensor:
        """Sum ``(T, K, C)`` per-thread counts into ``(3, K, C)`` per veracity."""
        out = per_thread.new_zeros((len(VERACITIES),) + tuple(per_thread.shape[1:]))
        return out.index_add_(0, self.veracity, per_thread)


def thread_replies(posts, config: StanceConfig, split: str = "all") -> ThreadReplies:
    """Per-thread stance counts of the threads of ``split`` (see :class:`ThreadReplies`).

    Replies count as in :func:`observed_counts` (annotated, depth > 0, before the last bin edge);
    a thread's first ``config.observe_replies`` of them by delay are its early replies.

    Args:
        posts: a :class:`lpm.data.rumoureval.StancePosts`.
    """
    threads = [str(t) for t in posts.thread_ids]
    chosen_threads = torch.tensor(split_index(threads, split), dtype=torch.int64)
    local = torch.full((len(threads),), -1, dtype=torch.int64)
    local[chosen_threads] = torch.arange(chosen_threads.numel())
    delay_h = posts.delay_min.double() / 60.0
    chosen = (local[posts.thread] >= 0) & (posts.depth > 0) & (posts.stance >= 0) & (delay_h < config.edges_h[-1])
    thread, stance, delay_h = local[posts.thread[chosen]], posts.stance[chosen], delay_h[chosen]
    # rank of each reply within its thread by delay: sort by delay, then stably by thread
    by_time = torch.argsort(delay_h, stable=True)
    order = by_time[torch.argsort(thread[by_time], stable=True)]
    sorted_thread = thread[order]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel()) - torch.searchsorted(sorted_thread, sorted_thread)
    onehot = torch.nn.functional.one_hot(stance, len(STANCES)).double()
    count = chosen_threads.numel()
    early_mask = rank < int(config.observe_replies)
    early = torch.zeros(count, len(STANCES), dtype=torch.float64).index_add_(0, thread[early_mask], onehot[early_mask])
    every = binned_counts(delay_h, onehot, config.edges_h, groups=thread, num_groups=count)
    later = binned_counts(delay_h, onehot * (~early_mask).double()[:, None], config.edges_h, groups=thread,
                          num_groups=count)
    return ThreadReplies(posts.veracity[chosen_threads], early, later, every)


def fit_thread_memory(base: Tensor, replies: ThreadReplies, *, init: float = 10.0, max_iter: int = 100) -> float:
    """Fit the thread concentration ``c`` of :class:`ThreadMemory` to later replies given early ones.

    Minimises the count-weighted KL of the later replies from the forecast (the log score of each
    later reply, proper: its minimum is at the true posterior mean), by L-BFGS on ``softplus^-1(c)``.

    Args:
        base: population shares per thread and bin (the model's shares for each thread's veracity).
        replies: the training threads.

    Shapes:
        base: ``(T, K, 4)``.

    Returns:
        The fitted concentration.
    """
    if float(replies.later.sum()) == 0 or float(replies.early.sum()) == 0:
        raise DataFormatError(f"Expected early and later replies to fit the thread memory (got "
                              f"{int(replies.early.sum())} early, {int(replies.later.sum())} later)")
    memory = ThreadMemory(init)
    base = base.detach().double()
    optimiser = torch.optim.LBFGS([memory.raw_concentration], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimiser.zero_grad()
        loss = stance_kl(memory(base, replies.early), replies.later)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(memory.concentration.detach())


# ---------------------------------------------------------------------------- Lightning module


class StanceCalibration(CalibrationModule, pl.LightningModule):
    """Lightning module fitting :class:`StanceModel` to observed stance counts.

    Args:
        observed: ``(3, K, 4)`` replies per veracity (:data:`VERACITIES` order), bin and stance.
        config: fixed model settings.
        init: starting values (defaults: :data:`DEFAULT_INIT`).
        learn: parameters to fit; the biases (and the evidence rates) are one tensor each, so naming
            any of them fits all three.
        seed: population seed and base of the per-step simulation seeds.
        learning_rate: Adam step on the unconstrained parameters.
    """

    def __init__(self, observed: Tensor, config: StanceConfig = StanceConfig(), *,
                 init: Optional[Mapping[str, float]] = None, learn: Sequence[str] = LEARNABLE, seed: int = 0,
                 learning_rate: float = 0.05) -> None:
        super().__init__()
        expected = (len(VERACITIES), config.bins, len(STANCES))
        if tuple(observed.shape) != expected:
            raise DataFormatError(f"Expected observed counts of shape {expected} (got {tuple(observed.shape)})")
        bad = sorted(set(learn) - set(LEARNABLE))
        if bad:
            raise ConfigError(f"Expected learnable parameters among {list(LEARNABLE)} (got {bad})")
        self.config, self.seed, self.learning_rate = config, int(seed), float(learning_rate)
        self.register_buffer("observed", observed.float())
        self.sim = StanceModel(config, init, seed=seed)
        raw = self.sim.raw_parameters()
        chosen = {id(raw[name]) for name in learn}
        for param in raw.values():
            param.requires_grad_(id(param) in chosen)
        self.params_before_step: dict[str, float] = self.sim.fitted_params()

    def loss(self, seed: int = 0) -> Tensor:
        counts = self.sim.simulate_counts(seed)
        return stance_kl(stance_shares(counts), self.observed.to(counts.dtype))

    def fitted_params(self) -> dict[str, float]:
        return self.sim.fitted_params()


# ---------------------------------------------------------------------------- entry points


def _config_from(meta: Mapping[str, object]) -> StanceConfig:
    return config_from_meta(meta, StanceConfig, {"edges_h": tuple})


def calibrate(data: list[Path], out: Path, *, budget_s: float | None = None, device: str = "cpu", seed: int = 0,
              work_dir: Path | None = None, resume: bool = False, progress: bool = True, max_steps: int = 200,
              split: str = "all", logger: str = "wandb", config: StanceConfig = StanceConfig()) -> FitResult:
    """Fit the stance model to RumourEval replies and write the best parameters to ``out``.

    Args:
        data: the RumourEval ``posts.csv`` (or its folder).
        out: fitted-parameter JSON (meta holds the config, split and thread count); it holds the
            population parameters (:data:`LEARNABLE`) and, when ``config.observe_replies > 0``, the
            thread memory's :data:`MEMORY`, fitted afterwards on the same threads.
        split: ``"all"``, or ``"train"`` / ``"test"`` of the thread-level hold-out split
            (:func:`lpm.calibration.common.split_index` on the thread ids).
        Other arguments: as :func:`lpm.calibration.common.fit`.
    """
    posts = load_posts(data)
    counts, threads = observed_counts(posts, config, split)
    if threads == 0 or float(counts.sum()) == 0:
        raise DataFormatError(f"Expected replies in split {split!r} (got {threads} threads, {int(counts.sum())} replies)")
    module = StanceCalibration(counts, config, seed=seed)
    meta = {"split": split, "threads": threads, "replies": int(counts.sum()), "seed": seed,
            "config": dataclasses.asdict(config), "estimator": "mean-field"}
    result = fit(module, kind=KIND, max_steps=max_steps, budget_s=budget_s, out=out, work_dir=work_dir, resume=resume,
                 logger=logger, device=device, progress=progress, meta=meta)
    if config.observe_replies == 0:
        return result
    # second stage: the thread memory on the same threads, given the population model's best shares
    params, written = load_params(out, KIND)
    replies = thread_replies(posts, config, split)
    with torch.no_grad():
        shares = stance_shares(StanceModel(config, params, seed=seed).simulate_counts(seed)).double()
    concentration = fit_thread_memory(shares[replies.veracity], replies)
    save_params(out, KIND, {**params, MEMORY: concentration}, written)
    result["params"] = {**result["params"], MEMORY: concentration}
    return result


def metrics(sim_shares: Tensor, obs_counts: Tensor) -> dict[str, float]:
    """``mae_stance``: mean absolute error of the four stance shares, averaged over stances and the
    non-empty (veracity, bin) cells; ``mae_stance/<veracity>`` within each veracity; ``kl_stance``:
    the count-weighted KL of the loss.

    Shapes: ``(3, K, 4)`` both.
    """
    sim, obs = sim_shares.double(), obs_counts.double()
    out = {"kl_stance": float(stance_kl(sim, obs))}
    filled = obs.sum(-1) > 0  # (3, K)
    err = (sim - torch.nan_to_num(stance_shares(obs))).abs().mean(-1)  # (3, K)
    out["mae_stance"] = float(err[filled].mean()) if bool(filled.any()) else float("nan")
    per = stance_mae(sim, obs)
    for i, name in enumerate(VERACITIES):
        out[f"mae_stance/{name}"] = float(per[i]) if bool(filled[i].any()) else float("nan")
    return out


def evaluate(params: Path, data: list[Path], *, device: str = "cpu", seed: int = 0, split: str = "all") -> dict[str, float]:
    """Simulate the fitted model and compare its stance shares with the threads of ``split``.

    Returns:
        ``mae_stance``, ``mae_stance/<veracity>`` and ``kl_stance`` (see :func:`metrics`).
    """
    values, meta = load_params(params, KIND)
    values.pop(MEMORY, None)  # pooled shares of all replies: nothing to condition the memory on
    config = _config_from(meta)
    posts = load_posts(data)
    counts, _ = observed_counts(posts, config, split)
    model = StanceModel(config, values, seed=int(meta.get("seed", seed))).to(device)
    with torch.no_grad():
        sim = model.simulate_counts(seed)
    return metrics(stance_shares(sim).cpu(), counts)


# ---------------------------------------------------------------------------- check

#: Rows of :func:`check`, in display order.
CHECK_METRICS = ("mae_stance", "kl_stance", "mae_stance_forecast", "mae_stance_thread", "kl_stance_thread")
_REFERENCES = ("train_veracity_bin", "train_bin", "train_constant")


def _reference_shares(counts: Tensor) -> dict[str, Tensor]:
    """The constant references from training counts per veracity, bin and stance: shares per
    (veracity, bin), per bin pooled over veracities, and one share vector; an empty cell falls back
    to the coarser reference, so a reference never predicts NaN. Shapes: ``(3, K, 4)`` each."""
    constant = stance_shares(counts.sum((0, 1))).expand_as(counts)
    per_bin = stance_shares(counts.sum(0)).expand_as(counts)
    per_bin = torch.where(torch.isnan(per_bin), constant, per_bin)
    per_cell = stance_shares(counts)
    per_cell = torch.where(torch.isnan(per_cell), per_bin, per_cell)
    return {"train_veracity_bin": per_cell, "train_bin": per_bin, "train_constant": constant}


def _check_metrics(every_shares: Tensor, later_shares: Tensor, replies: ThreadReplies) -> dict[str, float]:
    """The :data:`CHECK_METRICS` of one prediction on ``replies``.

    ``mae_stance`` / ``kl_stance``: :func:`metrics` on the pooled shares per (veracity, bin) of all
    replies; ``mae_stance_forecast``: the same MAE on the later replies (after each thread's first
    ``observe_replies``); ``mae_stance_thread``: per thread, the mean absolute error of the four shares
    of its later replies, weighted by those replies (a thread with one reply is mostly noise);
    ``kl_stance_thread``: the count-weighted KL of the later replies per thread and bin.

    Shapes:
        every_shares, later_shares: ``(T, K, 4)`` predicted shares per thread and bin.
    """
    out = {}
    for prefix, shares, counts in (("", every_shares, replies.every), ("_forecast", later_shares, replies.later)):
        # expected counts sum into pooled predictions; a cell without replies predicts nothing
        pooled = stance_shares(replies.pooled(shares * counts.sum(-1, keepdim=True)))
        found = metrics(torch.nan_to_num(pooled, nan=1.0 / len(STANCES)), replies.pooled(counts))
        out[f"mae_stance{prefix}"] = found["mae_stance"]
        if not prefix:
            out["kl_stance"] = found["kl_stance"]
    later = replies.later
    predicted = (later_shares * later.sum(-1, keepdim=True)).sum(1)  # (T, 4) expected later replies
    observed = later.sum(1)
    total = float(observed.sum())
    out["mae_stance_thread"] = float((predicted - observed).abs().sum() / len(STANCES) / total) if total else float("nan")
    out["kl_stance_thread"] = float(stance_kl(later_shares, later)) if total else float("nan")
    return out


def _noise_floor(shares: dict[str, Tensor], replies: ThreadReplies, draws: int, seed: int) -> dict[str, float]:
    """Mean of each metric when the replies are redrawn, independently, from the predicted shares
    themselves (same counts per thread and bin): what even a perfect model of those shares scores."""
    generator = torch.Generator().manual_seed(seed)
    found: dict[str, list[float]] = {m: [] for m in CHECK_METRICS}
    n_every, n_later = replies.every.sum(-1), replies.later.sum(-1)  # (T, K)
    for _ in range(draws):
        redrawn = []
        for key, n in (("every", n_every), ("later", n_later)):
            cells = torch.repeat_interleave(torch.arange(n.numel()), n.flatten().long())
            probs = shares[key].reshape(-1, len(STANCES))[cells]
            stance = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            counts = torch.zeros(n.numel() * len(STANCES), dtype=torch.float64)
            counts.index_add_(0, cells * len(STANCES) + stance, torch.ones_like(stance, dtype=torch.float64))
            redrawn.append(counts.reshape(replies.every.shape))
        fake = ThreadReplies(replies.veracity, replies.early, redrawn[1], redrawn[0])
        for m, v in _check_metrics(shares["every"], shares["later"], fake).items():
            found[m].append(v)
    return {m: float(torch.tensor(v, dtype=torch.float64).nanmean()) for m, v in found.items()}


def _shares_figure(title: str, observed: Tensor, lines: Mapping[str, Tensor], edges_h: Sequence[float]):
    """Stance shares per bin, one panel per (veracity, stance): observed points, predicted lines."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 8), constrained_layout=True)
    axes = figure.subplots(len(VERACITIES), len(STANCES), sharex=True)
    x = torch.arange(len(edges_h) - 1)
    labels = [f"{a:g}-{b:g}" for a, b in zip(edges_h, edges_h[1:])]
    obs = stance_shares(observed)
    for i, veracity in enumerate(VERACITIES):
        for j, stance in enumerate(STANCES):
            ax = axes[i, j]
            ax.plot(x, obs[i, :, j], "ko", label="observed")
            for (name, shares), style in zip(lines.items(), ("C0-", "C1--", "C2:")):
                ax.plot(x, shares[i, :, j], style, label=name)
            ax.set_title(f"{veracity}: {stance}", fontsize=9)
            ax.set_xticks(x, labels, rotation=45, fontsize=7)
    axes[0, 0].legend(fontsize=7)
    figure.supxlabel("hours since the source")
    figure.supylabel("share of replies")
    figure.suptitle(title)
    return figure


def check(params: Path, data: list[Path], *, split: str = "test", device: str = "cpu", seed: int = 0) -> CheckReport:
    """Posterior-predictive check of a fitted stance model on the threads of ``split``.

    Rows (:data:`CHECK_METRICS`, lower is better; see :func:`_check_metrics`): ``mae_stance`` and
    ``kl_stance`` on all replies, pooled per (veracity, bin), predicted by the population model;
    ``mae_stance_forecast``, ``mae_stance_thread`` and ``kl_stance_thread`` on the replies after each
    thread's first ``observe_replies``, predicted by the population model with the thread memory.
    Columns: ``model``; ``model_noise`` = 0 (the model is mean-field: its shares are expectations,
    with no sampling noise); the references ``train_veracity_bin``, ``train_bin``, ``train_constant``
    (shares of the training threads' replies of the same kind: all, or later); ``reference_noise``
    (bootstrap SD over the split's threads of the best reference's metric). ``meta["noise_floor"]``
    holds each metric of the best reference on replies redrawn from that reference itself.

    Args:
        params: fitted-parameter file of :func:`calibrate`.
        data: the RumourEval ``posts.csv`` (or its folder).
        split: threads to check on (``train``, ``test`` or ``all``); references always come from
            ``train``.
        device: where the population model runs.
        seed: simulation seed (the mean-field shares do not depend on it) and bootstrap seed.

    Returns:
        The report, with figures ``shares`` (all replies) and ``forecast`` (later replies).

    Raises:
        DataFormatError: no replies in ``split`` or in the training threads.
    """
    from lpm.calibration.check import bootstrap_sd, rows_from

    values, meta = load_params(params, KIND)
    concentration = values.pop(MEMORY, None)
    config = _config_from(meta)
    posts = load_posts(data)
    replies, train = thread_replies(posts, config, split), thread_replies(posts, config, "train")
    for name, part in ((split, replies), ("train", train)):
        if part.veracity.numel() < 2 or float(part.every.sum()) == 0:
            raise DataFormatError(f"Expected replies in at least 2 threads of split {name!r} "
                                  f"(got {part.veracity.numel()} threads, {int(part.every.sum())} replies)")
    model = StanceModel(config, values, seed=int(meta.get("seed", seed))).to(device)
    with torch.no_grad():
        population = stance_shares(model.simulate_counts(seed)).cpu().double()  # (3, K, 4)
    base = population[replies.veracity]
    if concentration is not None and config.observe_replies > 0:
        with torch.no_grad():
            forecast = ThreadMemory(concentration)(base, replies.early)
    else:  # a file fitted without the memory: the forecast is the population's shares
        forecast = base
    references = {name: (every[replies.veracity], later[replies.veracity]) for (name, every), later in
                  zip(_reference_shares(train.pooled(train.every)).items(),
                      _reference_shares(train.pooled(train.later)).values())}
    model_metrics = _check_metrics(base, forecast, replies)
    reference_metrics = {name: _check_metrics(e, l, replies) for name, (e, l) in references.items()}

    units = replies.veracity.numel()
    reference_noise, floor = {}, {}
    # every bootstrap_sd call with one seed draws the same resamples: compute each resample's metrics once
    resampled: dict[tuple[str, bytes], dict[str, float]] = {}
    floors: dict[str, dict[str, float]] = {}

    def resample(best: str, index: Tensor) -> dict[str, float]:
        key = (best, index.numpy().tobytes())
        if key not in resampled:
            every, later = references[best]
            resampled[key] = _check_metrics(every[index], later[index], replies.select(index))
        return resampled[key]

    for metric in CHECK_METRICS:
        best = min(_REFERENCES, key=lambda r: reference_metrics[r][metric])
        reference_noise[metric] = bootstrap_sd(lambda index: resample(best, index)[metric], units, seed=seed)
        if best not in floors:
            every, later = references[best]
            floors[best] = _noise_floor({"every": every, "later": later}, replies, draws=50, seed=seed)
        floor[metric] = floors[best][metric]
    # model_noise is 0: mean-field shares are expectations (no simulated sampling to bootstrap)
    rows = rows_from(model_metrics, {m: 0.0 for m in CHECK_METRICS}, reference_metrics, reference_noise,
                     metrics=CHECK_METRICS)

    observed_every, observed_later = replies.pooled(replies.every), replies.pooled(replies.later)
    pooled = {name: stance_shares(replies.pooled(shares * counts.sum(-1, keepdim=True)))
              for name, shares, counts in (("model", base, replies.every), ("model_forecast", forecast, replies.later))}
    report = CheckReport(kind=KIND, split=split, rows=rows, references=list(_REFERENCES),
                         meta={"params": str(params), "threads": units, "replies": int(replies.every.sum()),
                               "later_replies": int(replies.later.sum()), "train_threads": train.veracity.numel(),
                               "observe_replies": config.observe_replies, MEMORY: concentration,
                               "estimator": "mean-field", "noise_floor": floor})
    best_all = report.best_reference("mae_stance")[0]
    best_later = report.best_reference("mae_stance_forecast")[0]
    report.figures = {
        "shares": _shares_figure(f"stance shares of all replies, split {split}", observed_every,
                                 {"model": pooled["model"], best_all: _reference_shares(train.pooled(train.every))[best_all]},
                                 config.edges_h),
        "forecast": _shares_figure(f"replies after each thread's first {config.observe_replies}, split {split}",
                                   observed_later,
                                   {"model (thread memory)": pooled["model_forecast"],
                                    best_later: _reference_shares(train.pooled(train.later))[best_later]},
                                   config.edges_h),
    }
    return report
