"""Decision tables: what each archetype decided about each context, as tensors the step can gather.

The pipeline, each stage called once per run and never inside a step:

1. :class:`DecisionTable` asks a backend (usually a :class:`~lpm.archetypes.cache.CachedBackend`)
   for one decision per (archetype persona, context) and stores the numbers as ``(K, C)`` tensors
   plus the reactions' sentence embeddings ``(K, C, D)``, each reaction embedded once.
2. :class:`ArchetypeDrive` turns the table into behaviour for the cascade items: a reshare-logit prior
   ``(K, C)`` for :class:`~lpm.dynamics.Cascade` (which gathers the row of each agent's archetype),
   and per-exposure opinion and emotion pushes that :class:`~lpm.Model` applies to agents newly
   exposed to an item. A learnable :class:`BehaviourHead` maps reaction embeddings to offsets of
   all three, initialised to zero, so an untrained head leaves the backend's numbers unchanged and
   calibration can learn how answers translate into dynamics.
3. :class:`ArchetypeScaled` scales an intervention's per-agent effect by how each agent's archetype
   took the intervention's own text (a rebuttal, a fact-check label, a guidance message).

:class:`ArchetypeSetup` bundles archetypes and their table, which is what a scenario's
``build_model`` receives with ``lpm run --archetypes K``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from lpm.archetypes.clustering import Archetypes, build_archetypes
from lpm.archetypes.decision import EMOTIONS, Decision
from lpm.archetypes.population import OpinionTopic, PersonaPriors, persona_state
from lpm.dynamics.base import positive, softplus
from lpm.engine import StepContext, Updates
from lpm.errors import BackendError, ConfigError, StateError
from lpm.graph import Graph
from lpm.state import PopulationState
from lpm.interventions import Effects, Intervention, Shape

__all__ = ["DecisionTable", "BehaviourHead", "ArchetypeDrive", "ExposureDrive", "ArchetypeScaled", "ArchetypeSetup",
           "SHARE_CLAMP"]

#: Share probabilities are clamped to ``[SHARE_CLAMP, 1 - SHARE_CLAMP]`` before the logit, so a
#: backend's 0 or 1 becomes a finite prior (about -9.2 or +9.2).
SHARE_CLAMP = 1e-4


def _check_contexts(contexts: Sequence[str], what: str = "contexts") -> tuple[str, ...]:
    if isinstance(contexts, str) or not isinstance(contexts, Sequence):
        raise ConfigError(f"Expected {what} as a sequence of strings (got {type(contexts).__name__})")
    for i, text in enumerate(contexts):
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"Expected {what}[{i}] as a non-empty string (got {text!r})")
    return tuple(contexts)


@dataclass(frozen=True, eq=False)
class DecisionTable:
    """Decisions of K archetypes about C contexts.

    Shapes:
        share_probability: ``(K, C)`` in [0, 1].
        stance_shift: ``(K, C)`` in [-1, 1].
        emotion_impulse: ``(K, C, E)`` in [-1, 1], ``E = len(EMOTIONS)``.
        reaction_embeddings: ``(K, C, D)`` unit sentence embeddings of the reactions.

    Attributes:
        persona_texts: K persona texts (one per archetype).
        contexts: C context texts.
        reactions: ``reactions[k][c]``, the one-line reactions.
        backend: the backend that answered (kept so :meth:`extend` can ask it again).
        embedder: the embedder of the reactions.
    """

    persona_texts: tuple[str, ...]
    contexts: tuple[str, ...]
    share_probability: Tensor
    stance_shift: Tensor
    emotion_impulse: Tensor
    reaction_embeddings: Tensor
    reactions: tuple[tuple[str, ...], ...]
    backend: Any = field(default=None, repr=False)
    embedder: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        k, c = len(self.persona_texts), len(self.contexts)
        for name, shape in (("share_probability", (k, c)), ("stance_shift", (k, c)),
                            ("emotion_impulse", (k, c, len(EMOTIONS)))):
            value = getattr(self, name)
            if tuple(value.shape) != shape:
                raise ConfigError(f"Expected '{name}' of shape {shape} (got {tuple(value.shape)})")
        if self.reaction_embeddings.dim() != 3 or tuple(self.reaction_embeddings.shape[:2]) != (k, c):
            raise ConfigError(f"Expected 'reaction_embeddings' of shape ({k}, {c}, D) (got {tuple(self.reaction_embeddings.shape)})")
        if len(set(self.contexts)) != c:
            raise ConfigError("Expected distinct contexts (got a repeated one)")

    @property
    def num_archetypes(self) -> int:
        return len(self.persona_texts)

    @property
    def num_contexts(self) -> int:
        return len(self.contexts)

    @property
    def share_logit(self) -> Tensor:
        """``(K, C)`` ``logit(share_probability)``, clamped to [SHARE_CLAMP, 1 - SHARE_CLAMP]."""
        p = self.share_probability.clamp(SHARE_CLAMP, 1 - SHARE_CLAMP)
        return torch.log(p) - torch.log1p(-p)

    @classmethod
    def build(cls, persona_texts: Sequence[str], contexts: Sequence[str], backend, embedder) -> "DecisionTable":
        """Ask ``backend`` for every (persona, context) pair, in one ``decide`` call, and embed the reactions.

        Args:
            persona_texts: K archetype persona texts (e.g. :attr:`Archetypes.persona_texts`).
            contexts: C distinct context texts (items, rebuttals, guidance messages...).
            backend: a :class:`~lpm.archetypes.decision.Backend`, usually a ``CachedBackend``.
            embedder: embeds the reactions (``embed(texts) -> (n, D)``), e.g. a ``TextEmbedder``.

        Raises:
            ConfigError: empty or repeated texts.
            BackendError: the backend failed or returned the wrong number of decisions.
        """
        personas = _check_contexts(persona_texts, "persona_texts")
        if not personas:
            raise ConfigError("Expected at least one persona text (got none)")
        empty = cls(personas, (), torch.zeros(len(personas), 0), torch.zeros(len(personas), 0),
                    torch.zeros(len(personas), 0, len(EMOTIONS)), torch.zeros(len(personas), 0, 0),
                    tuple(() for _ in personas), backend, embedder)
        return empty.extend(contexts)

    def extend(self, new_contexts: Sequence[str]) -> "DecisionTable":
        """This table with more contexts, asking the backend only for pairs it does not hold.

        Contexts already in the table (and repeats within ``new_contexts``) are skipped, so at most
        K decisions are requested per genuinely new context, in one ``decide`` call.

        Returns:
            A new table (this one is unchanged) with the new contexts appended in order.

        Raises:
            ConfigError: empty texts, or no backend/embedder to ask.
            BackendError: the backend failed or returned the wrong number of decisions.
        """
        contexts = [c for c in dict.fromkeys(_check_contexts(new_contexts)) if c not in self.contexts]
        if not contexts:
            return self
        if self.backend is None or self.embedder is None:
            raise ConfigError("Expected a table with a backend and an embedder to extend (got None)")
        requests = [(persona, context) for context in contexts for persona in self.persona_texts]
        decisions = list(self.backend.decide(requests))
        if len(decisions) != len(requests) or not all(isinstance(d, Decision) for d in decisions):
            raise BackendError(f"Expected {len(requests)} decisions from {self.backend!r} (got {len(decisions)})")
        k, c = self.num_archetypes, len(contexts)
        grid = [[decisions[j * k + i] for j in range(c)] for i in range(k)]  # [archetype][context]
        share = torch.tensor([[d.share_probability for d in row] for row in grid], dtype=torch.float32)
        stance = torch.tensor([[d.stance_shift for d in row] for row in grid], dtype=torch.float32)
        impulse = torch.tensor([[list(d.emotion_impulse) for d in row] for row in grid], dtype=torch.float32)
        reactions = [[d.reaction for d in row] for row in grid]
        unique = list(dict.fromkeys(r for row in reactions for r in row))
        vectors = self.embedder.embed(unique)
        if not isinstance(vectors, Tensor) or vectors.dim() != 2 or vectors.shape[0] != len(unique):
            got = tuple(vectors.shape) if isinstance(vectors, Tensor) else type(vectors).__name__
            raise BackendError(f"Expected the embedder to return a ({len(unique)}, D) tensor (got {got})")
        row_of = {text: i for i, text in enumerate(unique)}
        index = torch.tensor([[row_of[r] for r in row] for row in reactions])
        embeddings = vectors.to(torch.float32)[index]  # (K, c, D)
        old = self.reaction_embeddings
        if old.shape[1] == 0:
            old = old.new_zeros(k, 0, embeddings.shape[-1])
        elif old.shape[-1] != embeddings.shape[-1]:
            raise BackendError(f"Expected reaction embeddings of width {old.shape[-1]} (got {embeddings.shape[-1]})")
        return DecisionTable(
            persona_texts=self.persona_texts,
            contexts=self.contexts + tuple(contexts),
            share_probability=torch.cat([self.share_probability, share], 1),
            stance_shift=torch.cat([self.stance_shift, stance], 1),
            emotion_impulse=torch.cat([self.emotion_impulse, impulse], 1),
            reaction_embeddings=torch.cat([old, embeddings], 1),
            reactions=tuple(tuple(a) + tuple(b) for a, b in zip(self.reactions, reactions)),
            backend=self.backend,
            embedder=self.embedder,
        )

    def column(self, context: str) -> int:
        """The index of ``context`` among :attr:`contexts`.

        Raises:
            ConfigError: the context is not in the table.
        """
        try:
            return self.contexts.index(context)
        except ValueError:
            raise ConfigError(f"Expected a context of the table (got {context[:80]!r}; "
                              f"the table holds {len(self.contexts)} contexts)") from None

    def select(self, contexts: Sequence[str]) -> "DecisionTable":
        """The table restricted to ``contexts``, in that order (no backend call)."""
        index = torch.tensor([self.column(c) for c in _check_contexts(contexts)], dtype=torch.int64)
        return DecisionTable(
            persona_texts=self.persona_texts,
            contexts=tuple(self.contexts[i] for i in index.tolist()),
            share_probability=self.share_probability[:, index],
            stance_shift=self.stance_shift[:, index],
            emotion_impulse=self.emotion_impulse[:, index],
            reaction_embeddings=self.reaction_embeddings[:, index],
            reactions=tuple(tuple(row[i] for i in index.tolist()) for row in self.reactions),
            backend=self.backend,
            embedder=self.embedder,
        )


class BehaviourHead(nn.Module):
    """A linear map from reaction embeddings to behaviour offsets, zero at initialisation.

    Output channels: 0 the reshare-logit offset, 1 the stance-shift offset, ``2:`` the emotion-impulse
    offsets (one per emotion). Starting from zero weights and bias, an untrained head leaves the
    backend's decisions exactly as they were; calibration moves it.

    Args:
        dim: reaction embedding width D (384 for all-MiniLM-L6-v2).
        emotions: E.

    Shapes:
        ``(..., D)`` -> ``(..., 2 + E)``.
    """

    def __init__(self, dim: int, emotions: int = len(EMOTIONS)) -> None:
        super().__init__()
        if dim < 1 or emotions < 0:
            raise ConfigError(f"Expected dim >= 1 and emotions >= 0 (got {dim}, {emotions})")
        self.linear = nn.Linear(dim, 2 + emotions)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, embeddings: Tensor) -> Tensor:
        return self.linear(embeddings)


class ArchetypeDrive(nn.Module):
    """Archetype decisions about the cascade items, as gathered behaviour (see the module docstring).

    Reshares: :meth:`forward` returns the ``(K, C)`` prior ``logit(share_probability) + offset``;
    pass the drive as :class:`~lpm.dynamics.Cascade`'s ``prior`` (with ``archetype``) and the Cascade
    adds ``prior[archetype_i, c]`` to agent ``i``'s reshare logit, calling the drive every step so
    gradients reach the head. With the Cascade's ``transmissibility=0.5`` (logit 0) the per-exposure
    reshare probability is then exactly the backend's ``share_probability``, before the other terms.

    Opinions and emotions (:meth:`apply`, stepped by :class:`~lpm.Model` with ``archetype_drive=``
    through :class:`ExposureDrive`):
    an agent of archetype ``a`` newly exposed ``n_ic`` times to item ``c`` in a step (the increase of
    the state's ``exposures``) gets

        d_it = opinion_rate * sum_{c on topic t} n_ic * stance[a, c] * item_stance_c
        x_it <- x_it + tanh(d_it) - |tanh(d_it)| * x_it
        e_i  <- e_i + emotion_rate * sum_c n_ic * impulse[a, c, :]

    Opinions move toward the item's position (its ``stance``; an item with stance 0 moves nobody) and
    saturate inside [-1, 1]: a push of size ``s`` closes the share ``|s|`` of the gap to the end it
    points at. At ``opinion_rate = emotion_rate = 1`` an exposure moves an agent as far as the
    decision says ("stance shift per post seen"); both rates are learnable positive parameters
    (softplus), since how literally an answer applies to a glance at a feed is unknown.

    Args:
        table: decisions for (at least) the items' texts.
        archetype: ``(N,)`` int archetype of each agent, in ``[0, K)``.
        items: the cascade's :class:`~lpm.dynamics.Item` objects, in the Cascade's order; each
            ``text`` must be a context of ``table``.
        opinion_rate, emotion_rate: initial rates (> 0).
        head: a :class:`BehaviourHead` (a new zero head by default).

    Raises:
        ConfigError: an item text missing from the table, archetypes out of range, bad rates.
    """

    def __init__(self, table: DecisionTable, archetype: Tensor, items: Sequence[Any], *, opinion_rate: float = 1.0,
                 emotion_rate: float = 1.0, head: Optional[BehaviourHead] = None) -> None:
        super().__init__()
        if len(items) == 0:
            raise ConfigError("Expected at least one item (got none)")
        texts = [getattr(item, "text", None) for item in items]
        if not all(isinstance(t, str) and t for t in texts):
            raise ConfigError("Expected items with texts (lpm.dynamics.Item(..., text=...)) (got one without)")
        sub = table.select(texts)
        if not isinstance(archetype, Tensor) or archetype.dim() != 1 or archetype.dtype.is_floating_point:
            got = f"{archetype.dtype} of shape {tuple(archetype.shape)}" if isinstance(archetype, Tensor) else type(archetype).__name__
            raise ConfigError(f"Expected 'archetype' as an (N,) integer tensor (got {got})")
        if archetype.numel() and (int(archetype.min()) < 0 or int(archetype.max()) >= sub.num_archetypes):
            raise ConfigError(f"Expected archetypes in [0, {sub.num_archetypes}) (got [{int(archetype.min())}, {int(archetype.max())}])")
        self.contexts = sub.contexts
        self.register_buffer("archetype", archetype.long())
        self.register_buffer("share_logit", sub.share_logit.clone())
        self.register_buffer("stance", sub.stance_shift.clone())
        self.register_buffer("impulse", sub.emotion_impulse.clone())
        self.register_buffer("reaction_embeddings", sub.reaction_embeddings.clone())
        self.register_buffer("item_topic", torch.tensor([int(item.topic) for item in items], dtype=torch.int64))
        self.register_buffer("item_stance", torch.tensor([float(item.stance) for item in items]))
        self.head = head if head is not None else BehaviourHead(sub.reaction_embeddings.shape[-1], len(EMOTIONS))
        self.raw_opinion_rate = positive("opinion_rate", opinion_rate)
        self.raw_emotion_rate = positive("emotion_rate", emotion_rate)

    @property
    def num_archetypes(self) -> int:
        return self.share_logit.shape[0]

    @property
    def opinion_rate(self) -> Tensor:
        return softplus(self.raw_opinion_rate)

    @property
    def emotion_rate(self) -> Tensor:
        return softplus(self.raw_emotion_rate)

    def tables(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(reshare_logit (K, C), stance_shift (K, C), emotion_impulse (K, C, E))`` with the head's offsets."""
        offset = self.head(self.reaction_embeddings.to(self.head.linear.weight.dtype))  # (K, C, 2 + E)
        return (self.share_logit + offset[..., 0], self.stance + offset[..., 1], self.impulse + offset[..., 2:])

    def forward(self) -> Tensor:
        """``(K, C)`` reshare-logit prior for :class:`~lpm.dynamics.Cascade`."""
        offset = self.head(self.reaction_embeddings.to(self.head.linear.weight.dtype))[..., 0]
        return self.share_logit + offset

    def step_component(self) -> "ExposureDrive":
        """This drive as a step component (:class:`ExposureDrive`), for :class:`lpm.Model` to run
        after the cascade without importing the archetype layer."""
        return ExposureDrive(self)

    def apply(self, opinion: Tensor, emotion: Tensor, new_exposures: Tensor) -> tuple[Tensor, Tensor]:
        """Opinions and emotions after this step's new exposures (pure; gathers, no loops).

        Shapes:
            opinion: ``(B, N, T)``; emotion: ``(B, N, E)``; new_exposures: ``(B, N, C)`` ->
            ``(opinion (B, N, T), emotion (B, N, E))``.
        """
        _, stance, impulse = self.tables()
        dtype = opinion.dtype
        per_item = new_exposures * (stance.to(dtype)[self.archetype] * self.item_stance.to(dtype))[None]  # (B, N, C)
        push = opinion.new_zeros(opinion.shape).index_add(2, self.item_topic, per_item)  # (B, N, T)
        step = torch.tanh(self.opinion_rate.to(dtype) * push)
        opinion = opinion + step - step.abs() * opinion
        gathered = impulse.to(dtype)[self.archetype]  # (N, C, E)
        emotion = emotion + self.emotion_rate.to(dtype) * torch.einsum("bnc,nce->bne", new_exposures, gathered)
        return opinion, emotion


class ExposureDrive:
    """An :class:`ArchetypeDrive` as a step component (:class:`lpm.engine.Dynamics`), after the
    cascade: agents newly exposed to items in the step move their opinion and emotion as their
    archetype decided (:meth:`ArchetypeDrive.apply`), on top of this step's other updates.

    Not a module: the drive (and its head's parameters) stays registered where the model holds it,
    as ``Model.archetype_drive`` and, when it is the reshare prior, ``Model.cascade.prior``.
    """

    def __init__(self, drive: ArchetypeDrive) -> None:
        self.drive = drive

    def __call__(self, state: PopulationState, graph: Graph, ctx: StepContext) -> Updates:
        new_exposures = ctx.updates["cascade"].exposures - state.exposures
        opinion, emotion = self.drive.apply(ctx.updates.get("opinion", state.opinion),
                                            ctx.updates.get("emotion", state.emotion), new_exposures)
        return Updates(state={"opinion": opinion, "emotion": emotion})

    def check(self, state: PopulationState) -> None:
        """Raises :class:`StateError` unless the drive's agents, items, topics and emotions fit the state."""
        drive = self.drive
        if drive.archetype.numel() != state.num_agents:
            raise StateError(f"Expected an archetype drive for {state.num_agents} agents (got {drive.archetype.numel()})")
        if drive.item_topic.numel() != state.num_items:
            raise StateError(f"Expected a state with cascade state for the drive's {drive.item_topic.numel()} items "
                             f"(got {state.num_items})")
        if int(drive.item_topic.max()) >= state.opinion.size(-1):
            raise StateError(f"Expected item topics < {state.opinion.size(-1)} (got {int(drive.item_topic.max())})")
        if drive.impulse.size(-1) != state.emotion.size(-1):
            raise StateError(f"Expected a state with {drive.impulse.size(-1)} emotions for the drive's impulses "
                             f"(got {state.emotion.size(-1)})")

    def init_state(self, state: PopulationState) -> PopulationState:
        return state

    def idle_after(self, horizon_h: float) -> list[str]:
        return []


class ArchetypeScaled(Intervention):
    """An intervention whose per-agent effects are scaled by each agent's archetype's take on a text.

    The wrapped intervention's additive effects (reshare-logit offsets, emotion drive, opinion pull)
    are multiplied per agent by ``scale`` ``(N,)``; its multiplicative effects (exposure, source and
    edge gates) and its timing are unchanged. :meth:`ArchetypeSetup.scaled` builds the scale from the
    decisions on the intervention's text as ``1 + stance_shift[archetype_i, text]``: an archetype that
    fully accepts a rebuttal (+1) feels it twice as strongly, one that fully rejects it (-1) not at
    all, a neutral one as before. The scale is fixed (not passed through the head): interventions
    are deep-copied per counterfactual arm, and a shared head must stay one module.

    Args:
        inner: the intervention (its ``at`` and strength parameters stay learnable).
        scale: ``(N,)`` non-negative multipliers.
    """

    def __init__(self, inner: Intervention, scale: Tensor) -> None:
        nn.Module.__init__(self)  # timing, width and scenario mask live in `inner`
        if not isinstance(inner, Intervention):
            raise ConfigError(f"Expected an lpm.interventions.Intervention to scale (got {type(inner).__name__})")
        if not isinstance(scale, Tensor) or scale.dim() != 1 or not scale.is_floating_point():
            raise ConfigError(f"Expected an (N,) float scale (got {getattr(scale, 'shape', type(scale).__name__)})")
        self.inner = inner
        self.register_buffer("scale", scale.detach().clone())

    @property
    def at(self) -> Tensor:  # type: ignore[override]
        return self.inner.at

    @property
    def width(self) -> float:  # type: ignore[override]
        return self.inner.width

    def restricted_to(self, scenarios: Tensor) -> "ArchetypeScaled":
        self.inner.restricted_to(scenarios)
        return self

    def apply(self, effects: Effects, time_h: float, shape: Shape) -> None:
        if self.scale.numel() != shape.agents:
            raise ConfigError(f"Expected a scale for {shape.agents} agents (got {self.scale.numel()})")
        own = Effects()
        self.inner.apply(own, time_h, shape)
        scale = self.scale.to(shape.like.dtype)[None, :, None]
        for name in ("reshare_logit", "emotion_drive", "opinion_rate", "opinion_pull"):
            value = getattr(own, name)
            if value is not None:
                effects.add(name, value * scale)
        for name in ("exposure_scale", "source_gate", "edge_scale"):
            value = getattr(own, name)
            if value is not None:
                effects.scale(name, value)
        if own.personalization is not None:
            effects.add("personalization", own.personalization)


@dataclass(frozen=True, eq=False)
class ArchetypeSetup:
    """Archetypes and their decision table: what a scenario's ``build_model(..., archetypes=)`` gets.

    Attributes:
        archetypes: the :class:`~lpm.archetypes.clustering.Archetypes` of the run's N agents.
        table: decisions of the K archetypes about the scenario's contexts.
    """

    archetypes: Archetypes
    table: DecisionTable

    def __post_init__(self) -> None:
        if self.table.persona_texts != tuple(self.archetypes.persona_texts):
            raise ConfigError("Expected a decision table built from these archetypes' persona texts (got another)")

    @classmethod
    def build(cls, num_agents: int, k: int, contexts: Sequence[str], backend, *, seed: int = 0,
              embedder=None) -> "ArchetypeSetup":
        """Sample personas, cluster them into ``k`` archetypes and ask ``backend`` about ``contexts``.

        At most ``k * len(contexts)`` requests reach ``backend`` (fewer through a cache).
        """
        if embedder is None:
            from lpm.embed import TextEmbedder

            embedder = TextEmbedder()
        archetypes = build_archetypes(num_agents, k, seed, embedder=embedder)
        table = DecisionTable.build(archetypes.persona_texts, contexts, backend, embedder)
        return cls(archetypes, table)

    @property
    def num_agents(self) -> int:
        return self.archetypes.num_agents

    def drive(self, items: Sequence[Any], **kwargs: Any) -> ArchetypeDrive:
        """An :class:`ArchetypeDrive` for these cascade items (``kwargs``: rates, head)."""
        return ArchetypeDrive(self.table, self.archetypes.assignment, items, **kwargs)

    def acceptance(self, context: str) -> Tensor:
        """``(N,)`` ``1 + stance_shift[archetype_i, context]``, in [0, 2] (see :class:`ArchetypeScaled`)."""
        column = self.table.column(context)
        return (1.0 + self.table.stance_shift[:, column])[self.archetypes.assignment]

    def initial_state(self, state: PopulationState, topics: Optional[Sequence[OpinionTopic]] = None, *,
                      priors: PersonaPriors = PersonaPriors(), seed: int = 0) -> PopulationState:
        """``state`` with opinions, posting rates, susceptibility and stubbornness set by the agents'
        personas (:func:`~lpm.archetypes.population.persona_state`)."""
        return persona_state(state, self.archetypes.personas, topics, priors=priors, seed=seed)

    def scaled(self, intervention: Intervention, context: str) -> ArchetypeScaled:
        """``intervention`` with its effect on each agent scaled by :meth:`acceptance` of ``context``."""
        return ArchetypeScaled(intervention, self.acceptance(context))
