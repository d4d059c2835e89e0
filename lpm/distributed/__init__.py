"""One population larger than a device, split across ``torch.distributed`` ranks.

1. Partition the agents (:func:`partition`: METIS through the optional ``pymetis``, or label
   propagation for graphs too big for it) and build each rank's layout (:func:`rank_layout`: its
   agents, their CSR rows over local and halo ids, the halo send and receive maps).
2. On every rank: ``PartitionedGraph(layout)`` in place of the graph, :func:`local_state` and
   :func:`localize_model` for the rank's agents, then :func:`simulate_partitioned`. The hot ops of
   :mod:`lpm.kernels` exchange halo states with ``all_to_all_single`` (differentiable), draws are keyed
   by global agent id, so the ranks together compute the single-process trajectory.
3. For fits: build the loss from the (rank-summed) observables, ``backward``, then
   :func:`sync_gradients`.

:mod:`lpm.distributed.capacity` estimates devices, memory and per-step communication at scale.
"""

from .capacity import DEVICES, CapacityPlan, plan_capacity
from .halo import PartitionedGraph, halo_exchange
from .layout import RankLayout, rank_layout
from .partition import (METHODS, PartitionStats, block_partition, label_propagation_partition, metis_available,
                        metis_partition, partition, partition_stats)
from .rng import AgentRNG
from .run import (TOTALS, Total, all_reduce_sum, gather_agents, local_state, localize_model, simulate_partitioned,
                  sync_gradients)

__all__ = ["partition", "metis_partition", "label_propagation_partition", "block_partition", "partition_stats",
           "PartitionStats", "METHODS", "metis_available", "RankLayout", "rank_layout", "PartitionedGraph",
           "halo_exchange", "AgentRNG", "Total", "TOTALS", "local_state", "localize_model", "gather_agents",
           "simulate_partitioned", "sync_gradients", "all_reduce_sum", "plan_capacity", "CapacityPlan", "DEVICES"]
