"""Dynamics modules, one model family per file. Each is a ``torch.nn.Module`` whose learnable
parameters are stored unconstrained and read through a transform (softplus or sigmoid)."""

from lpm.dynamics.activity import Burst, Hawkes
from lpm.dynamics.cascade import Cascade, Item, LinearThreshold, init_cascade_state
from lpm.dynamics.emotion import EmotionContagion, Shock
from lpm.dynamics.recommender import Feed
from lpm.dynamics.opinion import BiasedAssimilation, BoundedConfidence, Deffuant, DeGroot, FriedkinJohnsen

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
    "init_cascade_state",
    "Feed",
]
