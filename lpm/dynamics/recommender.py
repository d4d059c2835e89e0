"""Recommender feeds: what each agent sees, in-network and out-of-network, and in what order.

A feed mixes posts of followees (in-network) with posts of accounts the agent does not follow
(out-of-network), with weight ``in_network`` on the former, as on X's "For you" timeline and
Reddit's front page. Rankers:

* ``"chronological"``: every seen post counts the same;
* ``"personalized"`` (alias ``"interest"``): posts close to the reader's own opinion are ranked up,
  ``w_ij = exp(-personalization * |x_i - x_j|)`` (engagement-optimising personalisation, Perra &
  Rocha 2019), applied both in- and out-of-network;
* ``"hot"``: posts by recently active accounts are ranked up, ``w_j = h_j / mean(h)`` with ``h``
  the Hawkes trace (engagement x recency, as in hot scores).

Out-of-network candidates are ``candidates`` random accounts per agent and step, hashed from
(step, agent) so they are the same in every scenario of a batch; the ranker then weights them.
Opinion and emotion updates are computed on the follower graph and on the candidate graph, and
mixed: ``x' = x + in_network (dx_in) + (1 - in_network) (dx_out)``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from lpm import kernels
from lpm.dynamics.base import positive, softplus, unit_interval
from lpm.errors import ConfigError
from lpm.graph import Graph, index_dtype_for
from lpm.rng import _mix, _signed, _mix_int

__all__ = ["Feed", "RANKERS"]

RANKERS = ("chronological", "personalized", "interest", "hot")
_CANDIDATE_KEY = 0x5851F42D4C957F2D


class Feed(nn.Module):
    """A feed model (see the module docstring).

    Args:
        in_network: share of the feed from followees, in (0, 1]; learnable (sigmoid) when < 1.
        ranker: ``"chronological"``, ``"personalized"`` / ``"interest"`` or ``"hot"``.
        personalization: strength ``gamma`` of the personalized ranker (> 0); learnable (softplus).
        candidates: out-of-network accounts considered per agent and step.
    """

    def __init__(self, in_network: float = 0.7, ranker: str = "chronological", *, personalization: float = 4.0,
                 candidates: int = 8) -> None:
        super().__init__()
        if ranker not in RANKERS:
            raise ConfigError(f"Expected a ranker in {RANKERS} (got {ranker!r})")
        if not 0 < in_network <= 1:
            raise ConfigError(f"Expected in_network in (0, 1] (got {in_network})")
        if not (isinstance(candidates, int) and candidates >= 1):
            raise ConfigError(f"Expected candidates >= 1 (got {candidates!r})")
        self.ranker = "personalized" if ranker == "interest" else ranker
        self.raw_in_network = unit_interval("in_network", in_network) if in_network < 1 else None
        self.raw_personalization = positive("personalization", personalization)
        self.candidates = candidates

    @property
    def in_network(self) -> Tensor | float:
        return torch.sigmoid(self.raw_in_network) if self.raw_in_network is not None else 1.0

    def ranker_kernel(self, extra: Optional[Tensor] = None) -> Optional[kernels.PairKernel]:
        """The pair kernel that reweights seen posts, or ``None``.

        ``extra`` ``(B, 1, 1)`` is added personalization from recommender-change interventions.
        """
        gamma = softplus(self.raw_personalization) if self.ranker == "personalized" else None
        if extra is not None:
            gamma = extra if gamma is None else gamma + extra
        return None if gamma is None else kernels.Personalization(gamma)

    def source_weight(self, seen: Optional[Tensor], activity: Tensor) -> Optional[Tensor]:
        """Per-author weights ``(B, N)``: what was posted, times the hot score for ``"hot"``."""
        if self.ranker != "hot":
            return seen
        hot = activity / activity.mean(1, keepdim=True).clamp_min(1e-12)
        return hot if seen is None else seen * hot

    def candidate_graph(self, num_nodes: int, t: int, device: torch.device) -> Optional[Graph]:
        """The out-of-network graph of step ``t``: each agent follows ``candidates`` random others."""
        if self.raw_in_network is None:
            return None
        r = self.candidates
        key = _signed(_mix_int(t * _CANDIDATE_KEY + 1))
        counter = torch.arange(num_nodes * r, device=device, dtype=torch.int64)
        bits = (_mix(counter * _signed(0x9E3779B97F4A7C15) + key) >> 1) & ((1 << 62) - 1)
        follower = torch.arange(num_nodes, device=device).repeat_interleave(r)
        # a uniform other account: follower + 1 + (bits mod (N - 1)), mod N, never the follower itself
        other = (follower + 1 + bits % max(num_nodes - 1, 1)) % num_nodes
        dtype = index_dtype_for(num_nodes * r)
        rowptr = (torch.arange(num_nodes + 1, device=device) * r).to(dtype)
        return Graph(num_nodes=num_nodes, rowptr=rowptr, col=other.to(dtype))

    def mix(self, base: Tensor, in_network: Tensor, out_of_network: Optional[Tensor]) -> Tensor:
        """``base + a (in - base) + (1 - a) (out - base)`` with ``a = in_network``."""
        if out_of_network is None:
            return in_network
        a = self.in_network
        return base + a * (in_network - base) + (1 - a) * (out_of_network - base)
