"""Dynamics modules, one model family per file. Each is a ``torch.nn.Module`` following the
:class:`lpm.engine.Dynamics` protocol (``forward(state, graph, ctx) -> Updates`` and ``check(state)``),
whose learnable parameters are stored unconstrained and read through a transform (softplus or sigmoid)."""

from lpm.dynamics.activity import Burst, Hawkes
from lpm.dynamics.cascade import Cascade, Item
from lpm.dynamics.cascade_state import CascadeState, init_cascade_state
from lpm.dynamics.emotion import EmotionContagion, Shock
from lpm.dynamics.recommender import Feed
from lpm.dynamics.opinion import BiasedAssimilation, BoundedConfidence, Deffuant, DeGroot, FriedkinJohnsen
from lpm.dynamics.threshold import LinearThreshold

__all__ = [
    "DeGroot",
    "FriedkinJohnsen",
    "BoundedConfidence",
    "Deffuant",
    "BiasedAssimilation",
    "EmotionContagion",
    "Shock",
    "Hawkes",
    "Burst",
    "Cascade",
    "Item",
    "LinearThreshold",
    "CascadeState",
    "init_cascade_state",
    "Feed",
]
