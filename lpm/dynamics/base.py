"""Constrained learnable parameters, re-exported from :mod:`lpm.params` (their home sits below both
dynamics and interventions, so neither imports the other for them)."""

from lpm.params import inverse_softplus, logit, positive, softplus, unit_interval

__all__ = ["positive", "unit_interval", "inverse_softplus", "logit", "softplus"]
