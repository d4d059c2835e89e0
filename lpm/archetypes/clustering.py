"""Archetypes: personas grouped by k-means, each represented by its most central member.

Features. Each user is a vector of its categorical attributes as one-hot blocks and its interest
embedding, each block scaled by a weight (:data:`DEFAULT_WEIGHTS`). One-hot blocks are divided by
``sqrt(2)`` so two users who differ in one attribute are at distance ``weight`` along it. Interests
enter through their exact coordinates in the span of the topic embeddings
(:meth:`Personas.interest_coordinates`): the same Euclidean geometry as the 384-d MiniLM interest
embeddings at 12 numbers per user, which keeps a million-user k-means cheap. Role, leaning and
interests weigh most because they are what a backend's decision about content depends on most
(whether one spreads or checks, which side a claim flatters, whether the topic matters to one);
gender weighs least.

k-means is plain Lloyd iteration in torch: k-means++ seeding (Arthur & Vassilvitskii 2007) from
an explicit generator, distances computed in chunks of rows (memory O(chunk x K), so 1M x 384
inputs fit), centroid sums accumulated in float64, and empty clusters repaired by moving their
centroid to the point farthest from its own centroid. The same inputs and seed give the same result.

Example:
    >>> arch = build_archetypes(100_000, k=32, seed=0)          # doctest: +SKIP
    >>> arch.assignment.shape, arch.persona_texts[0][:40]        # doctest: +SKIP
    (torch.Size([100000]), 'A 30-49-year-old woman, politically mode')
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import torch
from torch import Tensor

from lpm.archetypes.personas import VOCABULARY, Personas
from lpm.errors import ConfigError, DataFormatError
from lpm.io_atomic import atomic_path, atomic_write_text

__all__ = ["DEFAULT_WEIGHTS", "KMeansResult", "kmeans", "persona_features", "Archetypes", "build_archetypes"]

#: Weight of each feature block (see the module docstring for why).
DEFAULT_WEIGHTS: dict[str, float] = {
    "role": 1.5,
    "leaning": 1.5,
    "interests": 1.5,
    "activity": 1.0,
    "age": 1.0,
    "education": 0.75,
    "gender": 0.5,
}

_FORMAT = "lpm-archetypes-v1"


def persona_features(personas: Personas, embedder, weights: Optional[Mapping[str, float]] = None) -> Tensor:
    """``(N, D)`` float32 feature vectors for clustering (one-hot blocks and interest coordinates).

    Args:
        personas: the users.
        embedder: embeds the 12 topic phrases (``embed(texts) -> (T, 384)``), e.g. a
            :class:`lpm.embed.TextEmbedder`.
        weights: per block (keys of :data:`DEFAULT_WEIGHTS`); missing keys take the default, 0 drops
            a block.

    Raises:
        ConfigError: an unknown key or a negative weight.
    """
    w = dict(DEFAULT_WEIGHTS)
    for key, value in (weights or {}).items():
        if key not in DEFAULT_WEIGHTS:
            raise ConfigError(f"Expected feature weights for {sorted(DEFAULT_WEIGHTS)} (got {key!r})")
        if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
            raise ConfigError(f"Expected a finite non-negative weight for {key!r} (got {value!r})")
        w[key] = float(value)
    blocks = []
    for name in VOCABULARY:
        if w[name] > 0:
            blocks.append(personas.one_hot(name) * (w[name] / math.sqrt(2.0)))
    if w["interests"] > 0:
        blocks.append(personas.interest_coordinates(embedder) * w["interests"])
    if not blocks:
        raise ConfigError("Expected at least one feature block with a positive weight (got all zero)")
    return torch.cat(blocks, dim=1).contiguous()


@dataclass(frozen=True, eq=False)
class KMeansResult:
    """Shapes: ``assignment (N,)`` int64, ``centroids (K, D)``, ``distance (N,)`` squared distance of
    each point to its centroid; ``inertia`` their sum; ``iterations`` Lloyd steps run."""

    assignment: Tensor
    centroids: Tensor
    distance: Tensor
    inertia: float
    iterations: int


def _nearest(x: Tensor, x_sq: Tensor, centroids: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """Index of and squared distance to the nearest centroid, ``(N,)`` each, ``chunk`` rows at a time."""
    c_sq = (centroids * centroids).sum(1)
    labels, dists = [], []
    for start in range(0, x.shape[0], chunk):  # chunks of rows: memory O(chunk x K)
        # |c|^2 - 2 x.c ranks centroids; |x|^2 is added to the winner only
        d = torch.addmm(c_sq[None, :], x[start:start + chunk], centroids.T, alpha=-2.0)
        best, index = d.min(dim=1)
        labels.append(index)
        dists.append((best + x_sq[start:start + chunk]).clamp_min(0.0))
    return torch.cat(labels), torch.cat(dists)


def _plus_plus(x: Tensor, x_sq: Tensor, weight: Tensor, k: int, gen: torch.Generator, chunk: int) -> Tensor:
    """k-means++ seeding: each next centre drawn with probability proportional to ``weight * D(x)^2``."""
    n = x.shape[0]
    cdf = torch.cumsum(weight, 0)
    first = min(int(torch.searchsorted(cdf, cdf[-1:] * torch.rand(1, generator=gen, dtype=torch.float64), right=True)), n - 1)
    centres = [first]
    closest = _nearest(x, x_sq, x[first:first + 1], chunk)[1].double()
    for _ in range(1, k):  # K draws, each one pass over the points
        mass = torch.cumsum(weight * closest, 0)
        u = torch.rand(1, generator=gen, dtype=torch.float64)
        if float(mass[-1]) <= 0.0:  # fewer distinct points than K: any point will do (repaired later)
            pick = min(int(u * n), n - 1)
        else:
            pick = min(int(torch.searchsorted(mass, u * mass[-1:], right=True)), n - 1)
        centres.append(pick)
        closest = torch.minimum(closest, _nearest(x, x_sq, x[pick:pick + 1], chunk)[1].double())
    return x[torch.tensor(centres)].clone()


def kmeans(x: Tensor, k: int, *, weight: Optional[Tensor] = None, seed: int = 0, iters: int = 100,
           tol: float = 1e-6, chunk: int = 65_536) -> KMeansResult:
    """Weighted k-means (Lloyd) with k-means++ seeding, chunked distances and empty-cluster repair.

    Args:
        x: points, float (computed in its dtype; centroid sums in float64).
        k: number of clusters, ``1 <= k <= N``.
        weight: optional ``(N,)`` positive point weights, e.g. how many users share one feature
            vector (clustering distinct rows with their counts equals clustering all rows).
        seed: seed of the local generator used by the seeding.
        iters: at most this many Lloyd steps.
        tol: stop when no assignment changes or the centroids move less than ``tol`` (squared,
            summed over centroids) in a step.
        chunk: rows per distance block.

    Returns:
        A :class:`KMeansResult`.

    Shapes:
        ``x``: ``(N, D)`` -> ``assignment (N,)``, ``centroids (K, D)``.

    Raises:
        ConfigError: ``x`` not a finite 2-D float tensor, bad weights, or ``k``, ``iters``, ``chunk``
            out of range.
    """
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point() or x.shape[0] == 0:
        got = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ConfigError(f"Expected points as a non-empty (N, D) float tensor (got {got})")
    n = x.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ConfigError(f"Expected k an int in [1, {n}] (got {k!r})")
    if iters < 1 or chunk < 1:
        raise ConfigError(f"Expected iters >= 1 and chunk >= 1 (got {iters}, {chunk})")
    if not bool(torch.isfinite(x).all()):
        raise ConfigError("Expected finite points (got NaN or Inf)")
    if weight is None:
        weight = torch.ones(n, dtype=torch.float64, device=x.device)
    elif weight.shape != (n,) or not bool((weight > 0).all()) or not bool(torch.isfinite(weight).all()):
        raise ConfigError(f"Expected ({n},) finite positive point weights (got shape {tuple(weight.shape)})")
    weight = weight.to(torch.float64)
    gen = torch.Generator().manual_seed(int(seed))
    x_sq = (x * x).sum(1)
    centroids = _plus_plus(x, x_sq, weight, k, gen, chunk)
    assignment = torch.full((n,), -1, dtype=torch.int64, device=x.device)
    iterations = 0
    weighted = x.double() * weight[:, None]
    for iterations in range(1, iters + 1):
        new, dist = _nearest(x, x_sq, centroids, chunk)
        new, dist = _repair_empty(x, centroids, new, dist, k)
        changed = bool((new != assignment).any())
        assignment = new
        sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device).index_add_(0, assignment, weighted)
        mass = torch.zeros(k, dtype=torch.float64, device=x.device).index_add_(0, assignment, weight)
        updated = (sums / mass[:, None]).to(x.dtype)  # no empty cluster after the repair
        shift = float(((updated - centroids) ** 2).sum())
        centroids = updated
        if not changed or shift < tol:
            break
    assignment, dist = _nearest(x, x_sq, centroids, chunk)
    assignment, dist = _repair_empty(x, centroids, assignment, dist, k)
    inertia = float((dist.double() * weight).sum())
    return KMeansResult(assignment, centroids, dist, inertia, iterations)


def _repair_empty(x: Tensor, centroids: Tensor, assignment: Tensor, dist: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Give each empty cluster the point farthest from its own centroid (a different point each)."""
    counts = torch.bincount(assignment, minlength=k)
    empty = (counts == 0).nonzero().flatten()
    if empty.numel() == 0:
        return assignment, dist
    assignment, dist = assignment.clone(), dist.clone()
    far = torch.argsort(dist, descending=True, stable=True).tolist()
    counts_list = counts.tolist()
    owner = assignment[torch.tensor(far)].tolist()
    taken = 0
    for cluster in empty.tolist():  # at most K repairs
        while taken < len(far) and counts_list[owner[taken]] <= 1:
            taken += 1  # never empty another cluster to fill this one
        if taken >= len(far):
            break
        point = far[taken]
        counts_list[owner[taken]] -= 1
        counts_list[cluster] += 1
        assignment[point] = cluster
        centroids[cluster] = x[point]
        dist[point] = 0.0
        taken += 1
    return assignment, dist


