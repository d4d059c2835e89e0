"""A probe of bad inputs and faults, as a new user and an operator would try them.

Each case is a library call or a command line (run in-process through :func:`lpm.cli.main`) and the
typed error it must end in, with text the message must contain (the input it names). A command line
must exit 2 with one ``lpm: error: <Type>: ...`` line (or, for an option argparse refuses, its usage
message) and no traceback. Cases whose fix belongs to a file another change is editing are marked
``xfail(strict=True)`` with the file named: they turn into failures the moment they are fixed.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

import lpm
import lpm.testing
from lpm import errors as E
from lpm.cli import main

# -- the case table ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    run: Callable[[Path], Any]  # gets a fresh folder; its files are made by the case
    error: type[BaseException]  # the typed lpm error (for a CLI case: the type named on the error line)
    needles: tuple[str, ...] = ()  # text the message must contain; "{tmp}" is the case's folder
    pending: str | None = None  # the file whose fix is pending (another change is editing it)


class CLI:
    """``lpm ARGV`` in-process; '{tmp}' in an argument is the case's folder."""

    def __init__(self, *argv: str) -> None:
        self.argv = argv

    def __call__(self, tmp: Path) -> tuple[int, str]:
        argv = [a.replace("{tmp}", str(tmp)) for a in self.argv]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse
                code = exc.code
        return code, err.getvalue()


CASES: list[Case] = []


def case(id: str, run, error, *needles: str, pending: str | None = None) -> None:
    CASES.append(Case(id, run, error, needles, pending))


def write(name: str, content: str | bytes, then: Callable[[Path], Any]) -> Callable[[Path], Any]:
    """A case that writes ``tmp/name`` first, then calls ``then(path)``."""

    def run(tmp: Path):
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return then(path)

    return run


class Usage(Exception):
    """What an argparse refusal is expected as (exit code 2, the option in the last line)."""



# -- graphs: files ------------------------------------------------------------------------------------------

csv = lambda text: write("e.csv", text, lambda p: lpm.Graph.from_csv(p))  # noqa: E731
case("csv-missing-file", lambda t: lpm.Graph.from_csv(t / "absent.csv"), E.GraphFormatError, "absent.csv")
case("csv-empty-file", csv(""), E.GraphFormatError, "e.csv")
case("csv-negative-id", csv("source,target\n-1,2\n"), E.GraphFormatError, "e.csv", "-1")
case("csv-id-3e9", csv("source,target\n0,3000000000\n1,2\n"), E.ResourceError, "3000000000")
case("csv-id-2^40", csv(f"source,target\n0,{2**40}\n"), E.ResourceError, str(2**40))
case("csv-labels-with-num-nodes", write("e.csv", "source,target\na,b\n", lambda p: lpm.Graph.from_csv(p, num_nodes=5)),
     E.ConfigError, "num_nodes=5")
case("csv-wrong-columns", csv("from,to\n0,1\n"), E.GraphFormatError, "e.csv", "source")
case("csv-ragged-row", csv("source,target\n0,1\n1,2,3,4\n"), E.GraphFormatError, "e.csv", "line 3")
case("csv-short-row", csv("source,target\n0,1\n5\n"), E.GraphFormatError, "e.csv", "missing value")
case("csv-latin1-bytes", write("e.csv", b"source,target\n0,1\n\xe9,2\n", lpm.Graph.from_csv), E.GraphFormatError,
     "e.csv")
case("csv-gzip-binary", write("e.csv", gzip.compress(b"source,target\n0,1\n"), lpm.Graph.from_csv),
     E.GraphFormatError, "e.csv")
case("csv-nan-weight", write("e.csv", "source,target,w\n0,1,nan\n", lambda p: lpm.Graph.from_csv(p, weight="w")),
     E.GraphFormatError, "e.csv")
case("csv-negative-weight", write("e.csv", "source,target,w\n0,1,-2\n", lambda p: lpm.Graph.from_csv(p, weight="w")),
     E.GraphFormatError, "e.csv")
case("csv-text-weight", write("e.csv", "source,target,w\n0,1,heavy\n", lambda p: lpm.Graph.from_csv(p, weight="w")),
     E.GraphFormatError, "e.csv")
case("csv-missing-weight-column", write("e.csv", "source,target\n0,1\n", lambda p: lpm.Graph.from_csv(p, weight="w")),
     E.GraphFormatError, "e.csv", "'w'")
case("csv-bad-flow", write("e.csv", "source,target\n0,1\n", lambda p: lpm.Graph.from_csv(p, flow="up")),
     E.ConfigError, "flow", "'up'")
case("csv-a-folder", lambda t: lpm.Graph.from_csv(t), E.GraphFormatError, "{tmp}")
case("parquet-missing-file", lambda t: lpm.Graph.from_parquet(t / "absent.parquet"), E.GraphFormatError,
     "absent.parquet")
case("parquet-garbage", write("e.parquet", b"not parquet at all" * 10, lpm.Graph.from_parquet), E.GraphFormatError,
     "e.parquet")
case("parquet-a-csv", write("e.parquet", "source,target\n0,1\n", lpm.Graph.from_parquet), E.GraphFormatError,
     "e.parquet")
gml = lambda text: write("g.gml", text, lambda p: lpm.Graph.from_gml(p))  # noqa: E731
case("gml-missing-file", lambda t: lpm.Graph.from_gml(t / "absent.gml"), E.GraphFormatError, "absent.gml")
case("gml-no-graph-block", gml("node [ id 0 ]\n"), E.GraphFormatError, "g.gml")
case("gml-syntax-error", gml("graph [ node [ id 0 ] edge [ source 0 \n"), E.GraphFormatError, "g.gml")
case("gml-edge-to-undefined-node", gml("graph [ node [ id 0 label \"a\" ] edge [ source 0 target 9 ] ]\n"),
     E.GraphFormatError, "g.gml")
case("gml-binary", write("g.gml", bytes(range(256)) * 4, lpm.Graph.from_gml), E.GraphFormatError, "g.gml")

# -- graphs: tensors and generators -----------------------------------------------------------------------------

