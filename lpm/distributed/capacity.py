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

# Bytes the default model (1 topic, 2 emotion dimensions, float32) holds, counted from its tensors:
# per agent and scenario the state (opinion, anchor, emotion, velocity, activity: 7 floats); per agent
# once the traits (4 floats, shared by the scenarios), the graph's rowptr and in_weight, the shock's
# drive (2 float64) and mask, and the rank's agent id; per edge the int32 column and the int64 row of
# the reference ops; per halo agent its id, CSR row and in_weight.
STATE_BYTES = {"agent_scenario": 28.0, "agent": 49.0, "edge": 12.0, "halo": 16.0}
# Measured (python -m lpm.bench.distributed memory; docs/concepts/distributed.md): peak memory of one
# step above what the run holds, per agent and per edge and scenario ("step": the plain-torch reference
# materialises per-edge temporaries, fused kernels would not), and what backward keeps per step
# ("backward", per agent and edge, scenario and kept step).
BYTES_PER_AGENT = {"step": 12.0, "backward": 101.0}
BYTES_PER_EDGE = {"step": 28.0, "backward": 29.0}
#: Floats per halo agent and step the default model exchanges (activity 1, opinion 1, emotion 2 and the
#: posts gate twice: counted by PartitionedGraph.bytes_sent); a fit sends as many back in backward.
HALO_FLOATS_PER_STEP = 6
#: Halo fraction (halo states received by all ranks together / N) of METIS partitions of the default
#: scenario's Holme-Kim graph (m = 5, p_triad = 0.3) of 10^6 agents, by number of parts (measured with
#: python -m lpm.bench.distributed halo; docs/concepts/distributed.md).
HALO_FRACTION = {2: 0.90, 4: 2.05, 8: 3.17, 16: 4.07, 32: 4.79, 64: 5.31}


def halo_fraction(parts: int, edges_per_agent: float = 10.0) -> float:
    """The measured halo fraction at ``parts``, interpolated (and extrapolated past the largest
    measured count) linearly in ``log2(parts)``, and never above what is possible: a rank's halo is at
    most the other ranks' agents and at most its own edges (``min(parts - 1, edges_per_agent)``); 0 for
    one part."""
    if parts <= 1:
        return 0.0
    return min(_interpolated(parts), parts - 1.0, edges_per_agent)


def _interpolated(parts: int) -> float:
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
    """One device's estimate for ``agents`` owned agents, ``edges`` edges and ``halo`` halo agents."""
    per_agent = STATE_BYTES["agent"] + scenarios * (STATE_BYTES["agent_scenario"] + BYTES_PER_AGENT["step"])
    per_edge = STATE_BYTES["edge"] + scenarios * BYTES_PER_EDGE["step"]
    if fit:
        per_agent += scenarios * steps_kept * BYTES_PER_AGENT["backward"]
        per_edge += scenarios * steps_kept * BYTES_PER_EDGE["backward"]
    # halo agents: their ids and empty CSR rows, and their columns in the extended tensors an op reads
    per_halo = STATE_BYTES["halo"] + scenarios * 4.0 * HALO_FLOATS_PER_STEP
    return (agents * per_agent + edges * per_edge + halo * per_halo) / 1e9


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
        h = halo_fraction(count, edges_per_agent)
        need = _memory_gb(n / count, e / count, h * n / count, scenarios, fit, steps_kept)
        if need <= budget:
            break
        count = count + 1 if count < spec.per_node else math.ceil(count / spec.per_node + 1) * spec.per_node
        if count > 1_000_000:
            raise ConfigError(f"Expected a population that fits on at most 10^6 devices (got {agents:g} agents)")
    h = halo_fraction(count, edges_per_agent)
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
        f"the default model's state ({STATE_BYTES}, bytes) and a step's peak per scenario, measured with the "
        f"plain-torch reference ops (per agent {BYTES_PER_AGENT}, per edge {BYTES_PER_EDGE}); fused kernels "
        "would need little beyond the state",
        f"halo fraction {h:.2f} at {count} parts: measured METIS partitions of a 10^6-agent Holme-Kim graph, "
        "assumed to hold at this size (extrapolated in log2(parts) past 64)",
        f"{HALO_FLOATS_PER_STEP} float32 per halo agent per step and scenario" + (", as many back in backward" if fit else ""),
    )
    return CapacityPlan(agents=int(n), edges=int(e), scenarios=scenarios, device=device, fit=fit, devices=count,
                        memory_per_device_gb=_memory_gb(n / count, e / count, h * n / count, scenarios, fit,
                                                        steps_kept),
                        halo_fraction=h, comm_per_step_gb=total / 1e9, comm_per_device_gb=per_device / 1e9,
                        comm_ms=comm_ms, assumptions=assumptions)
