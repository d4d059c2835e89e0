"""Constrained learnable parameters, re-exported from :mod:`lpm.params` (their home sits below both
dynamics and interventions, so neither imports the other for them)."""

from lpm.params import inverse_softplus, log_scale, logit, positive, positive_value, softplus, unit_interval

__all__ = ["positive", "positive_value", "log_scale", "unit_interval", "inverse_softplus", "logit", "softplus"]
