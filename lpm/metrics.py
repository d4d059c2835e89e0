"""Metrics of simulated runs: cascade trees, heavy tails, polarization, echo chambers, sentiment.

These are computed after a run (they are not :mod:`lpm.observables` recorded every step), for every
scenario of the batch at once, with no Python loop over agents, edges or items.

Cascade trees
    For ``B`` scenarios, ``N`` agents and ``C`` items a cascade forest is two tensors:
    ``reshare_time: (B, N, C)``, the hour at which agent ``i`` reshared (the source: posted) item
    ``c``, ``+inf`` if never; and ``parent: (B, N, C)`` int64, the followee it got the item from,
    ``-1`` for the source and for agents who never reshared. The members of cascade ``(b, c)`` are
    the agents with a finite time; its source is the member with parent ``-1``. A parent reshares no
    later than its children, so the members by any time ``t`` form a subtree (the cascade truncated
    at ``t``) and every curve below is a statistic of that subtree.

    Size, depth and maximum breadth follow Vosoughi, Roy & Aral (2018), "The spread of true and
    false news online", Science 359:1146, and Goel, Watts & Goldstein (2012), "The structure of
    online diffusion networks", EC'12. Structural virality is the mean distance between all pairs of
    nodes of the tree, Goel, Anderson, Hofman & Watts (2016), "The structural virality of online
    diffusion", Management Science 62(1):180.

Heavy tails
    :func:`fit_power_law` follows Clauset, Shalizi & Newman (2009), "Power-law distributions in
    empirical data", SIAM Review 51(4):661: the (approximate discrete) maximum-likelihood exponent
    for a given ``x_min``, and ``x_min`` chosen to minimise the Kolmogorov-Smirnov distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from lpm import kernels
from lpm.errors import ConfigError, DataFormatError
from lpm.graph import Graph

__all__ = [
    "cascade_depth",
    "cascade_size",
    "cascade_depth_curve",
    "max_breadth_curve",
    "structural_virality",
    "cascade_summary",
    "ccdf",
    "PowerLawFit",
    "fit_power_law",
    "polarization_variance",
    "bimodality_coefficient",
    "between_group_distance",
    "echo_chamber_index",
    "friendship_paradox",
    "sentiment_shares",
]

TimesLike = Union[Tensor, Sequence[float]]
ArrayLike = Union[Tensor, np.ndarray, Sequence[float]]

# Largest intermediate (elements) built at once by the breadth and virality curves and the KS scan.
_CHUNK_ELEMENTS = 2**24


# ====================================================================== cascade trees: validation
def _check_reshare_time(reshare_time: Tensor) -> None:
    if not isinstance(reshare_time, Tensor):
        raise ConfigError(f"Expected 'reshare_time' to be a torch.Tensor (got {type(reshare_time).__name__})")
    if not reshare_time.dtype.is_floating_point:
        raise ConfigError(f"Expected 'reshare_time' to be of floating-point type (got {reshare_time.dtype})")
    if reshare_time.dim() != 3:
        raise ConfigError(f"Expected 'reshare_time' of shape (B, N, C) (got {tuple(reshare_time.shape)})")
    bad = torch.isnan(reshare_time) | (reshare_time == -math.inf)
    if bool(bad.any()):
        raise ConfigError(
            f"Expected 'reshare_time' finite or +inf (got {int(bad.sum())} NaN or -inf entries)"
        )


def _where(flat_index: int, shape: torch.Size) -> str:
    """``scenario b, agent i, item c`` of a flat index into a ``(B, N, C)`` tensor, for error messages."""
    _, num_agents, items = shape
    b, rest = divmod(int(flat_index), num_agents * items)
    i, c = divmod(rest, items)
    return f"scenario {b}, agent {i}, item {c}"


@dataclass(frozen=True)
class _Members:
    """The members of all cascades as flat ``(M,)`` arrays, cascade ``(b, c)`` numbered ``b * C + c``.

    Everything after validation works on these arrays, so its cost scales with the number of
    reshares rather than with ``B * N * C`` (most agents never reshare most items).
    """

    flat: Tensor  # (M,) int64 index into the flattened (B, N, C) tensors
    cascade: Tensor  # (M,) int64 b * C + c
    time: Tensor  # (M,) reshare time
    parent_pos: Optional[Tensor]  # (M,) int64 position of the parent in these arrays, -1 for sources
    num_cascades: int
    depth: Optional[Tensor] = None  # (M,) int64


def _members(reshare_time: Tensor, member: Tensor) -> _Members:
    batch, num_agents, items = reshare_time.shape
    flat = member.reshape(-1).nonzero().squeeze(1)  # (b * N + i) * C + c
    cascade = torch.div(flat, num_agents * items, rounding_mode="floor") * items + flat % items
    return _Members(flat, cascade, reshare_time.reshape(-1)[flat], None, batch * items)


def _check_tree(parent: Tensor, reshare_time: Tensor, single_source: bool = True) -> _Members:
    """Validate a cascade forest and return its members with parent links and depths.

    With ``single_source`` every non-empty cascade must have exactly one source (a tree); otherwise
    several sources are allowed (an item posted by several accounts at once grows a forest).
    Cycles are caught by the pointer jumping of :func:`_depth`.
    """
    _check_reshare_time(reshare_time)
    if not isinstance(parent, Tensor):
        raise ConfigError(f"Expected 'parent' to be a torch.Tensor (got {type(parent).__name__})")
    if parent.dtype.is_floating_point or parent.dtype.is_complex or parent.dtype == torch.bool:
        raise ConfigError(f"Expected 'parent' to be of integer type (got {parent.dtype})")
    if parent.shape != reshare_time.shape:
        raise ConfigError(
            f"Expected 'parent' of the shape of 'reshare_time' {tuple(reshare_time.shape)} "
            f"(got {tuple(parent.shape)})"
        )
    if parent.device != reshare_time.device:
        raise ConfigError(
            f"Expected 'parent' on the device of 'reshare_time' {reshare_time.device} (got {parent.device})"
        )
    shape = reshare_time.shape
    num_agents, items = shape[1], shape[2]
    if parent.numel() > 0:
        low, high = int(parent.min()), int(parent.max())
        if low < -1 or high >= num_agents:
            raise ConfigError(f"Expected 'parent' ids in [-1, {num_agents}) (got range [{low}, {high}])")
    member = torch.isfinite(reshare_time)
    orphan = ((parent >= 0) & ~member).reshape(-1).nonzero()
    if orphan.numel() > 0:
        raise ConfigError(
            f"Expected parent -1 for agents that never reshared (got a parent at {_where(orphan[0], shape)}, "
            "whose reshare_time is +inf)"
        )
    members = _members(reshare_time, member)
    flat = members.flat
    p = parent.reshape(-1)[flat].long()
    has_parent = p >= 0
    position = torch.full((member.numel(),), -1, dtype=torch.long, device=flat.device)
    position[flat] = torch.arange(flat.numel(), device=flat.device)
    b = torch.div(flat, num_agents * items, rounding_mode="floor")
    parent_pos = torch.where(has_parent, position[(b * num_agents + p.clamp(min=0)) * items + flat % items], -1)
    bad = (has_parent & (parent_pos < 0)).nonzero()
    if bad.numel() > 0:
        raise ConfigError(
            "Expected the parent of every resharer to have reshared (got a parent with reshare_time +inf "
            f"at {_where(flat[bad[0]], shape)})"
        )
    bad = (has_parent & (members.time[parent_pos.clamp(min=0)] > members.time)).nonzero()
    if bad.numel() > 0:
        raise ConfigError(
            f"Expected every parent to reshare no later than its child (got a later parent at {_where(flat[bad[0]], shape)})"
        )
    size = torch.bincount(members.cascade, minlength=members.num_cascades)
    sources = torch.bincount(members.cascade[~has_parent], minlength=members.num_cascades)
    bad = (sources != (size > 0).long()) if single_source else ((size > 0) & (sources == 0))
    bad = bad.nonzero()
    if bad.numel() > 0:
        b, c = divmod(int(bad[0]), items)
        raise ConfigError(
            f"Expected {'exactly one source' if single_source else 'at least one source'} "
            "(parent -1 and a finite reshare_time) per non-empty cascade "
            f"(got {int(sources[bad[0]])} in scenario {b}, item {c})"
        )
    depth = _depth(parent_pos, flat, shape)
    return _Members(flat, members.cascade, members.time, parent_pos, members.num_cascades, depth)


def _check_times(times: TimesLike, like: Tensor, name: str = "times") -> Tensor:
    """``times`` as a finite, non-empty 1-D tensor of the dtype and device of ``like``."""
    if isinstance(times, Tensor):
        if times.dtype == torch.bool or times.dtype.is_complex:
            raise ConfigError(f"Expected '{name}' of real type (got {times.dtype})")
        t = times.detach().to(device=like.device, dtype=like.dtype)
    else:
        try:
            t = torch.as_tensor(times, dtype=like.dtype, device=like.device)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ConfigError(f"Expected '{name}' to be a 1-D sequence of numbers (got {times!r})") from err
    if t.dim() != 1 or t.numel() == 0:
        raise ConfigError(f"Expected '{name}' of shape (S,) with S >= 1 (got {tuple(t.shape)})")
    if not bool(torch.isfinite(t).all()):
        raise ConfigError(f"Expected finite '{name}' (got {t.tolist()})")
    return t


# ====================================================================== cascade trees: internals
def _depth(parent_pos: Tensor, flat: Tensor, shape: torch.Size) -> Tensor:
    """``(M,)`` depth of every member by pointer jumping (Wyllie's list ranking).

    ``ancestor`` starts as the parent and ``dist`` as the distance to it; each round replaces both by
    those of the ancestor's ancestor, so after ``r`` rounds every member points ``2**r`` levels up (or
    past the source, at -1): ``ceil(log2 M)`` rounds finish any tree, and a pointer still alive after
    them can only be on a cycle.
    """
    ancestor = parent_pos
    dist = (parent_pos >= 0).long()
    rounds = math.ceil(math.log2(max(parent_pos.numel(), 2))) + 1
    for _ in range(rounds):  # O(log depth) rounds, each over all members at once
        active = ancestor >= 0
        if not bool(active.any()):
            break
        index = ancestor.clamp(min=0)
        dist = torch.where(active, dist + dist.index_select(0, index), dist)
        ancestor = torch.where(active, ancestor.index_select(0, index), ancestor)
    cyclic = (ancestor >= 0).nonzero()
    if cyclic.numel() > 0:
        raise ConfigError(f"Expected cascade trees without cycles (got a cycle through {_where(flat[cyclic[0]], shape)})")
    return dist


def _sorted_times(times: Tensor) -> tuple[Tensor, Tensor]:
    """``(sorted times, inverse permutation)``: ``curve_sorted[..., inverse]`` is in the caller's order."""
    sorted_times, perm = torch.sort(times)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel(), device=perm.device)
    return sorted_times, inverse


