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

from lpm.calibration.common import CalibrationModule, FitResult, SeriesModel, config_from_meta, fit, load_params, split_index
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
from lpm.targets_series import STANCES, ExpectedEvents, binned_counts, stance_kl, stance_mae, stance_shares

__all__ = ["VERACITIES", "StanceConfig", "StanceModel", "StanceCalibration", "Evidence", "StanceLink", "LEARNABLE",
           "load_posts", "observed_counts", "metrics", "calibrate", "evaluate"]

KIND = "stance"

#: Scenario order of the batch, and the belief that evidence about each veracity pulls toward.
VERACITIES = ("true", "false", "unverified")
_TRUTH = (1.0, -1.0, 0.0)

LEARNABLE = ("support_bias", "deny_bias", "query_bias", "belief_slope", "arousal_slope", "arousal_decay",
             "coupling", "initial_belief", "evidence_rate_true", "evidence_rate_false", "evidence_rate_unverified")

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
        values = {**DEFAULT_INIT, **(params or {})}
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
        out: fitted-parameter JSON (meta holds the config, split and thread count).
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
    return fit(module, kind=KIND, max_steps=max_steps, budget_s=budget_s, out=out, work_dir=work_dir, resume=resume,
               logger=logger, device=device, progress=progress, meta=meta)


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
    config = _config_from(meta)
    posts = load_posts(data)
    counts, _ = observed_counts(posts, config, split)
    model = StanceModel(config, values, seed=int(meta.get("seed", seed))).to(device)
    with torch.no_grad():
        sim = model.simulate_counts(seed)
    return metrics(stance_shares(sim).cpu(), counts)
