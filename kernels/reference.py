"""Plain-torch reference implementations of the hot ops.

They materialise per-edge intermediates of shape ``(B, E, d)``; that is what makes them slow and
memory-hungry at scale, and what makes them the ground truth every fused kernel is tested against.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional, Union

import torch
from torch import Tensor

from .edge_scale import EdgeScale

if TYPE_CHECKING:
    from .pair import PairKernel

__all__ = ["neighbor_pull", "neighbor_sum", "neighbor_sum_sparse", "neighbor_min", "sum_over_followers",
           "gather_rows", "take_along_agents", "sample_followee", "sample_visible_followee", "expand_segments"]

# Bound on the elements of a (chunk, E, d) per-edge temporary in the ops that chunk over scenarios.
_CHUNK_ELEMENTS = 1 << 24


class _GatherRows(torch.autograd.Function):
    """``x.index_select(1, index)`` whose backward scatters with ``scatter_add_``.

    The built-in backward of ``index_select`` is ``index_add_`` along dimension 1, which on the CPU
    is 15-30x slower than ``scatter_add_``; this keeps the fast op in both directions.
    """

    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        ctx.num_nodes = x.size(1)
        return x.index_select(1, index)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (index,) = ctx.saved_tensors
        return _segment_sum(grad, index.long(), ctx.num_nodes), None


def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """Rows ``index`` of agent tensors: ``(B, N, ...) -> (B, E, ...)``, differentiable in ``x``.

    See :func:`lpm.kernels.gather_followees`."""
    if not x.requires_grad:
        return x.index_select(1, index)
    if x.dim() == 2:
        return _GatherRows.apply(x[..., None], index)[..., 0]
    return _GatherRows.apply(x, index)


def _segment_sum(values: Tensor, row: Tensor, num_nodes: int) -> Tensor:
    """Sum ``(B, E, d)`` edge values into their followers: ``(B, N, d)``.

    ``scatter_add_`` with a broadcast (view-only) int64 index; on the CPU it is ~30x faster than
    ``index_add_`` along a middle dimension. The same calls as ``torch_geometric.utils.scatter(...,
    "sum")``, without importing torch_geometric (see :mod:`lpm.graph.core`).
    """
    batch, _, dim = values.shape
    index = row.view(1, -1, 1).expand(batch, -1, dim)
    return values.new_zeros(batch, num_nodes, dim).scatter_add_(1, index, values)



def neighbor_pull(
    rowptr: Tensor,
    col: Tensor,
    row: Tensor,
    edge_weight: Optional[Tensor],
    in_weight: Tensor,
    x: Tensor,
    pair: Optional["PairKernel"] = None,
    source_weight: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """See :func:`lpm.kernels.neighbor_pull`."""
    batch, num_nodes, dim = x.shape
    edge_w = None if edge_weight is None else edge_weight.to(x.dtype)[:, None]  # (E, 1)
    if pair is None:
        # No receiver-dependent weight: pull_i = sum_j a_ij s_j x_j - x_i sum_j a_ij s_j, so one gather
        # and one scatter of [s x, s] suffice (no gather of the receiver, no per-edge difference).
        if source_weight is None:
            values = x
        else:
            gate = source_weight[..., None].to(x.dtype)
            values = torch.cat([gate * x, gate], -1)  # (B, N, d + 1)
        total = neighbor_sum(col, row, edge_weight, values)
        if source_weight is None:
            weight = in_weight.to(x.dtype)[None, :, None].expand(batch, num_nodes, 1)
            return total - weight * x, weight
        weight = total[..., dim:]
        return total[..., :dim] - weight * x, weight
    diff = gather_rows(x, col) - gather_rows(x, row)  # (B, E, d)
    w = pair.weight(diff.abs(), row)  # (B, E, d)
    if source_weight is not None:
        w = w * gather_rows(source_weight, col)[..., None].to(x.dtype)
    if edge_w is not None:
        w = w * edge_w
    # One scatter for pull and weight: stacked on a leading dimension, which is cheaper than
    # concatenating along the last one.
    stacked = torch.stack([w * diff, w.abs()]).reshape(2 * batch, -1, dim)
    total = _segment_sum(stacked, row, num_nodes).reshape(2, batch, num_nodes, dim)
    return total[0], total[1]


def neighbor_sum(col: Tensor, row: Tensor, edge_weight: Optional[Tensor], x: Tensor,
                 edge_scale: Optional[Tensor] = None) -> Tensor:
    """See :func:`lpm.kernels.neighbor_sum`."""
    msg = gather_rows(x, col)
    if edge_weight is not None:
        msg = msg * edge_weight.to(x.dtype)[:, None]
    if edge_scale is not None:
        msg = msg * edge_scale.to(x.dtype)[..., None]
    return _segment_sum(msg, row, x.size(1))


def expand_segments(start: Tensor, length: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every position of K segments ``[start_k, start_k + length_k)``, concatenated.

    Returns ``(owner, position, offset)``: ``(T,)`` segment of each position, ``(T,)`` the positions,
    and ``(K,)`` where each segment begins in the concatenation (``T = sum(length)``; one host sync
    to size it).
    """
    total = int(length.sum())
    owner = torch.repeat_interleave(torch.arange(length.numel(), device=length.device), length, output_size=total)
    offset = torch.cumsum(length, 0) - length
    return owner, start[owner] + torch.arange(total, device=length.device) - offset[owner], offset