case("edge-index-float", lambda t: lpm.Graph.from_edge_index(torch.tensor([[0.0, 1.0], [1.0, 0.0]])),
     E.GraphFormatError, "integer", "float")
case("edge-index-3-rows", lambda t: lpm.Graph.from_edge_index(torch.zeros(3, 2, dtype=torch.long)),
     E.GraphFormatError, "(2, E)")
case("edge-index-negative", lambda t: lpm.Graph.from_edge_index(torch.tensor([[0, -1], [1, 0]])),
     E.GraphFormatError, "-1")
case("edge-index-id-beyond-num-nodes", lambda t: lpm.Graph.from_edge_index(torch.tensor([[0, 5], [1, 0]]),
                                                                            num_nodes=3),
     E.GraphFormatError, "5")
case("edge-index-negative-num-nodes", lambda t: lpm.Graph.from_edge_index(torch.tensor([[0], [1]]), num_nodes=-2),
     E.GraphFormatError, "-2")
case("edge-index-weight-length", lambda t: lpm.Graph.from_edge_index(torch.tensor([[0, 1], [1, 0]]),
                                                                      weight=torch.ones(3)),
     E.GraphFormatError, "weight")
case("edge-index-nan-weight", lambda t: lpm.Graph.from_edge_index(torch.tensor([[0, 1], [1, 0]]),
                                                                   weight=torch.tensor([1.0, math.nan])),
     E.GraphFormatError, "weight")
case("edge-index-huge-num-nodes", lambda t: lpm.Graph.from_edge_index(torch.tensor([[0], [1]]), num_nodes=10**13),
     E.ResourceError, "10,000,000,000,000 nodes")
case("edge-index-list", lambda t: lpm.Graph.from_edge_index([[0, 1], [1, 0]]), E.GraphFormatError, "edge_index")
case("ba-zero-nodes", lambda t: lpm.Graph.barabasi_albert(0, 2, seed=0), E.ConfigError, "0")
case("ba-m-above-n", lambda t: lpm.Graph.barabasi_albert(5, 9, seed=0), E.ConfigError, "9")
case("ba-m-zero", lambda t: lpm.Graph.barabasi_albert(50, 0, seed=0), E.ConfigError, "m")
case("ba-float-n", lambda t: lpm.Graph.barabasi_albert(50.5, 2, seed=0), E.ConfigError, "50.5")
case("ba-10^12-nodes", lambda t: lpm.Graph.barabasi_albert(10**12, 2, seed=0), E.ResourceError, "1,000,000,000,000 nodes")
case("ba-string-seed", lambda t: lpm.Graph.barabasi_albert(50, 2, seed="x"), E.ConfigError, "'x'")
case("ws-p-above-1", lambda t: lpm.generators.watts_strogatz(50, 4, 1.5, seed=0), E.ConfigError, "1.5")
case("ws-nan-p", lambda t: lpm.generators.watts_strogatz(50, 4, math.nan, seed=0), E.ConfigError, "nan")
case("ws-k-above-n", lambda t: lpm.generators.watts_strogatz(5, 8, 0.1, seed=0), E.ConfigError, "8")
case("hk-triad-2", lambda t: lpm.generators.holme_kim(50, 2, 2.0, seed=0), E.ConfigError, "2.0")
case("sbm-negative-size", lambda t: lpm.generators.stochastic_block_model([10, -3], [[0.1, 0.01], [0.01, 0.1]],
                                                                           seed=0),
     E.ConfigError, "-3")
case("sbm-probability-above-1", lambda t: lpm.generators.stochastic_block_model([10, 10], [[1.5, 0.01], [0.01, 0.1]],
                                                                                 seed=0),
     E.ConfigError, "1.5")
case("sbm-matrix-shape", lambda t: lpm.generators.stochastic_block_model([10, 10], [[0.1]], seed=0),
     E.ConfigError, "2")
case("config-odd-degree-sum", lambda t: lpm.generators.configuration_model([1, 2, 2], seed=0), E.ConfigError,
     "5")
case("config-negative-degree", lambda t: lpm.generators.configuration_model([2, -2, 2], seed=0), E.ConfigError,
     "-2")

# -- populations, models, simulate ------------------------------------------------------------------------------

case("state-zero-agents", lambda t: lpm.PopulationState.sample(0, seed=0), E.StateError, "0")
case("state-negative-agents", lambda t: lpm.PopulationState.sample(-4, seed=0), E.StateError, "-4")
case("state-float-agents", lambda t: lpm.PopulationState.sample(2.5, seed=0), E.StateError, "2.5")
case("state-zero-batch", lambda t: lpm.PopulationState.sample(10, seed=0, batch=0), E.StateError, "batch")
case("state-10^12-agents", lambda t: lpm.PopulationState.sample(10**12, seed=0), E.ResourceError, "1,000,000,000,000 agents")
case("state-seed-2^64", lambda t: lpm.PopulationState.sample(10, seed=2**64), E.ConfigError, str(2**64))
case("traits-zero-agents", lambda t: lpm.Traits.sample(0, seed=0), E.StateError, "0")


def _state_with(**changes):
    def run(t):
        state = lpm.PopulationState.sample(10, seed=0)
        import dataclasses
        state = dataclasses.replace(state, **{k: v(state) for k, v in changes.items()})
        return lpm.simulate(lpm.Model(activity=hawkes()), state, lpm.testing.small_graph(10, seed=0), steps=1,
                            seed=0)
    return run


hawkes = lambda **kw: lpm.dynamics.Hawkes(**{"mu": 0.6, "alpha": 0.8, "beta": 1.5, **kw})  # noqa: E731
case("state-opinion-7", _state_with(opinion=lambda s: torch.full_like(s.opinion, 7.0)), E.StateError, "opinion", "7")
case("state-opinion-nan", _state_with(opinion=lambda s: torch.full_like(s.opinion, math.nan)), E.StateError, "opinion")
case("state-opinion-wrong-agents", _state_with(opinion=lambda s: s.opinion[:, :5]), E.StateError, "opinion")
case("state-opinion-int", _state_with(opinion=lambda s: s.opinion.long()), E.StateError, "opinion")