def _first_step(members: _Members, sorted_times: Tensor) -> Tensor:
    """``(M,)`` index of the first sorted query time at which each member counts (``S`` if none)."""
    return torch.searchsorted(sorted_times, members.time.contiguous())


def _size_curve(members: _Members, q: Tensor, steps: int) -> Tensor:
    index = members.cascade * (steps + 1) + q
    counts = torch.bincount(index, minlength=members.num_cascades * (steps + 1))
    return counts.view(members.num_cascades, steps + 1).cumsum(1)[:, :steps]


def _depth_curve(members: _Members, q: Tensor, steps: int) -> Tensor:
    index = members.cascade * (steps + 1) + q
    deepest = torch.full((members.num_cascades * (steps + 1),), -1, dtype=torch.long, device=q.device)
    deepest.scatter_reduce_(0, index, members.depth, reduce="amax", include_self=True)
    return deepest.view(members.num_cascades, steps + 1).cummax(1).values[:, :steps]


def _level_bounds(depth: Tensor) -> tuple[Tensor, list[int]]:
    """Members sorted by depth, and ``bounds[l]:bounds[l+1]`` the slice of level ``l``."""
    order = torch.argsort(depth, stable=True)
    levels = int(depth.max()) + 1 if depth.numel() > 0 else 0
    counts = torch.bincount(depth, minlength=levels)
    bounds = [0] + torch.cumsum(counts, 0).tolist()
    return order, bounds


