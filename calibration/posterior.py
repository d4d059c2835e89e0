"""Parameter posteriors of a fit: Gaussian in the parameters' unconstrained coordinates (Laplace).

A fit's point estimate says nothing about how well the data pin each parameter down. The posterior
here is the Laplace approximation (MacKay 1992, Neural Comput. 4) of a Gaussian synthetic likelihood
of summary statistics (Wood 2010, Nature 466): with statistics ``s(z)`` of the model at unconstrained
parameters ``z``, observed statistics ``s_obs`` and their covariance ``S`` (the data's sampling noise
plus the simulation's own), and a weak Gaussian prior ``N(m0, diag(sd0^2))``,

    -log p(z | data) = 1/2 r' S^-1 r + 1/2 |(z - m0) / sd0|^2 + const,    r = s_obs - s(z),

minimised by damped Gauss-Newton (Levenberg-Marquardt) with the Jacobian of ``s`` from autograd
through the differentiable simulator; the posterior covariance is ``(J' S^-1 J + diag(sd0^-2))^-1``
at the mode. Draws map back through each parameter's constraint (logit, log, softplus), so they
respect every range.

:class:`GaussianPosterior` is what a fit saves beside its parameter file (``FIT.posterior.json``)
and what :func:`lpm.counterfactual` and ``lpm forecast`` draw parameters from: any object with
``draw(count, seed)`` and ``apply(model, values)`` (:class:`lpm.uncertainty.ParameterDraws`).
"""

from __future__ import annotations

import importlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor

from lpm.calibration.common import KINDS, atomic_write_json
from lpm.errors import ConfigError, DataFormatError, NumericalError

__all__ = ["TRANSFORMS", "GaussianPosterior", "gauss_newton", "load_posterior", "posterior_path"]

_FORMAT = 1


def _softplus_inverse(value: float) -> float:
    return value + math.log(-math.expm1(-value))


#: constraint name -> (constrained value -> unconstrained, unconstrained -> constrained)
TRANSFORMS: dict[str, tuple[Callable[[float], float], Callable[[float], float]]] = {
    "logit": (lambda v: math.log(v) - math.log1p(-v), lambda z: 1.0 / (1.0 + math.exp(-z))),
    "log": (math.log, math.exp),
    "softplus": (_softplus_inverse, lambda z: float(torch.nn.functional.softplus(torch.tensor(z, dtype=torch.float64)))),
    # read as 1 + softplus(z) (power-law tails steeper than 1)
    "softplus1": (lambda v: _softplus_inverse(v - 1.0),
                  lambda z: 1.0 + float(torch.nn.functional.softplus(torch.tensor(z, dtype=torch.float64)))),
}


def posterior_path(params_path: str | os.PathLike) -> Path:
    """Where the posterior of the fit saved at ``params_path`` lives: ``FIT.posterior.json``."""
    path = Path(params_path)
    return path.with_name(path.stem + ".posterior.json")