hawkes = lambda **kw: lpm.dynamics.Hawkes(**{"mu": 0.6, "alpha": 0.8, "beta": 1.5, **kw})  # noqa: E731
case("model-dt-inf", lambda t: lpm.Model(activity=hawkes(), dt=math.inf), E.ConfigError, "dt", "inf")
case("model-dt-negative", lambda t: lpm.Model(activity=hawkes(), dt=-0.5), E.ConfigError, "dt", "-0.5")
case("model-dt-string", lambda t: lpm.Model(activity=hawkes(), dt="1h"), E.ConfigError, "dt", "1h")
case("hawkes-negative-mu", lambda t: hawkes(mu=-1.0), E.ConfigError, "mu", "-1.0")
case("hawkes-nan-alpha", lambda t: hawkes(alpha=math.nan), E.ConfigError, "alpha", "nan")
case("hawkes-zero-beta", lambda t: hawkes(beta=0.0), E.ConfigError, "beta", "0.0")
case("bc-negative-eps", lambda t: lpm.dynamics.BoundedConfidence(eps=-0.1), E.ConfigError, "eps", "-0.1")
case("bc-rate-above-1", lambda t: lpm.dynamics.BoundedConfidence(rate=1.5), E.ConfigError, "rate", "1.5")
case("emotion-nan", lambda t: lpm.dynamics.EmotionContagion(math.nan, 0.2), E.ConfigError, "nan")
case("item-nan-start", lambda t: lpm.dynamics.Item(source=0, start_h=math.nan), E.ConfigError, "start_h", "nan")
case("item-negative-source", lambda t: lpm.dynamics.Item(source=-1), E.ConfigError, "source", "-1")


def _simulate(steps=2, state_n=20, graph_n=20, **kw):
    def run(t):
        model = lpm.Model(activity=hawkes())
        graph = lpm.testing.small_graph(graph_n, seed=0)
        state = lpm.PopulationState.sample(state_n, seed=0)
        kw2 = {k: (v.replace("{tmp}", str(t)) if isinstance(v, str) else v) for k, v in kw.items()}
        kw2.setdefault("seed", 0)
        return lpm.simulate(model, state, graph, steps=steps, **kw2)
    return run


case("simulate-negative-steps", _simulate(steps=-1), E.ConfigError, "steps", "-1")
case("simulate-float-steps", _simulate(steps=2.5), E.ConfigError, "steps", "2.5")
case("simulate-seed-2^64", _simulate(seed=2**64), E.ConfigError, str(2**64))
case("simulate-seed-string", _simulate(seed="abc"), E.ConfigError, "abc")
case("simulate-seed-float", _simulate(seed=1.5), E.ConfigError, "1.5")
case("simulate-state-graph-mismatch", _simulate(state_n=20, graph_n=25), E.StateError, "20", "25")
case("simulate-save-every-without-path", _simulate(save_every=2), E.ConfigError, "save_path")
case("simulate-save-every-zero", _simulate(save_path="{tmp}/s.pt", save_every=0), E.ConfigError, "save_every", "0")
case("simulate-checkpoint-every-zero", _simulate(checkpoint_every=0), E.ConfigError, "checkpoint_every", "0")
case("simulate-record-not-callable", _simulate(record={"x": 3}), E.ConfigError, "'x'")
case("simulate-save-under-a-file", lambda t: (t / "f").write_text("x") and _simulate(
    save_path=str(t / "f" / "s.pt"), save_every=1)(t), E.ConfigError, "s.pt")


def _snapshot_case(corrupt: Callable[[Path], None]):
    def run(t):
        path = t / "s.pt"
        _simulate(steps=2, save_path=str(path), save_every=2)(t)
        corrupt(path)
        return _simulate(steps=4, save_path=str(path), save_every=2, resume=True)(t)
    return run


case("snapshot-truncated", _snapshot_case(lambda p: p.write_bytes(p.read_bytes()[:100])), E.StateError, "s.pt")
case("snapshot-empty", _snapshot_case(lambda p: p.write_bytes(b"")), E.StateError, "s.pt")
case("snapshot-text", _snapshot_case(lambda p: p.write_text("hello")), E.StateError, "s.pt")
case("snapshot-other-object", _snapshot_case(lambda p: torch.save([1, 2, 3], p)), E.StateError, "s.pt")
case("snapshot-missing-key", _snapshot_case(lambda p: torch.save(
    {k: v for k, v in torch.load(p, weights_only=True).items() if k != "state"}, p)), E.StateError, "s.pt")
case("snapshot-step-beyond-steps", lambda t: (_simulate(steps=4, save_path=str(t / "s.pt"), save_every=2)(t),
                                              _simulate(steps=2, save_path=str(t / "s.pt"), save_every=2,
                                                        resume=True)(t)),
     E.ConfigError, "s.pt")
case("snapshot-other-seed", lambda t: (_simulate(steps=2, save_path=str(t / "s.pt"), save_every=2, seed=1)(t),
                                       _simulate(steps=4, save_path=str(t / "s.pt"), save_every=2, seed=2,
                                                 resume=True)(t)),
     E.ConfigError, "s.pt")

# -- interventions -------------------------------------------------------------------------------------------------

I = lpm.interventions  # noqa: E741
graph20 = lambda: lpm.testing.small_graph(20, seed=0)  # noqa: E731
case("factcheck-nan-at", lambda t: I.FactCheckLabel(item=0, at=math.nan), E.ConfigError, "at", "nan")
case("factcheck-negative-item", lambda t: I.FactCheckLabel(item=-1, at=1.0), E.ConfigError, "item", "-1")
case("factcheck-negative-width", lambda t: I.FactCheckLabel(item=0, at=1.0, width=-1.0), E.ConfigError, "width")
case("downranking-factor-2", lambda t: I.Downranking(item=0, at=1.0, factor=2.0), E.ConfigError, "factor", "2.0")
case("suspension-agent-out-of-range", lambda t: I.Suspension([0, 50], num_agents=20, at=1.0), E.ConfigError, "50",
     "20")
