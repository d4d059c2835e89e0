"""Observables recorded by :func:`lpm.simulate`: functions ``(state, events) -> (B, ...)`` tensors.

Each is differentiable where its definition allows, and computed for every scenario of the batch.
Pass a mapping ``{name: function}`` as ``record``; :data:`DEFAULT` is the standard set.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor

from lpm.model import StepEvents
from lpm.state import PopulationState

__all__ = [
    "Observable",
    "opinion_mean",
    "opinion_var",
    "polarization",
    "emotion_mean",
    "negative_share",
    "posts",
    "activity_mean",
    "reshares",
    "exposed",
    "CASCADE",
    "DEFAULT",
]

Observable = Callable[[PopulationState, StepEvents], Tensor]


def opinion_mean(state: PopulationState, events: StepEvents) -> Tensor:
    """``(B, T)`` mean opinion per topic."""
    return state.opinion.mean(1)


def opinion_var(state: PopulationState, events: StepEvents) -> Tensor:
    """``(B, T)`` population variance of opinions per topic."""
    return state.opinion.var(1, unbiased=False)


def polarization(state: PopulationState, events: StepEvents) -> Tensor:
    """``(B,)`` mean absolute opinion difference ``E|x_i - x_j|`` over all ordered pairs, averaged over topics.

    In [0, 1] for opinions in [-1, 1]: 0 under consensus, 1 for two equal camps at -1 and +1
    (the Gini mean difference, computed in O(N log N) from sorted opinions).
    """
    x, _ = torch.sort(state.opinion, dim=1)
    n = x.size(1)
    rank = torch.arange(1, n + 1, device=x.device, dtype=x.dtype)
    coef = (2 * rank - n - 1)[None, :, None]
    return (2.0 / (n * n) * (coef * x).sum(1)).mean(-1)


def emotion_mean(state: PopulationState, events: StepEvents) -> Tensor:
    """``(B, E)`` mean emotion per dimension."""
    return state.emotion.mean(1)


def negative_share(state: PopulationState, events: StepEvents, margin: float = 0.1,
                   temperature: float = 0.02) -> Tensor:
    """``(B,)`` share of agents whose valence (emotion dimension 0) is clearly negative, below ``-margin``.

    Smoothed as ``mean(sigmoid((-valence - margin) / temperature))`` so it has a gradient: an
    agent at neutral valence counts ~0.7%, one at ``-margin - 0.1`` counts 99.3%.
    """
    return torch.sigmoid((-state.emotion[..., 0] - margin) / temperature).mean(1)


def posts(state: PopulationState, events: StepEvents) -> Tensor:
    """``(B,)`` posts in the step (zeros without an activity model)."""
    if events.posts is None:
        return state.activity.new_zeros(state.batch_size)
    return events.posts.sum(1)


def activity_mean(state: PopulationState, events: StepEvents) -> Tensor:
    """``(B,)`` mean Hawkes trace."""
    return state.activity.mean(1)


def reshares(state: PopulationState, events: StepEvents) -> Tensor:
    """``(B, C)`` agents who have reshared (or posted) each item: the cascade size."""
    return state.reshared.sum(1)


def exposed(state: PopulationState, events: StepEvents) -> Tensor:
    """``(B, C)`` agents the item has reached (at least one exposure while online): the reach."""
    return (state.exposures.detach() > 0).to(state.exposures.dtype).sum(1)


CASCADE: Mapping[str, Observable] = {"reshares": reshares, "exposed": exposed}

DEFAULT: Mapping[str, Observable] = {
    "opinion_mean": opinion_mean,
    "opinion_var": opinion_var,
    "polarization": polarization,
    "emotion_mean": emotion_mean,
    "negative_share": negative_share,
    "posts": posts,
}
