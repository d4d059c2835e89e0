"""Personas: N users' attributes, sampled as code tensors from the tables in :mod:`.marginals`.

A :class:`Personas` holds one ``(N,)`` integer code tensor per categorical attribute and an
``(N, T)`` bool tensor of interests, never one object per user; text is rendered on demand for the
few users that need it (archetype representatives). Interests enter the model as embeddings built
from the :data:`~lpm.archetypes.marginals.TOPICS` phrases, each embedded once: a user's interest
vector is the normalised sum of its topics' embeddings, so a million users cost twelve model calls.

Example:
    >>> p = Personas.sample(1_000_000, seed=0)        # ~0.5 s on a CPU
    >>> p.text(0)                                      # doctest: +SKIP
    'A 30-49-year-old woman, politically moderate, with some college education. Interested in: sports. ...'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lpm.archetypes import marginals
from lpm.errors import ConfigError, DataFormatError

__all__ = ["Personas", "VOCABULARY", "ROLE_TEXT", "ACTIVITY_TEXT", "EDUCATION_TEXT", "topic_basis"]

#: Labels of every categorical attribute, in code order (code ``k`` means ``VOCABULARY[name][k]``).
VOCABULARY: dict[str, tuple[str, ...]] = {
    **{name: labels for name, (labels, _) in marginals.CATEGORICAL.items()},
    "role": marginals.ROLES,
}

#: How each role reads in a persona text (what it means for behaviour, so a backend can use it).
ROLE_TEXT: dict[str, str] = {
    "spreader": "A spreader: reshares striking posts quickly, often without checking them.",
    "commentator": "A commentator: replies to and argues about what shows up in the feed.",
    "verifier": "A verifier: checks sources and fact-checks claims before believing or sharing them.",
    "bystander": "A bystander: mostly reads and scrolls past, seldom engages.",
}

#: How each education level reads in a persona text.
EDUCATION_TEXT: dict[str, str] = {
    "high school or less": "a high school education or less",
    "some college": "some college education",
    "bachelor's or more": "a bachelor's degree or more",
}

#: How each activity level reads in a persona text.
ACTIVITY_TEXT: dict[str, str] = {
    "never": "Never posts about political or social issues.",
    "rarely": "Rarely posts about political or social issues.",
    "sometimes": "Sometimes posts about political or social issues.",
    "often": "Often posts about political or social issues.",
}

_ATTRIBUTES = ("age", "gender", "leaning", "education", "activity", "role")


def _inverse_cdf(probs: Tensor, uniform: Tensor) -> Tensor:
    """Codes with ``P(code = k) = probs[..., k]`` from uniforms (``probs`` ``(R,)`` or per row ``(N, R)``)."""
    cdf = torch.cumsum(probs, dim=-1)
    cdf = cdf / cdf[..., -1:]  # exact 1 at the end, whatever the rounding of the table
    if cdf.dim() == 1:
        return torch.searchsorted(cdf, uniform, right=True).clamp_max(cdf.numel() - 1)
    return (uniform[:, None] >= cdf).sum(-1).clamp_max(cdf.size(-1) - 1)


def topic_basis(embedder) -> tuple[Tensor, Tensor]:
    """Unit embeddings of the :data:`~lpm.archetypes.marginals.TOPICS` phrases and their span's frame.

    Returns:
        ``(topics, r)``: ``topics`` ``(T, D)`` unit rows; ``r`` ``(T, T)`` with ``topics.T = Q r`` for
        an orthonormal ``Q`` ``(D, T)``. A mix ``w @ topics`` then equals ``(w @ r.T) @ Q.T``: its
        coordinates in the span are ``w @ r.T``, and distances and dot products with other vectors of
        the span are preserved in T dimensions instead of D.
    """
    topics = F.normalize(embedder.embed(list(marginals.TOPICS)).to(torch.float64), dim=1)
    _, r = torch.linalg.qr(topics.T)  # reduced QR: (D, T) and (T, T)
    return topics, r


@dataclass(frozen=True, eq=False)
class Personas:
    """Attributes of N users as code tensors.

    Shapes:
        age, gender, leaning, education, activity, role: ``(N,)`` int64 codes into
        ``VOCABULARY[name]``.
        interests: ``(N, T)`` bool, ``T = len(marginals.TOPICS)``; every row has 1 to 3 topics.
    """

    age: Tensor
    gender: Tensor
    leaning: Tensor
    education: Tensor
    activity: Tensor
    role: Tensor
    interests: Tensor

    def __post_init__(self) -> None:
        n = self.age.shape[0] if isinstance(self.age, Tensor) and self.age.dim() == 1 else -1
        for name in _ATTRIBUTES:
            value = getattr(self, name)
            if not isinstance(value, Tensor) or value.dim() != 1 or value.shape[0] != n or value.dtype != torch.int64:
                got = f"{value.dtype} of shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
                raise ConfigError(f"Expected '{name}' as an (N,) int64 tensor like 'age' (got {got})")
        t = len(marginals.TOPICS)
        if not isinstance(self.interests, Tensor) or tuple(self.interests.shape) != (n, t) or self.interests.dtype != torch.bool:
            got = (f"{self.interests.dtype} of shape {tuple(self.interests.shape)}" if isinstance(self.interests, Tensor)
                   else type(self.interests).__name__)
            raise ConfigError(f"Expected 'interests' as an ({n}, {t}) bool tensor (got {got})")

    # ------------------------------------------------------------------ sampling
    @classmethod
    def sample(cls, num_agents: int, *, seed: Optional[int] = None,
               generator: Optional[torch.Generator] = None) -> "Personas":
        """Draw ``num_agents`` personas from the tables in :mod:`.marginals`.

        Categorical attributes are drawn independently by inverse CDF, ``role`` given ``activity``,
        and interests by the Gumbel top-k trick: ``n`` topics (``n ~ INTEREST_COUNT``) in the order
        of ``log w + Gumbel`` keys, which is sequential sampling without replacement proportional to
        ``TOPIC_WEIGHTS``. Vectorised: a million personas take about half a second on a CPU.

        Args:
            num_agents: N >= 1.
            seed: seed of a local generator; or pass ``generator`` (exactly one of the two).
            generator: a CPU ``torch.Generator``.

        Raises:
            ConfigError: bad ``num_agents`` or not exactly one of ``seed`` / ``generator``.
        """
        if isinstance(num_agents, bool) or not isinstance(num_agents, int) or num_agents < 1:
            raise ConfigError(f"Expected num_agents as a positive int (got {num_agents!r})")
        if (seed is None) == (generator is None):
            raise ConfigError("Expected exactly one of seed= or generator= (got "
                              f"{'both' if seed is not None else 'neither'})")
        gen = generator if generator is not None else torch.Generator().manual_seed(int(seed))
        n = num_agents
        codes: dict[str, Tensor] = {}
        uniforms = torch.rand(len(marginals.CATEGORICAL) + 2, n, generator=gen, dtype=torch.float64)
        for row, (name, (_, probs)) in enumerate(marginals.CATEGORICAL.items()):
            codes[name] = _inverse_cdf(torch.tensor(probs, dtype=torch.float64), uniforms[row])
        role_table = torch.tensor(marginals.ROLE_GIVEN_ACTIVITY, dtype=torch.float64)
        codes["role"] = _inverse_cdf(role_table[codes["activity"]], uniforms[-2])
        counts, count_probs = marginals.INTEREST_COUNT
        count = torch.tensor(counts)[_inverse_cdf(torch.tensor(count_probs, dtype=torch.float64), uniforms[-1])]
        weights = torch.tensor(marginals.TOPIC_WEIGHTS)
        # float32 keys: ties have probability ~1e-7 per pair and only reorder equally likely topics
        u = torch.rand(n, weights.numel(), generator=gen).clamp_min(torch.finfo(torch.float32).tiny)
        keys = weights.log() - torch.log(-torch.log(u))  # log w + Gumbel(0, 1)
        top = keys.topk(max(counts), dim=1).indices  # (N, 3) in draw order
        chosen = torch.arange(max(counts))[None, :] < count[:, None]
        interests = torch.zeros(n, weights.numel(), dtype=torch.bool).scatter_(1, top, chosen)
        return cls(**codes, interests=interests)

    # ------------------------------------------------------------------ views
    @property
    def num_agents(self) -> int:
        return self.age.shape[0]

    def __len__(self) -> int:
        return self.num_agents

    def select(self, index: Tensor | Sequence[int]) -> "Personas":
        """The personas at ``index`` (a ``(M,)`` index tensor or list), in that order."""
        idx = torch.as_tensor(index, dtype=torch.int64)
        return Personas(**{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)})

    def distinct(self) -> tuple[Tensor, Tensor, Tensor]:
        """Distinct personas: ``(first (U,), inverse (N,), counts (U,))``.

        ``first`` indexes one user per distinct attribute-and-interest combination (its first
        occurrence), ``inverse[i]`` is user ``i``'s combination and ``counts`` how many users share
        each. There are at most 343,392 combinations, so a million users collapse to ~170k rows.
        """
        key = torch.zeros(self.num_agents, dtype=torch.int64)
        for name in _ATTRIBUTES:  # mixed-radix code of the categorical attributes
            key = key * len(VOCABULARY[name]) + getattr(self, name)
        bits = (self.interests.to(torch.int64) << torch.arange(self.interests.shape[1])).sum(1)
        key = (key << self.interests.shape[1]) + bits
        _, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
        n = self.num_agents
        first = torch.full((counts.numel(),), n, dtype=torch.int64).scatter_reduce(0, inverse, torch.arange(n), "amin")
        return first, inverse, counts

    def labels(self, name: str) -> list[str]:
        """Every persona's label of attribute ``name`` (a list of N strings: for tables, not for the step)."""
        if name not in VOCABULARY:
            raise ConfigError(f"Expected an attribute in {list(VOCABULARY)} (got {name!r})")
        vocab = VOCABULARY[name]
        return [vocab[c] for c in getattr(self, name).tolist()]

    def text(self, i: int) -> str:
        """The persona text of user ``i`` (what a backend reads as the persona)."""
        if not -self.num_agents <= int(i) < self.num_agents:
            raise ConfigError(f"Expected a user index in [0, {self.num_agents}) (got {i})")
        get = {name: VOCABULARY[name][int(getattr(self, name)[i])] for name in _ATTRIBUTES}
        topics = [marginals.TOPICS[t] for t in self.interests[i].nonzero().flatten().tolist()]
        article = "An" if get["age"].startswith(("18", "8")) else "A"
        return (f"{article} {get['age']}-year-old {get['gender']}, politically {get['leaning']}, with {EDUCATION_TEXT[get['education']]}. "
                f"Interested in: {'; '.join(topics)}. {ACTIVITY_TEXT[get['activity']]} {ROLE_TEXT[get['role']]}")

    def summary(self, i: int) -> str:
        """A one-line label summary of user ``i``, e.g. ``"30-49 woman, moderate, some college, posts rarely, bystander"``."""
        get = {name: VOCABULARY[name][int(getattr(self, name)[i])] for name in _ATTRIBUTES}
        return (f"{get['age']} {get['gender']}, {get['leaning']}, {get['education']}, posts {get['activity']}, "
                f"{get['role']}")

    def texts(self, index: Tensor | Sequence[int]) -> list[str]:
        """Persona texts of the users at ``index`` (meant for a few: K archetype representatives)."""
        return [self.text(int(i)) for i in torch.as_tensor(index, dtype=torch.int64).reshape(-1).tolist()]

    # ------------------------------------------------------------------ numeric features
    def one_hot(self, name: str, dtype: torch.dtype = torch.float32) -> Tensor:
        """``(N, len(VOCABULARY[name]))`` one-hot codes of attribute ``name``."""
        if name not in VOCABULARY:
            raise ConfigError(f"Expected an attribute in {list(VOCABULARY)} (got {name!r})")
        return F.one_hot(getattr(self, name), len(VOCABULARY[name])).to(dtype)

    def interest_coordinates(self, embedder, dtype: torch.dtype = torch.float32) -> Tensor:
        """``(N, T)`` each user's interest embedding in coordinates of the topics' span (see :func:`topic_basis`).

        ``interest_coordinates(e)[i] @ Q.T == interest_embeddings(e)[i]`` for the orthonormal frame
        ``Q`` of that span, so Euclidean distances between users are those of their 384-d interest
        embeddings, at T = 12 numbers per user. Costs T embedder calls (cached by the embedder).
        """
        _, r = topic_basis(embedder)
        return F.normalize(self.interests.to(torch.float64) @ r.T, dim=1).to(dtype)

    def interest_embeddings(self, embedder, dtype: torch.dtype = torch.float32) -> Tensor:
        """``(N, D)`` unit interest embeddings: ``normalize(sum of the user's topic embeddings)``.

        Same as :func:`lpm.embed.interest_embeddings` with 0/1 topic weights; the topic phrases are
        embedded once (T calls), never the N persona texts. N x D floats: 1.5 GB for a million users
        at D = 384; prefer :meth:`interest_coordinates` or :meth:`interest_similarity` at that size.
        """
        from lpm.embed import interest_embeddings

        return interest_embeddings(self.interests.to(dtype), list(marginals.TOPICS), embedder)

    def interest_similarity(self, texts: Sequence[str], embedder, dtype: torch.dtype = torch.float32) -> Tensor:
        """``(N, C)`` cosine similarity of each user's interest embedding and each text's embedding.

        Exact, without materialising the ``(N, D)`` interest embeddings: the texts are projected on
        the topics' span (:func:`topic_basis`); for :class:`lpm.dynamics.Cascade`'s
        ``interest_similarity``.
        """
        from lpm.embed import _check_texts

        items = F.normalize(embedder.embed(_check_texts(texts)).to(torch.float64), dim=1)  # (C, D)
        topics, r = topic_basis(embedder)
        q = topics.T @ torch.linalg.inv(r)  # (D, T) orthonormal frame: topics.T = q r
        return (self.interest_coordinates(embedder, torch.float64) @ (q.T @ items.T)).to(dtype)

    def posting_rate(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """``(N,)`` a baseline posting-rate multiplier per activity level, with population mean 1.

        Levels never / rarely / sometimes / often read as 0.2 / 0.6 / 1.5 / 4.0 before normalising:
        an assumption that keeps [Pew20]'s ordering and its heavy tail (9% "often").
        """
        levels = torch.tensor([0.2, 0.6, 1.5, 4.0], dtype=torch.float64)
        mean = float((levels * torch.tensor(marginals.ACTIVITY[1], dtype=torch.float64)).sum())
        return (levels[self.activity] / mean).to(dtype)

    # ------------------------------------------------------------------ tables
    def to_frame(self):
        """A pandas DataFrame: one categorical column per attribute, one bool column per topic."""
        import pandas as pd

        columns = {name: pd.Categorical.from_codes(getattr(self, name).numpy(), categories=list(VOCABULARY[name]))
                   for name in _ATTRIBUTES}
        interests = self.interests.numpy()
        for t, topic in enumerate(marginals.TOPICS):
            columns[f"interest: {topic}"] = interests[:, t]
        return pd.DataFrame(columns)

    @classmethod
    def from_frame(cls, frame) -> "Personas":
        """Inverse of :meth:`to_frame`.

        Raises:
            DataFormatError: a missing column or a label outside the vocabulary.
        """
        import numpy as np
        import pandas as pd

        codes: dict[str, Tensor] = {}
        for name in _ATTRIBUTES:
            if name not in frame.columns:
                raise DataFormatError(f"Expected a column {name!r} in the persona table (got {list(frame.columns)})")
            vocab = list(VOCABULARY[name])
            column = frame[name]
            if not isinstance(column.dtype, pd.CategoricalDtype):
                column = column.astype(str).astype("category")
            # map the few categories, then gather by the per-row category codes
            lookup = {label: k for k, label in enumerate(vocab)}
            per_category = np.array([lookup.get(str(c), -1) for c in column.cat.categories] + [-1], dtype=np.int64)
            code = per_category[column.cat.codes.to_numpy()]  # a missing value has code -1: the trailing -1
            if (code < 0).any():
                unknown = sorted({str(v) for v in column[code < 0]})
                raise DataFormatError(f"Expected '{name}' labels in {vocab} (got {unknown[:3]})")
            codes[name] = torch.from_numpy(code)
        interest_columns = [f"interest: {topic}" for topic in marginals.TOPICS]
        missing = [c for c in interest_columns if c not in frame.columns]
        if missing:
            raise DataFormatError(f"Expected interest columns {missing[:2]}... in the persona table (missing)")
        interests = torch.from_numpy(frame[interest_columns].to_numpy(dtype=bool, copy=True))
        return cls(**codes, interests=interests)
