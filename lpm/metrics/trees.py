"""Cascade-tree metrics of simulated runs: size, depth, breadth and virality curves (see :mod:`lpm.metrics`).

:func:`forest_depths` is the one pointer-jumping depth of lpm: simulated trees here and observed
tables (:class:`lpm.data.CascadeTable`) both read their depths from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from lpm.errors import ConfigError

__all__ = ["tree_curves", "cascade_depth", "cascade_size", "cascade_depth_curve", "max_breadth_curve", "structural_virality", "cascade_summary", "forest_depths"]

TimesLike = Union[Tensor, Sequence[float]]

# Largest intermediate (elements) built at once by the breadth and virality curves.
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
def forest_depths(parent: Tensor) -> tuple[Tensor, Tensor]:
    """Hops to the root for every row of a forest given by parent pointers, by pointer jumping
    (Wyllie's list ranking).

    ``ancestor`` starts as the parent and ``dist`` as the distance to it; each round replaces both by
    those of the ancestor's ancestor, so after ``r`` rounds every row points ``2**r`` levels up (or
    past its root, at -1): ``ceil(log2 R) + 1`` rounds finish any forest, and a pointer still alive
    after them can only be on or below a cycle.

    Args:
        parent: ``(R,)`` int64 parent row, negative for roots.

    Returns:
        ``(depth, on_cycle)``: ``(R,)`` int64 hops (meaningless where ``on_cycle``) and ``(R,)``
        bool rows whose pointers never reach a root.
    """
    ancestor = parent
    dist = (parent >= 0).long()
    rounds = math.ceil(math.log2(max(parent.numel(), 2))) + 1
    for _ in range(rounds):  # O(log depth) rounds, each over all rows at once
        active = ancestor >= 0
        if not bool(active.any()):
            break
        index = ancestor.clamp(min=0)
        dist = torch.where(active, dist + dist.index_select(0, index), dist)
        ancestor = torch.where(active, ancestor.index_select(0, index), ancestor)
    return dist, ancestor >= 0


def _depth(parent_pos: Tensor, flat: Tensor, shape: torch.Size) -> Tensor:
    """``(M,)`` depth of every member (:func:`forest_depths`); a cycle is a :class:`ConfigError`."""
    depth, on_cycle = forest_depths(parent_pos)
    cyclic = on_cycle.nonzero()
    if cyclic.numel() > 0:
        raise ConfigError(f"Expected cascade trees without cycles (got a cycle through {_where(flat[cyclic[0]], shape)})")
    return depth


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


def tree_curves(cascade: Tensor, time: Tensor, depth: Tensor, num_cascades: int, times: Tensor) -> dict[str, Tensor]:
    """Size, depth and maximum breadth curves of cascades given as flat node tables, the same code
    the simulated forests' curves use (observed tables read their curves here, :mod:`lpm.targets`).

    Args:
        cascade: ``(R,)`` int64 cascade of each node, in ``[0, num_cascades)``.
        time: ``(R,)`` when each node joined.
        depth: ``(R,)`` int64 hops from its root (:func:`forest_depths`).
        num_cascades: M.
        times: ``(T,)`` increasing reading times; a node counts at the times ``>= time``.

    Returns:
        ``size``, ``depth`` (-1 before a cascade's first node) and ``max_breadth`` (over all levels,
        the root's included), each ``(M, T)`` int64.
    """
    members = _Members(cascade, cascade, time, None, num_cascades, depth)
    steps = times.numel()
    q = _first_step(members, times.to(time.dtype).contiguous())
    return {"size": _size_curve(members, q, steps), "depth": _depth_curve(members, q, steps),
            "max_breadth": _breadth_curve(members, q, steps)}


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
