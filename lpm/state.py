"""Population state: a few dense tensors with a leading scenario batch dimension ``B``.

Constructing a state checks shapes, dtypes and devices only (host metadata, no device sync), so the
step can build new states freely. :meth:`PopulationState.validate` checks values (ranges, NaN/Inf)
and is called at boundaries: ``simulate`` entry and save points.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from lpm.errors import ConfigError, StateError

__all__ = ["Traits", "PopulationState", "NestedState"]

# Read access to the cascade's nested state kept on the population state (many call sites read
# ``state.reshared``); the cascade module owns these fields (lpm.dynamics.cascade_state).
_CASCADE_VIEWS = ("reshared", "frontier", "exposures", "hazard", "reshare_time", "parent")


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




def _check_count(name: str, value: object) -> None:
    """A size given by the user: a positive int (a float or a bool would be truncated or misread)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise StateError(f"Expected {name} to be a positive integer (got {value!r})")


def _local_generator(seed: object) -> torch.Generator:
    """A generator seeded with ``seed``, which must be an int torch accepts (no silent wrap-around)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not -(2**63) <= seed < 2**64:
        raise ConfigError(f"Expected an integer seed in [-2**63, 2**64) (got {seed!r})")
    return torch.Generator().manual_seed(int(seed))

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
        _check_count("num_agents", num_agents)
        _check_count("batch", batch)
        gen = _local_generator(seed)
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


class NestedState:
    """Base of a component's own state kept inside :class:`PopulationState` (e.g. the cascade's).

    Subclasses are frozen dataclasses whose fields are all tensors with the layout ``(B, N, ...)``,
    owned and documented by the dynamics module that steps them. The population state batches,
    selects, moves, flattens and validates them through these methods.
    """

    def tensors(self) -> list[Tensor]:
        """All tensors, in field order (flattening for checkpoints and snapshots)."""
        return _tensors(self)

    @classmethod
    def from_tensors(cls, tensors: list[Tensor]) -> "NestedState":
        """Inverse of :meth:`tensors`."""
        return cls(*tensors)

    def map(self, fn) -> "NestedState":
        """The same state with ``fn`` applied to every tensor (batch and agent views, devices)."""
        return type(self)(*[fn(t) for t in _tensors(self)])

    def replace(self, **changes: Tensor) -> "NestedState":
        return dataclasses.replace(self, **changes)

    def to(self, device: torch.device | str | None = None, dtype: Optional[torch.dtype] = None) -> "NestedState":
        """A copy on another device and/or floating dtype (integer tensors keep their dtype)."""
        return self.map(lambda t: t.to(device=device, dtype=dtype if t.is_floating_point() else None))

    def permute(self, perm: Tensor, inverse: Tensor) -> "NestedState":
        """Relabel agents as :meth:`PopulationState.permute` (``inverse``: the inverse permutation)."""
        return self.map(lambda t: t.index_select(1, inverse))

    def check_layout(self, batch: int, num_agents: int, like: Tensor) -> None:
        """Raise :class:`StateError` unless shapes fit ``(batch, num_agents, ...)`` and floating
        tensors have the dtype and device of ``like`` (host metadata only: no device sync)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, Tensor) or tuple(value.shape[:2]) != (batch, num_agents):
                found = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise StateError(f"Expected '{f.name}' of shape ({batch}, {num_agents}, ...) (got {found})")

    def validate(self, num_agents: int) -> None:
        """Check value ranges (syncs with the device; boundaries only)."""

    def nonfinite(self) -> Optional[str]:
        """The name of a tensor that must be finite and is not, else ``None`` (syncs; save points)."""
        return None


