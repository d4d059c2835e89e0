"""CascadeTable: from_state against hand-computed tables and a Python-loop reference, pointer-jumping
depths, to_pandas and repr."""

from __future__ import annotations

import math

import pytest
import torch

import lpm
from lpm import relax
from lpm.data import CascadeTable
from lpm.metrics import forest_depths
from lpm.dynamics import Cascade, Item, init_cascade_state
from lpm.errors import DataFormatError
from tests.helpers import make_state

INF = math.inf


def reference_from_state(state, start_h) -> CascadeTable:
    """from_state's rule written out with Python loops over scenarios, items and agents."""
    batch, num_agents, items = state.reshared.shape
    cascade, time_h, parent, depth = [], [], [], []
    for b in range(batch):
        for c in range(items):
            members = [a for a in range(num_agents)
                       if float(state.reshared[b, a, c]) > 0.5 and math.isfinite(float(state.reshare_time[b, a, c]))]
            if not members:
                continue
            start = float(torch.tensor(start_h[c], dtype=state.reshare_time.dtype))
            sources = [a for a in members if int(state.parent[b, a, c]) < 0 and float(state.reshare_time[b, a, c]) == start]
            root = min(sources)
            rest = sorted((a for a in members if a != root), key=lambda a: (float(state.reshare_time[b, a, c]), a))
            order = [root] + rest
            offset = len(cascade)
            row = {a: offset + i for i, a in enumerate(order)}
            for a in order:
                p = int(state.parent[b, a, c])
                cascade.append(b * items + c)
                time_h.append(float(state.reshare_time[b, a, c]) - start)
                parent.append(-1 if a == root else row.get(p, offset))
            for i in range(offset, len(cascade)):
                d, j = 0, i
                while parent[j] >= 0:
                    d, j = d + 1, parent[j]
                depth.append(d)
    ids = [f"{b}:{c}" for b in range(batch) for c in range(items)]
    return CascadeTable(torch.tensor(cascade, dtype=torch.int64), torch.tensor(time_h, dtype=torch.float64),
                        torch.tensor(parent, dtype=torch.int64), torch.tensor(depth, dtype=torch.int64), ids)


def assert_tables_equal(a: CascadeTable, b: CascadeTable) -> None:
    assert list(a.ids) == list(b.ids)
    assert torch.equal(a.cascade, b.cascade)
    assert torch.allclose(a.time_h, b.time_h, rtol=0, atol=1e-6)
    assert torch.equal(a.parent, b.parent)
    assert torch.equal(a.depth, b.depth)


def hand_state(device="cpu"):
    """Two scenarios, six agents, two items (item 1 posted at 1.5 h by agents 4 and 1 together)."""
    state = init_cascade_state(make_state(6, batch=2, device=device), 2)
    reshared = torch.zeros(2, 6, 2, dtype=torch.float64)
    time = torch.full((2, 6, 2), INF, dtype=torch.float64)
    parent = torch.full((2, 6, 2), -1, dtype=torch.int64)

    def put(b, a, c, t, p=-1, r=1.0):
        reshared[b, a, c], time[b, a, c], parent[b, a, c] = r, t, p

    put(0, 2, 0, 0.0)         # source of item 0
    put(0, 0, 0, 1.0, 2)
    put(0, 5, 0, 1.0, 2)
    put(0, 3, 0, 2.0, 0)
    reshared[0, 1, 0] = 0.3   # a soft, unrecorded reshare: not a node
    put(0, 4, 1, 1.5)         # item 1 has two sources; the lower index (agent 1) becomes the root
    put(0, 1, 1, 1.5)
    put(0, 0, 1, 2.5, 4)
    put(1, 2, 0, 0.0)
    put(1, 3, 0, 3.0, 1)      # its parent (agent 1) never reshared: attached to the root
    # scenario 1, item 1: nobody, an empty cascade
    return state.replace(reshared=reshared.to(device), reshare_time=time.to(device), parent=parent.to(device))


def test_from_state_matches_hand_computed_table(device):
    table = CascadeTable.from_state(hand_state(device), [0.0, 1.5])
    assert table.cascade.device.type == "cpu"
    assert list(table.ids) == ["0:0", "0:1", "1:0", "1:1"]
    assert table.labels is None
    assert table.cascade.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2]
    assert table.time_h.tolist() == [0.0, 1.0, 1.0, 2.0, 0.0, 0.0, 1.0, 0.0, 3.0]
    assert table.parent.tolist() == [-1, 0, 0, 1, -1, 4, 5, -1, 7]
    assert table.depth.tolist() == [0, 1, 1, 2, 0, 1, 2, 0, 1]
    assert table.sizes.tolist() == [4, 3, 2, 0]
    assert table.time_h.dtype == torch.float64 and table.parent.dtype == torch.int64
    assert_tables_equal(table, reference_from_state(hand_state(), [0.0, 1.5]))


def test_from_state_takes_ids_and_tensor_start_times():
    table = CascadeTable.from_state(hand_state(), torch.tensor([0.0, 1.5]), ids=["a", "b", "c", "d"])
    assert list(table.ids) == ["a", "b", "c", "d"]
    assert table.time_h.tolist()[4:7] == [0.0, 0.0, 1.0]


