"""How many devices a population needs, and how much each step sends between them.

The estimate combines three kinds of numbers, each stated where it is defined:

* measured on lpm (this repository, ``docs/distributed.md`` says how): bytes per agent and per edge of
  the default model's state and graph, and of a step's temporaries; the halo fraction of a partition
  of a 10^6-agent Holme-Kim graph at 2-64 parts; the floats each halo agent sends per step;
* vendor figures for the devices (:data:`DEVICES`, sources in the comments);
* assumptions (:class:`CapacityPlan` lists them): 90% of device memory usable, the halo fraction
  measured at 10^6 agents holds at 10^8-10^9 for the same number of parts (graphs with the same
  degree distribution and clustering), one partition per device, 8 devices per node, halo traffic
  between nodes limited by one 400 Gb/s NIC per device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lpm.errors import ConfigError

__all__ = ["Device", "DEVICES", "CapacityPlan", "plan_capacity", "HALO_FRACTION", "halo_fraction",
           "BYTES_PER_AGENT", "BYTES_PER_EDGE", "HALO_FLOATS_PER_STEP"]


@dataclass(frozen=True)
class Device:
    """A device's memory and links.

    Attributes:
        memory_gb: device memory (GB, 10^9 bytes).
        hbm_tb_s: memory bandwidth (TB/s).
        nvlink_gb_s: NVLink bandwidth per direction between devices of one node (GB/s).
        network_gb_s: network bandwidth per direction per device between nodes (GB/s).
        per_node: devices per node.
    """

    name: str
    memory_gb: float
    hbm_tb_s: float
    nvlink_gb_s: float
    network_gb_s: float
    per_node: int = 8


# NVIDIA H100 and H200 product pages (nvidia.com/en-us/data-center/h100/, .../h200/): H100 SXM 80 GB
# HBM3 at 3.35 TB/s, H200 SXM 141 GB HBM3e at 4.8 TB/s, both NVLink 4 at 900 GB/s (both directions
# together, so 450 GB/s each way). Between nodes: DGX H100/H200 user guides, one ConnectX-7 400 Gb/s
# InfiniBand port per GPU (50 GB/s each way).
DEVICES: dict[str, Device] = {
    "h100": Device("H100 SXM 80GB", 80.0, 3.35, 450.0, 50.0),
    "h200": Device("H200 SXM 141GB", 141.0, 4.8, 450.0, 50.0),
}

# Measured on this repository (docs/distributed.md, "Capacity"): the default model (1 topic, 2 emotion
# dimensions, float32, one scenario). "state": what a run holds per agent (state, anchor, velocity,
# traits, the graph's per-agent arrays) and per edge (int32 column, int64 row of the reference path);
# "step": the peak of one step above that (the plain-torch reference materialises per-edge
# temporaries); "backward": per step kept for the backward pass of a fit (no checkpointing).
BYTES_PER_AGENT = {"state": 76.0, "step": 120.0, "backward": 150.0}
BYTES_PER_EDGE = {"state": 12.0, "step": 60.0, "backward": 80.0}
#: Floats per halo agent and step the default model exchanges (activity 1, opinion 1, emotion 2 and the
#: posts gate twice: counted by PartitionedGraph.bytes_sent); a fit sends as many back in backward.
HALO_FLOATS_PER_STEP = 6
#: Halo fraction (halo states received by all ranks together / N) of METIS partitions of a Holme-Kim
#: graph (m = 5, p_triad = 0.3) of 10^6 agents, by number of parts (measured; docs/distributed.md).
HALO_FRACTION = {2: 0.30, 4: 0.55, 8: 0.80, 16: 1.05, 32: 1.3, 64: 1.6}


def halo_fraction(parts: int) -> float:
    """The measured halo fraction at ``parts``, interpolated (and extrapolated past the largest
    measured count) linearly in ``log2(parts)``; 0 for one part."""
    if parts <= 1:
        return 0.0
    known = sorted(HALO_FRACTION)
    x = math.log2(parts)
    if parts in HALO_FRACTION:
        return HALO_FRACTION[parts]
    lo = max([p for p in known if p < parts], default=known[0])
    hi = min([p for p in known if p > parts], default=known[-1])
    if lo == hi:  # beyond the measured range: continue the last segment's slope
        lo, hi = known[-2], known[-1]
    slope = (HALO_FRACTION[hi] - HALO_FRACTION[lo]) / (math.log2(hi) - math.log2(lo))
    return max(0.0, HALO_FRACTION[lo] + slope * (x - math.log2(lo)))


@dataclass(frozen=True)
class CapacityPlan:
    """An estimate of what one partitioned population needs.

    Attributes:
        agents, edges, scenarios: the population (edges: follow edges), scenarios per batch.
        device: the device type.
        fit: whether a fit (backward through ``steps_kept`` steps) is planned, else forward runs.
        devices: devices needed (a multiple of one when below a node, else of whole nodes).
        memory_per_device_gb: the estimate per device at that count.
        halo_fraction: halo states per step over ``agents`` at that count.
        comm_per_step_gb: bytes all devices send per step together (GB), forward (and backward).
        comm_per_device_gb: the largest per device.
        comm_ms: time of one step's exchange on the slowest link it crosses (NVLink inside a node,
            the network between nodes), bandwidth-bound, no overlap with compute.
        assumptions: what the numbers rest on.
    """

    agents: int
    edges: int
    scenarios: int
    device: str
    fit: bool
    devices: int
    memory_per_device_gb: float
    halo_fraction: float
    comm_per_step_gb: float
    comm_per_device_gb: float
    comm_ms: float
    assumptions: tuple[str, ...]


def _memory_gb(agents: float, edges: float, halo: float, scenarios: int, fit: bool, steps_kept: int) -> float:
    per_agent = BYTES_PER_AGENT["state"] + scenarios * BYTES_PER_AGENT["step"]
    per_edge = BYTES_PER_EDGE["state"] + scenarios * BYTES_PER_EDGE["step"]
    if fit:
        per_agent += scenarios * steps_kept * BYTES_PER_AGENT["backward"]
        per_edge += scenarios * steps_kept * BYTES_PER_EDGE["backward"]
    # halo agents are extra columns of the local state tensors the ops read
    return (agents * per_agent + edges * per_edge + halo * scenarios * 4.0 * HALO_FLOATS_PER_STEP) / 1e9


def plan_capacity(agents: float, device: str = "h200", *, edges_per_agent: float = 10.0, scenarios: int = 1,
                  fit: bool = False, steps_kept: int = 1, usable: float = 0.9) -> CapacityPlan:
    """Devices, memory and per-step communication for ``agents`` agents on ``device``.

    Args:
        agents: population size (e.g. ``1e8``).
        device: a key of :data:`DEVICES` (``"h100"``, ``"h200"``).
        edges_per_agent: follow edges per agent (10 for the default scenario's Holme-Kim graph, m = 5
            in both directions).
        scenarios: scenarios per batch (each adds state, temporaries and halo traffic).
        fit: plan for gradients (backward keeps ``steps_kept`` steps, i.e. checkpointing every that many).
        steps_kept: steps between gradient checkpoints in a fit.
        usable: share of device memory the estimate may fill.

    Raises:
        ConfigError: an unknown device or a non-positive size.
    """
    if device not in DEVICES:
        raise ConfigError(f"Expected a device among {sorted(DEVICES)} (got {device!r})")
    if not (agents >= 1 and edges_per_agent >= 0 and scenarios >= 1 and steps_kept >= 1 and 0 < usable <= 1):
        raise ConfigError(f"Expected agents >= 1, edges_per_agent >= 0, scenarios >= 1, steps_kept >= 1 and "
                          f"0 < usable <= 1 (got {agents}, {edges_per_agent}, {scenarios}, {steps_kept}, {usable})")
    spec = DEVICES[device]
    n, e = float(agents), float(agents) * edges_per_agent
    budget = spec.memory_gb * usable
    count = 1
    while True:
        h = halo_fraction(count)
        need = _memory_gb(n / count, e / count, h * n / count, scenarios, fit, steps_kept)
        if need <= budget:
            break
        count = count + 1 if count < spec.per_node else math.ceil(count / spec.per_node + 1) * spec.per_node
        if count > 1_000_000:
            raise ConfigError(f"Expected a population that fits on at most 10^6 devices (got {agents:g} agents)")
    h = halo_fraction(count)
    bytes_per_halo = 4.0 * HALO_FLOATS_PER_STEP * scenarios * (2 if fit else 1)
    total = h * n * bytes_per_halo
    per_device = total / count
    if count <= 1:
        link = math.inf
    elif count <= spec.per_node:
        link = spec.nvlink_gb_s
    else:
        link = spec.network_gb_s
    # between nodes only the share of a device's halo owned by other nodes crosses the network
    remote = 1.0 if count <= spec.per_node else (count - spec.per_node) / (count - 1)
    comm_ms = 0.0 if count <= 1 else per_device * remote / (link * 1e9) * 1e3
    assumptions = (
        f"{spec.name}: {spec.memory_gb:g} GB, {usable:.0%} usable; NVLink {spec.nvlink_gb_s:g} GB/s and network "
        f"{spec.network_gb_s:g} GB/s per device and direction; {spec.per_node} devices per node",
        f"bytes per agent {BYTES_PER_AGENT} and per edge {BYTES_PER_EDGE} measured on the default model "
        "(plain-torch reference ops; fused kernels need only the 'state' part)",
        f"halo fraction {h:.2f} at {count} parts: measured METIS partitions of a 10^6-agent Holme-Kim graph, "
        "assumed to hold at this size (extrapolated in log2(parts) past 64)",
        f"{HALO_FLOATS_PER_STEP} float32 per halo agent per step and scenario" + (", as many back in backward" if fit else ""),
    )
    return CapacityPlan(agents=int(n), edges=int(e), scenarios=scenarios, device=device, fit=fit, devices=count,
                        memory_per_device_gb=_memory_gb(n / count, e / count, h * n / count, scenarios, fit,
                                                        steps_kept),
                        halo_fraction=h, comm_per_step_gb=total / 1e9, comm_per_device_gb=per_device / 1e9,
                        comm_ms=comm_ms, assumptions=assumptions)
