"""Opinions, networks and sentiment: polarization, bimodality, echo chambers (see :mod:`lpm.metrics`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lpm import kernels
from lpm.errors import ConfigError
from lpm.graph import Graph

__all__ = ["polarization_variance", "bimodality_coefficient", "between_group_distance", "echo_chamber_index", "friendship_paradox", "sentiment_shares"]


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
