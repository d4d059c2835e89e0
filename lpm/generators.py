"""Vectorised random follower-graph generators.

Every generator builds its edge list with whole-tensor operations on the CPU (no Python loop over
nodes or edges; at most a loop over a few resolution rounds or over blocks), draws all randomness
from its own ``torch.Generator`` seeded with the keyword ``seed`` (global RNG state is never read
or changed), validates its arguments at entry (raising :class:`lpm.errors.ConfigError`), and
returns a :class:`lpm.graph.Graph` built by :meth:`Graph.from_edge_index`, which removes self-loops
and merges duplicate edges. ``device=`` moves the finished graph.

Edge direction follows :mod:`lpm.graph`: an edge ``j -> i`` means *i follows j*. Generators of
undirected models return *mutual follows* (both ``j -> i`` and ``i -> j``) unless
``directed=True``; each documents what ``directed=True`` means for it.
"""

from __future__ import annotations

import numbers
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from lpm.errors import ConfigError
from lpm.graph import Graph, check_graph_size

__all__ = [
    "barabasi_albert",
    "holme_kim",
    "watts_strogatz",
    "stochastic_block_model",
    "sbm_homophily",
    "configuration_model",
    "directed_configuration_model",
]

DeviceLike = Union[torch.device, str, None]


# ---------------------------------------------------------------------------------------- helpers
def _check_int(name: str, value: object, minimum: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # int, numpy ints
        raise ConfigError(f"Expected {name} to be an int (got {type(value).__name__} {value!r})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"Expected {name} >= {minimum} (got {value})")
    return value


def _check_prob(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"Expected {name} to be a float in [0, 1] (got {type(value).__name__} {value!r})")
    value = float(value)
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ConfigError(f"Expected {name} in [0, 1] (got {value})")
    return value


def _check_size(name: str, num_nodes: int, num_edges: float) -> None:
    """Fail fast (ResourceError) when the generated graph could not fit in memory; the generator's
    own buffers (a few int64 per edge) are covered by doubling the edge count."""
    check_graph_size(num_nodes, int(2 * num_edges), f"a {name} graph")


def _rng(seed: object) -> torch.Generator:
    seed = _check_int("seed", seed)
    if not -(2**63) <= seed < 2**64:
        raise ConfigError(f"Expected a seed in [-2**63, 2**64) (got {seed})")
    return torch.Generator().manual_seed(seed)


def _uniform_below(high: Tensor, gen: torch.Generator) -> Tensor:
    """One uniform integer in ``[0, high[i])`` per entry of the int64 tensor ``high`` (all > 0)."""
    u = torch.rand(high.shape, dtype=torch.float64, generator=gen)
    return torch.minimum((u * high.to(torch.float64)).long(), high - 1)


def _finish(src: Tensor, dst: Tensor, num_nodes: int, directed: bool, device: DeviceLike) -> Graph:
    """Graph from ``src -> dst`` edges (both directions when not ``directed``), moved to ``device``."""
    if directed:
        edge_index = torch.stack([src, dst])
    else:
        edge_index = torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])
    graph = Graph.from_edge_index(edge_index, num_nodes)
    return graph.to(device) if device is not None else graph