case("suspension-negative-agent", lambda t: I.Suspension([-3], num_agents=20, at=1.0), E.ConfigError, "-3")
case("suspension-more-agents-than-graph", lambda t: lpm.simulate(
    lpm.Model(activity=hawkes(), interventions=I.InterventionPlan([I.Suspension([0], num_agents=40, at=0.0)])),
    lpm.PopulationState.sample(20, seed=0), graph20(), steps=1, seed=0), E.ConfigError, "40", "20")
case("prebunking-share-2", lambda t: I.Prebunking([0], num_agents=20, at=1.0, share=2.0), E.ConfigError, "share")
case("prebunking-more-agents-than-graph", lambda t: lpm.simulate(
    lpm.Model(activity=hawkes(), interventions=I.InterventionPlan([I.Prebunking([0], num_agents=40, at=0.0)])),
    lpm.PopulationState.sample(20, seed=0), graph20(), steps=1, seed=0), E.ConfigError, "40", "20")
case("edgeblocking-agent-out-of-range", lambda t: I.EdgeBlocking([99], graph20(), at=1.0), E.ConfigError, "99")
case("rebuttal-source-out-of-range", lambda t: I.Rebuttal(0, [99], graph20(), at=1.0), E.ConfigError, "99")
case("guidance-unknown-tone", lambda t: I.GuidanceMessage([0], graph20(), at=1.0, tone="angry"), E.ConfigError,
     "angry")
case("recommender-nan-personalization", lambda t: I.RecommenderChange(at=1.0, personalization=math.nan),
     E.ConfigError, "personalization")
case("plan-not-an-intervention", lambda t: I.InterventionPlan([3]), E.ConfigError, "int")

# -- seeds ----------------------------------------------------------------------------------------------------------

R = lpm.rng.CounterRNG
case("rng-seed-2^64", lambda t: R.from_seed(2**64, 2), E.ConfigError, str(2**64))
case("rng-seed-minus-2^64", lambda t: R.from_seed(-(2**64), 2), E.ConfigError, str(-(2**64)))
case("rng-seed-float", lambda t: R.from_seed(1.5, 2), E.ConfigError, "1.5")
case("rng-seed-string", lambda t: R.from_seed("7", 2), E.ConfigError, "'7'")
case("rng-seed-bool", lambda t: R.from_seed(True, 2), E.ConfigError, "True")
case("rng-seed-list-wrong-length", lambda t: R.from_seed([1, 2, 3], 2), E.ConfigError, "3")
case("rng-seed-uint64-array", lambda t: R.from_seed(np.uint64(2**64 - 1), 2), E.ConfigError, str(2**64 - 1))
case("rng-zero-batch", lambda t: R.from_seed(1, 0), E.ConfigError, "batch")

# -- scenarios -----------------------------------------------------------------------------------------------------

from lpm.scenario import load_scenario, with_overrides  # noqa: E402

case("scenario-unknown-name", lambda t: load_scenario("nonesuch"), E.ConfigError, "nonesuch")
case("scenario-not-identifier", lambda t: load_scenario("no such"), E.ConfigError, "no such")
case("scenario-missing-file", lambda t: load_scenario(str(t / "absent.py")), E.ConfigError, "absent.py")
case("scenario-no-SCENARIO", write("s.py", "X = 1\n", lambda p: load_scenario(str(p))), E.ConfigError, "SCENARIO")
case("scenario-SCENARIO-wrong-type", write("s.py", "SCENARIO = 3\n", lambda p: load_scenario(str(p))),
     E.ConfigError, "int")
case("scenario-syntax-error", write("s.py", "SCENARIO = (\n", lambda p: load_scenario(str(p))), E.ConfigError,
     "s.py", "line")
case("scenario-raises-on-import", write("s.py", "raise RuntimeError('boom')\n", lambda p: load_scenario(str(p))),
     E.ConfigError, "s.py", "boom")
case("scenario-imports-missing-module", write("s.py", "import nonesuch_module\n", lambda p: load_scenario(str(p))),
     E.ConfigError, "s.py", "nonesuch_module")
case("scenario-zero-agents", lambda t: with_overrides(load_scenario("default"), agents=0), E.ConfigError, "agents",
     "0")
case("scenario-negative-seeds", lambda t: with_overrides(load_scenario("misinformation"), seeds=-1), E.ConfigError,
     "seeds", "-1")
case("scenario-unknown-override", lambda t: with_overrides(load_scenario("default"), colour="red"), E.ConfigError,
     "colour")

# -- lpm run / sweep / archetypes -------------------------------------------------------------------------------

run = lambda *a: CLI("run", *a, "--quiet", "--out", "{tmp}/out")  # noqa: E731
case("run-agents-0", run("default", "--agents", "0"), E.ConfigError, "agents", "0")
case("run-agents-negative", run("default", "--agents", "-5"), E.ConfigError, "agents", "-5")
case("run-agents-10^12", run("default", "--agents", str(10**12)), E.ResourceError, "1,000,000,000,000")
case("run-agents-letters", run("default", "--agents", "many"), Usage, "--agents", "many")
case("run-steps-negative", run("default", "--agents", "100", "--steps", "-1"), E.ConfigError, "steps", "-1")
case("run-seed-2^64", run("default", "--agents", "100", "--steps", "1", "--seed", str(2**64)), E.ConfigError,
     str(2**64))
case("run-seeds-0", run("misinformation", "--agents", "100", "--steps", "1", "--seeds", "0"), E.ConfigError, "seeds",
     "0")
case("run-device-gpu", run("default", "--device", "gpu"), E.ConfigError, "--device", "'gpu'")
case("run-device-cuda-99", run("default", "--device", "cuda:x"), E.ConfigError, "--device", "cuda:x")
case("run-out-under-file", lambda t: (t / "f").write_text("x") and CLI("run", "default", "--out", "{tmp}/f/o")(t),
     E.ConfigError, "--out", "{tmp}/f/o")
case("run-unknown-scenario", run("nonesuch"), E.ConfigError, "nonesuch")
case("run-scenario-file-missing", run("{tmp}/absent.py"), E.ConfigError, "absent.py")
case("run-scenario-syntax-error", lambda t: (t / "s.py").write_text("SCENARIO = (\n") and run(str(t / "s.py"))(t),
     E.ConfigError, "s.py")