def _breadth_curve(members: _Members, q: Tensor, steps: int) -> Tensor:
    """Max over levels of the members at that level, per cascade and step.

    Levels are processed in chunks so that the ``(cascades, levels, steps)`` count stays bounded.
    """
    num = members.num_cascades
    best = torch.zeros(num, steps, dtype=torch.long, device=q.device)
    order, bounds = _level_bounds(members.depth)
    levels = len(bounds) - 1
    chunk = max(1, _CHUNK_ELEMENTS // max(num * (steps + 1), 1))
    for first in range(0, levels, chunk):  # loop over depth levels, a handful of chunks
        last = min(levels, first + chunk)
        sel = order[bounds[first]:bounds[last]]
        width = last - first
        index = (members.cascade[sel] * width + members.depth[sel] - first) * (steps + 1) + q[sel]
        counts = torch.bincount(index, minlength=num * width * (steps + 1)).view(num, width, steps + 1)
        best = torch.maximum(best, counts.cumsum(2)[..., :steps].amax(1))
    return best


def _virality(members: _Members, q: Tensor, steps: int, dtype: torch.dtype) -> Tensor:
    """Structural virality per cascade and step, member ``m`` kept from step ``q[m]`` on: ``(cascades, S)``.

    Subtree sizes ``(M, S)`` are accumulated bottom-up, one depth level at a time; the Wiener index
    of a tree is ``sum over edges (v, parent v) of s_v (n - s_v)`` (each edge lies on the path of
    exactly the ``s_v (n - s_v)`` pairs it separates), and the mean distance over the
    ``n (n - 1) / 2`` pairs is ``2 W / (n (n - 1))``. The source has ``s = n`` and members not yet in
    the tree ``s = 0``, so summing ``s (n - s)`` over all members is the sum over the tree's edges.
    Steps are processed in chunks so the sizes stay bounded.
    """
    num = members.num_cascades
    n = _size_curve(members, q, steps)  # (cascades, S) int64
    order, bounds = _level_bounds(members.depth)
    size_dtype = torch.int32 if q.numel() < 2**31 else torch.int64  # a subtree size is at most M
    out = []
    width = max(1, _CHUNK_ELEMENTS // max(q.numel(), 1))
    for first in range(0, steps, width):  # a few chunks of steps
        last = min(steps, first + width)
        cols = last - first
        step = torch.arange(first, last, device=q.device)
        sizes = (q[:, None] <= step[None, :]).to(size_dtype)  # (M, cols)
        for level in range(len(bounds) - 2, 0, -1):  # deepest level first; sources have no parent
            sel = order[bounds[level]:bounds[level + 1]]
            sizes.index_add_(0, members.parent_pos.index_select(0, sel), sizes.index_select(0, sel))
        sizes = sizes.to(torch.float64)
        total = n[:, first:last].to(torch.float64)
        terms = sizes * (total.index_select(0, members.cascade) - sizes)
        index = (members.cascade[:, None] * cols + torch.arange(cols, device=q.device)[None, :]).reshape(-1)
        wiener = torch.bincount(index, weights=terms.reshape(-1), minlength=num * cols).view(num, cols)
        pairs = torch.where(total >= 2, total * (total - 1), torch.ones_like(total))
        out.append(torch.where(total >= 2, 2 * wiener / pairs, torch.zeros_like(total)))
    return torch.cat(out, 1).to(dtype)


# ====================================================================== cascade trees: public
def cascade_depth(parent: Tensor, reshare_time: Tensor) -> Tensor:
    """Depth of every node in its cascade tree: 0 for the source, -1 for agents not in the cascade.

    Computed by vectorised pointer jumping in ``O(log depth)`` rounds over the members of all
    cascades at once (scenarios and items together), so the cost after validation scales with the
    number of reshares, not with ``B * N * C``.

    Args:
        parent: the followee each agent got the item from, -1 for sources and non-members.
        reshare_time: hours at which each agent reshared (the source: posted) each item, +inf if never.

    Returns:
        int64 depths.

    Raises:
        ConfigError: wrong shapes or dtypes, parent ids out of ``[-1, N)``, a parent that never
            reshared or reshared after its child, no source in a non-empty cascade (several sources, a forest, are fine), or a
            cycle.

    Shapes:
        parent, reshare_time: ``(B, N, C)``; returns ``(B, N, C)``.
    """
    members = _check_tree(parent, reshare_time, single_source=False)
    depth = torch.full(reshare_time.shape, -1, dtype=torch.long, device=reshare_time.device)
    depth.view(-1)[members.flat] = members.depth
    return depth


def cascade_size(reshare_time: Tensor, times: TimesLike) -> Tensor:
    """Number of members of each cascade by each time: ``#{i : reshare_time[b, i, c] <= t}``.

    Args:
        reshare_time: hours at which each agent reshared each item, +inf if never.
        times: query times (hours), finite, in any order.

    Returns:
        int64 sizes.

    Raises:
        ConfigError: wrong shape or dtype, NaN or -inf times.

    Shapes:
        reshare_time: ``(B, N, C)``; times: ``(S,)``; returns ``(B, C, S)``.
    """
    _check_reshare_time(reshare_time)
    t = _check_times(times, reshare_time)
    batch, _, items = reshare_time.shape
    sorted_times, inverse = _sorted_times(t)
    members = _members(reshare_time, torch.isfinite(reshare_time))
    q = _first_step(members, sorted_times)
    return _size_curve(members, q, t.numel())[:, inverse].view(batch, items, t.numel())


def cascade_depth_curve(parent: Tensor, reshare_time: Tensor, times: TimesLike) -> Tensor:
    """Depth of each cascade (the largest depth of its members) by each time; -1 before the source posts.

    Args:
        parent: the followee each agent got the item from, -1 for sources and non-members.
        reshare_time: hours at which each agent reshared each item, +inf if never.
        times: query times (hours), finite, in any order.

    Returns:
        int64 depths.

    Raises:
        ConfigError: as :func:`cascade_depth`, or non-finite times.

    Shapes:
        parent, reshare_time: ``(B, N, C)``; times: ``(S,)``; returns ``(B, C, S)``.
    """
    return _curves(parent, reshare_time, times, ("depth",))["depth"]


def max_breadth_curve(parent: Tensor, reshare_time: Tensor, times: TimesLike) -> Tensor:
    """Maximum breadth of each cascade by each time: the most members at any one depth level.

    Breadth at depth ``l`` is the number of members at distance ``l`` from the source (Vosoughi, Roy
    & Aral 2018; Goel, Watts & Goldstein 2012); the maximum is over levels. 0 before the source posts.

    Args:
        parent: the followee each agent got the item from, -1 for sources and non-members.
        reshare_time: hours at which each agent reshared each item, +inf if never.
        times: query times (hours), finite, in any order.

    Returns:
        int64 breadths.

    Raises:
        ConfigError: as :func:`cascade_depth`, or non-finite times.

    Shapes:
        parent, reshare_time: ``(B, N, C)``; times: ``(S,)``; returns ``(B, C, S)``.
    """
    return _curves(parent, reshare_time, times, ("max_breadth",))["max_breadth"]


def structural_virality(parent: Tensor, reshare_time: Tensor, at: Optional[float] = None) -> Tensor:
    """Structural virality: the mean shortest-path distance over all pairs of nodes of each tree.

    ``v(T) = 1 / (n (n - 1)) sum_{i != j} d_ij`` (Goel, Anderson, Hofman & Watts 2016), computed in
    ``O(n)`` from subtree sizes: ``sum_{i<j} d_ij`` is the Wiener index ``sum over edges s (n - s)``
    with ``s`` the size of the subtree below the edge. A broadcast (one source, ``n - 1`` children)
    scores ``2 (n - 1) / n`` < 2, a chain of ``n`` nodes ``(n + 1) / 3``.

    Args:
        parent: the followee each agent got the item from, -1 for sources and non-members.
        reshare_time: hours at which each agent reshared each item, +inf if never.
        at: truncate each tree to its members with ``reshare_time <= at``; ``None`` keeps all members.

    Returns:
        Float virality (dtype of ``reshare_time``), 0 for cascades of fewer than two nodes.

    Raises:
        ConfigError: as :func:`cascade_depth`, or a non-finite ``at``.

    Shapes:
        parent, reshare_time: ``(B, N, C)``; returns ``(B, C)``.
    """
    members = _check_tree(parent, reshare_time)
    if at is not None:
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
            raise ConfigError(f"Expected 'at' to be a finite number or None (got {at!r})")
    batch, _, items = reshare_time.shape
    if at is None:
        q = torch.zeros_like(members.cascade)
    else:
        q = (members.time > at).long()  # step 0 holds the members by ``at``
    return _virality(members, q, 1, reshare_time.dtype).view(batch, items)


def cascade_summary(parent: Tensor, reshare_time: Tensor, times: TimesLike) -> dict[str, Tensor]:
    """Size, depth, maximum breadth and structural virality of every cascade at each time.

    Validates the forest and computes the depths once for all four curves.

    Args:
        parent: the followee each agent got the item from, -1 for sources and non-members.
        reshare_time: hours at which each agent reshared each item, +inf if never.
        times: query times (hours), finite, in any order.

    Returns:
        ``{"size", "depth", "max_breadth"}``: int64 as :func:`cascade_size`,
        :func:`cascade_depth_curve`, :func:`max_breadth_curve`; ``"structural_virality"``: float,
        :func:`structural_virality` with ``at`` each time.

    Raises:
        ConfigError: as :func:`cascade_depth`, or non-finite times.

    Shapes:
        parent, reshare_time: ``(B, N, C)``; times: ``(S,)``; every value ``(B, C, S)``.
    """
    return _curves(parent, reshare_time, times, ("size", "depth", "max_breadth", "structural_virality"))


def _curves(parent: Tensor, reshare_time: Tensor, times: TimesLike, which: tuple[str, ...]) -> dict[str, Tensor]:
    members = _check_tree(parent, reshare_time, single_source="structural_virality" in which)
    t = _check_times(times, reshare_time)
    steps = t.numel()
    batch, _, items = reshare_time.shape
    sorted_times, inverse = _sorted_times(t)
    q = _first_step(members, sorted_times)
    out: dict[str, Tensor] = {}
    for name in which:  # a handful of statistics
        if name == "size":
            curve = _size_curve(members, q, steps)
        elif name == "depth":
            curve = _depth_curve(members, q, steps)
        elif name == "max_breadth":
            curve = _breadth_curve(members, q, steps)
        else:
            curve = _virality(members, q, steps, reshare_time.dtype)
        out[name] = curve[:, inverse].view(batch, items, steps)
    return out


# ====================================================================== heavy tails
def _as_array(values: ArrayLike, name: str) -> np.ndarray:
    """Flatten to a finite, non-empty float64 numpy array."""
    if isinstance(values, Tensor):
        if values.dtype == torch.bool or values.dtype.is_complex:
            raise DataFormatError(f"Expected '{name}' of real type (got {values.dtype})")
        array = values.detach().cpu().to(torch.float64).numpy().reshape(-1)
    else:
        try:
            array = np.asarray(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as err:
            raise DataFormatError(f"Expected '{name}' to be an array of numbers (got {type(values).__name__})") from err
    if array.size == 0:
        raise DataFormatError(f"Expected at least one value in '{name}' (got an empty array)")
    if not np.isfinite(array).all():
        raise DataFormatError(f"Expected finite '{name}' (got {int((~np.isfinite(array)).sum())} NaN or Inf)")
    return array


def ccdf(values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Empirical complementary CDF ``P(X >= x)`` at each distinct observed value.

    Args:
        values: observations (a tensor of any shape is flattened), e.g. final cascade sizes.

    Returns:
        ``(x, p)`` float64 numpy arrays: the sorted distinct values and the fraction of observations
        at least as large; ``p[0] == 1`` and ``p`` decreases. Plot on log-log axes.

    Raises:
        DataFormatError: no values, or NaN/Inf.

    Shapes:
        values: any; x, p: ``(U,)`` with ``U`` distinct values.
    """
    array = _as_array(values, "values")
    x, counts = np.unique(array, return_counts=True)
    at_least = array.size - np.concatenate([[0], np.cumsum(counts)[:-1]])
    return x, at_least / array.size


@dataclass(frozen=True)
class PowerLawFit:
    """A power-law fit ``p(x) ~ x**-alpha`` for ``x >= x_min`` (Clauset, Shalizi & Newman 2009).

    Attributes:
        alpha: maximum-likelihood exponent (the discrete approximation of their eq. 3.7 for
            discrete data, the exact continuous MLE eq. 3.1 otherwise).
        x_min: lower bound of the power-law tail.
        n_tail: number of observations ``>= x_min``.
        ks_distance: Kolmogorov-Smirnov distance between the tail's empirical CDF and the fit.
        alpha_stderr: asymptotic standard error ``(alpha - 1) / sqrt(n_tail)``.
    """

    alpha: float
    x_min: float
    n_tail: int
    ks_distance: float
    alpha_stderr: float


_BERNOULLI_2J = (1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730, 7 / 6)


def _hurwitz_zeta(s: np.ndarray, a: np.ndarray, terms: int = 10) -> np.ndarray:
    """``zeta(s, a) = sum_{k >= 0} (k + a)**-s`` for ``s > 1``, ``a > 0``, by Euler-Maclaurin summation.

    ``terms`` exact terms, then the integral, half the next term and seven Bernoulli corrections
    (DLMF 2.10.1 applied to ``f(k) = (k + a)**-s``; see Johansson 2015, "Rigorous high-precision
    computation of the Hurwitz zeta function", Numer. Algorithms 69:253). Relative error below 1e-12
    for ``a >= 0.5`` and ``s <= 20``.
    """
    s, a = np.broadcast_arrays(np.asarray(s, np.float64), np.asarray(a, np.float64))
    k = np.arange(terms, dtype=np.float64)
    head = ((a[..., None] + k) ** -s[..., None]).sum(-1)
    tail_at = a + terms
    total = head + tail_at ** (1 - s) / (s - 1) + 0.5 * tail_at ** -s
    rising = s.copy()  # s (s+1) ... (s + 2j - 2)
    power = tail_at ** (-s - 1)
    factorial = 2.0
    for j, bern in enumerate(_BERNOULLI_2J, start=1):  # seven correction terms
        total = total + bern / factorial * rising * power
        rising = rising * (s + 2 * j - 1) * (s + 2 * j)
        power = power / tail_at**2
        factorial *= (2 * j + 1) * (2 * j + 2)
    return total


def _fit_candidates(data: np.ndarray, x_min: np.ndarray, discrete: bool) -> tuple[np.ndarray, ...]:
    """``(alpha, n_tail, ks)`` for each candidate ``x_min`` (``K,``), vectorised over candidates.

    The KS distance is the supremum over all ``x >= x_min`` of ``|S(x) - F(x)|``. Both CDFs are
    right-continuous; between two distinct observations ``u_{k-1} < u_k`` the empirical ``S`` is flat,
    so the supremum is reached at ``u_k`` or just before it: at ``u_k - 1`` for the discrete model
    (an integer step function), at ``u_k`` from the left for the continuous one.
    """
    x = np.sort(data)
    total = x.size
    below = np.searchsorted(x, x_min, side="left")  # (K,) observations < x_min
    n_tail = total - below
    log_x = np.log(x)
    suffix = np.concatenate([np.cumsum(log_x[::-1])[::-1], [0.0]])  # suffix[i] = sum(log_x[i:])
    shift = x_min - 0.5 if discrete else x_min
    denom = suffix[below] - n_tail * np.log(shift)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(denom > 0, 1 + n_tail / np.where(denom > 0, denom, 1.0), np.inf)
    u, counts = np.unique(x, return_counts=True)
    at_most = np.cumsum(counts)  # observations <= u_k
    less = at_most - counts  # observations < u_k
    ks = np.full(x_min.size, np.inf)
    rows = max(1, _CHUNK_ELEMENTS // max(u.size, 1))
    for start in range(0, x_min.size, rows):  # a few chunks of candidates
        sl = slice(start, start + rows)
        a, lo, n, xm = alpha[sl, None], below[sl, None], n_tail[sl, None], x_min[sl, None]
        ok = np.isfinite(a[:, 0]) & (n[:, 0] > 0)
        a = np.where(np.isfinite(a), a, 2.0)
        valid = u[None, :] >= xm
        s_hi = (at_most[None, :] - lo) / np.maximum(n, 1)
        s_lo = (less[None, :] - lo) / np.maximum(n, 1)
        if discrete:
            norm = _hurwitz_zeta(a, xm)
            f_hi = 1 - _hurwitz_zeta(a, u[None, :] + 1) / norm
            f_lo = 1 - _hurwitz_zeta(a, np.maximum(u[None, :], xm)) / norm
        else:
            ratio = np.maximum(u[None, :], xm) / xm
            f_hi = 1 - ratio ** (1 - a)
            f_lo = f_hi
        gap = np.maximum(np.abs(s_hi - f_hi), np.abs(s_lo - f_lo))
        dist = np.where(valid, gap, 0.0).max(1)
        ks[sl] = np.where(ok, dist, np.inf)
    return alpha, n_tail, ks


def fit_power_law(sizes: ArrayLike, x_min: Optional[float] = None, discrete: bool = True,
                  *, min_tail: int = 10) -> PowerLawFit:
    """Fit a power-law tail to cascade sizes (or any positive data), after Clauset, Shalizi & Newman 2009.

    For a given ``x_min`` the exponent is the maximum-likelihood estimate over the ``n`` observations
    ``x_i >= x_min``: ``alpha = 1 + n / sum(ln(x_i / (x_min - 1/2)))`` for discrete data (their
    eq. 3.7, accurate for ``x_min`` of about 6 or more), ``alpha = 1 + n / sum(ln(x_i / x_min))`` for
    continuous data (eq. 3.1). When ``x_min`` is None it is chosen among the distinct observed values
    that leave at least ``min_tail`` observations in the tail, minimising the Kolmogorov-Smirnov
    distance between the tail's empirical CDF and the fitted CDF (section 3.3; the discrete fitted
    CDF is ``1 - zeta(alpha, x + 1) / zeta(alpha, x_min)``, with the Hurwitz zeta function). All
    candidates are scored at once with numpy. Observations below ``x_min`` are ignored.

    Args:
        sizes: observations, a tensor (any shape, flattened) or array-like.
        x_min: lower bound of the tail, or None to select it.
        discrete: integer data (cascade sizes) or continuous data.
        min_tail: the least number of tail observations a selected ``x_min`` must leave, ``>= 2``.

    Returns:
        The :class:`PowerLawFit`.

    Raises:
        DataFormatError: NaN/Inf, non-integer values in a discrete fit, or too few observations in
            the tail (fewer than 2 at the given ``x_min``, fewer than ``min_tail`` for every candidate).
        ConfigError: ``x_min < 1`` (discrete) or ``<= 0`` (continuous), ``min_tail < 2``.

    Shapes:
        sizes: any.
    """
    data = _as_array(sizes, "sizes")
    if not isinstance(discrete, bool):
        raise ConfigError(f"Expected 'discrete' to be a bool (got {discrete!r})")
    if isinstance(min_tail, bool) or not isinstance(min_tail, int) or min_tail < 2:
        raise ConfigError(f"Expected 'min_tail' to be an int >= 2 (got {min_tail!r})")
    lowest = 1.0 if discrete else 0.0
    if discrete and not np.array_equal(data, np.round(data)):
        example = data[data != np.round(data)][0]
        raise DataFormatError(f"Expected integer-valued 'sizes' for a discrete fit (got {example})")
    if x_min is not None:
        if isinstance(x_min, bool) or not isinstance(x_min, (int, float)) or not math.isfinite(x_min):
            raise ConfigError(f"Expected 'x_min' to be a finite number or None (got {x_min!r})")
        if x_min < lowest or (not discrete and x_min <= 0):
            bound = ">= 1 for a discrete fit" if discrete else "> 0 for a continuous fit"
            raise ConfigError(f"Expected 'x_min' {bound} (got {x_min})")
        tail = data[data >= x_min]
        if tail.size < 2:
            raise DataFormatError(f"Expected at least 2 observations >= x_min={x_min} (got {tail.size})")
        alpha, n_tail, ks = _fit_candidates(tail, np.array([float(x_min)]), discrete)
        if not np.isfinite(alpha[0]):
            raise DataFormatError(f"Expected observations above x_min={x_min} (got all {tail.size} equal to it)")
        best = 0
        chosen = np.array([float(x_min)])
    else:
        usable = data[data >= lowest] if discrete else data[data > 0]
        candidates = np.unique(usable)
        in_tail = usable.size - np.searchsorted(np.sort(usable), candidates, side="left")
        candidates = candidates[in_tail >= min_tail]
        if candidates.size == 0:
            raise DataFormatError(
                f"Expected at least {min_tail} positive observations to select x_min (got {usable.size})"
            )
        alpha, n_tail, ks = _fit_candidates(usable, candidates, discrete)
        if not np.isfinite(ks).any():
            raise DataFormatError("Expected observations spread over more than one value (got a constant tail)")
        best = int(np.argmin(ks))  # ties: the smallest x_min
        chosen = candidates
    a, n = float(alpha[best]), int(n_tail[best])
    return PowerLawFit(alpha=a, x_min=float(chosen[best]), n_tail=n, ks_distance=float(ks[best]),
                       alpha_stderr=(a - 1) / math.sqrt(n))


# ====================================================================== opinions and networks
def _check_agents(x: Tensor, name: str, min_agents: int = 1) -> None:
    if not isinstance(x, Tensor):
        raise ConfigError(f"Expected '{name}' to be a torch.Tensor (got {type(x).__name__})")
    if not x.dtype.is_floating_point:
        raise ConfigError(f"Expected '{name}' to be of floating-point type (got {x.dtype})")
    if x.dim() != 3:
        raise ConfigError(f"Expected '{name}' of shape (B, N, d) (got {tuple(x.shape)})")
    if x.size(1) < min_agents:
        raise ConfigError(f"Expected '{name}' with at least {min_agents} agents (got {x.size(1)})")
    if x.size(2) < 1:
        raise ConfigError(f"Expected '{name}' with at least one dimension (got shape {tuple(x.shape)})")


def polarization_variance(opinion: Tensor) -> Tensor:
    """Polarization as the population variance of opinions, averaged over topics.

    1 for two equal camps at -1 and +1, 0 under consensus, 1/3 for uniform opinions in [-1, 1].

    Args:
        opinion: agent opinions.

    Returns:
        Variances, differentiable.

    Raises:
        ConfigError: not a floating ``(B, N, T)`` tensor.

    Shapes:
        opinion: ``(B, N, T)``; returns ``(B,)``.
    """
    _check_agents(opinion, "opinion")
    return opinion.var(1, unbiased=False).mean(-1)


def bimodality_coefficient(opinion: Tensor) -> Tensor:
    """Sarle's bimodality coefficient of the opinion distribution, averaged over topics.

    ``b = (G1**2 + 1) / (G2 + 3 (n-1)**2 / ((n-2)(n-3)))`` with ``G1``, ``G2`` the bias-adjusted
    sample skewness and excess kurtosis (SAS Institute 1990; Pfister et al. 2013, "Good things peak
    in pairs", Front. Psychol. 4:700). The denominator simplifies to
    ``(n**2 - 1) / ((n-2)(n-3)) * m4 / m2**2`` with central moments ``m_k``. ``b > 5/9`` (the value
    of a uniform distribution) suggests bimodality; two equal point masses give ~1, a normal ~1/3.

    Args:
        opinion: agent opinions, ``N >= 4``.

    Returns:
        Coefficients, differentiable; NaN for a topic with zero variance (skewness and kurtosis are
        undefined there).

    Raises:
        ConfigError: not a floating ``(B, N, T)`` tensor, or ``N < 4``.

    Shapes:
        opinion: ``(B, N, T)``; returns ``(B,)``.
    """
    _check_agents(opinion, "opinion", min_agents=4)
    n = opinion.size(1)
    centred = opinion - opinion.mean(1, keepdim=True)
    m2 = centred.pow(2).mean(1)
    m3 = centred.pow(3).mean(1)
    m4 = centred.pow(4).mean(1)
    skew = m3 / m2.pow(1.5) * math.sqrt(n * (n - 1)) / (n - 2)
    denominator = (n * n - 1) / ((n - 2) * (n - 3)) * m4 / m2.pow(2)
    return ((skew.pow(2) + 1) / denominator).mean(-1)


def between_group_distance(opinion: Tensor, group: Tensor) -> Tensor:
    """Mean absolute difference between the mean opinions of groups, over group pairs and topics.

    Groups are the distinct labels of ``group`` (any integers); with two groups this is
    ``|mean_A - mean_B|`` averaged over topics.

    Args:
        opinion: agent opinions.
        group: group label of each agent.

    Returns:
        Distances, differentiable in ``opinion``.

    Raises:
        ConfigError: bad shapes or dtypes, or fewer than two distinct groups.

    Shapes:
        opinion: ``(B, N, T)``; group: ``(N,)``; returns ``(B,)``.
    """
    _check_agents(opinion, "opinion")
    if not isinstance(group, Tensor):
        raise ConfigError(f"Expected 'group' to be a torch.Tensor (got {type(group).__name__})")
    if group.dtype.is_floating_point or group.dtype.is_complex or group.dtype == torch.bool:
        raise ConfigError(f"Expected 'group' to be of integer type (got {group.dtype})")
    if group.shape != (opinion.size(1),):
        raise ConfigError(f"Expected 'group' of shape ({opinion.size(1)},) (got {tuple(group.shape)})")
    if group.device != opinion.device:
        raise ConfigError(f"Expected 'group' on the device of 'opinion' {opinion.device} (got {group.device})")
    _, label = torch.unique(group, return_inverse=True)
    num_groups = int(label.max()) + 1
    if num_groups < 2:
        raise ConfigError(f"Expected at least 2 distinct groups (got {num_groups})")
    counts = torch.bincount(label, minlength=num_groups).to(opinion.dtype)
    sums = opinion.new_zeros(opinion.size(0), num_groups, opinion.size(2)).index_add(1, label, opinion)
    means, _ = torch.sort(sums / counts[None, :, None], dim=1)
    # sum_{g<h} |a_g - a_h| = sum_k (2k - G + 1) a_(k) over the sorted means (0-based rank k).
    rank = torch.arange(num_groups, device=opinion.device, dtype=opinion.dtype)
    total = ((2 * rank - num_groups + 1)[None, :, None] * means).sum(1)
    return (total / (num_groups * (num_groups - 1) / 2)).mean(-1)


def echo_chamber_index(opinion: Tensor, graph: Graph) -> Tensor:
    """Pearson correlation between each agent's opinion and the mean opinion of its followees.

    Cinelli, De Francisci Morales, Galeazzi, Quattrociocchi & Starnini (2021), "The echo chamber
    effect on social media", PNAS 118(9):e2023301118, measure echo chambers by the correlation
    between a user's leaning and the average leaning of their neighbourhood. Computed across agents
    with at least one followee, per topic, then averaged over topics. Followee means come from
    :func:`lpm.kernels.neighbor_pull` (``pull / weight + x``), so they are edge-weighted on a
    weighted graph and run through the kernel dispatch.

    Args:
        opinion: agent opinions.
        graph: the follower graph, on the device of ``opinion``.

    Returns:
        Correlations in [-1, 1], differentiable; NaN for a topic where either side has zero variance.

    Raises:
        ConfigError: bad shapes or dtypes, a graph of another size or device, or fewer than two
            agents with followees.

    Shapes:
        opinion: ``(B, N, T)``; returns ``(B,)``.
    """
    _check_agents(opinion, "opinion")
    if not isinstance(graph, Graph):
        raise ConfigError(f"Expected 'graph' to be lpm.Graph (got {type(graph).__name__})")
    if graph.num_nodes != opinion.size(1):
        raise ConfigError(f"Expected a graph of {opinion.size(1)} agents like 'opinion' (got {graph.num_nodes})")
    if graph.device != opinion.device:
        raise ConfigError(f"Expected the graph on the device of 'opinion' {opinion.device} (got {graph.device})")
    pull, weight = kernels.neighbor_pull(graph, opinion)
    has = weight > 0  # (B, N, 1)
    count = has.sum(1)  # (B, 1)
    if int(count.min()) < 2:
        raise ConfigError(f"Expected at least 2 agents with followees (got {int(count.min())})")
    mask = has.to(opinion.dtype)
    followees = pull / torch.where(has, weight, torch.ones_like(weight)) + opinion
    n = mask.sum(1, keepdim=True)
    dx = (opinion - (opinion * mask).sum(1, keepdim=True) / n) * mask
    dy = (followees - (followees * mask).sum(1, keepdim=True) / n) * mask
    r = (dx * dy).sum(1) / torch.sqrt(dx.pow(2).sum(1) * dy.pow(2).sum(1))
    return r.mean(-1)


def friendship_paradox(graph: Graph) -> float:
    """Friendship-paradox ratio: how much more followed the accounts people follow are than average.

    ``mean_i [mean_{j followed by i} followers(j)] / mean_i followers(i)``, the outer mean over
    agents with at least one followee and the denominator over all agents (Feld 1991, "Why your
    friends have more friends than you do", AJS 96(6):1464; on Twitter, Hodas, Kooti & Lerman 2013,
    "Friendship paradox redux", ICWSM). 1 on a regular graph, > 1 when follower counts are
    heterogeneous (scale-free graphs). Edge weights are ignored.

    Args:
        graph: the follower graph.

    Returns:
        The ratio.

    Raises:
        ConfigError: not a graph, or a graph without edges.
    """
    if not isinstance(graph, Graph):
        raise ConfigError(f"Expected 'graph' to be lpm.Graph (got {type(graph).__name__})")
    if graph.num_edges == 0:
        raise ConfigError("Expected a graph with at least one edge (got 0)")
    followers = graph.out_degree().to(torch.float64)
    followees = graph.in_degree()
    # followers of each followee, summed per follower: edges count once whatever their weight
    seen = kernels.neighbor_sum(graph, followers.view(1, -1, 1), weighted=False)[0, :, 0]
    has = followees > 0
    mean_seen = (seen[has] / followees[has]).mean()
    return float(mean_seen / followers.mean())


def sentiment_shares(emotion: Tensor, margin: float = 0.1) -> dict[str, Tensor]:
    """Hard shares of agents with negative, neutral and positive valence (emotion dimension 0).

    Negative: valence ``< -margin``; positive: ``> margin``; neutral: in ``[-margin, margin]``. The
    three shares sum to 1. Not differentiable; :func:`lpm.observables.negative_share` is the smooth
    version of the negative share.

    Args:
        emotion: agent emotions, valence first.
        margin: half-width of the neutral band, ``>= 0``.

    Returns:
        ``{"negative", "neutral", "positive"}`` shares in the dtype of ``emotion``.

    Raises:
        ConfigError: not a floating ``(B, N, E)`` tensor, or a negative or non-finite margin.

    Shapes:
        emotion: ``(B, N, E)``; each share ``(B,)``.
    """
    _check_agents(emotion, "emotion")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin < 0:
        raise ConfigError(f"Expected 'margin' to be a finite number >= 0 (got {margin!r})")
    valence = emotion[..., 0].detach()
    negative = (valence < -margin).to(emotion.dtype).mean(1)
    positive = (valence > margin).to(emotion.dtype).mean(1)
    neutral = ((valence >= -margin) & (valence <= margin)).to(emotion.dtype).mean(1)
    return {"negative": negative, "neutral": neutral, "positive": positive}
