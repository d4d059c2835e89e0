"""Fused Triton implementations of ``neighbor_pull``, ``neighbor_sum`` and ``sum_over_followers``.

Each takes the reference's arguments (:mod:`lpm.kernels.reference`) and returns what it returns,
differentiable in the same inputs: ``x``, the source weights, the pair kernel's parameters
(``eps`` per receiver or scalar; ``tau``, ``rho``, ``repulsion`` as scalars) and a dense edge
multiplier. Forward and backward are Triton kernels (:mod:`lpm.kernels.triton._jit`) that walk the
edges once per pass with nothing per edge in memory: the forward and the receiver's side of the
backward by follower (``rowptr/col``), the source's side by followee, over the followee-sorted edge
order built once per graph (no atomics, so the sums do not depend on scheduling). Inputs the
kernels do not cover (a pair kernel of another kind, per-agent ``rho``, learnable edge weights,
dtypes other than float32/float64, a graph without edges) go to the reference.
"""

from __future__ import annotations

import weakref
from types import ModuleType
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .. import reference
from ..pair import AttractRepel, SmoothBoundedConfidence

__all__ = ["FusedOps"]

_FLOATS = (torch.float32, torch.float64)
# Lanes (scenarios x state dimensions) per program, and agents x edges x lanes per register tile.
_LANES = 32
_TILE = 1024


def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


class _Followers(NamedTuple):
    starts: Tensor  # (N + 1,) offsets into perm per followee
    perm: Tensor  # (E,) edge ids sorted by followee, then by edge id
    order: Tensor  # (N,) followees by decreasing number of followers


# Per-graph index structures, keyed by the identity of the index tensor they derive from (graphs are
# immutable); an entry goes when its tensor does.
_DERIVED: dict[tuple[str, int], tuple[weakref.ref, object]] = {}


def _derived(kind: str, source: Tensor, build):
    key = (kind, id(source))
    hit = _DERIVED.get(key)
    if hit is not None and hit[0]() is source:
        return hit[1]
    value = build()
    _DERIVED[key] = (weakref.ref(source, lambda _ref, key=key: _DERIVED.pop(key, None)), value)
    return value


def _followers(col: Tensor, num_nodes: int) -> _Followers:
    def build() -> _Followers:
        perm = torch.argsort(col.long(), stable=True).to(col.dtype)
        starts = torch.zeros(num_nodes + 1, dtype=torch.int64, device=col.device)
        counts = torch.bincount(col.long(), minlength=num_nodes)
        starts[1:] = torch.cumsum(counts, 0)
        return _Followers(starts, perm, _by_length(counts, col.dtype))

    return _derived(f"followers{num_nodes}", col, build)


def _by_length(lengths: Tensor, dtype: torch.dtype) -> Tensor:
    """Agents by decreasing segment length (stable): programs get agents of similar length, and a
    power-law graph's hubs start first instead of finishing last."""
    return torch.argsort(lengths, descending=True, stable=True).to(dtype)


def _row_order(rowptr: Tensor) -> Tensor:
    return _derived("row_order", rowptr, lambda: _by_length(rowptr[1:] - rowptr[:-1], rowptr.dtype))


def _rowptr(row: Tensor, num_nodes: int) -> Tensor:
    """CSR offsets of the follower-sorted ``row`` (``neighbor_sum`` is handed ``row``, not ``rowptr``)."""
    return _derived(f"rowptr{num_nodes}", row, lambda: torch.searchsorted(
        row.long(), torch.arange(num_nodes + 1, device=row.device)).to(row.dtype))


class _Launch(NamedTuple):
    grid: tuple[int, int]
    meta: dict


