"""The CPU fast path of :func:`lpm.kernels.neighbor_pull` and :func:`lpm.kernels.neighbor_sum`.

Each op is one fused loop over the CSR rows (``fused.cpp``): no ``(B, E, d)`` gather, message or
scatter buffer, only the outputs; the backward is a second fused loop that recomputes the pair
kernel per edge instead of saving per-edge values (its sigmoids from one exp, vectorised in blocks
of edges), and, when ``x`` needs no gradient (a simulation's state), scatters nothing to it and reads
each followee's values and source weight from one packed record per agent. A pull gated by a
sparse source weight (only the followees that posted count) is pushed from the sources along their
out-edges instead, once the graph's transpose is cached (at its third gated pull), so its cost
follows the posts, not ``E``. Both take the reference's arguments and return what it returns (:mod:`lpm.kernels.reference`); inputs they do not cover (a pair parameter that is
neither a scalar nor per receiver, a differentiable edge weight, an empty state) go to the
reference, as does everything when the library could not be built (:mod:`.build`).

Numbers: without a pair kernel the sums are the reference's bit for bit (same products, added in
edge order, in the data's dtype). With one, ``exp`` comes from libm rather than torch's vectorised
one, so results agree to a few ulps. Gradients agree to rounding.
"""

from __future__ import annotations

import ctypes
import weakref
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .. import reference
from ..pair import AttractRepel, SmoothBoundedConfidence
from .build import load

__all__ = ["fused_pull", "fused_sum", "DTYPES"]

DTYPES = (torch.float32, torch.float64)
_DTYPE_CODE = {torch.float32: 0, torch.float64: 1}
_INDEX_CODE = {torch.int32: 0, torch.int64: 1}
_KIND = {SmoothBoundedConfidence: 1, AttractRepel: 2}
# eps (pointer, strides, value), tau, rho, repulsion of "no pair kernel"
_NO_PAIR = (None, 0, 0, 0, 0.0, 1.0, 0.0, 0.0)
# Largest state dimension the loops take (kMaxDim in fused.cpp).
_MAX_DIM = 16
# Below this many edge visits one thread beats waking a team (measured: ~30 us per parallel region).
_SERIAL_WORK = 1 << 16


class _Unsupported(Exception):
    """An input the fused loops do not cover: the reference computes it."""


def _threads(work: int) -> int:
    return 1 if work < _SERIAL_WORK else max(1, torch.get_num_threads())


def _ptr(t: Optional[Tensor]) -> Optional[int]:
    """The address of a contiguous tensor's data; the caller keeps the tensor alive over the C call."""
    return None if t is None or t.numel() == 0 else t.data_ptr()


def _check(code: int, name: str) -> None:
    if code != 0:  # only an unknown dtype code, which the callers rule out
        raise RuntimeError(f"Expected lpm's fused {name} to accept its dtype codes (got status {code})")


@dataclass(frozen=True, eq=False)
class _Graph:
    """The CSR arrays one call needs, in the codes the C side takes, and the cached transpose (gated
    pulls only)."""

    rowptr: Tensor
    col: Tensor
    edge_weight: Optional[Tensor]
    index: int
    followers: Optional["_Followers"] = None


def _graph(rowptr: Tensor, col: Tensor, edge_weight: Optional[Tensor], dtype: torch.dtype,
           gated: bool = False) -> _Graph:
    if rowptr.dtype != col.dtype or col.dtype not in _INDEX_CODE:
        raise _Unsupported
    if edge_weight is not None:
        if edge_weight.requires_grad:
            raise _Unsupported
        edge_weight = edge_weight.to(dtype).contiguous()
    graph = _Graph(rowptr.contiguous(), col.contiguous(), edge_weight, _INDEX_CODE[col.dtype])
    if gated and graph.col.numel() > 0:
        graph = _Graph(graph.rowptr, graph.col, edge_weight, graph.index, _followers(graph, col))
    return graph


@dataclass(frozen=True, eq=False)
class _Followers:
    """The transpose of a CSR graph: ``starts (N + 1,)`` int64, ``follower`` and ``edge`` ``(E,)`` in the
    graph's index dtype, the out-edges of each agent in edge order."""

    starts: Tensor
    follower: Tensor
    edge: Tensor


# Transposes by the id of the graph's ``col`` tensor: [weak reference, version, gated calls, transpose].
# Built at the third gated pull over the same ``col`` (a graph stepped on, not the one-off graph a feed
# builds per step), dropped with the tensor.
_FOLLOWERS: dict[int, list] = {}
_BUILD_AT_CALL = 3