case("run-params-missing", run("default", "--agents", "100", "--steps", "1", "--params", "{tmp}/absent.json"),
     E.DataFormatError, "absent.json")
case("run-params-not-json", lambda t: (t / "p.json").write_text("{oops") and run(
    "default", "--agents", "100", "--steps", "1", "--params", str(t / "p.json"))(t), E.DataFormatError, "p.json")
case("run-params-stance-kind", lambda t: (t / "p.json").write_text(json.dumps(
    {"format": 1, "kind": "stance", "params": {}})) and run("default", "--agents", "100", "--steps", "1", "--params",
                                                            str(t / "p.json"))(t),
     E.ConfigError, "stance", "p.json")
case("run-archetypes-0", run("misinformation", "--agents", "100", "--steps", "1", "--archetypes", "0"),
     E.ConfigError, "archetypes", "0")
case("run-archetypes-no-contexts", run("polarization", "--agents", "100", "--steps", "1", "--archetypes", "2"),
     E.ConfigError, "contexts")
case("run-backend-unknown", run("default", "--backend", "gpt"), Usage, "--backend", "gpt")
case("run-cache-not-a-db", lambda t: (t / "c.sqlite").write_text("not a database" * 50) and run(
    "misinformation", "--agents", "100", "--steps", "1", "--archetypes", "2", "--cache", str(t / "c.sqlite"))(t),
     E.DataFormatError, "c.sqlite")
case("sweep-bad-grid", CLI("sweep", "misinformation", "--grid", "strength", "--out", "{tmp}/o"), E.ConfigError,
     "strength")
case("sweep-unknown-key", CLI("sweep", "misinformation", "--grid", "colour=1,2", "--out", "{tmp}/o"),
     E.ConfigError, "colour")
case("sweep-no-sweep-function", CLI("sweep", "default", "--grid", "x=1,2", "--out", "{tmp}/o"), E.ConfigError,
     "sweep")
case("archetypes-build-k-0", CLI("archetypes", "build", "--agents", "50", "--k", "0", "--out", "{tmp}/a"),
     E.ConfigError, "0")
case("archetypes-build-k-above-agents", CLI("archetypes", "build", "--agents", "5", "--k", "9", "--out", "{tmp}/a"),
     E.ConfigError, "9")
case("archetypes-build-agents-0", CLI("archetypes", "build", "--agents", "0", "--k", "2", "--out", "{tmp}/a"),
     E.ConfigError, "0")
case("unknown-command", CLI("frobnicate"), Usage, "frobnicate")

# -- calibrate / evaluate / check / forecast -------------------------------------------------------------------------

POSTS_HEADER = "thread_id,veracity,post_id,parent_id,depth,time_utc_snowflake,stance,delay_min\n"


def posts(body: bytes | str) -> Callable[[Path], Path]:
    def make(t: Path) -> Path:
        path = t / "posts.csv"
        path.write_bytes((POSTS_HEADER.encode() + (body if isinstance(body, bytes) else body.encode())))
        return path
    return make


def make(name: str, content: bytes | str) -> Callable[[Path], Path]:
    def run(t: Path) -> Path:
        path = t / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path
    return run


def with_file(make: Callable[[Path], Path], *argv: str) -> Callable[[Path], Any]:
    """Make a file, then run the CLI with '{file}' replaced by its path."""
    def run(t):
        path = make(t)
        return CLI(*[a.replace("{file}", str(path)) for a in argv])(t)
    return run


def params_file(payload: Any) -> Callable[[Path], Path]:
    def make(t: Path) -> Path:
        path = t / "fit.json"
        path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
        return path
    return make


cal = lambda *a: CLI("calibrate", *a, "--out", "{tmp}/fit.json", "--quiet", "--logger", "none")  # noqa: E731
case("calibrate-unknown-kind", cal("weather", "--data", "{tmp}"), Usage, "weather")
case("calibrate-data-missing", cal("stance", "--data", "{tmp}/absent.csv"), E.ConfigError, "absent.csv")
case("calibrate-max-steps-0", cal("stance", "--data", "{tmp}", "--max-steps", "0"), E.ConfigError, "--max-steps", "0")
case("calibrate-max-steps-negative", cal("stance", "--data", "{tmp}", "--max-steps", "-3"), E.ConfigError,
     "--max-steps", "-3")
case("calibrate-budget-0", cal("stance", "--data", "{tmp}", "--budget-s", "0"), E.ConfigError, "--budget-s")
case("calibrate-budget-nan", cal("stance", "--data", "{tmp}", "--budget-s", "nan"), E.ConfigError, "--budget-s", "nan")
case("calibrate-budget-letters", cal("stance", "--data", "{tmp}", "--budget-s", "soon"), Usage, "--budget-s")
case("calibrate-device-tpu", cal("stance", "--data", "{tmp}", "--device", "tpu"), E.ConfigError, "--device", "tpu")
case("calibrate-split-bad", cal("stance", "--data", "{tmp}", "--split", "dev"), Usage, "--split", "dev")
case("calibrate-agents-with-stance", cal("stance", "--data", "{tmp}", "--agents", "10"), E.ConfigError, "--agents",
     "stance")
case("calibrate-debias-with-stance", cal("stance", "--data", "{tmp}", "--debias", "1"), E.ConfigError, "stance")
case("calibrate-stance-non-utf8", with_file(posts(b"1,true,1,,0,1.0,supp\xf6rt,0\n"), "calibrate", "stance",
                                            "--data", "{file}", "--out", "{tmp}/fit.json", "--logger", "none"),
     E.DataFormatError, "posts.csv", "line 2", "byte offset")
case("calibrate-stance-binary", with_file(make("posts.csv", gzip.compress(b"x" * 100)), "calibrate", "stance", "--data", "{file}", "--out",
                                          "{tmp}/fit.json", "--logger", "none"),
     E.DataFormatError, "posts.csv", "binary")
