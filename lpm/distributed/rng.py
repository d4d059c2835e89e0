"""Draws keyed by global agent id, so a rank of a partitioned population draws, for each of its
agents, exactly the numbers the single-process run draws for that agent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from lpm.errors import ConfigError
from lpm.rng import CounterRNG

__all__ = ["AgentRNG"]


@dataclass(frozen=True, eq=False)
class AgentRNG(CounterRNG):
    """A :class:`~lpm.rng.CounterRNG` for the agents ``agents`` of a population: a draw of shape
    ``(n, ...)`` (agents first, as every per-agent draw of lpm is) holds, in row ``k``, the single-process
    draw's row ``agents[k]``.

    Draws whose leading dimension is not the agents', and draws at explicit entries
    (:meth:`uniform_at`: the cascade's parents), have no per-agent meaning here and raise.

    Shapes:
        seeds: ``(B,)`` int64; agents: ``(n,)`` int64 global ids of the agents this rank holds.
    """

    agents: Tensor = None  # type: ignore[assignment]  # required; a default only because seeds has none

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.agents, Tensor) or self.agents.dim() != 1 or self.agents.dtype != torch.int64:
            found = f"{self.agents.dtype}, shape {tuple(self.agents.shape)}" if isinstance(self.agents, Tensor) \
                else type(self.agents).__name__
            raise ConfigError(f"Expected agents as a (n,) int64 tensor of global ids (got {found})")

    def _hash(self, step: int, stream: int, shape: Sequence[int]) -> Tensor:
        n = self.agents.numel()
        if len(shape) == 0 or int(shape[0]) != n:
            raise ConfigError(f"Expected per-agent draws of shape ({n}, ...) on a partitioned population "
                              f"(got shape {tuple(int(s) for s in shape)})")
        inner = 1
        for size in shape[1:]:
            inner *= int(size)
        index = self.agents.to(self.seeds.device)[:, None] * inner + torch.arange(inner, device=self.seeds.device)
        return self._hash_at(step, stream, index.reshape(-1)).reshape(self.seeds.numel(), *shape)

    def uniform_at(self, step, stream, shape, batch_index, flat_index):
        raise ConfigError("Expected per-agent draws on a partitioned population (got a draw at explicit "
                          "entries, as cascades make: not supported across ranks)")

    def select(self, index: int | slice | Tensor) -> "AgentRNG":
        if isinstance(index, int):
            index = slice(index, index + 1)
        return AgentRNG(self.seeds[index], self.agents)