def _launch(num_nodes: int, batch: int, dim: int) -> _Launch:
    block_d = _pow2(dim)
    block_b = max(1, min(_pow2(batch), _LANES // block_d))
    lanes = block_b * block_d
    block_e = 16 if lanes <= 8 else 8
    block_r = max(1, min(16, _TILE // (block_e * lanes)))
    return _Launch((_cdiv(num_nodes, block_r), _cdiv(batch, block_b)),
                   dict(BLOCK_R=block_r, BLOCK_E=block_e, BLOCK_B=block_b, BLOCK_D=block_d))


def _receiver_param(value, batch: int, num_nodes: int, x: Tensor) -> Optional[Tensor]:
    """A receiver parameter (scalar, ``(N, 1)`` or ``(B|1, N, 1)``) as a ``(B, N)`` view, or ``None``."""
    if not isinstance(value, Tensor):
        return x.new_tensor(float(value)).expand(batch, num_nodes)
    value = value.to(device=x.device, dtype=x.dtype)
    if value.numel() == 1:
        return value.reshape(()).expand(batch, num_nodes)
    if value.dim() == 3 and value.shape[1:] == (num_nodes, 1) and value.size(0) in (1, batch):
        return value[..., 0].expand(batch, num_nodes)
    if value.dim() == 2 and value.shape == (num_nodes, 1):
        return value[:, 0].expand(batch, num_nodes)
    return None


def _scalar(value, x: Tensor) -> Optional[Tensor]:
    if not isinstance(value, Tensor):
        return x.new_tensor(float(value))
    return value.to(device=x.device, dtype=x.dtype).reshape(()) if value.numel() == 1 else None


def _pair_args(pair, x: Tensor) -> Optional[tuple[int, Tensor, Tensor]]:
    """``(code, eps (B, N), params (3,) = (tau, rho, repulsion))`` of a pair kernel the kernels know."""
    batch, num_nodes, _ = x.shape
    if pair is None:
        return 0, x.new_ones(()).expand(batch, num_nodes), x.new_tensor([1.0, 0.0, 0.0])
    if type(pair) is SmoothBoundedConfidence:
        code, scalars = 1, (pair.tau, 0.0, 0.0)
    elif type(pair) is AttractRepel:
        code, scalars = 2, (pair.tau, pair.rho, pair.repulsion)
    else:
        return None
    eps = _receiver_param(pair.eps, batch, num_nodes, x)
    params = [_scalar(v, x) for v in scalars]
    if eps is None or any(p is None for p in params):
        return None
    return code, eps, torch.stack(params)


def _or(tensor: Optional[Tensor], placeholder: Tensor) -> Tensor:
    """``tensor``, or a placeholder for a pointer the kernel does not read (its ``HAS_*`` is off)."""
    return placeholder if tensor is None else tensor


class _Graph(NamedTuple):
    rowptr: Tensor
    row_order: Tensor  # (N,) followers by decreasing number of followees
    col: Tensor
    row: Tensor
    edge_weight: Optional[Tensor]
    followers: _Followers


class _Pull(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, sw: Optional[Tensor], eps: Tensor, params: Tensor, kernels: ModuleType,
                graph: _Graph, code: int):
        batch, num_nodes, dim = x.shape
        pull = torch.empty_like(x)
        weight = x.new_empty(batch, num_nodes, dim if code else 1)
        launch = _launch(num_nodes, batch, dim)
        ew = graph.edge_weight
        kernels.pull_rows_fwd[launch.grid](
            graph.rowptr, graph.row_order, graph.col, _or(ew, x), _or(sw, x), x, eps, params, pull, weight,
            num_nodes, batch, dim, eps.stride(0), eps.stride(1),
            PAIR=code, HAS_EW=ew is not None, HAS_SW=sw is not None, **launch.meta)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, sw, eps, params, weight)
        ctx.kernels, ctx.graph, ctx.code = kernels, graph, code
        return pull, weight

    @staticmethod
    def backward(ctx, grad_pull: Optional[Tensor], grad_weight: Optional[Tensor]):
        x, sw, eps, params, weight = ctx.saved_tensors
        kernels, graph, code = ctx.kernels, ctx.graph, ctx.code
        need_x, need_sw, need_eps, need_params = ctx.needs_input_grad[:4]
        batch, num_nodes, dim = x.shape
        grad_pull = torch.zeros_like(x) if grad_pull is None else grad_pull.contiguous()
        grad_weight = None if grad_weight is None else grad_weight.contiguous()
        launch = _launch(num_nodes, batch, dim)
        ew = graph.edge_weight
        common = dict(HAS_EW=ew is not None, HAS_SW=sw is not None, HAS_GW=grad_weight is not None, **launch.meta)
        gw = x if grad_weight is None else grad_weight
        gpart = None
        if code == 0:  # pull_i = sum_e c_e x_j - x_i sum_e c_e: the receiver's share needs no edge pass
            receiver = -grad_pull * weight
        else:
            receiver = torch.empty_like(x)
            need_any_param = need_eps or need_params
            gpart = x.new_empty(4, batch, num_nodes) if need_any_param else x
            kernels.pull_rows_bwd[launch.grid](
                graph.rowptr, graph.row_order, graph.col, _or(ew, x), _or(sw, x), x, eps, params,
                grad_pull, gw, receiver, gpart, num_nodes, batch, dim, eps.stride(0), eps.stride(1),
                PAIR=code, NEED_PARAMS=need_any_param, **common)
        grad_x = torch.empty_like(x)
        grad_sw = x.new_empty(batch, num_nodes) if need_sw else x
        followers = graph.followers
        kernels.pull_cols_bwd[launch.grid](
            followers.starts, followers.order, followers.perm, graph.row, _or(ew, x), _or(sw, x), x, eps, params,
            grad_pull, gw, receiver, grad_x, grad_sw, num_nodes, batch, dim, 1 if code == 0 else dim,
            eps.stride(0), eps.stride(1), PAIR=code, NEED_SW=need_sw, **common)
        grad_eps = gpart[0] if need_eps else None
        grad_params = gpart[1:].sum((1, 2)) if need_params else None
        return (grad_x if need_x else None, grad_sw if need_sw else None, grad_eps, grad_params,
                None, None, None)


class _Sum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, es: Optional[Tensor], kernels: ModuleType, graph: _Graph):
        batch, num_nodes, dim = x.shape
        out = torch.empty_like(x)
        launch = _launch(num_nodes, batch, dim)
        ew = graph.edge_weight
        kernels.sum_rows_fwd[launch.grid](
            graph.rowptr, graph.row_order, graph.col, _or(ew, x), _or(es, x), x, out, num_nodes, batch, dim,
            0 if es is None else es.stride(0), HAS_EW=ew is not None, HAS_ES=es is not None, **launch.meta)
        ctx.save_for_backward(x, es)
        ctx.kernels, ctx.graph = kernels, graph
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, es = ctx.saved_tensors
        need_x, need_es = ctx.needs_input_grad[:2]
        graph = ctx.graph
        batch, num_nodes, dim = x.shape
        num_edges = graph.col.numel()
        launch = _launch(num_nodes, batch, dim)
        ew = graph.edge_weight
        grad_x = torch.empty_like(x) if need_x else x
        grad_es = x.new_empty(batch, num_edges) if need_es else x
        ctx.kernels.sum_cols_bwd[launch.grid](
            graph.followers.starts, graph.followers.order, graph.followers.perm, graph.row, _or(ew, x), _or(es, x),
            grad.contiguous(), x, grad_x, grad_es, num_nodes, batch, dim, num_edges,
            0 if es is None else es.stride(0), HAS_EW=ew is not None, HAS_ES=es is not None,
            NEED_X=need_x, NEED_ES=need_es, **launch.meta)
        return grad_x if need_x else None, grad_es if need_es else None, None, None


class _SumOverFollowers(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: Tensor, kernels: ModuleType, col: Tensor, followers: _Followers, num_nodes: int):
        batch, num_edges, dim = values.shape
        out = values.new_empty(batch, num_nodes, dim)
        launch = _launch(num_nodes, batch, dim)
        kernels.followers_sum[launch.grid](followers.starts, followers.order, followers.perm, values, out,
                                           num_nodes, batch, dim, num_edges, **launch.meta)
        ctx.col = col
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        # the transpose of a sum into followees is a gather of (B, E, d): the gradient's own size
        return grad.index_select(1, ctx.col), None, None, None, None


class FusedOps:
    """The fused implementations over one module of kernels: compiled for the GPU, or run by
    Triton's interpreter (see :func:`lpm.kernels.triton.fused_ops`).

    Args:
        kernels: the module of ``@triton.jit`` kernels.
    """

    def __init__(self, kernels: ModuleType) -> None:
        self.kernels = kernels

    def neighbor_pull(self, rowptr: Tensor, col: Tensor, row: Tensor, edge_weight: Optional[Tensor],
                      in_weight: Tensor, x: Tensor, pair=None,
                      source_weight: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """See :func:`lpm.kernels.neighbor_pull`.

        Shapes:
            x: ``(B, N, d)``; source_weight: ``(B, N)``; returns ``(B, N, d)`` and ``(B, N, d | 1)``.
        """
        args = _pair_args(pair, x) if self._covers(x, col, edge_weight) else None
        if args is None:
            return reference.neighbor_pull(rowptr, col, row, edge_weight, in_weight, x, pair, source_weight)
        code, eps, params = args
        batch, num_nodes, _ = x.shape
        graph = self._graph(rowptr, col, row, edge_weight, x)
        sw = None if source_weight is None else source_weight.to(x.dtype).contiguous()
        pull, weight = _Pull.apply(x.contiguous(), sw, eps, params, self.kernels, graph, code)
        if code == 0 and source_weight is None:  # as the reference: the graph's own in-weights
            graph_weight = in_weight.to(x.dtype)[None, :, None]
            if in_weight.dtype != x.dtype:
                # the reference's pull is sum_j a_ij x_j - in_weight_i x_i with in-weights summed in the
                # graph's coarser dtype, the kernel's sums a_ij in x's: float64 states on a float32 graph
                # would differ by float32 rounding (seen on an H200). Only then is the pass worth its bytes.
                pull = pull + (weight.detach() - graph_weight) * x
            weight = graph_weight.expand(batch, num_nodes, 1)
        return pull, weight

    def neighbor_sum(self, col: Tensor, row: Tensor, edge_weight: Optional[Tensor], x: Tensor,
                     edge_scale: Optional[Tensor] = None) -> Tensor:
        """See :func:`lpm.kernels.neighbor_sum_dense`.

        Shapes:
            x: ``(B, N, d)``; edge_scale: ``(B, E)`` or ``(1, E)``; returns ``(B, N, d)``.
        """
        covered = self._covers(x, col, edge_weight) and (edge_scale is None or (
            edge_scale.dim() == 2 and edge_scale.size(1) == col.numel() and edge_scale.size(0) in (1, x.size(0))))
        if not covered:
            return reference.neighbor_sum(col, row, edge_weight, x, edge_scale)
        batch, num_nodes, _ = x.shape
        es = None
        if edge_scale is not None:
            es = edge_scale.to(x.dtype)
            es = (es if es.stride(1) == 1 else es.contiguous()).expand(batch, -1)
        rowptr = _rowptr(row, num_nodes)
        return _Sum.apply(x.contiguous(), es, self.kernels, self._graph(rowptr, col, row, edge_weight, x))

    def sum_over_followers(self, col: Tensor, values: Tensor, num_nodes: int) -> Tensor:
        """See :func:`lpm.kernels.sum_over_followers`.

        Shapes:
            values: ``(B, E, d)``; returns ``(B, N, d)``.
        """
        if values.dim() != 3 or values.dtype not in _FLOATS or col.numel() == 0:
            return reference.sum_over_followers(col, values, num_nodes)
        return _SumOverFollowers.apply(values.contiguous(), self.kernels, col, _followers(col, num_nodes), num_nodes)

    @staticmethod
    def _covers(x: Tensor, col: Tensor, edge_weight: Optional[Tensor]) -> bool:
        return (x.dim() == 3 and x.dtype in _FLOATS and col.numel() > 0
                and (edge_weight is None or not edge_weight.requires_grad))

    @staticmethod
    def _graph(rowptr: Tensor, col: Tensor, row: Tensor, edge_weight: Optional[Tensor], x: Tensor) -> _Graph:
        ew = None if edge_weight is None else edge_weight.to(x.dtype)
        return _Graph(rowptr, _row_order(rowptr), col, row, ew, _followers(col, x.size(1)))

