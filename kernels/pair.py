"""Pairwise influence weights ``w(x_i, x_j)`` that an aggregation evaluates per edge.

A pair kernel is a small frozen description (not an arbitrary callable) so that a fused GPU kernel
can recognise it and compute the weight in registers; the plain-torch reference calls
:meth:`weight`. Receiver-side parameters may be per agent: they are gathered by the follower index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor

from .reference import gather_rows

__all__ = ["PairKernel", "SmoothBoundedConfidence", "AttractRepel", "Personalization", "Product"]

Param = Union[float, Tensor]


def _per_receiver(value: Param, row: Tensor) -> Param:
    """Gather a per-agent parameter of shape ``(B, N, 1)`` or ``(N, 1)`` to edges; pass scalars."""
    if isinstance(value, Tensor) and value.dim() == 3:
        return gather_rows(value, row)
    if isinstance(value, Tensor) and value.dim() == 2 and value.size(0) > 1:
        return value.index_select(0, row)
    return value


@dataclass(frozen=True)
class SmoothBoundedConfidence:
    """``w = sigmoid((eps_i - |x_j - x_i|) / tau)``: a smooth Hegselmann-Krause confidence set.

    Shapes:
        eps: scalar, ``(N, 1)`` or ``(B, N, 1)`` confidence bound of the receiver ``i``.
        tau: scalar temperature; ``tau -> 0`` recovers the hard indicator ``|x_j - x_i| < eps``.
    """

    eps: Param
    tau: Param

    def weight(self, distance: Tensor, row: Tensor) -> Tensor:
        eps = _per_receiver(self.eps, row)
        return torch.sigmoid((eps - distance) / self.tau)


@dataclass(frozen=True)
class AttractRepel:
    """``w = sigmoid((eps_i - d) / tau) - repulsion * sigmoid((d - rho) / tau)`` with ``d = |x_j - x_i|``.

    Biased assimilation: attraction to close opinions, repulsion (negative weight, the backfire
    effect) from opinions further than ``rho``; nothing in between.
    """

    eps: Param
    rho: Param
    tau: Param
    repulsion: Param

    def weight(self, distance: Tensor, row: Tensor) -> Tensor:
        eps = _per_receiver(self.eps, row)
        attract = torch.sigmoid((eps - distance) / self.tau)
        repel = torch.sigmoid((distance - self.rho) / self.tau)
        return attract - self.repulsion * repel


@dataclass(frozen=True)
class Personalization:
    """``w = exp(-gamma * |x_j - x_i|)``: a feed ranker that shows agreeable posts first.

    Engagement-optimising rankers favour content close to the reader's views; modelled as an
    exponential preference for close opinions (Perra & Rocha 2019, Sci. Rep. 9:7261). ``gamma = 0``
    is a chronological feed.
    """

    gamma: Param

    def weight(self, distance: Tensor, row: Tensor) -> Tensor:
        return torch.exp(-self.gamma * distance)


@dataclass(frozen=True)
class Product:
    """The product of two pair kernels of the same distance (e.g. a model's kernel and a ranker)."""

    first: "PairKernel"
    second: "PairKernel"

    def weight(self, distance: Tensor, row: Tensor) -> Tensor:
        return self.first.weight(distance, row) * self.second.weight(distance, row)


def combine(own: "PairKernel | None", ranker: "PairKernel | None") -> "PairKernel | None":
    """``own`` times ``ranker``, either of which may be absent."""
    if ranker is None:
        return own
    return ranker if own is None else Product(own, ranker)


PairKernel = Union[SmoothBoundedConfidence, AttractRepel, Personalization, Product]