# ------------------------------------------------------------------- preferential attachment
def _preferential_attachment(num_nodes: int, m: int, p_triad: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Edges ``(old, new)`` of linear preferential attachment, optionally with triad formation.

    Batagelj & Brandes (2005) copy-model formulation, parallelised. Nodes ``0..m`` form a clique;
    node ``t >= m+1`` creates ``m`` edges ``e`` with ``creator[e] = t``. Listing every edge as the
    two endpoint slots ``(creator[e], target[e])``, a node occurs in the slot list exactly as often
    as its degree, so a uniformly drawn slot among the ``2 * E_before(t)`` slots of edges created
    before ``t`` is a degree-proportional choice. An even slot is a creator (known in advance); an
    odd slot is the target of an earlier edge, i.e. a *pointer* to be resolved.

    Holme-Kim triad formation: each edge of ``t`` after its first is, with probability
    ``p_triad``, aimed at a random neighbour that the previous target ``w`` itself attached to:
    one of ``w``'s own ``m`` targets (again a pointer to an earlier edge), or for a clique node one
    of its clique neighbours.

    Every dependency points to a strictly earlier edge. Pointers are resolved by vectorised rounds
    of pointer jumping, over blocks of nodes of geometrically growing size taken oldest first: a
    pointer into an earlier (resolved) block resolves in one gather, so only the short dependency
    chains inside a block take further rounds (about 190 small rounds in all for ``N = 10**6,
    m = 5, p_triad = 0.9``; 34 for ``p_triad = 0``). The result does not depend on the blocking.

    Returns:
        ``(old, new)``: int64 ``(E,)`` tensors; ``new`` is the node that created the edge.
    """
    n0 = m + 1
    e0 = m * (m + 1) // 2
    num_new = num_nodes - n0
    num_edges = e0 + num_new * m

    clique = torch.triu_indices(n0, n0, offset=1)  # row < col
    creator = torch.empty(num_edges, dtype=torch.int64)
    target = torch.empty(num_edges, dtype=torch.int64)
    creator[:e0] = clique[1]
    target[:e0] = clique[0]
    if num_new == 0:
        return target, creator

    node_idx = torch.arange(num_new, dtype=torch.int64).repeat_interleave(m)  # index among new nodes
    creator[e0:] = node_idx + n0

    # One int64 reference per edge (plus a sentinel slot at index E):
    #   ref[e] < 0        resolved, target[e] = -ref[e] - 1;
    #   0 <= ref[e] < E   pointer: target[e] = target[ref[e]];
    #   ref[e] == E       triad edge waiting for target[e - 1].
    sentinel = num_edges
    ref = torch.empty(num_edges + 1, dtype=torch.int64)
    ref[:e0] = -target[:e0] - 1
    ref[sentinel] = sentinel

    # Preferential attachment: a uniform slot among the 2 * E_before(t) endpoint slots; an even
    # slot is the (known) creator of edge slot // 2, an odd slot its (pending) target.
    slot = _uniform_below(2 * (e0 + node_idx * m), gen)
    del node_idx
    slot_edge = slot >> 1
    ref[e0:sentinel] = torch.where((slot & 1).bool(), slot_edge, -creator[slot_edge] - 1)
    del slot, slot_edge

    triad_pick = None
    if p_triad > 0.0:
        j = torch.arange(m, dtype=torch.int64).repeat(num_new)
        triad = (j > 0) & (torch.rand(j.shape, dtype=torch.float64, generator=gen) < p_triad)
        del j
        triad_edges = torch.nonzero(triad).squeeze(1) + e0
        del triad
        ref[triad_edges] = sentinel
        triad_pick = torch.randint(0, m, (num_edges,), generator=gen, dtype=torch.int64)
        del triad_edges

    # Resolve node blocks of geometrically growing size, oldest first. Once every earlier block
    # is resolved, a pointer into one resolves in a single gather; only dependencies inside the
    # current block (a bounded share of the history) take further rounds.
    first = n0
    while first < num_nodes:
        last = min(num_nodes, first + max(_PA_BLOCK_MIN, int(first * _PA_BLOCK_GROWTH)))
        lo, hi = e0 + (first - n0) * m, e0 + (last - n0) * m
        _resolve_block(ref, lo, hi, sentinel, triad_pick, n0, e0, m)
        first = last
    target = -ref[:sentinel] - 1
    return target, creator


_PA_BLOCK_GROWTH = 0.5  # a block of nodes spans [first, first * 1.5)
_PA_BLOCK_MIN = 1 << 14


def _resolve_block(
    ref: Tensor, lo: int, hi: int, sentinel: int, triad_pick: Optional[Tensor], n0: int, e0: int, m: int
) -> None:
    """Resolve in place the references of edges ``lo..hi-1`` (whole nodes), all earlier resolved.

    Rounds of: triad edges whose previous edge is resolved become pointers (or are resolved
    directly for a clique node), then every pending pointer follows one hop: it copies a resolved
    target, jumps to its target's pointer (pointer doubling), or waits on an unready triad edge.
    """
    block = ref[lo:hi]
    pending = torch.nonzero((block >= 0) & (block < sentinel)).squeeze(1) + lo
    triad_ready = torch.zeros(0, dtype=torch.int64)
    if triad_pick is not None:
        triad = torch.nonzero(block == sentinel).squeeze(1) + lo
        triad_ready = triad[ref[triad - 1] < 0]
    while pending.numel() > 0 or triad_ready.numel() > 0:
        resolved_now = []
        if triad_ready.numel() > 0:
            # Triad edges whose previous edge (same node) is resolved to w.
            w = -ref[triad_ready - 1] - 1
            k = triad_pick[triad_ready]
            # A clique node w: one of its m clique neighbours (w + 1 + k) mod (m + 1), resolved.
            # A later node w: the target of its k-th own edge, an earlier edge (w < creator).
            in_clique = w < n0
            ref[triad_ready] = torch.where(in_clique, -torch.remainder(w + 1 + k, n0) - 1, e0 + (w - n0) * m + k)
            resolved_now.append(triad_ready[in_clique])
            pending = torch.cat([pending, triad_ready[~in_clique]])
        if pending.numel() > 0:
            p = ref[pending]
            q = ref[p]
            # Resolved target: copy it. Pointer: jump (pointer doubling). Waiting triad: stay.
            new = torch.where(q == sentinel, p, q)
            ref[pending] = new
            done = new < 0
            resolved_now.append(pending[done])
            pending = pending[~done]
        if triad_pick is not None:
            # Event-driven: a triad edge becomes ready when its previous edge resolves. Blocks end
            # at node boundaries, so `after` stays inside the block or hits a first (PA) edge.
            after = torch.cat(resolved_now) + 1
            after = after[after < hi]
            triad_ready = after[ref[after] == sentinel]


def _check_pa_args(num_nodes: object, m: object) -> tuple[int, int]:
    m = _check_int("m", m, 1)
    num_nodes = _check_int("num_nodes", num_nodes)
    if num_nodes <= m:
        raise ConfigError(f"Expected num_nodes > m = {m} (got num_nodes={num_nodes})")
    return num_nodes, m


def barabasi_albert(
    num_nodes: int, m: int, *, seed: int, directed: bool = False, device: DeviceLike = None
) -> Graph:
    """Barabasi-Albert scale-free graph by exact linear preferential attachment.

    Nodes ``0..m`` start as a clique; each later node ``t`` attaches ``m`` edges to earlier nodes
    chosen with probability proportional to their current degree (degrees counted over the edges
    created before ``t``), using the parallel Batagelj-Brandes copy model. Repeated choices of the
    same node collapse into one edge, so a node has between 1 and ``m`` attachments (the loss is
    small: a few percent of edges for small graphs, less as ``num_nodes`` grows). Node ids are
    ages: lower ids are older and, on average, better connected.

    Args:
        num_nodes: number of agents ``N > m``.
        m: edges created per new node, ``>= 1``.
        seed: seed of the generator's private RNG.
        directed: ``False`` (default) gives mutual follows. ``True`` keeps one edge per attachment,
            pointing from the old node to the new one (``old -> t``: the newcomer follows popular
            accounts, so information flows from old to new); clique edges point from lower id
            to higher id.
        device: where to put the finished graph (built on CPU).

    Raises:
        ConfigError: ``m < 1``, ``num_nodes <= m``, or a non-int seed.
    """
    num_nodes, m = _check_pa_args(num_nodes, m)
    _check_size("barabasi_albert", num_nodes, 2 * num_nodes * m)
    gen = _rng(seed)
    old, new = _preferential_attachment(num_nodes, m, 0.0, gen)
    return _finish(old, new, num_nodes, directed, device)


def holme_kim(
    num_nodes: int, m: int, p_triad: float, *, seed: int, directed: bool = False, device: DeviceLike = None
) -> Graph:
    """Holme-Kim scale-free graph with tunable clustering.

    As :func:`barabasi_albert`, but each edge of a new node after its first is, with probability
    ``p_triad``, a triad-formation edge: it goes to a random neighbour of the previous edge's
    target ``w``, namely one of the ``m`` nodes ``w`` itself attached to (for a clique node, one of
    its clique neighbours), closing a triangle. ``p_triad = 0`` is Barabasi-Albert; clustering
    grows with ``p_triad`` while the degree distribution stays heavy-tailed.

    Args:
        num_nodes: number of agents ``N > m``.
        m: edges created per new node, ``>= 1``.
        p_triad: probability in ``[0, 1]`` of a triad-formation step.
        seed: seed of the generator's private RNG.
        directed: as in :func:`barabasi_albert` (``old -> new`` when ``True``).
        device: where to put the finished graph.

    Raises:
        ConfigError: ``m < 1``, ``num_nodes <= m``, ``p_triad`` outside ``[0, 1]``.
    """
    num_nodes, m = _check_pa_args(num_nodes, m)
    p_triad = _check_prob("p_triad", p_triad)
    _check_size("holme_kim", num_nodes, 2 * num_nodes * m)
    gen = _rng(seed)
    old, new = _preferential_attachment(num_nodes, m, p_triad, gen)
    return _finish(old, new, num_nodes, directed, device)


# ----------------------------------------------------------------------------- small world
def watts_strogatz(
    num_nodes: int, k: int, p_rewire: float, *, seed: int, directed: bool = False, device: DeviceLike = None
) -> Graph:
    """Watts-Strogatz small world: a ring lattice with each lattice edge's far end rewired.

    Node ``i`` is joined to ``i + 1, ..., i + k/2`` (mod ``N``); each of these ``N k / 2`` lattice
    edges independently keeps ``i`` and, with probability ``p_rewire``, replaces its far end by a
    uniform node other than ``i``. Rewired edges that duplicate another are merged, so the edge
    count can fall slightly below ``N k / 2`` when ``p_rewire > 0``.

    Args:
        num_nodes: number of agents ``N > k``.
        k: lattice degree, even, ``2 <= k < N``.
        p_rewire: rewiring probability in ``[0, 1]``; ``0`` is the exact lattice.
        seed: seed of the generator's private RNG.
        directed: ``False`` gives mutual follows. ``True`` keeps one edge per lattice edge,
            ``far end -> i``: each agent follows its ``k/2`` (possibly rewired) successors.
        device: where to put the finished graph.

    Raises:
        ConfigError: odd ``k``, ``k < 2``, ``k >= num_nodes``, ``p_rewire`` outside ``[0, 1]``.
    """
    k = _check_int("k", k, 2)
    if k % 2 != 0:
        raise ConfigError(f"Expected an even k (got {k})")
    num_nodes = _check_int("num_nodes", num_nodes)
    if num_nodes <= k:
        raise ConfigError(f"Expected num_nodes > k = {k} (got num_nodes={num_nodes})")
    p_rewire = _check_prob("p_rewire", p_rewire)
    _check_size("watts_strogatz", num_nodes, num_nodes * k)
    gen = _rng(seed)

    half = k // 2
    near = torch.arange(num_nodes, dtype=torch.int64).repeat_interleave(half)
    offset = torch.arange(1, half + 1, dtype=torch.int64).repeat(num_nodes)
    far = torch.remainder(near + offset, num_nodes)
    if p_rewire > 0.0:
        rewire = torch.rand(far.shape, dtype=torch.float64, generator=gen) < p_rewire
        # Uniform over the N - 1 nodes other than `near`: draw in [0, N-1), skip over `near`.
        other = torch.randint(0, num_nodes - 1, far.shape, generator=gen, dtype=torch.int64)
        other = other + (other >= near).long()
        far = torch.where(rewire, other, far)
    return _finish(far, near, num_nodes, directed, device)


# --------------------------------------------------------------------------- block models
def _distinct_sample(population: int, count: int, gen: torch.Generator) -> Tensor:
    """A uniformly random ``count``-subset of ``range(population)`` (int64, in random order)."""
    if count == 0:
        return torch.zeros(0, dtype=torch.int64)
    if population <= 4 * count or population <= (1 << 20):
        return torch.randperm(population, generator=gen)[:count]
    # Sparse case: draw with replacement and keep values in order of first appearance; the first
    # `count` distinct values of an i.i.d. uniform sequence are a uniform random subset.
    draws = torch.zeros(0, dtype=torch.int64)
    while True:
        extra = count + count // 4 + 16
        draws = torch.cat([draws, torch.randint(0, population, (extra,), generator=gen, dtype=torch.int64)])
        values, inverse = torch.unique(draws, return_inverse=True)
        if values.numel() < count:
            continue
        position = torch.arange(draws.numel(), dtype=torch.int64)
        first = torch.full((values.numel(),), draws.numel(), dtype=torch.int64)
        first = first.scatter_reduce(0, inverse, position, reduce="amin")
        order = torch.argsort(first)[:count]
        return values[order]


def _triangular_pair(index: Tensor) -> tuple[Tensor, Tensor]:
    """Decode ``index`` in ``[0, n(n-1)/2)`` into the pair ``(i, j)`` with ``0 <= j < i``."""
    i = torch.floor((1.0 + torch.sqrt(1.0 + 8.0 * index.to(torch.float64))) / 2.0).long()
    # Correct float rounding by one step either way.
    i = torch.where(i * (i - 1) // 2 > index, i - 1, i)
    i = torch.where((i + 1) * i // 2 <= index, i + 1, i)
    return i, index - i * (i - 1) // 2


def _as_block_sizes(block_sizes: object) -> list[int]:
    if isinstance(block_sizes, Tensor):
        block_sizes = block_sizes.tolist()
    try:
        sizes = list(block_sizes)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"Expected block_sizes to be a sequence of ints (got {type(block_sizes).__name__})") from None
    if len(sizes) == 0:
        raise ConfigError("Expected at least one block (got block_sizes=[])")
    for b, size in enumerate(sizes):
        _check_int(f"block_sizes[{b}]", size, 1)
    return [int(s) for s in sizes]


def stochastic_block_model(
    block_sizes: Sequence[int],
    edge_probs: Union[Sequence[Sequence[float]], Tensor],
    *,
    seed: int,
    directed: bool = True,
    device: DeviceLike = None,
) -> Graph:
    """Stochastic block model, sampled sparsely (never materialises an ``N x N`` matrix).

    Nodes are numbered block by block (block 0 holds nodes ``0..block_sizes[0]-1``, and so on).
    For each block pair the number of edges is drawn from its exact Binomial law and that many
    distinct node pairs are drawn uniformly, so each possible edge is present independently with
    its block pair's probability. No self-loops.

    Args:
        block_sizes: ``(B,)`` positive block sizes.
        edge_probs: ``(B, B)`` probabilities in ``[0, 1]``. With ``directed=True`` (default)
            ``edge_probs[a][b]`` is the probability of each edge ``u -> v`` with ``u`` in block
            ``a`` and ``v`` in block ``b`` (``v`` follows ``u``). With ``directed=False`` it must
            be symmetric; each unordered pair gets a mutual follow with that probability.
        seed: seed of the generator's private RNG.
        directed: see ``edge_probs``.
        device: where to put the finished graph.

    Raises:
        ConfigError: empty or non-positive sizes, wrong ``edge_probs`` shape, probabilities
            outside ``[0, 1]``, an asymmetric matrix with ``directed=False``.
        GraphFormatError: no edge was drawn at all.
    """
    sizes = _as_block_sizes(block_sizes)
    num_blocks = len(sizes)
    try:
        probs = torch.as_tensor(edge_probs, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(f"Expected edge_probs to be a ({num_blocks}, {num_blocks}) matrix of floats ({err})") from None
    if probs.shape != (num_blocks, num_blocks):
        raise ConfigError(f"Expected edge_probs of shape ({num_blocks}, {num_blocks}) (got {tuple(probs.shape)})")
    if not bool(((probs >= 0) & (probs <= 1)).all()):
        bad = probs[~((probs >= 0) & (probs <= 1))][0].item()
        raise ConfigError(f"Expected edge_probs in [0, 1] (got {bad})")
    if not directed and not torch.equal(probs, probs.T):
        raise ConfigError("Expected a symmetric edge_probs when directed=False (got an asymmetric matrix)")
    sizes_t = torch.tensor(sizes, dtype=torch.float64)
    _check_size("stochastic_block_model", sum(sizes), 2 * float(sizes_t @ probs @ sizes_t))
    gen = _rng(seed)

    starts = [0]
    for size in sizes:
        starts.append(starts[-1] + size)
    num_nodes = starts[-1]
    srcs: list[Tensor] = []
    dsts: list[Tensor] = []
    for a in range(num_blocks):
        for b in range(num_blocks):
            p = float(probs[a, b])
            if p == 0.0 or (not directed and b > a):
                continue
            na, nb = sizes[a], sizes[b]
            if a == b:
                pairs = na * (na - 1) if directed else na * (na - 1) // 2
            else:
                pairs = na * nb
            if pairs == 0:
                continue
            count = int(torch.binomial(torch.tensor(float(pairs), dtype=torch.float64),
                                       torch.tensor(p, dtype=torch.float64), generator=gen))
            index = _distinct_sample(pairs, min(count, pairs), gen)
            if a != b:
                u = torch.div(index, nb, rounding_mode="floor")
                v = index - u * nb
            elif directed:
                u = torch.div(index, na - 1, rounding_mode="floor")
                v = index - u * (na - 1)
                v = v + (v >= u).long()  # skip the diagonal
            else:
                u, v = _triangular_pair(index)
            srcs.append(u + starts[a])
            dsts.append(v + starts[b])
    src = torch.cat(srcs) if srcs else torch.zeros(0, dtype=torch.int64)
    dst = torch.cat(dsts) if dsts else torch.zeros(0, dtype=torch.int64)
    return _finish(src, dst, num_nodes, directed, device)


def sbm_homophily(
    num_nodes: int,
    num_blocks: int,
    mean_degree: float,
    homophily: float,
    *,
    seed: int,
    directed: bool = True,
    device: DeviceLike = None,
) -> tuple[Graph, Tensor]:
    """A block model parameterised by mean degree and homophily.

    The ``N`` nodes are split into ``num_blocks`` contiguous blocks of sizes differing by at most
    one. Edge probabilities are set so that each agent has ``mean_degree`` followees in
    expectation, of which a share ``homophily`` lies in its own block. ``homophily = 1/num_blocks``
    (with equal blocks) is no homophily (an Erdos-Renyi graph); ``1`` means disconnected blocks;
    below ``1/num_blocks`` is heterophily.

    Args:
        num_nodes: number of agents, at least 2 per block.
        num_blocks: number of blocks ``B >= 1`` (``B = 1`` requires ``homophily = 1``).
        mean_degree: expected followees per agent, ``> 0``.
        homophily: expected share in ``[0, 1]`` of an agent's followees in its own block.
        seed: seed of the generator's private RNG.
        directed: ``True`` (default) draws each directed edge independently; ``False`` draws
            mutual follows (then ``mean_degree`` is the expected number of mutual neighbours).
        device: where to put the graph and the block vector.

    Returns:
        ``(graph, block)``: ``block`` is the ``(N,)`` int64 block of each agent.

    Raises:
        ConfigError: arguments out of range, or a ``mean_degree`` so high that an edge probability
            would exceed 1.
    """
    num_blocks = _check_int("num_blocks", num_blocks, 1)
    num_nodes = _check_int("num_nodes", num_nodes)
    if num_nodes < 2 * num_blocks:
        raise ConfigError(f"Expected num_nodes >= 2 * num_blocks = {2 * num_blocks} (got {num_nodes})")
    if isinstance(mean_degree, bool) or not isinstance(mean_degree, (int, float)) or not (mean_degree > 0):
        raise ConfigError(f"Expected mean_degree > 0 (got {mean_degree!r})")
    mean_degree = float(mean_degree)
    homophily = _check_prob("homophily", homophily)
    if num_blocks == 1 and homophily != 1.0:
        raise ConfigError(f"Expected homophily = 1 with num_blocks = 1 (got {homophily})")
    _check_size("sbm_homophily", num_nodes, 2 * num_nodes * mean_degree)

    sizes = [num_nodes // num_blocks + (1 if b < num_nodes % num_blocks else 0) for b in range(num_blocks)]
    probs = torch.empty(num_blocks, num_blocks, dtype=torch.float64)
    if directed:
        # Column b (followers in block b): own-block share and out-of-block share of mean_degree.
        for b, nb in enumerate(sizes):
            probs[:, b] = 0.0 if num_blocks == 1 else (1.0 - homophily) * mean_degree / (num_nodes - nb)
            probs[b, b] = homophily * mean_degree / (nb - 1)
    else:
        # Symmetric: use the mean block size (sizes differ by at most one).
        n = num_nodes / num_blocks
        p_out = 0.0 if num_blocks == 1 else (1.0 - homophily) * mean_degree / (num_nodes - n)
        probs.fill_(p_out)
        probs.fill_diagonal_(homophily * mean_degree / (n - 1))
    if float(probs.max()) > 1.0:
        raise ConfigError(
            f"Expected mean_degree small enough for edge probabilities <= 1 "
            f"(got mean_degree={mean_degree}, max probability {float(probs.max()):.3g})"
        )
    graph = stochastic_block_model(sizes, probs, seed=seed, directed=directed, device=device)
    block = torch.repeat_interleave(torch.arange(num_blocks, dtype=torch.int64), torch.tensor(sizes))
    return graph, (block.to(device) if device is not None else block)


# -------------------------------------------------------------------------- configuration
def _as_degrees(name: str, degrees: object) -> Tensor:
    try:
        deg = torch.as_tensor(degrees)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(f"Expected {name} to be a 1-D sequence of ints ({err})") from None
    if deg.dim() != 1 or deg.numel() == 0:
        raise ConfigError(f"Expected {name} to be a non-empty 1-D sequence (got shape {tuple(deg.shape)})")
    if deg.dtype.is_floating_point or deg.dtype == torch.bool or deg.is_complex():
        raise ConfigError(f"Expected {name} of integer type (got {deg.dtype})")
    deg = deg.to(torch.int64).cpu()
    if int(deg.min()) < 0:
        raise ConfigError(f"Expected {name} >= 0 (got minimum {int(deg.min())})")
    return deg


def configuration_model(degrees: Union[Sequence[int], Tensor], *, seed: int, device: DeviceLike = None) -> Graph:
    """Erased configuration model: an undirected graph with (about) the given degrees.

    Node ``i`` gets ``degrees[i]`` stubs; the stubs are shuffled and paired consecutively; then
    self-loops are dropped and multi-edges merged ("erased"), so realised degrees can fall slightly
    below the requested ones (mostly for hubs). Edges are mutual follows.

    Args:
        degrees: ``(N,)`` non-negative ints with an even, positive sum.
        seed: seed of the generator's private RNG.
        device: where to put the finished graph.

    Raises:
        ConfigError: negative or non-integer degrees, odd or zero sum.
    """
    deg = _as_degrees("degrees", degrees)
    total = int(deg.sum())
    if total == 0 or total % 2 != 0:
        raise ConfigError(f"Expected degrees with an even, positive sum (got sum {total})")
    gen = _rng(seed)
    stubs = torch.repeat_interleave(torch.arange(deg.numel(), dtype=torch.int64), deg)
    stubs = stubs[torch.randperm(total, generator=gen)].view(-1, 2)
    return _finish(stubs[:, 0], stubs[:, 1], deg.numel(), False, device)


def directed_configuration_model(
    in_degrees: Union[Sequence[int], Tensor],
    out_degrees: Union[Sequence[int], Tensor],
    *,
    seed: int,
    device: DeviceLike = None,
) -> Graph:
    """Erased directed configuration model.

    ``in_degrees[i]`` is the number of accounts agent ``i`` follows (edges into ``i``, as
    :meth:`Graph.in_degree`), ``out_degrees[i]`` its number of followers. Out-stubs are paired with
    a random permutation of in-stubs; self-loops are dropped and multi-edges merged.

    Args:
        in_degrees: ``(N,)`` non-negative ints.
        out_degrees: ``(N,)`` non-negative ints with the same positive sum.
        seed: seed of the generator's private RNG.
        device: where to put the finished graph.

    Raises:
        ConfigError: lengths differ, negative degrees, sums differ or are zero.
    """
    din = _as_degrees("in_degrees", in_degrees)
    dout = _as_degrees("out_degrees", out_degrees)
    if din.numel() != dout.numel():
        raise ConfigError(
            f"Expected in_degrees and out_degrees of the same length (got {din.numel()} and {dout.numel()})"
        )
    total_in, total_out = int(din.sum()), int(dout.sum())
    if total_in != total_out:
        raise ConfigError(f"Expected sum(in_degrees) == sum(out_degrees) (got {total_in} and {total_out})")
    if total_in == 0:
        raise ConfigError("Expected a positive degree sum (got 0)")
    gen = _rng(seed)
    nodes = torch.arange(din.numel(), dtype=torch.int64)
    src = torch.repeat_interleave(nodes, dout)
    dst = torch.repeat_interleave(nodes, din)[torch.randperm(total_in, generator=gen)]
    return _finish(src, dst, din.numel(), True, device)