case("calibrate-stance-no-replies", with_file(posts("1,true,1,,0,1.0,support,0\n"), "calibrate", "stance", "--data",
                                              "{file}", "--out", "{tmp}/fit.json", "--logger", "none"),
     E.DataFormatError, "replies")
case("calibrate-cascades-empty-folder", cal("cascades", "--data", "{tmp}"), E.DataFormatError, "{tmp}")
case("calibrate-cascades-garbage-zip", with_file(make("d.zip", b"PK garbage"),
                                                 "calibrate", "cascades", "--data", "{file}", "--out",
                                                 "{tmp}/fit.json", "--logger", "none"),
     E.DataFormatError, "d.zip")
case("calibrate-sentiment-wrong-header", with_file(make("d.csv", "a,b\n1,2\n"),
                                                   "calibrate", "sentiment", "--data", "{file}", "--out",
                                                   "{tmp}/fit.json", "--logger", "none"),
     E.DataFormatError, "d.csv", "line 1")
case("calibrate-out-under-file", lambda t: (t / "f").write_text("x") and CLI(
    "calibrate", "stance", "--data", str(t), "--out", str(t / "f" / "fit.json"), "--logger", "none")(t),
     E.ConfigError, "fit.json")

GOOD_CASCADES = {"transmissibility": 0.01, "audience": 100.0, "audience_spread": 1.0, "attention": 0.5,
                 "attention_spread": 1.0, "feed_half_life_h": 1.0, "feed_tail": 2.0}
for command in ("evaluate", "check", "forecast"):
    cmd = lambda *a, c=command: CLI(c, "cascades", "--data", "{tmp}", *a)  # noqa: E731
    case(f"{command}-params-missing", cmd("--params", "{tmp}/absent.json"), E.DataFormatError, "absent.json")
    case(f"{command}-params-not-json", with_file(params_file("{nope"), command, "cascades", "--data", "{tmp}",
                                                 "--params", "{file}"), E.DataFormatError, "fit.json")
    case(f"{command}-params-wrong-kind", with_file(params_file({"format": 1, "kind": "stance", "params": {}}),
                                                   command, "cascades", "--data", "{tmp}", "--params", "{file}"),
         E.DataFormatError, "fit.json", "stance")
    case(f"{command}-params-missing-key", with_file(params_file(
        {"format": 1, "kind": "cascades", "params": {k: v for k, v in GOOD_CASCADES.items() if k != "audience"}}),
        command, "cascades", "--data", "{tmp}", "--params", "{file}"), E.DataFormatError, "fit.json", "audience")
    case(f"{command}-params-out-of-range", with_file(params_file(
        {"format": 1, "kind": "cascades", "params": dict(GOOD_CASCADES, transmissibility=1.5)}),
        command, "cascades", "--data", "{tmp}", "--params", "{file}"), E.DataFormatError, "fit.json",
        "transmissibility", "1.5")
    case(f"{command}-params-nan", with_file(params_file(
        '{"format": 1, "kind": "cascades", "params": ' + json.dumps(dict(GOOD_CASCADES, audience=-7.0))
        .replace("-7.0", "NaN") + "}"), command, "cascades", "--data", "{tmp}", "--params", "{file}"),
        E.DataFormatError, "fit.json", "audience")
    case(f"{command}-device-tpu", cmd("--params", "{tmp}/f.json", "--device", "tpu"), E.ConfigError, "--device")
    case(f"{command}-data-missing", with_file(params_file({"format": 1, "kind": "cascades", "params": GOOD_CASCADES}),
                                              command, "cascades", "--data", "{tmp}/absent", "--params", "{file}"),
         E.ConfigError, "absent")
fc = lambda *a: with_file(params_file({"format": 1, "kind": "cascades", "params": GOOD_CASCADES}),  # noqa: E731
                          "forecast", "cascades", "--data", "{tmp}", "--params", "{file}", *a)
case("forecast-ensemble-0", fc("--ensemble", "0"), Usage, "--ensemble", "0")
case("forecast-ensemble-letters", fc("--ensemble", "ten"), Usage, "--ensemble", "ten")
case("forecast-observe-negative", fc("--observe-h", "-1"), E.ConfigError, "observe", "-1")
case("forecast-horizon-before-observe", fc("--observe-h", "5", "--horizon-h", "2"), E.ConfigError, "horizon")
case("forecast-stance", CLI("forecast", "stance", "--data", "{tmp}", "--params", "{tmp}/f.json"), Usage, "stance")
case("evaluate-json-under-file", lambda t: (t / "f").write_text("x") and fc("--json", str(t / "f" / "m.json"))(t),
     E.ConfigError, "m.json")

# -- fitted-parameter files (library) ---------------------------------------------------------------------------

from lpm.calibration.common import load_params  # noqa: E402

lp = lambda payload, kind="cascades": write("fit.json", payload if isinstance(payload, str) else json.dumps(payload),  # noqa: E731
                                            lambda p: load_params(p, kind))
case("params-empty-file", lp(""), E.DataFormatError, "fit.json")
case("params-a-list", lp([1, 2]), E.DataFormatError, "fit.json", "list")
case("params-format-2", lp({"format": 2, "kind": "cascades", "params": GOOD_CASCADES}), E.DataFormatError, "format")
case("params-not-a-mapping", lp({"format": 1, "kind": "cascades", "params": [1]}), E.DataFormatError, "params")
case("params-unknown-key", lp({"format": 1, "kind": "cascades", "params": dict(GOOD_CASCADES, colour=1.0)}),
     E.DataFormatError, "colour")
case("params-string-value", lp({"format": 1, "kind": "cascades", "params": dict(GOOD_CASCADES, audience="big")}),
     E.DataFormatError, "audience", "big")
case("params-bool-value", lp({"format": 1, "kind": "cascades", "params": dict(GOOD_CASCADES, audience=True)}),
     E.DataFormatError, "audience", "True")
case("params-infinite", lp('{"format": 1, "kind": "cascades", "params": '
                           + json.dumps(GOOD_CASCADES).replace("100.0", "Infinity") + "}"),
     E.DataFormatError, "audience", "inf")
case("params-unknown-kind", lp({"format": 1, "kind": "weather", "params": {}}, kind=None), E.DataFormatError,
     "weather")