@dataclass(frozen=True)
class GaussianPosterior:
    """A Gaussian posterior over some parameters' unconstrained coordinates; the rest held at values.

    Args:
        kind: the calibration kind (``cascades``, ``sentiment``, ``stance``); :meth:`apply` uses its
            module's ``apply_params``.
        names: the ``P`` parameters with a posterior.
        transforms: each one's constraint, a key of :data:`TRANSFORMS`.
        mean: ``(P,)`` float64 posterior mean (the mode) in unconstrained coordinates.
        covariance: ``(P, P)`` float64, symmetric positive definite.
        fixed: the kind's other parameters, at their point values (not uncertain here).
        meta: how it was made (statistics, noise, iterations).
    """

    kind: str
    names: tuple[str, ...]
    transforms: tuple[str, ...]
    mean: Tensor
    covariance: Tensor
    fixed: Mapping[str, float] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = len(self.names)
        if len(self.transforms) != p or any(t not in TRANSFORMS for t in self.transforms):
            raise ConfigError(f"Expected one transform among {sorted(TRANSFORMS)} per parameter {list(self.names)} "
                              f"(got {list(self.transforms)})")
        if tuple(self.mean.shape) != (p,) or tuple(self.covariance.shape) != (p, p):
            raise ConfigError(f"Expected mean ({p},) and covariance ({p}, {p}) (got {tuple(self.mean.shape)} and "
                              f"{tuple(self.covariance.shape)})")
        if not (torch.isfinite(self.mean).all() and torch.isfinite(self.covariance).all()):
            raise NumericalError("Expected a finite posterior mean and covariance (got non-finite entries)")
        try:
            torch.linalg.cholesky(self.covariance.double())
        except RuntimeError:
            raise NumericalError(f"Expected a positive definite posterior covariance for {list(self.names)} "
                                 f"(got eigenvalues {torch.linalg.eigvalsh(self.covariance.double()).tolist()})") from None

    @property
    def sd(self) -> Tensor:
        """``(P,)`` posterior standard deviations in unconstrained coordinates."""
        return self.covariance.diagonal().sqrt()

    def point(self) -> dict[str, float]:
        """Every parameter at the posterior mode (constrained values)."""
        return {**self.fixed, **self._constrained(self.mean)}

    def _constrained(self, z: Tensor) -> dict[str, float]:
        return {n: TRANSFORMS[t][1](float(v)) for n, t, v in zip(self.names, self.transforms, z.tolist())}

    def draw(self, count: int, seed: int = 0) -> list[dict[str, float]]:
        """``count`` parameter sets (every parameter, constrained values) drawn from the posterior."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"Expected a positive integer count of draws (got {count!r})")
        generator = torch.Generator().manual_seed(int(seed))
        normal = torch.randn(count, len(self.names), generator=generator, dtype=torch.float64)
        z = self.mean.double() + normal @ torch.linalg.cholesky(self.covariance.double()).T
        return [{**self.fixed, **self._constrained(row)} for row in z]

    def interval(self, level: float = 0.8) -> dict[str, tuple[float, float]]:
        """Central credible interval of each parameter (constrained values; the maps are monotone)."""
        if not 0 < level < 1:
            raise ConfigError(f"Expected a level in (0, 1) (got {level})")
        k = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + level / 2)))
        low, high = self._constrained(self.mean - k * self.sd), self._constrained(self.mean + k * self.sd)
        return {n: (low[n], high[n]) for n in self.names}

    def apply(self, model, values: Mapping[str, float]) -> list[str]:
        """Set ``model``'s parameters of this kind to ``values`` (the kind's ``apply_params``)."""
        if self.kind not in KINDS:
            raise ConfigError(f"Expected a posterior of a kind among {sorted(KINDS)} (got {self.kind!r})")
        return importlib.import_module(KINDS[self.kind]).apply_params(model, values)

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_write_json(path, {
            "format": _FORMAT, "kind": self.kind, "names": list(self.names), "transforms": list(self.transforms),
            "mean": self.mean.tolist(), "covariance": self.covariance.tolist(), "fixed": dict(self.fixed),
            "meta": dict(self.meta)})


def load_posterior(path: str | os.PathLike, kind: Optional[str] = None) -> GaussianPosterior:
    """A posterior written by :meth:`GaussianPosterior.save`, validated.

    Raises:
        DataFormatError: unreadable file, wrong format or kind, malformed mean or covariance.
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataFormatError(f"Expected a posterior JSON file at {path} ({exc})") from None
    keys = {"format", "kind", "names", "transforms", "mean", "covariance"}
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT or not keys <= set(payload):
        raise DataFormatError(f"Expected a posterior file (format {_FORMAT}, keys {sorted(keys)}) at {path} "
                              f"(got {sorted(payload) if isinstance(payload, dict) else type(payload).__name__})")
    if kind is not None and payload["kind"] != kind:
        raise DataFormatError(f"Expected a posterior for {kind!r} in {path} (got {payload['kind']!r})")
    try:
        return GaussianPosterior(payload["kind"], tuple(payload["names"]), tuple(payload["transforms"]),
                                 torch.tensor(payload["mean"], dtype=torch.float64),
                                 torch.tensor(payload["covariance"], dtype=torch.float64),
                                 {k: float(v) for k, v in payload.get("fixed", {}).items()}, payload.get("meta", {}))
    except (ConfigError, NumericalError, TypeError, ValueError) as exc:
        raise DataFormatError(f"Expected a well-formed posterior in {path} ({exc})") from None


