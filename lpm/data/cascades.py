"""Reshare cascades as one flat table, whether they come from real data or from a simulation.

Targets and metrics (:mod:`lpm.targets`) read only this table, so data and simulations are measured
by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence

import torch
from torch import Tensor

from lpm.errors import DataFormatError
from lpm.metrics.trees import forest_depths

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from lpm.state import PopulationState

__all__ = ["CascadeTable"]


@dataclass(frozen=True, eq=False)
class CascadeTable:
    """``M`` reshare cascades, one row per node (a unique user in a cascade), ``R`` rows in all.

    Rows are sorted by cascade, and within a cascade the root (the source post) comes first.

    Shapes:
        cascade: ``(R,)`` int64 cascade index in ``[0, M)``, non-decreasing.
        time_h: ``(R,)`` float64 hours since the source post (root rows 0, all >= 0).
        parent: ``(R,)`` int64 row index of the node's parent in this table (same cascade), ``-1``
            for roots.
        depth: ``(R,)`` int64 hops from the root (root 0).
        ids: ``M`` cascade identifiers (e.g. source tweet ids).
        labels: ``M`` labels (e.g. veracity) or ``None``.
    """

    cascade: Tensor
    time_h: Tensor
    parent: Tensor
    depth: Tensor
    ids: Sequence[str]
    labels: Optional[Sequence[str]] = None

    def __post_init__(self) -> None:
        r = self.cascade.numel()
        for name in ("time_h", "parent", "depth"):
            if getattr(self, name).shape != (r,):
                raise DataFormatError(f"Expected '{name}' of shape ({r},) (got {tuple(getattr(self, name).shape)})")
        if self.labels is not None and len(self.labels) != len(self.ids):
            raise DataFormatError(f"Expected {len(self.ids)} labels (got {len(self.labels)})")

    @property
    def num_cascades(self) -> int:
        return len(self.ids)

    @property
    def sizes(self) -> Tensor:
        """``(M,)`` nodes per cascade, root included."""
        return torch.bincount(self.cascade, minlength=self.num_cascades)

    @classmethod
    def from_state(
        cls,
        state: "PopulationState",
        start_h: Sequence[float] | Tensor,
        *,
        ids: Optional[Sequence[str]] = None,
    ) -> "CascadeTable":
        """The exact reshare trees recorded in a simulated state, one cascade per scenario and item.

        Cascade ``b * C + c`` is item ``c`` in scenario ``b``. Its nodes are the agents with
        ``reshared > 0.5`` and a finite ``reshare_time`` (the recorded, hard reshares), at
        ``time_h = reshare_time - start_h[c]``. Its root is the item's source: an agent with
        ``parent == -1`` and ``reshare_time == start_h[c]``. An item posted by several sources at
        once is rooted at its lowest-index source and its other sources hang off that root at depth
        1 (the table holds trees, not forests). A node whose recorded parent is not itself a node
        (possible when a relaxed estimator left the parent's reshare soft) is attached to the root.
        Rows within a cascade are ordered root first, then by time, then by agent index. A cascade
        whose item was never posted (``start_h`` after the run) has no rows. Computed on the
        state's device without a loop over cascades or agents; returned on the CPU.

        Args:
            state: a state with cascade fields recorded (``record_trees=True``).
            start_h: ``(C,)`` each item's posting time in hours (``Item.start_h``).
            ids: ``B * C`` cascade ids; default ``"b:c"``.

        Returns:
            The table, ``M = B * C`` cascades, ``labels=None``.

        Raises:
            DataFormatError: on mismatched ``start_h`` or ``ids``, a non-empty cascade without a
                source, a reshare before its item was posted, or cyclic parent pointers.

        Shapes:
            state.reshared, state.reshare_time, state.parent: ``(B, N, C)``.
        """
        batch, num_agents, items = state.reshared.shape
        device = state.reshared.device
        start = torch.as_tensor(start_h, dtype=state.reshare_time.dtype, device=device).reshape(-1)
        if start.numel() != items:
            raise DataFormatError(f"Expected 'start_h' with one time per item, {items} (got {start.numel()})")
        num_cascades = batch * items
        if ids is None:
            ids = [f"{b}:{c}" for b in range(batch) for c in range(items)]
        elif len(ids) != num_cascades:
            raise DataFormatError(f"Expected {num_cascades} cascade ids, B * C (got {len(ids)})")
        ids = [str(i) for i in ids]

        # (B, C, N) flattened to (B*C*N,): flat index k * N + agent for cascade k = b * C + c
        reshare_time = state.reshare_time.detach().transpose(1, 2).reshape(-1)
        parent_agent = state.parent.transpose(1, 2).reshape(-1)
        member = (state.reshared.detach().transpose(1, 2).reshape(-1) > 0.5) & torch.isfinite(reshare_time)
        flat = torch.nonzero(member).squeeze(1)
        cascade = torch.div(flat, num_agents, rounding_mode="floor")
        agent = flat - cascade * num_agents
        item_start = start[cascade % items]
        time = reshare_time[flat]
        if bool((time < item_start).any()):
            raise DataFormatError("Expected reshare times at or after their item's start_h (got earlier ones)")
        parent_agent = parent_agent[flat]
        is_source = (parent_agent < 0) & (time == item_start)
        # the root is the lowest-index source: agents come in increasing order within a cascade
        source_cascade = cascade[is_source]
        first_source = torch.ones_like(source_cascade, dtype=torch.bool)
        first_source[1:] = source_cascade[1:] != source_cascade[:-1]
        is_root = torch.zeros_like(is_source)
        is_root[torch.nonzero(is_source).squeeze(1)[first_source]] = True
        has_root = torch.zeros(num_cascades, dtype=torch.bool, device=device)
        has_root[cascade[is_root]] = True
        if not bool(has_root[cascade].all()):
            missing = int(cascade[~has_root[cascade]][0])
            raise DataFormatError(f"Expected a source (parent -1, reshare_time == start_h) in every non-empty "
                                  f"cascade (got none in cascade {missing}, scenario {missing // items}, item {missing % items})")

        time_h = time.to(torch.float64) - item_start.to(torch.float64)
        # rows: cascade-major, root first, then by time, then by agent (stable sorts, last key first)
        order = torch.sort(time_h, stable=True).indices
        order = order[torch.sort((~is_root[order]).to(torch.int8), stable=True).indices]
        order = order[torch.sort(cascade[order], stable=True).indices]
        cascade, agent, time_h, parent_agent = cascade[order], agent[order], time_h[order], parent_agent[order]
        is_root = is_root[order]
        rows = torch.arange(cascade.numel(), device=device)
        row_of = torch.full((num_cascades * num_agents,), -1, dtype=torch.int64, device=device)
        row_of[cascade * num_agents + agent] = rows
        root_row = torch.full((num_cascades,), -1, dtype=torch.int64, device=device)
        root_row[cascade[is_root]] = rows[is_root]
        parent = torch.where(parent_agent >= 0,
                             row_of[cascade * num_agents + parent_agent.clamp_min(0)],
                             torch.full_like(parent_agent, -1))
        # secondary sources and nodes whose parent is not in the table hang off the root
        parent = torch.where(is_root, torch.full_like(parent, -1),
                             torch.where(parent < 0, root_row[cascade], parent))
        depth, on_cycle = forest_depths(parent)
        if bool(on_cycle.any()):
            bad = int(cascade[on_cycle][0])
            raise DataFormatError(f"Expected acyclic parent pointers (got a cycle in cascade {bad}, scenario "
                                  f"{bad // items}, item {bad % items})")
        return cls(cascade.cpu(), time_h.cpu(), parent.cpu(), depth.cpu(), ids, None)

    def to_pandas(self) -> "pd.DataFrame":
        """One row per node: columns ``cascade``, ``id`` (the cascade's id), ``time_h``, ``parent``,
        ``depth``, and ``label`` when the table has labels."""
        import numpy as np
        import pandas as pd

        cascade = self.cascade.cpu().numpy()
        columns: dict[str, Any] = {"cascade": cascade, "id": np.asarray(list(self.ids), dtype=object)[cascade]}
        columns["time_h"] = self.time_h.cpu().numpy()
        columns["parent"] = self.parent.cpu().numpy()
        columns["depth"] = self.depth.cpu().numpy()
        if self.labels is not None:
            columns["label"] = np.asarray(list(self.labels), dtype=object)[cascade]
        return pd.DataFrame(columns)

    def __repr__(self) -> str:
        sizes = self.sizes
        parts = [f"cascades={self.num_cascades}", f"rows={self.cascade.numel()}"]
        if sizes.numel():
            parts.append(f"size median={int(sizes.median())} max={int(sizes.max())}")
        if self.depth.numel():
            parts.append(f"max depth={int(self.depth.max())}")
        if self.labels is not None:
            parts.append(f"labels={sorted(set(self.labels))}")
        return f"CascadeTable({', '.join(parts)})"

    @classmethod
    def concat(cls, tables: Sequence["CascadeTable"]) -> "CascadeTable":
        """The cascades of several tables, in order (ids must not repeat)."""
        if not tables:
            raise DataFormatError("Expected at least one table to concatenate (got none)")
        ids = [i for t in tables for i in t.ids]
        if len(set(ids)) != len(ids):
            raise DataFormatError(f"Expected distinct cascade ids across tables (got {len(ids) - len(set(ids))} repeats)")
        cascade_offset = row_offset = 0
        parts = []
        for t in tables:
            parent = torch.where(t.parent >= 0, t.parent + row_offset, t.parent)
            parts.append((t.cascade + cascade_offset, t.time_h, parent, t.depth))
            cascade_offset += t.num_cascades
            row_offset += t.cascade.numel()
        labels = None if any(t.labels is None for t in tables) else [lab for t in tables for lab in t.labels]
        return cls(*(torch.cat(column) for column in zip(*parts)), ids, labels)

    def select(self, index: Sequence[int] | Tensor) -> "CascadeTable":
        """The cascades at ``index`` (in that order), renumbered ``0..len(index)-1``."""
        index = torch.as_tensor(index, dtype=torch.int64)
        order = torch.full((self.num_cascades,), -1, dtype=torch.int64)
        order[index] = torch.arange(index.numel())
        keep = order[self.cascade] >= 0
        rows = torch.nonzero(keep).squeeze(1)
        new_cascade = order[self.cascade[rows]]
        # stable sort by new cascade index keeps the root-first order within each cascade
        perm = torch.sort(new_cascade, stable=True).indices
        rows = rows[perm]
        new_row = torch.full((self.cascade.numel(),), -1, dtype=torch.int64)
        new_row[rows] = torch.arange(rows.numel())
        parent = self.parent[rows]
        parent = torch.where(parent >= 0, new_row[parent.clamp_min(0)], parent)
        labels = None if self.labels is None else [self.labels[i] for i in index.tolist()]
        return CascadeTable(new_cascade[perm], self.time_h[rows], parent, self.depth[rows],
                            [self.ids[i] for i in index.tolist()], labels)