def _cascade_view(name: str) -> property:
    def read(self: "PopulationState") -> Tensor:
        if self.cascade is not None:
            return getattr(self.cascade, name)
        # no cascade: an empty (B, N, 0) view, as a state without items has
        dtype = torch.int64 if name == "parent" else self.opinion.dtype
        return torch.zeros(self.batch_size, self.num_agents, 0, dtype=dtype, device=self.device)

    return property(read, doc=f"``state.cascade.{name}`` (see :class:`lpm.dynamics.CascadeState`).")


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

        cascade: the cascade's own state (:class:`lpm.dynamics.CascadeState`: per agent and item,
            ``(B, N, C)``), or ``None`` without a cascade model. Its fields read through the state
            too: ``state.reshared``, ``state.parent``, ... (empty ``(B, N, 0)`` without a cascade).
    """

    opinion: Tensor
    opinion_anchor: Tensor
    emotion: Tensor
    emotion_velocity: Tensor
    activity: Tensor
    traits: Traits
    cascade: Optional[NestedState] = None

    reshared = _cascade_view("reshared")
    frontier = _cascade_view("frontier")
    exposures = _cascade_view("exposures")
    hazard = _cascade_view("hazard")
    reshare_time = _cascade_view("reshare_time")
    parent = _cascade_view("parent")

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
        if self.cascade is not None:
            if not isinstance(self.cascade, NestedState):
                raise StateError(f"Expected 'cascade' to be a nested state such as lpm.dynamics.CascadeState "
                                 f"(got {type(self.cascade).__name__})")
            self.cascade.check_layout(batch, num_agents, self.opinion)
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
        for name, count in (("num_agents", num_agents), ("batch", batch), ("topics", topics), ("emotions", emotions)):
            _check_count(name, count)
        from lpm.resources import check_memory

        # float64 draws per agent, then per scenario: opinion and anchor (T each), emotion and velocity
        # (E each), activity, four traits, and a copy of each while moving to dtype/device
        itemsize = torch.empty(0, dtype=dtype).element_size()
        per_agent = 8 * (topics + emotions + 6) + 2 * batch * itemsize * (2 * topics + 2 * emotions + 5)
        check_memory(f"a population of {num_agents:,} agents x {batch} scenarios", num_agents * per_agent, device)
        gen = _local_generator(seed)
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
        """A new state with some fields replaced (shape-checked, not value-checked).

        Fields of the nested cascade state may be named directly (``reshared=...``).

        Raises:
            StateError: a cascade field named on a state without cascade state.
        """
        nested = {name: changes.pop(name) for name in list(changes) if name in _CASCADE_VIEWS}
        if nested:
            cascade = changes.get("cascade", self.cascade)
            if cascade is None:
                raise StateError(f"Expected a state with cascade state to set {sorted(nested)} (got none; "
                                 "use lpm.dynamics.init_cascade_state)")
            changes["cascade"] = cascade.replace(**nested)
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
        if self.cascade is not None:
            self.cascade.validate(self.num_agents)
        self.traits.validate()

    def nonfinite(self) -> Optional[str]:
        """The name of the first field holding NaN or Inf where it must be finite, else ``None``
        (syncs with the device: save points only)."""
        for name in _own_fields():
            if not bool(torch.isfinite(getattr(self, name)).all()):
                return name
        return self.cascade.nonfinite() if self.cascade is not None else None

    def to(self, device: torch.device | str | None = None, dtype: Optional[torch.dtype] = None) -> "PopulationState":
        """A copy on another device and/or floating dtype."""
        fields = {name: getattr(self, name).to(device=device, dtype=dtype) for name in _own_fields()}
        cascade = self.cascade.to(device, dtype) if self.cascade is not None else None
        return PopulationState(**fields, traits=self.traits.to(device, dtype), cascade=cascade)

    def expand_batch(self, batch: int) -> "PopulationState":
        """Repeat a single-scenario state ``B = 1`` into ``batch`` identical scenarios."""
        if self.batch_size != 1:
            raise StateError(f"Expected a state with batch size 1 to expand (got {self.batch_size})")
        def expand(v: Tensor) -> Tensor:
            return v.expand(batch, *v.shape[1:]).contiguous()

        expanded = {name: expand(getattr(self, name)) for name in _own_fields()}
        traits = Traits(*[t.expand(batch, -1) for t in _tensors(self.traits)])
        cascade = self.cascade.map(expand) if self.cascade is not None else None
        return PopulationState(**expanded, traits=traits, cascade=cascade)

    def select(self, index: int | slice | Tensor) -> "PopulationState":
        """The scenarios ``index`` of the batch (an int keeps a batch dimension of 1)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        fields = {name: getattr(self, name)[index] for name in _own_fields()}
        traits = Traits(*[t[index] for t in _tensors(self.traits)])
        cascade = self.cascade.map(lambda t: t[index]) if self.cascade is not None else None
        return PopulationState(**fields, traits=traits, cascade=cascade)

    def permute(self, perm: Tensor) -> "PopulationState":
        """Relabel agents: agent ``i`` becomes agent ``perm[i]`` (as :meth:`lpm.Graph.permute`)."""
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(perm.numel(), device=perm.device)
        inverse = inverse.to(self.device)
        fields = {name: getattr(self, name).index_select(1, inverse) for name in _own_fields()}
        traits = Traits(*[t.index_select(1, inverse) for t in _tensors(self.traits)])
        cascade = self.cascade.permute(perm.to(self.device).long(), inverse) if self.cascade is not None else None
        return PopulationState(**fields, traits=traits, cascade=cascade)

    @property
    def num_items(self) -> int:
        """``C``, the cascade's items (0 without cascade state)."""
        return self.cascade.num_items if self.cascade is not None else 0

    # ------------------------------------------------------------------ flattening (checkpoint, save)
    def flat(self) -> list[Tensor]:
        """All tensors, in a fixed order (used by gradient checkpointing and saving): the own
        fields, the nested cascade state's (none without one), the traits."""
        nested = self.cascade.tensors() if self.cascade is not None else []
        return [getattr(self, name) for name in _own_fields()] + nested + _tensors(self.traits)

    @classmethod
    def from_flat(cls, tensors: list[Tensor], like: Optional["PopulationState"] = None) -> "PopulationState":
        """Inverse of :meth:`flat`; ``like`` (a state of the same structure) says which nested state
        the tensors between the own fields and the traits belong to.

        Raises:
            StateError: too few tensors, or nested-state tensors without a ``like`` holding that state.
        """
        names, num_traits = _own_fields(), len(dataclasses.fields(Traits))
        if len(tensors) < len(names) + num_traits:
            raise StateError(f"Expected at least {len(names) + num_traits} tensors to rebuild a state (got {len(tensors)})")
        nested = tensors[len(names): len(tensors) - num_traits]
        cascade = None
        if nested:
            if like is None or like.cascade is None:
                raise StateError(f"Expected a state 'like' holding the nested state of the {len(nested)} tensors "
                                 "between the own fields and the traits (got none)")
            cascade = type(like.cascade).from_tensors(list(nested))
        return cls(**dict(zip(names, tensors[: len(names)])), cascade=cascade,
                   traits=Traits(*tensors[len(tensors) - num_traits:]))


def _own_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(PopulationState) if f.name not in ("traits", "cascade")]
