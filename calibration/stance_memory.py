"""Thread memory: a thread's later stances given its first replies (Dirichlet-multinomial posterior
mean), the replies it is fitted on, and its fit."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lpm.calibration.common import split_index
from lpm.calibration.stance_model import StanceConfig, VERACITIES
from lpm.dynamics.base import inverse_softplus, softplus
from lpm.errors import ConfigError, DataFormatError
from lpm.targets_series import STANCES, binned_counts, stance_kl


class ThreadMemory(nn.Module):
    """Forecast of a thread's later stance shares from the stances of its first replies.

    ``(c p + e) / (c + n)``: the posterior mean of a Dirichlet(``c p``) thread propensity after the
    thread's first ``n`` replies with stance counts ``e`` (module docstring).

    Args:
        concentration: ``c > 0``, replies' worth of weight on the population shares.
    """

    def __init__(self, concentration: float = 10.0) -> None:
        super().__init__()
        if not concentration > 0:
            raise ConfigError(f"Expected a positive thread concentration (got {concentration})")
        self.raw_concentration = nn.Parameter(torch.tensor(inverse_softplus(concentration), dtype=torch.float64))

    @property
    def concentration(self) -> Tensor:
        return softplus(self.raw_concentration)

    def forward(self, base: Tensor, early: Tensor) -> Tensor:
        """Per-thread shares of later replies.

        Args:
            base: population shares for each thread's veracity and bin (rows sum to 1).
            early: stance counts of each thread's first replies.

        Shapes:
            base: ``(T, K, 4)``; early: ``(T, 4)``; returns ``(T, K, 4)``.
        """
        if base.dim() != 3 or early.shape != (base.size(0), base.size(-1)):
            raise DataFormatError(f"Expected base (T, K, 4) and early (T, 4) (got {tuple(base.shape)} and {tuple(early.shape)})")
        c = self.concentration.to(base.dtype)
        early = early.to(base.dtype)
        return (c * base + early[:, None, :]) / (c + early.sum(-1))[:, None, None]


@dataclass(frozen=True, eq=False)
class ThreadReplies:
    """Annotated replies of one split's threads, per thread, split into each thread's first
    ``observe`` replies (in time order) and the later ones.

    Shapes:
        veracity: ``(T,)`` int64 index into :data:`VERACITIES`.
        early: ``(T, 4)`` stance counts of each thread's first ``observe`` replies.
        later: ``(T, K, 4)`` stance counts per bin of the replies after those.
        every: ``(T, K, 4)`` stance counts per bin of all its replies (``early`` binned + ``later``).
    """

    veracity: Tensor
    early: Tensor
    later: Tensor
    every: Tensor

    def __post_init__(self) -> None:
        t = self.veracity.numel()
        if self.early.shape != (t, len(STANCES)) or self.later.dim() != 3 or self.later.shape != self.every.shape \
                or self.later.size(0) != t:
            raise DataFormatError(f"Expected veracity (T,), early (T, 4), later and every (T, K, 4) (got "
                                  f"{tuple(self.veracity.shape)}, {tuple(self.early.shape)}, "
                                  f"{tuple(self.later.shape)}, {tuple(self.every.shape)})")

    def select(self, index: Tensor) -> "ThreadReplies":
        """The threads ``index`` (repeats allowed, as in a bootstrap resample)."""
        return ThreadReplies(self.veracity[index], self.early[index], self.later[index], self.every[index])

    def pooled(self, per_thread: Tensor) -> Tensor:
        """Sum ``(T, K, C)`` per-thread counts into ``(3, K, C)`` per veracity."""
        out = per_thread.new_zeros((len(VERACITIES),) + tuple(per_thread.shape[1:]))
        return out.index_add_(0, self.veracity, per_thread)


def thread_replies(posts, config: StanceConfig, split: str = "all") -> ThreadReplies:
    """Per-thread stance counts of the threads of ``split`` (see :class:`ThreadReplies`).

    Replies count as in :func:`observed_counts` (annotated, depth > 0, before the last bin edge);
    a thread's first ``config.observe_replies`` of them by delay are its early replies.

    Args:
        posts: a :class:`lpm.data.rumoureval.StancePosts`.
    """
    threads = [str(t) for t in posts.thread_ids]
    chosen_threads = torch.tensor(split_index(threads, split), dtype=torch.int64)
    local = torch.full((len(threads),), -1, dtype=torch.int64)
    local[chosen_threads] = torch.arange(chosen_threads.numel())
    delay_h = posts.delay_min.double() / 60.0
    chosen = (local[posts.thread] >= 0) & (posts.depth > 0) & (posts.stance >= 0) & (delay_h < config.edges_h[-1])
    thread, stance, delay_h = local[posts.thread[chosen]], posts.stance[chosen], delay_h[chosen]
    # rank of each reply within its thread by delay: sort by delay, then stably by thread
    by_time = torch.argsort(delay_h, stable=True)
    order = by_time[torch.argsort(thread[by_time], stable=True)]
    sorted_thread = thread[order]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel()) - torch.searchsorted(sorted_thread, sorted_thread)
    onehot = torch.nn.functional.one_hot(stance, len(STANCES)).double()
    count = chosen_threads.numel()
    early_mask = rank < int(config.observe_replies)
    early = torch.zeros(count, len(STANCES), dtype=torch.float64).index_add_(0, thread[early_mask], onehot[early_mask])
    every = binned_counts(delay_h, onehot, config.edges_h, groups=thread, num_groups=count)
    later = binned_counts(delay_h, onehot * (~early_mask).double()[:, None], config.edges_h, groups=thread,
                          num_groups=count)
    return ThreadReplies(posts.veracity[chosen_threads], early, later, every)


def fit_thread_memory(base: Tensor, replies: ThreadReplies, *, init: float = 10.0, max_iter: int = 100) -> float:
    """Fit the thread concentration ``c`` of :class:`ThreadMemory` to later replies given early ones.

    Minimises the count-weighted KL of the later replies from the forecast (the log score of each
    later reply, proper: its minimum is at the true posterior mean), by L-BFGS on ``softplus^-1(c)``.

    Args:
        base: population shares per thread and bin (the model's shares for each thread's veracity).
        replies: the training threads.

    Shapes:
        base: ``(T, K, 4)``.

    Returns:
        The fitted concentration.
    """
    if float(replies.later.sum()) == 0 or float(replies.early.sum()) == 0:
        raise DataFormatError(f"Expected early and later replies to fit the thread memory (got "
                              f"{int(replies.early.sum())} early, {int(replies.later.sum())} later)")
    memory = ThreadMemory(init)
    base = base.detach().double()
    optimiser = torch.optim.LBFGS([memory.raw_concentration], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimiser.zero_grad()
        loss = stance_kl(memory(base, replies.early), replies.later)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(memory.concentration.detach())