def _followers(graph: _Graph, col: Tensor) -> Optional[_Followers]:
    key = id(col)
    entry = _FOLLOWERS.get(key)
    if entry is None or entry[0]() is not col or entry[1] != col._version:
        entry = [weakref.ref(col, lambda _, key=key: _FOLLOWERS.pop(key, None)), col._version, 0, None]
        _FOLLOWERS[key] = entry
    entry[2] += 1
    if entry[3] is None and entry[2] >= _BUILD_AT_CALL:
        num_nodes = graph.rowptr.numel() - 1
        followers = _Followers(torch.empty(num_nodes + 1, dtype=torch.int64), torch.empty_like(graph.col),
                               torch.empty_like(graph.col))
        _check(load().lpm_transpose(graph.index, num_nodes, _ptr(graph.rowptr), _ptr(graph.col),
                                    _ptr(followers.starts), _ptr(followers.follower), _ptr(followers.edge)),
               "transpose")
        entry[3] = followers
    return entry[3]


def _gated(x: Tensor, source: Tensor, graph: _Graph, kind: int, eps_args: tuple, pull: Tensor,
           weight: Tensor) -> bool:
    """The forward of a pull gated by ``source``, pushed from the sources when they are few; ``False``
    when no transpose is cached yet (the caller runs the row-parallel loop)."""
    followers = graph.followers
    if followers is None:
        return False
    batch, num_nodes, dim = x.shape
    status = load().lpm_gated_forward(
        _DTYPE_CODE[x.dtype], graph.index, batch, num_nodes, dim, _ptr(graph.rowptr), _ptr(graph.col),
        _ptr(followers.starts), _ptr(followers.follower), _ptr(followers.edge), _ptr(graph.edge_weight), _ptr(x),
        _ptr(source), kind, *eps_args, _ptr(pull), _ptr(weight), _threads(batch * graph.col.numel()))
    if status < 0:
        _check(status, "gated pull")
    return True


def _scalar(value: Union[float, Tensor]) -> tuple[Optional[Tensor], float]:
    """A pair parameter that must be one number: ``(tensor or None, value)``."""
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.device.type != "cpu":
            raise _Unsupported
        return value, float(value.detach())
    return None, float(value)


def _receiver(value: Union[float, Tensor], shape: torch.Size, dtype: torch.dtype):
    """A receiver-side parameter as :func:`lpm.kernels.pair._per_receiver` reads it: one number, or
    per receiver ``(N, D)`` / ``(B', N, D)`` with ``B'`` in ``{1, B}`` and ``D`` in ``{1, d}``.

    Returns ``(tensor or None, value, strides)``: strides ``None`` for one number, else the element
    strides ``(b, i, k)`` of the contiguous tensor broadcast over ``(B, N, d)``.
    """
    batch, num_nodes, dim = shape
    if not isinstance(value, Tensor) or value.numel() == 1 and value.dim() <= 2:
        tensor, number = _scalar(value)
        return tensor, number, None
    if value.dim() == 2 and value.size(0) > 1:
        value = value[None]
    if value.dim() != 3 or value.size(1) != num_nodes or value.size(0) not in (1, batch) \
            or value.size(2) not in (1, dim) or value.device.type != "cpu":
        raise _Unsupported
    value = value.to(dtype).contiguous()
    per_dim = value.size(2)
    strides = (num_nodes * per_dim if value.size(0) > 1 else 0, per_dim, 1 if per_dim > 1 else 0)
    return value, 0.0, strides


def _source(source_weight: Optional[Tensor], x: Tensor) -> Optional[Tensor]:
    if source_weight is None:
        return None
    return torch.broadcast_to(source_weight.to(x.dtype), x.shape[:2]).contiguous()


# ------------------------------------------------------------------ neighbor pull without a pair kernel
class _PlainPull(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, source: Optional[Tensor], inw: Tensor, graph: _Graph):
        batch, num_nodes, dim = x.shape
        pull = torch.empty_like(x)
        weight = x.new_empty(batch, num_nodes, 1) if source is not None else None
        if source is None or not _gated(x, source, graph, 0, _NO_PAIR, pull, weight):
            _check(load().lpm_plain_forward(
                _DTYPE_CODE[x.dtype], graph.index, batch, num_nodes, dim, _ptr(graph.rowptr), _ptr(graph.col),
                _ptr(graph.edge_weight), _ptr(x), _ptr(source), _ptr(inw), _ptr(pull), _ptr(weight),
                _threads(batch * graph.col.numel())), "pull")
        ctx.graph = graph
        ctx.save_for_backward(x, source, inw if source is None else weight)
        return pull if source is None else (pull, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_pull: Tensor, grad_weight: Optional[Tensor] = None):
        x, source, wsum = ctx.saved_tensors
        graph = ctx.graph
        grad_pull = grad_pull.contiguous()  # kept in a local: the C call reads its memory
        grad_weight = None if grad_weight is None else grad_weight.contiguous()
        batch, num_nodes, dim = x.shape
        need_source = source is not None and ctx.needs_input_grad[1]
        # a state without gradient (the usual case: only parameters learn) skips the scatter to x
        grad_x = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
        followers = graph.followers
        if grad_x is None and need_source and followers is not None:  # from the followees' side
            grad_source = torch.empty_like(source)  # every entry written
            _check(load().lpm_plain_source_grad(
                _DTYPE_CODE[x.dtype], graph.index, batch, num_nodes, dim, _ptr(followers.starts),
                _ptr(followers.follower), _ptr(followers.edge), _ptr(graph.edge_weight), _ptr(x), _ptr(grad_pull),
                _ptr(grad_weight), _ptr(grad_source), _threads(batch * graph.col.numel())), "pull backward")
            return None, grad_source, None, None
        grad_source = torch.zeros_like(source) if need_source else None
        _check(load().lpm_plain_backward(
            _DTYPE_CODE[x.dtype], graph.index, batch, num_nodes, dim, _ptr(graph.rowptr), _ptr(graph.col),
            _ptr(graph.edge_weight), _ptr(x), _ptr(source), _ptr(wsum), _ptr(grad_pull),
            _ptr(grad_weight), _ptr(grad_x), _ptr(grad_source),
            _threads(batch * graph.col.numel())), "pull backward")
        return grad_x, grad_source, None, None


