"""A false rumour seeded at influential accounts, and what platforms can do about it.

100k users on a clustered scale-free follower graph (Holme-Kim, m = 5). A false claim is posted at
time 0 by the three most-followed accounts (about 14k followers each). How the claim spreads is
not hand-set: the per-exposure reshare probability, how much of their feed users read per
10-minute step (and how that differs between users) and how fast a post leaves the feed are the
values fitted to the Twitter15 rumour cascades (:data:`TWITTER15`), so the claim behaves like a
real one: a few hundred reshares, most of them in the first hours, in a long tail of late ones.
Users whose opinion is aligned with the claim reshare it more (logit weight 0.8). Arms, each
compared with doing nothing on the same seeds (common random numbers):

* fact-check label on the claim at 1 h, 6 h or 24 h;
* rebuttal posts by five official accounts: early and frequent (from 1 h, every 2 h, 6 posts)
  vs late (from 12 h, every 6 h, 2 posts);
* suspension vs edge blocking of the ten most-followed spreaders other than the sources, at 2 h;
* prebunking 10% or 30% of users before the claim appears;
* downranking the claim in feeds from 2 h.

``lpm sweep misinformation --grid label_h=1,6,24,none --grid prebunk_share=0,0.1,0.3`` runs a grid
of arms built by :func:`sweep_arm` instead, all in one batch.

With archetypes (``lpm run misinformation --archetypes K``), K archetypes' decisions about the claim,
the rebuttal and the fact-check label (:data:`CONTEXTS`) replace the uniform reshare probability:
each archetype's share probability is its members' per-exposure reshare probability, and each
exposure to the claim moves their opinion and emotions as their archetype decided. Rebuttals and
labels act on each user in proportion to how its archetype took their text.

The cascade's parameters are keys of :class:`Config` (``--set model.cascade.transmissibility=0.01``).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import torch

from lpm.archetypes import ArchetypeSetup, OpinionTopic
from lpm.dynamics import Cascade, Item
from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.interventions import (Downranking, EdgeBlocking, FactCheckLabel, Intervention, Prebunking, Rebuttal,
                               Suspension)
from lpm.model import Model
from lpm.scenario import Scenario
from lpm.state import PopulationState

CLAIM = "A claim that vaccine X alters human DNA"
REBUTTAL = ("Health authorities: vaccine X does not alter human DNA. Vaccines never enter the cell nucleus; "
            "the claim circulating online is false.")
LABEL = "Fact-check: independent fact-checkers rated the claim that vaccine X alters human DNA as false."
#: What archetypes are asked about (``lpm run misinformation --archetypes K``).
CONTEXTS = (CLAIM, REBUTTAL, LABEL)


#: Cascade dynamics fitted to Twitter15 (``lpm calibrate cascades --data twitter15.zip``: the 1,213
#: training cascades of the 80/20 split, mean-field gradient fit, 300 s on a CPU; held-out 20%:
#: nrmse_size 0.073, ks_size 0.14 against the fitted Independent Cascade's 0.37 and 0.41). The
#: fitted out-of-graph audience is not used: here the sources' audiences are in the graph. The
#: attention share is per 10-minute step, so the scenario steps by 10 minutes.
TWITTER15 = dict(transmissibility=0.0055, attention=0.3, attention_spread=1.17, feed_half_life_h=0.173,
                 feed_tail=1.68)
STEP_H = 1.0 / 6.0


@dataclass(frozen=True)
class CascadeConfig:
    """The claim's :class:`lpm.dynamics.Cascade` arguments; defaults: the Twitter15 fit (:data:`TWITTER15`).
    With archetypes, ``transmissibility`` is replaced by the archetypes' own share probabilities."""

    transmissibility: float = TWITTER15["transmissibility"]
    attention: float = TWITTER15["attention"]
    attention_spread: float = TWITTER15["attention_spread"]
    feed_half_life_h: float = TWITTER15["feed_half_life_h"]
    feed_tail: float = TWITTER15["feed_tail"]
    alignment_weight: float = 0.8


@dataclass(frozen=True)
class ModelConfig:
    cascade: CascadeConfig = field(default_factory=CascadeConfig)


@dataclass(frozen=True)
class Config:
    """The settings of the misinformation scenario (keys of ``lpm run misinformation --config / --set``)."""

    model: ModelConfig = field(default_factory=ModelConfig)


def accounts_by_followers(graph: Graph) -> list[int]:
    return torch.argsort(graph.out_degree(), descending=True).tolist()


def build_graph(agents: int, seed: int, device: torch.device) -> Graph:
    return Graph.holme_kim(agents, 5, 0.3, seed=seed).to(device)


def build_population(graph: Graph, batch: int, seed: int) -> PopulationState:
    return PopulationState.sample(graph.num_nodes, seed=seed, batch=batch, topics=1, opinion="bimodal").to(graph.device)