def _representatives(assignment: Tensor, dist: Tensor, k: int) -> Tensor:
    """``(K,)`` per cluster, its member nearest the centroid (lowest index among ties)."""
    n = assignment.numel()
    best = torch.full((k,), float("inf"), dtype=dist.dtype).scatter_reduce(0, assignment, dist, "amin")
    candidate = torch.where(dist <= best[assignment], torch.arange(n), torch.full((n,), n))
    return torch.full((k,), n, dtype=torch.int64).scatter_reduce(0, assignment, candidate, "amin")


@dataclass(frozen=True, eq=False)
class Archetypes:
    """K archetypes of N personas.

    Shapes:
        assignment: ``(N,)`` int64 archetype of each user, in ``[0, K)``.
        centroids: ``(K, D)`` float32 cluster centres in feature space (:func:`persona_features`).
        sizes: ``(K,)`` int64 members per archetype (all positive).
        representatives: ``(K,)`` int64 user nearest each centroid.

    Attributes:
        personas: the N personas.
        persona_texts: the representatives' persona texts, one per archetype (what backends read).
        seed: seed of sampling and clustering.
        weights: the feature weights used.
    """

    personas: Personas
    assignment: Tensor
    centroids: Tensor
    sizes: Tensor
    representatives: Tensor
    persona_texts: list[str]
    seed: int = 0
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    def __post_init__(self) -> None:
        n, k = self.personas.num_agents, self.centroids.shape[0]
        if self.assignment.shape != (n,) or self.assignment.dtype != torch.int64:
            raise ConfigError(f"Expected an ({n},) int64 assignment (got {self.assignment.dtype}, {tuple(self.assignment.shape)})")
        for name in ("sizes", "representatives"):
            value = getattr(self, name)
            if value.shape != (k,) or value.dtype != torch.int64:
                raise ConfigError(f"Expected '{name}' as a ({k},) int64 tensor (got {value.dtype}, {tuple(value.shape)})")
        if len(self.persona_texts) != k:
            raise ConfigError(f"Expected {k} persona texts (got {len(self.persona_texts)})")

    @property
    def k(self) -> int:
        return self.centroids.shape[0]

    @property
    def num_agents(self) -> int:
        return self.assignment.shape[0]

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write ``personas.parquet`` (one row per user, with its ``archetype``) and ``archetypes.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        frame = self.personas.to_frame()
        frame["archetype"] = self.assignment.numpy()
        table = folder / "personas.parquet"
        with atomic_path(table) as tmp:
            frame.to_parquet(tmp, index=False)
        meta = {
            "format": _FORMAT,
            "num_agents": self.num_agents,
            "k": self.k,
            "seed": self.seed,
            "weights": self.weights,
            "sizes": self.sizes.tolist(),
            "representatives": self.representatives.tolist(),
            "persona_texts": list(self.persona_texts),
            "centroids": self.centroids.tolist(),
        }
        path = folder / "archetypes.json"
        atomic_write_text(path, json.dumps(meta, indent=1))
        return {"personas": table, "archetypes": path}

    @classmethod
    def load(cls, folder: str | Path) -> "Archetypes":
        """Read what :meth:`save` wrote.

        Raises:
            DataFormatError: missing files, another format, or tables that disagree.
        """
        import pandas as pd

        folder = Path(folder)
        path, table = folder / "archetypes.json", folder / "personas.parquet"
        if not path.is_file() or not table.is_file():
            raise DataFormatError(f"Expected archetypes.json and personas.parquet in {folder} (not found)")
        meta = json.loads(path.read_text())
        if meta.get("format") != _FORMAT:
            raise DataFormatError(f"Expected format {_FORMAT!r} in {path} (got {meta.get('format')!r})")
        frame = pd.read_parquet(table)
        if "archetype" not in frame.columns or len(frame) != meta["num_agents"]:
            raise DataFormatError(f"Expected {meta['num_agents']} rows with an 'archetype' column in {table} "
                                  f"(got {len(frame)} rows, columns {list(frame.columns)[:8]})")
        assignment = torch.from_numpy(frame["archetype"].to_numpy(dtype="int64", copy=True))
        return cls(
            personas=Personas.from_frame(frame),
            assignment=assignment,
            centroids=torch.tensor(meta["centroids"], dtype=torch.float32),
            sizes=torch.tensor(meta["sizes"], dtype=torch.int64),
            representatives=torch.tensor(meta["representatives"], dtype=torch.int64),
            persona_texts=list(meta["persona_texts"]),
            seed=int(meta["seed"]),
            weights=dict(meta["weights"]),
        )