def test_from_state_rejects_bad_inputs():
    state = hand_state()
    with pytest.raises(DataFormatError, match="start_h"):
        CascadeTable.from_state(state, [0.0])
    with pytest.raises(DataFormatError, match="ids"):
        CascadeTable.from_state(state, [0.0, 1.5], ids=["a"])
    with pytest.raises(DataFormatError, match="source"):  # item 1 claimed to start later: no source
        CascadeTable.from_state(state, [0.0, 1.0])
    with pytest.raises(DataFormatError, match="after"):
        CascadeTable.from_state(state, [0.5, 1.5])
    parent = state.parent.clone()
    parent[0, 0, 0], parent[0, 3, 0] = 3, 0  # 0 <- 3 <- 0
    with pytest.raises(DataFormatError, match="acyclic"):
        CascadeTable.from_state(state.replace(parent=parent), [0.0, 1.5])


def random_forest_state(batch: int, agents: int, items: int, seed: int):
    """Random recorded trees: each (b, c) has 1-2 sources and members whose parents reshared earlier."""
    gen = torch.Generator().manual_seed(seed)
    state = init_cascade_state(make_state(agents, batch=batch, dtype=torch.float32), items)
    reshared = torch.zeros(batch, agents, items)
    time = torch.full((batch, agents, items), INF)
    parent = torch.full((batch, agents, items), -1, dtype=torch.int64)
    start_h = [float(c % 3) * 0.5 for c in range(items)]
    for b in range(batch):
        for c in range(items):
            perm = torch.randperm(agents, generator=gen).tolist()
            count = int(torch.randint(0, agents // 2, (1,), generator=gen))
            if count == 0:
                continue
            sources = perm[: 1 + int(torch.rand(1, generator=gen) < 0.2)]
            order = perm[:count] if count > len(sources) else sources
            steps = {}
            for k, a in enumerate(order):
                reshared[b, a, c] = 1.0
                if a in sources:
                    steps[a], time[b, a, c] = 0, start_h[c]
                    continue
                earlier = order[:k]
                p = earlier[int(torch.randint(0, len(earlier), (1,), generator=gen))]
                steps[a] = steps[p] + 1 + int(torch.randint(0, 3, (1,), generator=gen))
                time[b, a, c], parent[b, a, c] = start_h[c] + steps[a] / 6, p
    return state.replace(reshared=reshared, reshare_time=time, parent=parent), start_h


def test_from_state_matches_loop_reference_on_many_random_cascades():
    state, start_h = random_forest_state(batch=12, agents=40, items=20, seed=0)
    table = CascadeTable.from_state(state, start_h)
    assert table.num_cascades == 240
    assert_tables_equal(table, reference_from_state(state, start_h))


def test_from_state_matches_loop_reference_on_a_simulation():
    graph = lpm.Graph.barabasi_albert(200, 3, seed=0)
    items = [Item(source=0), Item(source=5, start_h=2.0), Item(source=(7, 3), start_h=1.0)]
    model = lpm.Model(cascade=Cascade(items, transmissibility=0.3), dt=1.0)
    state = lpm.PopulationState.sample(200, seed=0).expand_batch(3)
    with torch.no_grad():
        final = lpm.simulate(model, state, graph, steps=8, seed=1, estimator=relax.Hard(), record={}).final
    start_h = [it.start_h for it in items]
    table = CascadeTable.from_state(final, start_h)
    assert table.num_cascades == 9
    assert int(table.sizes.min()) >= 1 and int(table.sizes.max()) > 20  # transmissibility 0.3 on BA(m=3) spreads
    assert_tables_equal(table, reference_from_state(final, start_h))
    # item 2's second source hangs off the first at depth 1
    rows = table.cascade == 2
    assert (table.depth[rows] == 1).sum() >= 1 and table.time_h[rows][:2].tolist() == [0.0, 0.0]


def test_depths_by_pointer_jumping():
    parent = torch.tensor([-1, 0, 1, 2, 3, 0, -1, 6, 9, 8])  # a chain, a second root, a 2-cycle (8, 9)
    depth, on_cycle = forest_depths(parent)
    assert depth[:8].tolist() == [0, 1, 2, 3, 4, 1, 0, 1]
    assert on_cycle.tolist() == [False] * 8 + [True, True]
    chain = torch.arange(-1, 999)  # one path of 1000 nodes: log2 rounds suffice
    depth, on_cycle = forest_depths(chain)
    assert torch.equal(depth, torch.arange(1000)) and not on_cycle.any()
    depth, on_cycle = forest_depths(torch.zeros(0, dtype=torch.int64))
    assert depth.numel() == 0


def test_to_pandas_and_repr():
    table = CascadeTable.from_state(hand_state(), [0.0, 1.5], ids=["a", "b", "c", "d"])
    frame = table.to_pandas()
    assert list(frame.columns) == ["cascade", "id", "time_h", "parent", "depth"]
    assert frame["id"].tolist() == ["a"] * 4 + ["b"] * 3 + ["c"] * 2
    assert frame["depth"].tolist() == table.depth.tolist()
    labelled = CascadeTable(table.cascade, table.time_h, table.parent, table.depth, table.ids, ["x", "y", "x", "y"])
    assert labelled.to_pandas()["label"].tolist() == ["x"] * 4 + ["y"] * 3 + ["x"] * 2
    text = repr(table)
    assert text.startswith("CascadeTable(") and "cascades=4" in text and "rows=9" in text
