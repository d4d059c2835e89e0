"""Halo exchange between ranks with ``torch.distributed.all_to_all_single``, differentiable.

Every read of agent states across the graph (:func:`lpm.kernels.neighbor_pull` and the other
dispatch functions) on a :class:`PartitionedGraph` first gathers the rows other ranks need, sends
them in one ``all_to_all_single`` and appends what arrives as the halo. Its backward is the same
collective run the other way (gradients of halo rows travel back to the owners and are added to the
rows they came from), so a loss on any rank differentiates through every rank's agents.

Every rank must call the same ops in the same order (they are collectives); the dynamics modules do,
since every rank runs the same model.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor

from lpm.errors import ConfigError
from lpm.kernels.halo import HaloGraph

from .layout import RankLayout

__all__ = ["PartitionedGraph", "halo_exchange"]


def _all_to_all(rows: Tensor, out_rows: int, out_counts: list[int], in_counts: list[int], group) -> Tensor:
    """``rows`` ``(S, ...)`` split by ``in_counts`` to the ranks; returns ``(out_rows, ...)`` split by
    ``out_counts`` from the ranks."""
    out = rows.new_empty((out_rows, *rows.shape[1:]))
    dist.all_to_all_single(out, rows.contiguous(), out_counts, in_counts, group=group)
    return out


def _send(x: Tensor, layout: RankLayout, group) -> Tensor:
    """The rows of ``x (B, n, ...)`` other ranks read, exchanged: ``(B, h, ...)`` in halo order."""
    send = x.index_select(1, layout.send_index).movedim(1, 0)  # (S, B, ...)
    return _all_to_all(send, layout.halo.numel(), layout.recv_counts, layout.send_counts, group).movedim(0, 1)


def _return(halo: Tensor, layout: RankLayout, num_local: int, group) -> Tensor:
    """The transpose of :func:`_send`: halo rows ``(B, h, ...)`` back to their owners, summed into the
    rows they came from: ``(B, n, ...)``."""
    back = _all_to_all(halo.movedim(1, 0), layout.send_index.numel(), layout.send_counts, layout.recv_counts,
                       group).movedim(0, 1)  # (B, S, ...)
    shape = (back.size(0), num_local, *back.shape[2:])
    return back.new_zeros(shape).index_add_(1, layout.send_index, back)


class _Exchange(torch.autograd.Function):
    """:func:`_send`, whose backward is :func:`_return`."""

    @staticmethod
    def forward(ctx, x: Tensor, layout: RankLayout, group) -> Tensor:
        ctx.layout, ctx.group, ctx.num_local = layout, group, x.size(1)
        return _send(x, layout, group)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _return(grad.contiguous(), ctx.layout, ctx.num_local, ctx.group), None, None


class _Return(torch.autograd.Function):
    """:func:`_return`, whose backward is :func:`_send`."""

    @staticmethod
    def forward(ctx, halo: Tensor, layout: RankLayout, num_local: int, group) -> Tensor:
        ctx.layout, ctx.group = layout, group
        return _return(halo, layout, num_local, group)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _send(grad.contiguous(), ctx.layout, ctx.group), None, None, None


def halo_exchange(x: Tensor, layout: RankLayout, group=None) -> Tensor:
    """The halo agents' rows of ``x``, received from their owners; differentiable in ``x``.

    Shapes:
        x: ``(B, n, ...)`` owned agents; returns ``(B, h, ...)`` in ``layout.halo`` order.
    """
    return _Exchange.apply(x, layout, group)


class PartitionedGraph(HaloGraph):
    """This rank's share of a follower graph partitioned over a ``torch.distributed`` process group.

    Pass it where a :class:`~lpm.graph.Graph` goes in a model's step: the hot ops exchange the halo
    and run on the local graph (see :mod:`lpm.kernels.halo`). Ops that address agents by index
    across the graph (``sample_followee``, ``sample_visible_followee``: Deffuant, cascade parents)
    are not supported and raise :class:`~lpm.errors.ConfigError`.

    Args:
        layout: this rank's layout (:func:`lpm.distributed.rank_layout`), on the state's device.
        group: the process group (``None``: the default group).

    Attributes:
        bytes_sent: bytes this rank has sent in halo exchanges (forward only), a host-side counter.
    """

    def __init__(self, layout: RankLayout, group=None) -> None:
        if not isinstance(layout, RankLayout):
            raise ConfigError(f"Expected a RankLayout (got {type(layout).__name__})")
        if not dist.is_available() or not dist.is_initialized():
            raise ConfigError("Expected an initialised torch.distributed process group "
                              "(torch.distributed.init_process_group) (got none)")
        world = dist.get_world_size(group)
        if world != layout.parts or dist.get_rank(group) != layout.rank:
            raise ConfigError(f"Expected the layout of rank {dist.get_rank(group)} of {world} "
                              f"(got rank {layout.rank} of {layout.parts})")
        self.layout = layout
        self.local = layout.local
        self.group = group
        self.bytes_sent = 0

    @property
    def num_nodes(self) -> int:
        return self.layout.num_local

    @property
    def num_edges(self) -> int:
        return self.local.num_edges

    @property
    def device(self) -> torch.device:
        return self.local.device

    @property
    def agents(self) -> Tensor:
        """``(n,)`` global ids of this rank's agents."""
        return self.layout.agents

    def extend(self, x: Optional[Tensor]) -> Optional[Tensor]:
        if x is None:
            return None
        self.bytes_sent += self.layout.send_index.numel() * (x.numel() // max(x.size(1), 1)) * x.element_size()
        return torch.cat([x, halo_exchange(x, self.layout, self.group)], 1)

    def reduce(self, y: Tensor) -> Tensor:
        n = self.num_nodes
        return y[:, :n] + _Return.apply(y[:, n:], self.layout, n, self.group)

    def __getattr__(self, name: str):
        # Graph attributes that would silently mean the local index space (followers, degrees, CSR)
        if name in ("rowptr", "col", "row", "weight", "in_weight", "followers", "in_degree", "out_degree",
                    "edge_index", "reverse", "permute"):
            raise ConfigError(f"Expected an op that lpm.kernels supports on a partitioned graph (got a read of "
                              f"Graph.{name}, which has no meaning across ranks)")
        raise AttributeError(name)

    def __repr__(self) -> str:
        return (f"PartitionedGraph(rank={self.layout.rank} of {self.layout.parts}, agents={self.num_nodes}, "
                f"halo={self.layout.halo.numel()}, edges={self.num_edges})")