case("params-meta-not-mapping", lp({"format": 1, "kind": "cascades", "params": GOOD_CASCADES, "meta": 3}),
     E.DataFormatError, "meta")
case("params-binary", write("fit.json", b"\x89PNG\r\n\x1a\n" + bytes(100), lambda p: load_params(p, "cascades")),
     E.DataFormatError, "fit.json")
case("params-a-folder", lambda t: load_params(t, "cascades"), E.DataFormatError, "{tmp}")

# -- data loaders ----------------------------------------------------------------------------------------------------

from lpm.data.disaster import load_disaster  # noqa: E402
from lpm.data.rumdetect import load_rumdetect  # noqa: E402
from lpm.data.rumoureval import load_rumoureval  # noqa: E402

re_ = lambda body, **kw: lambda t: load_rumoureval(posts(body)(t), **kw)  # noqa: E731
case("rumoureval-missing-file", lambda t: load_rumoureval(t / "absent.csv"), E.DataFormatError, "absent.csv")
case("rumoureval-a-folder", lambda t: load_rumoureval(t), E.DataFormatError, "{tmp}")
case("rumoureval-empty-file", write("posts.csv", b"", load_rumoureval), E.DataFormatError, "posts.csv", "line 1")
case("rumoureval-missing-columns", write("posts.csv", b"thread_id,post_id\n1,1\n", load_rumoureval),
     E.DataFormatError, "posts.csv", "columns")
case("rumoureval-non-utf8", re_(b"1,true,1,,0,1.0,support,0\n1,true,2,1,1,2.0,d\xe9ny,1\n"), E.DataFormatError,
     "posts.csv, line 3", "byte offset")
case("rumoureval-binary", write("posts.csv", bytes(range(256)), load_rumoureval), E.DataFormatError, "posts.csv",
     "binary")
case("rumoureval-nul-in-text", re_(b"1,true,1,,0,1.0,support,0\x00\n"), E.DataFormatError, "line 2", "NUL")
case("rumoureval-bad-stance", re_("1,true,1,,0,1.0,agree,0\n"), E.DataFormatError, "line 2", "stance")
case("rumoureval-bad-veracity", re_("1,maybe,1,,0,1.0,support,0\n"), E.DataFormatError, "line 2", "veracity")
case("rumoureval-negative-depth", re_("1,true,1,,-1,1.0,support,0\n"), E.DataFormatError, "line 2", "depth")
case("rumoureval-nan-time", re_("1,true,1,,0,nan,support,0\n"), E.DataFormatError, "line 2", "finite")
case("rumoureval-id-beyond-int64", re_(f"1,true,{2**64},,0,1.0,support,0\n"), E.DataFormatError, "line 2")
case("rumoureval-veracity-changes", re_("1,true,1,,0,1.0,support,0\n1,false,2,1,1,2.0,deny,1\n"),
     E.DataFormatError, "line 3", "veracity")
case("rumoureval-ragged", re_("1,true,1,,0,1.0,support,0,extra\n"), E.DataFormatError, "line 2", "fields")
case("rumoureval-errors-bogus", lambda t: load_rumoureval(posts("")(t), errors="ignore"), E.ConfigError, "ignore")
case("rumdetect-missing", lambda t: load_rumdetect(t / "absent"), E.DataFormatError, "absent")
case("rumdetect-no-tree-folder", lambda t: load_rumdetect(t), E.DataFormatError, "tree")
case("rumdetect-not-a-zip", write("d.zip", b"not a zip", load_rumdetect), E.DataFormatError, "d.zip")


def _zip_without_tree(t: Path):
    path = t / "d.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("label.txt", "true:1\n")
    return load_rumdetect(path)


def _rumdetect_tree(content: bytes, label: str = "true:1\n"):
    def run(t: Path):
        (t / "tree").mkdir()
        (t / "tree" / "1.txt").write_bytes(content)
        (t / "label.txt").write_text(label)
        return load_rumdetect(t)
    return run


case("rumdetect-zip-without-tree", _zip_without_tree, E.DataFormatError, "d.zip", "tree")
case("rumdetect-non-utf8-tree", _rumdetect_tree(b"['ROOT', 'ROOT', '0.0']->['u\xff', '1', '0.0']\n"),
     E.DataFormatError, "1.txt")
case("rumdetect-garbage-line", _rumdetect_tree(b"['ROOT', 'ROOT', '0.0']->['1', '1', '0.0']\nhello\n"),
     E.DataFormatError, "1.txt", "line 2")
case("rumdetect-negative-window", lambda t: load_rumdetect(t, window_h=-1.0), E.ConfigError, "window_h", "-1")
dis = lambda text: write("d.csv", text, load_disaster)  # noqa: E731
case("disaster-missing", lambda t: load_disaster(t / "absent.csv"), E.DataFormatError, "absent.csv")
case("disaster-wrong-header", dis("a,b,c\n"), E.DataFormatError, "d.csv", "line 1")
case("disaster-bad-date", dis("num,datetime,label\n1,2020-13-45 10:00,1\n"), E.DataFormatError, "d.csv", "line 2")
case("disaster-bad-label", dis("num,datetime,label\n1,2020-01-02 10:00,7\n"), E.DataFormatError, "d.csv", "line 2")
case("disaster-non-utf8", write("d.csv", b"num,datetime,label\n1,2020-01-02 10:00,1\xff\n", load_disaster),
     E.DataFormatError, "d.csv")
case("disaster-binary", write("d.csv", gzip.compress(b"num,datetime,label\n"), load_disaster), E.DataFormatError,
     "d.csv")

# -- archetype backends and the decision cache ------------------------------------------------------------------------

from lpm.archetypes.backends import OpenAICompatibleBackend, make_backend  # noqa: E402
from lpm.archetypes.cache import DecisionCache  # noqa: E402
from lpm.archetypes.cached_backend import CachedBackend  # noqa: E402
from lpm.archetypes.decision import parse_decision  # noqa: E402

oa = lambda **kw: OpenAICompatibleBackend(**{"model": "m", "base_url": "http://127.0.0.1:9/v1", "api_key": "k",  # noqa: E731
                                             **kw})