# ------------------------------------------------------------------ neighbor pull with a pair kernel
@dataclass(frozen=True, eq=False)
class _PairSpec:
    kind: int
    graph: _Graph
    eps_strides: Optional[tuple[int, int, int]]
    eps: float
    tau: float
    rho: float
    repulsion: float


class _PairPull(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, source: Optional[Tensor], eps: Optional[Tensor], tau: Optional[Tensor],
                rho: Optional[Tensor], repulsion: Optional[Tensor], spec: _PairSpec):
        batch, num_nodes, dim = x.shape
        pull, weight = torch.empty_like(x), torch.empty_like(x)
        graph = spec.graph
        eps_args = (*_eps_args(eps, spec), spec.tau, spec.rho, spec.repulsion)
        if source is None or not _gated(x, source, graph, spec.kind, eps_args, pull, weight):
            _check(load().lpm_pair_forward(
                _DTYPE_CODE[x.dtype], graph.index, batch, num_nodes, dim, _ptr(graph.rowptr), _ptr(graph.col),
                _ptr(graph.edge_weight), _ptr(x), _ptr(source), spec.kind, *eps_args, _ptr(pull), _ptr(weight),
                _threads(batch * graph.col.numel())), "pull")
        ctx.spec = spec
        ctx.save_for_backward(x, source, eps, tau, rho, repulsion)
        return pull, weight

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_pull: Tensor, grad_weight: Tensor):
        x, source, eps, tau, rho, repulsion = ctx.saved_tensors
        spec, graph = ctx.spec, ctx.spec.graph
        grad_pull, grad_weight = grad_pull.contiguous(), grad_weight.contiguous()
        batch, num_nodes, dim = x.shape
        need = ctx.needs_input_grad
        grad_x = torch.zeros_like(x) if need[0] else None
        grad_source = torch.zeros_like(source) if source is not None and need[1] else None
        per_receiver = spec.eps_strides is not None
        grad_eps = torch.zeros_like(eps) if per_receiver and need[2] else None
        scalars = (ctypes.c_double * 4)()
        need_eps = need[2] and eps is not None
        wanted = (need_eps | (need[3] and tau is not None) << 1 | (need[4] and rho is not None) << 2
                  | (need[5] and repulsion is not None) << 3)
        _check(load().lpm_pair_backward(
            _DTYPE_CODE[x.dtype], graph.index, batch, num_nodes, dim, _ptr(graph.rowptr), _ptr(graph.col),
            _ptr(graph.edge_weight), _ptr(x), _ptr(source), spec.kind, *_eps_args(eps, spec), spec.tau, spec.rho,
            spec.repulsion, _ptr(grad_pull), _ptr(grad_weight), _ptr(grad_x),
            _ptr(grad_source), _ptr(grad_eps), int(wanted), scalars, _threads(batch * graph.col.numel())),
            "pull backward")

        def scalar_grad(tensor: Optional[Tensor], value: float, wanted: bool) -> Optional[Tensor]:
            return tensor.new_full(tensor.shape, value) if tensor is not None and wanted else None

        if not per_receiver:
            grad_eps = scalar_grad(eps, scalars[0], need[2])
        return (grad_x, grad_source, grad_eps, scalar_grad(tau, scalars[1], need[3]),
                scalar_grad(rho, scalars[2], need[4]), scalar_grad(repulsion, scalars[3], need[5]), None)


def _eps_args(eps: Optional[Tensor], spec: _PairSpec) -> tuple:
    if spec.eps_strides is None:
        return (None, 0, 0, 0, spec.eps)
    return (_ptr(eps), *spec.eps_strides, 0.0)


