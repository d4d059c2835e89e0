"""Huge sizes fail fast with a ResourceError naming the size and the memory it needs (no OOM kill)."""

from __future__ import annotations

import pytest

import lpm
from lpm.errors import ResourceError
from lpm.graph import MAX_NODES
from lpm.resources import available_memory
from tests.reliability.cli import assert_clean_failure, run_cli


def _edges(tmp_path, big_id: int):
    path = tmp_path / "e.csv"
    path.write_text(f"source,target\n0,{big_id}\n1,2\n")
    return path


def test_huge_node_id_in_csv_is_a_resource_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LPM_MEMORY_LIMIT", "8G")  # the same answer on any machine
    path = _edges(tmp_path, 3_000_000_000)
    with pytest.raises(ResourceError) as info:
        lpm.Graph.from_csv(path)
    message = str(info.value)
    assert str(path) in message and "3,000,000,001 nodes" in message and "3000000000" in message
    assert "8.0 GiB" in message and "GiB" in message.split("needs about")[1]


def test_node_id_2_pow_40_is_refused_without_a_cap(tmp_path):
    with pytest.raises(ResourceError, match="1,099,511,627,777 nodes"):
        lpm.Graph.from_csv(_edges(tmp_path, 2**40))


def test_max_nodes_is_the_largest_n_whose_sort_key_fits_int64():
    # Graph.from_edge_index sorts by follower * N + followee: N above MAX_NODES would overflow int64
    assert (MAX_NODES - 1) * MAX_NODES + MAX_NODES - 1 < 2**63 <= (MAX_NODES + 1) ** 2 - 1


def test_small_graph_still_loads_under_a_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("LPM_MEMORY_LIMIT", "64M")
    graph = lpm.Graph.from_csv(_edges(tmp_path, 5))
    assert graph.num_nodes == 6 and graph.num_edges == 2


@pytest.mark.parametrize("build", [
    lambda: lpm.Graph.barabasi_albert(10**12, 3, seed=0),
    lambda: lpm.Graph.holme_kim(10**12, 3, 0.5, seed=0),
    lambda: lpm.Graph.watts_strogatz(10**11, 4, 0.1, seed=0),
    lambda: lpm.Graph.sbm_homophily(10**11, 2, 10.0, 0.8, seed=0),
    lambda: lpm.Graph.stochastic_block_model([10**7, 10**7], [[0.5, 0.1], [0.1, 0.5]], seed=0),
])
def test_generators_refuse_graphs_that_cannot_fit(build):
    with pytest.raises(ResourceError, match="nodes and .* edges, which needs about"):
        build()


def test_population_sample_refuses_what_cannot_fit():
    with pytest.raises(ResourceError, match="10,000,000,000 agents x 3 scenarios"):
        lpm.PopulationState.sample(10**10, seed=0, batch=3)


def test_memory_limit_must_be_a_size(monkeypatch):
    monkeypatch.setenv("LPM_MEMORY_LIMIT", "lots")
    with pytest.raises(lpm.ConfigError, match="LPM_MEMORY_LIMIT.*'lots'"):
        available_memory()


def test_cli_huge_node_id_file(tmp_path):
    # no CLI command loads an edge list, so the loader runs under the interpreter: one typed line, no OOM
    path = _edges(tmp_path, 3_000_000_000)
    import subprocess
    import sys

    code = ("import sys, lpm\ntry:\n    lpm.Graph.from_csv(sys.argv[1])\nexcept lpm.LPMError as e:\n"
            "    print(f'{type(e).__name__}: {e}', file=sys.stderr); sys.exit(2)\n")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "LPM_MEMORY_LIMIT": "8G"})
    assert result.returncode == 2 and result.stderr.startswith("ResourceError: ") and str(path) in result.stderr


def test_cli_run_with_10_pow_12_agents(tmp_path):
    result = run_cli("run", "default", "--agents", str(10**12), "--steps", "1", "--out", str(tmp_path), "--quiet")
    assert_clean_failure(result, "ResourceError", "1,000,000,000,000 nodes", "needs about")
    assert not (tmp_path / "default").exists()