def neighbor_sum_sparse(starts: Tensor, edges: Tensor, row: Tensor, edge_weight: Optional[Tensor], x: Tensor,
                        edge_scale: Optional[Union[Tensor, EdgeScale]] = None) -> Tensor:
    """:func:`neighbor_sum` pushed from the nonzero entries of ``x`` along their out-edges.

    Work is proportional to the nonzeros' follower counts instead of ``B x E``. Each follower's
    terms are added in ascending followee order, as the dense version adds them, so the two agree
    bit for bit on the CPU. No gradient (it indexes through ``nonzero``).
    """
    batch, num_nodes, dim = x.shape
    index = x.nonzero()  # (K, 3): b, j, d
    b, j, d = index.unbind(1)
    owner, position, _ = expand_segments(starts[j], starts[j + 1] - starts[j])
    edge = edges[position]
    value = x[b, j, d][owner]
    if edge_weight is not None:
        value = value * edge_weight.to(x.dtype)[edge]
    if edge_scale is not None:
        scenario = b[owner]
        # a multiplier kept in another form (EdgeScale) is read at the touched pairs only
        scale = edge_scale[scenario, edge] if isinstance(edge_scale, Tensor) else edge_scale.take(scenario, edge)
        value = value * scale.to(x.dtype)
    target = (b[owner] * num_nodes + row[edge]) * dim + d[owner]
    # entries come in (b, j, d) order, so each target's terms are added in ascending followee order
    return x.new_zeros(batch * num_nodes * dim).scatter_add_(0, target, value).view(batch, num_nodes, dim)


def sample_followee(rowptr: Tensor, col: Tensor, uniform: Tensor) -> Tensor:
    """See :func:`lpm.kernels.sample_followee`."""
    num_nodes = rowptr.numel() - 1
    start = rowptr[:-1].long()
    degree = rowptr[1:].long() - start  # (N,)
    offset = (uniform * degree).long().clamp_max_(torch.clamp(degree - 1, min=0))  # (B, N)
    self_index = torch.arange(num_nodes, device=col.device)
    if col.numel() == 0:  # nothing to index into: everyone keeps itself
        return self_index.expand_as(offset).clone()
    position = (start + offset).clamp_max_(col.numel() - 1)
    chosen = col.index_select(0, position.reshape(-1)).reshape(position.shape).long()
    return torch.where(degree > 0, chosen, self_index)


