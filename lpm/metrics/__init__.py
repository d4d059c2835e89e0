"""Metrics of simulated runs: cascade trees, heavy tails, polarization, echo chambers, sentiment.

These are computed after a run (they are not :mod:`lpm.observables` recorded every step), for every
scenario of the batch at once, with no Python loop over agents, edges or items.

Cascade trees
    For ``B`` scenarios, ``N`` agents and ``C`` items a cascade forest is two tensors:
    ``reshare_time: (B, N, C)``, the hour at which agent ``i`` reshared (the source: posted) item
    ``c``, ``+inf`` if never; and ``parent: (B, N, C)`` int64, the followee it got the item from,
    ``-1`` for the source and for agents who never reshared. The members of cascade ``(b, c)`` are
    the agents with a finite time; its source is the member with parent ``-1``. A parent reshares no
    later than its children, so the members by any time ``t`` form a subtree (the cascade truncated
    at ``t``) and every curve below is a statistic of that subtree.

    Size, depth and maximum breadth follow Vosoughi, Roy & Aral (2018), "The spread of true and
    false news online", Science 359:1146, and Goel, Watts & Goldstein (2012), "The structure of
    online diffusion networks", EC'12. Structural virality is the mean distance between all pairs of
    nodes of the tree, Goel, Anderson, Hofman & Watts (2016), "The structural virality of online
    diffusion", Management Science 62(1):180.

Heavy tails
    :func:`fit_power_law` follows Clauset, Shalizi & Newman (2009), "Power-law distributions in
    empirical data", SIAM Review 51(4):661: the maximum-likelihood exponent for a given ``x_min``,
    ``x_min`` chosen to minimise the Kolmogorov-Smirnov distance, the goodness-of-fit p-value of the
    semi-parametric bootstrap, and likelihood-ratio tests against the lognormal and the exponential
    (fitted by the ``powerlaw`` package).
"""

from lpm.metrics.opinions import (between_group_distance, bimodality_coefficient, echo_chamber_index,
                                  friendship_paradox, polarization_variance, sentiment_shares)
from lpm.metrics.tails import LikelihoodRatio, PowerLawFit, ccdf, fit_power_law
from lpm.metrics.trees import (cascade_depth, cascade_depth_curve, cascade_size, cascade_summary, forest_depths,
                               max_breadth_curve, structural_virality)

__all__ = ["cascade_depth", "cascade_size", "cascade_depth_curve", "max_breadth_curve", "structural_virality", "cascade_summary", "ccdf", "PowerLawFit", "LikelihoodRatio", "fit_power_law", "polarization_variance", "bimodality_coefficient", "between_group_distance", "echo_chamber_index", "friendship_paradox", "sentiment_shares", "forest_depths"]
