"""Population state: a few dense tensors with a leading scenario batch dimension ``B``.

Constructing a state checks shapes, dtypes and devices only (host metadata, no device sync), so the
step can build new states freely. :meth:`PopulationState.validate` checks values (ranges, NaN/Inf)
and is called at boundaries: ``simulate`` entry and save points.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from lpm.errors import StateError

__all__ = ["Traits", "PopulationState"]

_CASCADE_FLOAT = ("reshared", "frontier", "exposures", "hazard", "reshare_time")


def _check_shape(name: str, value: Tensor, shape: tuple[int, ...]) -> None:
    if not isinstance(value, Tensor):
        raise StateError(f"Expected '{name}' to be a torch.Tensor (got {type(value).__name__})")
    if tuple(value.shape) != shape:
        raise StateError(f"Expected '{name}' of shape {shape} (got {tuple(value.shape)})")


def _check_float(name: str, value: Tensor, like: Tensor) -> None:
    if not value.dtype.is_floating_point:
        raise StateError(f"Expected '{name}' to be floating point (got {value.dtype})")
    if value.dtype != like.dtype:
        raise StateError(f"Expected '{name}' of dtype {like.dtype} like 'opinion' (got {value.dtype})")
    if value.device != like.device:
        raise StateError(f"Expected '{name}' on {like.device} like 'opinion' (got {value.device})")


def _check_range(name: str, value: Tensor, low: float, high: float) -> None:
    if value.numel() == 0:
        return
    if not bool(torch.isfinite(value).all()):
        raise StateError(f"Expected finite values in '{name}' (got NaN or Inf)")
    lo, hi = float(value.detach().min()), float(value.detach().max())
    if lo < low or hi > high:
        raise StateError(f"Expected '{name}' in [{low}, {high}] (got values in [{lo:.4g}, {hi:.4g}])")


@dataclass(frozen=True, eq=False)
class Traits:
    """Per-agent traits that modulate the dynamics (fixed during a run, learnable scales live in modules).

    Shapes (all ``(B, N)``; a ``(N,)`` tensor is expanded to the batch without copying):
        susceptibility: in [0, 1], scales how much social influence moves the agent.
        stubbornness: in [0, 1], the agent's anchoring to its initial opinion (Friedkin-Johnsen).
        confidence: > 0, multiplies the bounded-confidence radius ``eps``.
        baseline_rate: > 0, multiplies the Hawkes baseline posting rate ``mu``.
    """

    susceptibility: Tensor
    stubbornness: Tensor
    confidence: Tensor
    baseline_rate: Tensor

    @classmethod
    def sample(
        cls,
        num_agents: int,
        *,
        seed: int,
        batch: int = 1,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> "Traits":
        """Heterogeneous traits: hump-shaped susceptibility and stubbornness, log-normal activity.

        The posting-rate multiplier is log-normal with sigma 1, normalised to mean 1, giving the
        heavy-tailed activity seen on real platforms (most users rarely post, a few post a lot).
        Traits are the same across the batch (scenarios share a population).
        """
        gen = torch.Generator().manual_seed(seed)
        # Susceptibility and stubbornness ~ Kumaraswamy(2, 2) (a Beta(2, 2) look-alike with a closed-
        # form inverse CDF, so it can be drawn from a local generator).
        u = torch.rand(3, num_agents, generator=gen, dtype=torch.float64)
        kumaraswamy = (1 - (1 - u[:2]) ** 0.5) ** 0.5
        normal = torch.randn(num_agents, generator=gen, dtype=torch.float64)
        rate = torch.exp(normal - 0.5)  # E[exp(N(0,1) - 1/2)] = 1
        confidence = torch.ones(num_agents, dtype=torch.float64)
        fields = [kumaraswamy[0], kumaraswamy[1], confidence, rate]
        return cls(*[f.to(dtype=dtype, device=device).expand(batch, num_agents) for f in fields])

    @classmethod
    def uniform(
        cls,
        num_agents: int,
        *,
        batch: int = 1,
        susceptibility: float = 1.0,
        stubbornness: float = 0.0,
        confidence: float = 1.0,
        baseline_rate: float = 1.0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> "Traits":
        """Identical traits for every agent (the setting of the classic closed-form models)."""
        values = (susceptibility, stubbornness, confidence, baseline_rate)
        return cls(*[torch.full((batch, num_agents), v, dtype=dtype, device=device) for v in values])

    def validate(self) -> None:
        """Check value ranges (syncs with the device; call at boundaries only)."""
        _check_range("susceptibility", self.susceptibility, 0.0, 1.0)
        _check_range("stubbornness", self.stubbornness, 0.0, 1.0)
        _check_range("confidence", self.confidence, 0.0, float("inf"))
        _check_range("baseline_rate", self.baseline_rate, 0.0, float("inf"))

    def to(self, device: torch.device | str | None = None, dtype: Optional[torch.dtype] = None) -> "Traits":
        return Traits(*[t.to(device=device, dtype=dtype) for t in _tensors(self)])


def _tensors(obj) -> list[Tensor]:
    return [getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init]


@dataclass(frozen=True, eq=False)
class PopulationState:
    """The state of B scenarios of N agents.

    Shapes:
        opinion: ``(B, N, T)`` in [-1, 1], one value per topic.
        opinion_anchor: ``(B, N, T)``, the opinions agents are anchored to (initial opinions).
        emotion: ``(B, N, E)``, e.g. valence and arousal in [-1, 1].
        emotion_velocity: ``(B, N, E)``, momentum of second-order emotion dynamics (zeros otherwise).
        activity: ``(B, N)`` >= 0, each agent's Hawkes trace: its recent posts, exponentially decayed.
        traits: per-agent :class:`Traits` of shape ``(B, N)``.

    Per content item ``c`` (``C = 0`` without a cascade model; see :mod:`lpm.dynamics.cascade`):
        reshared: ``(B, N, C)`` in [0, 1], whether the agent has reshared (or, as source, posted) it.
        frontier: ``(B, N, C)`` >= 0, the agent's visible reshare of the item: 1 when just reshared,
            decaying with the feed half-life (or gone after one step without one).
        exposures: ``(B, N, C)`` >= 0, how many times the item reached the agent's feed while online.
        hazard: ``(B, N, C)`` >= 0, the agent's cumulative reshare hazard for the item (it reshares
            when this crosses its fixed Exp(1) resistance: Sellke's construction).
        reshare_time: ``(B, N, C)`` hours at which the agent reshared it, ``+inf`` if never (a record).
        parent: ``(B, N, C)`` int64 followee it was reshared from, ``-1`` for sources and non-resharers.
    """

    opinion: Tensor
    opinion_anchor: Tensor
    emotion: Tensor
    emotion_velocity: Tensor
    activity: Tensor
    traits: Traits
    reshared: Optional[Tensor] = None
    frontier: Optional[Tensor] = None
    exposures: Optional[Tensor] = None
    hazard: Optional[Tensor] = None
    reshare_time: Optional[Tensor] = None
    parent: Optional[Tensor] = None

    def __post_init__(self) -> None:
        if not isinstance(self.opinion, Tensor) or self.opinion.dim() != 3:
            found = tuple(self.opinion.shape) if isinstance(self.opinion, Tensor) else type(self.opinion).__name__
            raise StateError(f"Expected 'opinion' of shape (B, N, T) (got {found})")
        batch, num_agents, _ = self.opinion.shape
        _check_float("opinion", self.opinion, self.opinion)
        _check_shape("opinion_anchor", self.opinion_anchor, tuple(self.opinion.shape))
        if not isinstance(self.emotion, Tensor) or self.emotion.dim() != 3 or self.emotion.shape[:2] != (batch, num_agents):
            found = tuple(self.emotion.shape) if isinstance(self.emotion, Tensor) else type(self.emotion).__name__
            raise StateError(f"Expected 'emotion' of shape ({batch}, {num_agents}, E) (got {found})")
        _check_shape("emotion_velocity", self.emotion_velocity, tuple(self.emotion.shape))
        _check_shape("activity", self.activity, (batch, num_agents))
        for name in ("opinion_anchor", "emotion", "emotion_velocity", "activity"):
            _check_float(name, getattr(self, name), self.opinion)
        cascade = [self.reshared, self.frontier, self.exposures, self.hazard, self.reshare_time, self.parent]
        if all(v is None for v in cascade):
            empty = self.opinion.new_zeros(batch, num_agents, 0)
            for name in _CASCADE_FLOAT:
                object.__setattr__(self, name, empty)
            object.__setattr__(self, "parent", torch.zeros(batch, num_agents, 0, dtype=torch.int64, device=self.opinion.device))
        elif any(v is None for v in cascade):
            raise StateError("Expected all of reshared, frontier, exposures, hazard, reshare_time, parent, or none of them")
        items = self.reshared.size(-1) if isinstance(self.reshared, Tensor) else -1
        for name in _CASCADE_FLOAT:
            _check_shape(name, getattr(self, name), (batch, num_agents, items))
            _check_float(name, getattr(self, name), self.opinion)
        _check_shape("parent", self.parent, (batch, num_agents, items))
        if self.parent.dtype != torch.int64:
            raise StateError(f"Expected 'parent' of dtype torch.int64 (got {self.parent.dtype})")
        if not isinstance(self.traits, Traits):
            raise StateError(f"Expected 'traits' to be lpm.Traits (got {type(self.traits).__name__})")
        for f in dataclasses.fields(Traits):
            value = getattr(self.traits, f.name)
            _check_shape(f"traits.{f.name}", value, (batch, num_agents))
            _check_float(f"traits.{f.name}", value, self.opinion)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def create(
        cls,
        opinion: Tensor,
        emotion: Tensor,
        *,
        activity: Optional[Tensor] = None,
        traits: Optional[Traits] = None,
    ) -> "PopulationState":
        """A validated state from initial opinions and emotions.

        Args:
            opinion: initial opinions in [-1, 1]; they also become the anchors.
            emotion: initial emotions.
            activity: initial Hawkes traces (zeros by default).
            traits: per-agent traits (uniform defaults: fully susceptible, not stubborn).

        Shapes:
            opinion: ``(B, N, T)``; emotion: ``(B, N, E)``; activity: ``(B, N)``.

        Raises:
            StateError: inconsistent shapes, dtypes, devices, or values out of range.
        """
        if not isinstance(opinion, Tensor) or opinion.dim() != 3:
            found = tuple(opinion.shape) if isinstance(opinion, Tensor) else type(opinion).__name__
            raise StateError(f"Expected 'opinion' of shape (B, N, T) (got {found})")
        batch, num_agents, _ = opinion.shape
        if activity is None:
            activity = opinion.new_zeros(batch, num_agents)
        if traits is None:
            traits = Traits.uniform(num_agents, batch=batch, dtype=opinion.dtype, device=opinion.device)
        state = cls(
            opinion=opinion,
            opinion_anchor=opinion,
            emotion=emotion,
            emotion_velocity=torch.zeros_like(emotion) if isinstance(emotion, Tensor) else emotion,
            activity=activity,
            traits=traits,
        )
        state.validate()
        return state

    @classmethod
    def sample(
        cls,
        num_agents: int,
        *,
        seed: int,
        batch: int = 1,
        topics: int = 1,
        emotions: int = 2,
        opinion: str = "uniform",
        traits: Optional[Traits] = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> "PopulationState":
        """A random initial population.

        Args:
            num_agents: N.
            seed: seed of a local generator (nothing is seeded globally).
            batch: B; every scenario starts from the same population.
            topics: T opinion dimensions.
            emotions: E emotion dimensions (default 2: valence, arousal).
            opinion: ``"uniform"`` on [-1, 1], or ``"bimodal"`` (two camps around -0.5 and 0.5).
            traits: per-agent traits; :meth:`Traits.sample` with the same seed by default.
        """
        if num_agents <= 0 or batch <= 0 or topics <= 0 or emotions <= 0:
            raise StateError(
                f"Expected positive num_agents, batch, topics and emotions "
                f"(got {num_agents}, {batch}, {topics}, {emotions})"
            )
        from lpm.resources import check_memory

        # float64 draws per agent, then per scenario: opinion and anchor (T each), emotion and velocity
        # (E each), activity, four traits, and a copy of each while moving to dtype/device
        itemsize = torch.empty(0, dtype=dtype).element_size()
        per_agent = 8 * (topics + emotions + 6) + 2 * batch * itemsize * (2 * topics + 2 * emotions + 5)
        check_memory(f"a population of {num_agents:,} agents x {batch} scenarios", num_agents * per_agent, device)
        gen = torch.Generator().manual_seed(seed)
        if opinion == "uniform":
            x = torch.rand(num_agents, topics, generator=gen, dtype=torch.float64) * 2 - 1
        elif opinion == "bimodal":
            camp = torch.randint(0, 2, (num_agents, 1), generator=gen).to(torch.float64) - 0.5
            x = (camp + 0.2 * torch.randn(num_agents, topics, generator=gen, dtype=torch.float64)).clamp(-1, 1)
        else:
            raise StateError(f"Expected opinion='uniform' or 'bimodal' (got {opinion!r})")
        e = 0.1 * torch.randn(num_agents, emotions, generator=gen, dtype=torch.float64)
        x = x.to(dtype=dtype, device=device).expand(batch, num_agents, topics).contiguous()
        e = e.to(dtype=dtype, device=device).expand(batch, num_agents, emotions).contiguous()
        if traits is None:
            traits = Traits.sample(num_agents, seed=seed + 1, batch=batch, dtype=dtype, device=device)
        return cls.create(x, e, traits=traits)

    # ------------------------------------------------------------------ views and copies
    @property
    def batch_size(self) -> int:
        return self.opinion.size(0)

    @property
    def num_agents(self) -> int:
        return self.opinion.size(1)

    @property
    def device(self) -> torch.device:
        return self.opinion.device

    def replace(self, **changes: Tensor) -> "PopulationState":
        """A new state with some fields replaced (shape-checked, not value-checked)."""
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Check value ranges and finiteness (syncs with the device; boundaries only).

        Raises:
            StateError: opinions outside [-1, 1], negative activity, NaN/Inf, or bad traits.
        """
        _check_range("opinion", self.opinion, -1.0, 1.0)
        _check_range("opinion_anchor", self.opinion_anchor, -1.0, 1.0)
        _check_range("emotion", self.emotion, -float("inf"), float("inf"))
        _check_range("emotion_velocity", self.emotion_velocity, -float("inf"), float("inf"))
        _check_range("activity", self.activity, 0.0, float("inf"))
        _check_range("reshared", self.reshared, 0.0, 1.0)
        _check_range("frontier", self.frontier, 0.0, float("inf"))
        _check_range("exposures", self.exposures, 0.0, float("inf"))
        _check_range("hazard", self.hazard, 0.0, float("inf"))
        if self.reshare_time.numel() and bool(torch.isnan(self.reshare_time).any()):
            raise StateError("Expected 'reshare_time' without NaN (+inf marks never)")
        if self.parent.numel() and (int(self.parent.min()) < -1 or int(self.parent.max()) >= self.num_agents):
            raise StateError(f"Expected 'parent' ids in [-1, {self.num_agents}) (got [{int(self.parent.min())}, {int(self.parent.max())}])")
        self.traits.validate()

    def to(self, device: torch.device | str | None = None, dtype: Optional[torch.dtype] = None) -> "PopulationState":
        """A copy on another device and/or floating dtype."""
        fields = {
            f.name: getattr(self, f.name).to(device=device, dtype=None if f.name == "parent" else dtype)
            for f in dataclasses.fields(self)
        }
        return PopulationState(**fields)

    def expand_batch(self, batch: int) -> "PopulationState":
        """Repeat a single-scenario state ``B = 1`` into ``batch`` identical scenarios."""
        if self.batch_size != 1:
            raise StateError(f"Expected a state with batch size 1 to expand (got {self.batch_size})")
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "traits"}
        expanded = {k: v.expand(batch, *v.shape[1:]).contiguous() for k, v in fields.items()}
        traits = Traits(*[t.expand(batch, -1) for t in _tensors(self.traits)])
        return PopulationState(**expanded, traits=traits)

    def select(self, index: int | slice | Tensor) -> "PopulationState":
        """The scenarios ``index`` of the batch (an int keeps a batch dimension of 1)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        fields = {f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self) if f.name != "traits"}
        traits = Traits(*[t[index] for t in _tensors(self.traits)])
        return PopulationState(**fields, traits=traits)

    def permute(self, perm: Tensor) -> "PopulationState":
        """Relabel agents: agent ``i`` becomes agent ``perm[i]`` (as :meth:`lpm.Graph.permute`)."""
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(perm.numel(), device=perm.device)
        inverse = inverse.to(self.device)
        fields = {
            f.name: getattr(self, f.name).index_select(1, inverse)
            for f in dataclasses.fields(self)
            if f.name != "traits"
        }
        parent = fields["parent"]
        perm_device = perm.to(self.device).long()
        fields["parent"] = torch.where(parent >= 0, perm_device[parent.clamp_min(0)], parent)
        traits = Traits(*[t.index_select(1, inverse) for t in _tensors(self.traits)])
        return PopulationState(**fields, traits=traits)

    @property
    def num_items(self) -> int:
        return self.reshared.size(-1)

    # ------------------------------------------------------------------ flattening (checkpoint, save)
    def flat(self) -> list[Tensor]:
        """All tensors, in a fixed order (used by gradient checkpointing and saving)."""
        return [getattr(self, name) for name in _own_fields()] + _tensors(self.traits)

    @classmethod
    def from_flat(cls, tensors: list[Tensor]) -> "PopulationState":
        """Inverse of :meth:`flat`."""
        names = _own_fields()
        return cls(**dict(zip(names, tensors[: len(names)])), traits=Traits(*tensors[len(names):]))


def _own_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(PopulationState) if f.name != "traits"]