def build_model(graph: Graph, dt: float, seed: int, archetypes: ArchetypeSetup | None = None,
                config: Config = Config()) -> Model:
    sources = tuple(accounts_by_followers(graph)[:3])
    item = Item(source=sources, text=CLAIM, stance=1.0, topic=0)
    parameters = dataclasses.asdict(config.model.cascade)
    if archetypes is None:
        return Model(cascade=Cascade([item], **parameters), dt=dt)
    drive = archetypes.drive([item])
    # transmissibility 0.5 is logit 0: the archetype's share probability is the per-exposure one
    cascade = Cascade([item], prior=drive, archetype=drive.archetype, **dict(parameters, transmissibility=0.5))
    return Model(cascade=cascade, dt=dt, archetype_drive=drive)


def build_arms(graph: Graph, archetypes: ArchetypeSetup | None = None) -> dict:
    ranked = accounts_by_followers(graph)
    officials, spreaders = ranked[13:18], ranked[3:13]
    n = graph.num_nodes

    def heard(intervention: Intervention, text: str) -> Intervention:
        """With archetypes, the intervention reaches each user as its archetype took ``text``."""
        return intervention if archetypes is None else archetypes.scaled(intervention, text)

    return {
        "none": [],
        "label@1h": [heard(FactCheckLabel(0, at=1.0), LABEL)],
        "label@6h": [heard(FactCheckLabel(0, at=6.0), LABEL)],
        "label@24h": [heard(FactCheckLabel(0, at=24.0), LABEL)],
        "rebuttal_early": [heard(Rebuttal(0, officials, graph, at=1.0, every_h=2.0, count=6), REBUTTAL)],
        "rebuttal_late": [heard(Rebuttal(0, officials, graph, at=12.0, every_h=6.0, count=2), REBUTTAL)],
        "suspend_top10": [Suspension(spreaders, n, at=2.0)],
        "block_top10": [EdgeBlocking(spreaders, graph, at=2.0)],
        "prebunk10": [Prebunking([0], n, at=-1.0, share=0.1)],
        "prebunk30": [Prebunking([0], n, at=-1.0, share=0.3)],
        "downrank": [Downranking(0, at=2.0)],
    }


def sweep_arm(graph: Graph, *, label_h: float | None = None, label_strength: float = 0.5,
              prebunk_share: float = 0.0, downrank: float = 0.0, suspend_top: int = 0,
              rebuttal_every_h: float | None = None) -> list[Intervention]:
    """One arm of ``lpm sweep misinformation`` from plain parameters (0 or None: that intervention absent).

    Args:
        graph: the follower graph (spreaders and officials are ranked by followers, as in the arms).
        label_h: hour of a fact-check label on the claim, of strength ``label_strength`` (logit units).
        prebunk_share: share of users prebunked before the claim appears, in [0, 1].
        downrank: share by which the claim's feed exposure is cut from 2 h, in [0, 1).
        suspend_top: suspend this many of the most-followed spreaders (other than the sources) at 2 h.
        rebuttal_every_h: rebuttals by five official accounts from 1 h, this many hours apart, over
            the first 12 hours (at least one post).
    """
    ranked = accounts_by_followers(graph)
    officials, spreaders = ranked[13:18], ranked[3:]
    n = graph.num_nodes
    arm: list[Intervention] = []
    if label_h is not None:
        arm.append(FactCheckLabel(0, at=float(label_h), strength=float(label_strength)))
    if prebunk_share:
        arm.append(Prebunking([0], n, at=-1.0, share=float(prebunk_share)))
    if downrank:
        arm.append(Downranking(0, at=2.0, factor=float(downrank)))
    if suspend_top:
        if not (isinstance(suspend_top, int) and 0 < suspend_top <= len(spreaders)):
            raise ConfigError(f"Expected suspend_top an int in [0, {len(spreaders)}] (got {suspend_top!r})")
        arm.append(Suspension(spreaders[:suspend_top], n, at=2.0))
    if rebuttal_every_h is not None:
        every = float(rebuttal_every_h)
        if not every > 0:
            raise ConfigError(f"Expected rebuttal_every_h > 0 (got {rebuttal_every_h!r})")
        arm.append(Rebuttal(0, officials, graph, at=1.0, every_h=every, count=max(1, int(12.0 // every))))
    return arm


def scenario(config: Config = Config()) -> Scenario:
    """The misinformation scenario with ``config``'s settings."""
    return Scenario(
        name="misinformation",
        description=__doc__.strip().splitlines()[0],
        build_graph=build_graph,
        build_population=build_population,
        build_model=functools.partial(build_model, config=config),
        arms=build_arms,
        sweep=sweep_arm,
        agents=100_000,
        days=1.5,
        dt=STEP_H,
        seeds=6,
        contexts=CONTEXTS,
        # belief in the claim: a health topic on which conservatives lean toward the claim (an assumption)
        opinion_topics=(OpinionTopic("health, medicine and vaccines", 1.0),),
        config=config,
        configure=scenario,
    )


SCENARIO = scenario()