case("backend-unknown-kind", lambda t: make_backend("gpt"), E.ConfigError, "'gpt'")
case("backend-transformers-without-model", lambda t: make_backend("transformers"), E.ConfigError, "model")
case("backend-openai-timeout-0", lambda t: oa(timeout_s=0), E.ConfigError, "timeout_s", "0")
case("backend-openai-timeout-nan", lambda t: oa(timeout_s=math.nan), E.ConfigError, "timeout_s", "nan")
case("backend-openai-retries-negative", lambda t: oa(max_retries=-1), E.ConfigError, "max_retries", "-1")
case("backend-openai-concurrency-0", lambda t: oa(max_concurrency=0), E.ConfigError, "max_concurrency", "0")
case("backend-openai-json-mode", lambda t: oa(json_mode="yaml"), E.ConfigError, "json_mode", "yaml")
case("backend-openai-max-tokens-0", lambda t: oa(max_tokens=0), E.ConfigError, "max_tokens", "0")
case("backend-openai-backoff-nan", lambda t: oa(backoff_s=math.nan), E.ConfigError, "backoff_s", "nan")
case("backend-openai-request-not-a-pair", lambda t: oa().decide([("only one",)]), E.ConfigError, "request 0")
case("backend-openai-nothing-listening", lambda t: oa(max_retries=0, timeout_s=0.5).decide([("p", "c")]),
     E.BackendError, "127.0.0.1:9", "after 1 attempts")
case("backend-transformers-batch-0", lambda t: make_backend("transformers", model="x", batch_size=0), E.ConfigError,
     "batch_size")
case("backend-transformers-missing-model", lambda t: make_backend("transformers", model=str(t / "none")).decide(
    [("p", "c")]), E.ConfigError, "none", "nothing is downloaded")
case("backend-transformers-empty-folder", lambda t: make_backend("transformers", model=str(t)).decide(
    [("p", "c")]), E.BackendError, "{tmp}", "config.json")
case("decision-not-json", lambda t: parse_decision("share it!"), E.BackendError, "JSON")
case("decision-share-1.7", lambda t: parse_decision({"share_probability": 1.7, "stance_shift": 0.0, "emotion_impulse":
                                                     {"valence": 0, "arousal": 0}, "reaction": "x"}),
     E.BackendError, "share_probability", "1.7")
case("decision-missing-key", lambda t: parse_decision({"share_probability": 0.1}), E.BackendError, "stance_shift")
case("decision-nan", lambda t: parse_decision('{"share_probability": NaN, "stance_shift": 0, "emotion_impulse": '
                                              '{"valence": 0, "arousal": 0}, "reaction": "x"}'),
     E.BackendError, "share_probability")
case("cache-offline-missing-file", lambda t: DecisionCache(t / "absent.sqlite", offline=True), E.CacheMissError,
     "absent.sqlite")
case("cache-read-only-missing-file", lambda t: DecisionCache(t / "absent.sqlite", read_only=True), E.CacheMissError,
     "absent.sqlite")
case("cache-not-a-database", write("c.sqlite", b"not a database" * 100, DecisionCache), E.DataFormatError,
     "c.sqlite")
case("cache-not-a-database-read-only", write("c.sqlite", b"not a database" * 100,
                                             lambda p: DecisionCache(p, read_only=True)), E.DataFormatError, "c.sqlite")
case("cache-chunk-size-0", lambda t: CachedBackend(make_backend("openai", model="m", base_url="http://x/v1"),
                                                   DecisionCache(t / "c.sqlite"), chunk_size=0),
     E.ConfigError, "chunk_size")
case("cache-import-bad-line", lambda t: (t / "x.jsonl").write_text("{oops\n") and DecisionCache(
    t / "c.sqlite").import_(t / "x.jsonl"), E.DataFormatError, "line 1", "x.jsonl")
case("cache-import-missing-file", lambda t: DecisionCache(t / "c.sqlite").import_(t / "absent.jsonl"),
     E.DataFormatError, "absent.jsonl")
case("cache-import-non-utf8", lambda t: (t / "x.jsonl").write_bytes(b'{"a": "\xff"}\n') and DecisionCache(
    t / "c.sqlite").import_(t / "x.jsonl"), E.DataFormatError, "x.jsonl")


def _offline_miss(t: Path):
    DecisionCache(t / "c.sqlite").close()
    cache = DecisionCache(t / "c.sqlite", offline=True)
    backend = CachedBackend(make_backend("openai", model="m", base_url="http://127.0.0.1:9/v1"), cache)
    return backend.decide([("a nurse", "the bridge is closed")])


case("cache-offline-miss", _offline_miss, E.CacheMissError, "c.sqlite", "a nurse", "the bridge is closed")
case("cache-closed", lambda t: (lambda c: (c.close(), len(c)))(DecisionCache(t / "c.sqlite")), E.ConfigError,
     "closed")

# -- the test ----------------------------------------------------------------------------------------------------------


def _params():
    for c in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=f"fix pending: {c.pending}")] if c.pending else []
        yield pytest.param(c, id=c.id, marks=marks)


def test_the_probe_is_large_and_its_ids_unique():
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("probe", _params())
def test_probe(probe: Case, tmp_path: Path):
    needles = [n.replace("{tmp}", str(tmp_path)) for n in probe.needles]
    try:
        result = probe.run(tmp_path)
    except E.LPMError as exc:  # a library call: the typed error, naming the input
        assert isinstance(exc, probe.error), f"{type(exc).__name__}: {exc}"
        for needle in needles:
            assert needle in str(exc), (needle, str(exc))
        return
    assert isinstance(result, tuple), f"Expected {probe.error.__name__} (got no error: {result!r:.200})"
    code, err = result  # a command line: exit 2, one line, no traceback
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and lines, (code, err)
    if probe.error is Usage:
        last = lines[-1]
        assert ": error: " in last, last
    else:
        assert len(lines) == 1, err
        last = lines[0]
        assert last.startswith(f"lpm: error: {probe.error.__name__}: "), last
    for needle in needles:
        assert needle in last, (needle, last)