def _pair_pull(graph: _Graph, x: Tensor, pair, source: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    kind = _KIND.get(type(pair))
    if kind is None:
        raise _Unsupported
    eps, eps_value, strides = _receiver(pair.eps, x.shape, x.dtype)
    tau, tau_value = _scalar(pair.tau)
    rho, rho_value = _scalar(pair.rho) if kind == 2 else (None, 0.0)
    repulsion, repulsion_value = _scalar(pair.repulsion) if kind == 2 else (None, 0.0)
    spec = _PairSpec(kind, graph, strides, eps_value, tau_value, rho_value, repulsion_value)
    return _PairPull.apply(x, source, eps, tau, rho, repulsion, spec)


def fused_pull(rowptr: Tensor, col: Tensor, row: Tensor, edge_weight: Optional[Tensor], in_weight: Tensor, x: Tensor,
               pair=None, source_weight: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """:func:`lpm.kernels.neighbor_pull` in one fused loop (the reference's arguments and results).

    Shapes:
        x: ``(B, N, d)``; source_weight: ``(B, N)``; returns ``(B, N, d)`` and ``(B, N, d)`` or ``(B, N, 1)``.
    """
    if load() is None or x.dim() != 3 or x.numel() == 0 or x.dtype not in _DTYPE_CODE or x.size(-1) > _MAX_DIM:
        return reference.neighbor_pull(rowptr, col, row, edge_weight, in_weight, x, pair, source_weight)
    try:
        graph = _graph(rowptr, col, edge_weight, x.dtype, gated=source_weight is not None)
        xc, source = x.contiguous(), _source(source_weight, x)
        if pair is not None:
            return _pair_pull(graph, xc, pair, source)
        inw = in_weight.to(x.dtype).contiguous()
        if source is None:
            pull = _PlainPull.apply(xc, None, inw, graph)
            return pull, inw[None, :, None].expand(x.size(0), x.size(1), 1)
        return _PlainPull.apply(xc, source, inw, graph)
    except _Unsupported:
        return reference.neighbor_pull(rowptr, col, row, edge_weight, in_weight, x, pair, source_weight)


# ------------------------------------------------------------------ neighbor sum
class _Sum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: Optional[Tensor], col: Tensor, row: Tensor, edge_weight: Optional[Tensor]):
        batch, num_nodes, dim = x.shape
        out = torch.zeros_like(x)
        _check(load().lpm_sum_forward(
            _DTYPE_CODE[x.dtype], _INDEX_CODE[col.dtype], batch, num_nodes, dim, col.numel(), _ptr(col), _ptr(row),
            _ptr(edge_weight), _ptr(x), _ptr(scale), _ptr(out), _threads(batch * col.numel())), "sum")
        ctx.save_for_backward(x, scale, col, row, edge_weight)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, scale, col, row, edge_weight = ctx.saved_tensors
        batch, num_nodes, dim = x.shape
        grad = grad.contiguous()
        grad_x = torch.zeros_like(x)
        grad_scale = torch.empty_like(scale) if scale is not None and ctx.needs_input_grad[1] else None
        _check(load().lpm_sum_backward(
            _DTYPE_CODE[x.dtype], _INDEX_CODE[col.dtype], batch, num_nodes, dim, col.numel(), _ptr(col), _ptr(row),
            _ptr(edge_weight), _ptr(x), _ptr(scale), _ptr(grad), _ptr(grad_x), _ptr(grad_scale),
            _threads(batch * col.numel())), "sum backward")
        return grad_x, grad_scale, None, None, None


def fused_sum(col: Tensor, row: Tensor, edge_weight: Optional[Tensor], x: Tensor,
              edge_scale: Optional[Tensor] = None) -> Tensor:
    """:func:`lpm.kernels.neighbor_sum` (dense) in one fused loop over the edges in CSR order.

    Shapes:
        x: ``(B, N, d)``; edge_scale: ``(B, E)``; returns ``(B, N, d)``.
    """
    usable = (load() is not None and x.dim() == 3 and x.numel() > 0 and x.dtype in _DTYPE_CODE
              and x.size(-1) <= _MAX_DIM
              and col.dtype in _INDEX_CODE and row.dtype == torch.int64
              and not (edge_weight is not None and edge_weight.requires_grad))
    if not usable:
        return reference.neighbor_sum(col, row, edge_weight, x, edge_scale)
    weight = None if edge_weight is None else edge_weight.to(x.dtype).contiguous()
    scale = None
    if edge_scale is not None:
        scale = torch.broadcast_to(edge_scale.to(x.dtype), (x.size(0), col.numel())).contiguous()
    return _Sum.apply(x.contiguous(), scale, col.contiguous(), row.contiguous(), weight)