def neighbor_min(col: Tensor, row: Tensor, x: Tensor) -> Tensor:
    """See :func:`lpm.kernels.neighbor_min`."""
    # Not torch_geometric's scatter(..., "min"): it leaves 0, not inf, for an agent who follows nobody.
    col, row = col.long(), row.long()
    out = torch.full_like(x, math.inf)
    chunk = max(1, _CHUNK_ELEMENTS // max(col.numel() * x.size(2), 1))
    for lo in range(0, x.size(0), chunk):
        values = x[lo:lo + chunk, col]  # (b, E, d)
        out[lo:lo + chunk].scatter_reduce_(1, row[None, :, None].expand_as(values), values, "amin")
    return out


def sum_over_followers(col: Tensor, values: Tensor, num_nodes: int) -> Tensor:
    """See :func:`lpm.kernels.sum_over_followers`."""
    # scatter_add_ with a broadcast index, as torch_geometric's scatter does: 4-8x faster on the CPU
    # than index_add_ along dimension 1, with the same sums (each output adds its terms in edge order)
    return _segment_sum(values, col.long(), num_nodes)


def take_along_agents(x: Tensor, index: Tensor) -> Tensor:
    """See :func:`lpm.kernels.take_along_agents`."""
    if x.dim() == 2:
        return torch.gather(x, 1, index)
    return torch.gather(x, 1, index[..., None].expand_as(x))


def sample_visible_followee(rowptr: Tensor, col: Tensor, posts: Tensor, index: Tensor, uniform: Tensor,
                            edge_scale: Optional[Union[Tensor, EdgeScale]] = None) -> Tensor:
    """See :func:`lpm.kernels.sample_visible_followee`.

    Only the ``K`` requested rows are visited: their CSR rows are expanded (``K x degree`` edges) and
    each edge weighted by its followee's post (times ``edge_scale``). The weights are divided by their
    row's largest, so every row's total lies in ``[1, degree]`` and a float64 cumulative sum over all
    rows resolves each row to ~1e-16 relative to the whole expansion; the edge holding ``u`` times its
    row's total is found by binary search: ``O(K d log(K d))``, one host sync (the expansion's size).
    """
    b, i, c = index.unbind(1)
    rowptr, col = rowptr.long(), col.long()
    degree = rowptr[i + 1] - rowptr[i]
    owner, edge, offset = expand_segments(rowptr[i], degree)  # offset: first edge of each
    none = torch.full_like(degree, -1)
    if edge.numel() == 0:
        return none
    weight = posts[b[owner], col[edge], c[owner]].double().clamp_min(0.0)
    if edge_scale is not None:
        scale = edge_scale[b[owner], edge] if isinstance(edge_scale, Tensor) else edge_scale.take(b[owner], edge)
        weight = weight * scale.double().clamp_min(0.0)
    largest = torch.zeros(index.size(0), dtype=torch.float64, device=weight.device).scatter_reduce(
        0, owner, weight, "amax")
    weight = weight / largest[owner].clamp_min(torch.finfo(torch.float64).tiny)
    running = torch.cumsum(weight, 0)
    last = (offset + degree - 1).clamp_min(0)
    before = torch.where(offset > 0, running[(offset - 1).clamp_min(0)], 0.0)
    total = torch.where(degree > 0, running[last] - before, 0.0)
    position = torch.searchsorted(running, before + uniform.double() * total, right=True)
    # rounding can put u * total at the row's end: the row's last edge with a positive weight instead
    last_positive = torch.full_like(degree, -1).scatter_reduce(
        0, owner, torch.where(weight > 0, torch.arange(edge.numel(), device=edge.device), -1), "amax")
    position = torch.minimum(position, last_positive.clamp_min(0))
    parent = col[edge[position]]
    return torch.where((degree > 0) & (largest > 0), parent, none)