def build_archetypes(num_agents: int, k: int, seed: int = 0, *, embedder=None,
                     weights: Optional[Mapping[str, float]] = None, personas: Optional[Personas] = None,
                     iters: int = 100) -> Archetypes:
    """Sample ``num_agents`` personas and group them into ``k`` archetypes.

    Args:
        num_agents: N (ignored when ``personas`` is given, which must then have N rows).
        k: number of archetypes, ``1 <= k <= N`` (16-128 is the intended range at scale).
        seed: seed of persona sampling (``seed``) and k-means seeding (``seed + 1``).
            Users with identical personas always share an archetype (distinct rows are clustered
            with their counts as weights).
        embedder: embeds the topic phrases; a :class:`lpm.embed.TextEmbedder` by default.
        weights: feature block weights (:data:`DEFAULT_WEIGHTS`).
        personas: cluster these personas instead of sampling new ones.
        iters: at most this many Lloyd steps.

    Raises:
        ConfigError: bad sizes or weights, or more archetypes than distinct personas.
    """
    if personas is None:
        personas = Personas.sample(num_agents, seed=seed)
    if embedder is None:
        from lpm.embed import TextEmbedder

        embedder = TextEmbedder()
    used = {**DEFAULT_WEIGHTS, **(weights or {})}
    # users with the same attributes and interests have the same features: cluster the distinct
    # rows weighted by their counts (the same objective, ~6x fewer rows at a million users)
    first, inverse, counts = personas.distinct()
    features = persona_features(personas.select(first), embedder, used)
    result = kmeans(features, min(k, features.shape[0]), weight=counts.double(), seed=seed + 1, iters=iters)
    if result.centroids.shape[0] < k:
        raise ConfigError(f"Expected k <= {features.shape[0]}, the number of distinct personas (got {k})")
    assignment = result.assignment[inverse]
    sizes = torch.bincount(assignment, minlength=k)
    representatives = first[_representatives(result.assignment, result.distance, k)]
    return Archetypes(personas=personas, assignment=assignment, centroids=result.centroids.float(), sizes=sizes,
                      representatives=representatives, persona_texts=personas.texts(representatives), seed=seed,
                      weights={key: float(v) for key, v in used.items()})