def gauss_newton(statistics: Callable[[bool], tuple[Tensor, Optional[Tensor]]], get: Callable[[], Tensor],
                 put: Callable[[Tensor], None], observed: Tensor, noise: Tensor, *, prior_mean: Tensor,
                 prior_sd: float | Tensor = 3.0, iterations: int = 8, damping: float = 1e-2,
                 tolerance: float = 1e-4) -> tuple[Tensor, Tensor, list[float]]:
    """Mode and Laplace covariance of the Gaussian synthetic likelihood (module docstring).

    Args:
        statistics: ``(jacobian) -> (s, J)``, the model's ``(K,)`` statistics at the current
            parameters and, when asked, their ``(K, P)`` Jacobian with respect to the unconstrained
            coordinates (else ``None``: a rejected step costs one forward pass only).
        get: ``() -> z``, the current ``(P,)`` unconstrained coordinates.
        put: ``z -> None``, sets them.
        observed: ``(K,)`` observed statistics.
        noise: ``(K, K)`` covariance of ``observed - s`` (data plus simulation noise).
        prior_mean, prior_sd: the Gaussian prior on ``z`` (``(P,)`` and a scalar or ``(P,)``).
        iterations: at most this many accepted or rejected steps.
        damping: initial Levenberg-Marquardt damping (relative to the curvature's diagonal).
        tolerance: stop when a step moves no coordinate by more than this.

    Returns:
        ``(mode, covariance, objective_history)``; the parameters are left at the mode.
    """
    noise = noise.double()
    precision_noise = torch.linalg.inv(noise)
    prior_precision = torch.as_tensor(prior_sd, dtype=torch.float64).expand_as(prior_mean).pow(-2)

    def objective(s: Tensor, z: Tensor) -> float:
        r = observed.double() - s.double()
        return float(0.5 * r @ precision_noise @ r + 0.5 * (prior_precision * (z - prior_mean) ** 2).sum())

    z = get().double()
    s, jac = statistics(True)
    current = objective(s, z)
    history = [current]
    lam = damping
    for _ in range(iterations):
        jac = jac.double()
        r = observed.double() - s.double()
        curvature = jac.T @ precision_noise @ jac + torch.diag(prior_precision)
        gradient = jac.T @ precision_noise @ r - prior_precision * (z - prior_mean)
        step = torch.linalg.solve(curvature + lam * torch.diag(curvature.diagonal()), gradient)
        put(z + step)
        s_new, _ = statistics(False)
        candidate = objective(s_new, z + step)
        if math.isfinite(candidate) and candidate <= current:
            z, current, lam = z + step, candidate, lam / 3
            s, jac = statistics(True)
            history.append(current)
            if float(step.abs().max()) < tolerance:
                break
        else:  # rejected: back to z, more damping
            put(z)
            lam *= 10
    put(z)
    jac = jac.double()
    covariance = torch.linalg.inv(jac.T @ precision_noise @ jac + torch.diag(prior_precision))
    return z, 0.5 * (covariance + covariance.T), history


def statistics_noise(samples: Sequence[Tensor]) -> Tensor:
    """``(K, K)`` covariance of statistic vectors (bootstrap or simulation replicates), with a floor of
    1e-6 of the mean variance on the diagonal so a constant statistic does not make it singular."""
    stacked = torch.stack([s.double() for s in samples])
    cov = torch.cov(stacked.T).reshape(stacked.size(1), stacked.size(1))
    floor = 1e-6 * float(cov.diagonal().mean().clamp_min(1e-12))
    return cov + floor * torch.eye(cov.size(0), dtype=torch.float64)
