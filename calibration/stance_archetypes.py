"""Archetype decisions in the stance model: do they carry information about how people reply to rumours?

The question of issue 20, item 3, on RumourEval (:mod:`lpm.calibration.fit_stance`): fit the stance model
with and without archetype decisions and compare held-out errors. Tweet texts are not in the data, so
the archetypes are asked about generic texts (:data:`CONTEXTS`): the source rumour as first seen
(:data:`SOURCE`) and one follow-up per veracity (:data:`EVIDENCE`: confirmed, debunked, still
unverified).

How decisions enter (:class:`ArchetypeStanceModel`, a :class:`~lpm.calibration.stance_model.StanceModel`
whose agents belong to archetypes): for an agent of archetype ``a`` in the scenario of veracity ``v``,
with ``s[a, c]`` and ``r[a, c]`` the decided stance shift and arousal impulse about context ``c``, each
plus the learnable :class:`~lpm.archetypes.BehaviourHead`'s offset from the reaction's embedding,

* initial belief ``tanh(atanh(initial_belief) + z_i + belief_gain s[a, source])``,
* initial arousal of a reached user ``exp(arousal_gain r[a, source])`` (1 without archetypes),
* evidence rate ``evidence_rate_v exp(evidence_gain s[a, evidence_v])``: an archetype that accepts
  the follow-up moves toward the truth faster.

The three gains are learnable and start at 0, the head starts at zero weights: from the fitted model
without archetypes, the extended model starts exactly where that fit ended, so a fit can only use
the decisions if they help (:func:`compare`). The head's 4 x (D + 1) weights give the extended model
flexibility of its own; the ``random`` control (:meth:`StanceDecisions.random`: decisions and
reaction embeddings drawn at random, same shapes) measures what that flexibility alone buys.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Mapping, Optional

import torch
from torch import Tensor, nn

from lpm.archetypes import EMOTIONS, BehaviourHead, DecisionTable
from lpm.calibration.stance_check import _reference_shares
from lpm.calibration.stance_data import observed_counts
from lpm.calibration.stance_evaluation import metrics
from lpm.calibration.stance_memory import ThreadReplies, thread_replies
from lpm.calibration.stance_model import StanceConfig, StanceModel, VERACITIES
from lpm.errors import ConfigError
from lpm.targets_series import stance_kl, stance_shares

__all__ = ["SOURCE", "EVIDENCE", "CONTEXTS", "GAINS", "StanceDecisions", "ArchetypeStanceModel", "fit_shares",
           "paired_bootstrap", "compare", "BASELINE"]

#: The rumour as a replier first meets it (PHEME threads are mostly breaking news of attacks and crashes).
SOURCE = ("Unconfirmed breaking news circulating online: witnesses report shots fired and people taken hostage "
          "in the city centre. Police have not confirmed anything yet.")
#: What evidence later says, per veracity.
EVIDENCE = {
    "true": "Update: police and official sources have now confirmed that the report is true.",
    "false": "Update: the report was false. Police and fact-checkers have debunked it.",
    "unverified": "Update: the report is still unverified. Officials have neither confirmed nor denied it.",
}
#: What the archetypes are asked about: the source, then the evidence in :data:`VERACITIES` order.
CONTEXTS = (SOURCE,) + tuple(EVIDENCE[v] for v in VERACITIES)
#: The learnable gains of :class:`ArchetypeStanceModel`, in the order of its ``gains`` parameter.
GAINS = ("belief_gain", "arousal_gain", "evidence_gain")
#: The row name of the model without archetypes in :func:`compare`.
BASELINE = "no archetypes"
_AROUSAL = 2 + EMOTIONS.index("arousal")  # the head's arousal channel


@dataclass(frozen=True)
class StanceDecisions:
    """Archetype decisions about :data:`CONTEXTS`, and each agent's archetype.

    Shapes:
        archetype: ``(N,)`` int64 in ``[0, K)``.
        stance_shift, arousal: ``(K, 4)`` in [-1, 1], columns in :data:`CONTEXTS` order.
        reaction_embeddings: ``(K, 4, D)``.
    """

    archetype: Tensor
    stance_shift: Tensor
    arousal: Tensor
    reaction_embeddings: Tensor

    def __post_init__(self) -> None:
        c = len(CONTEXTS)
        if self.archetype.dim() != 1 or self.archetype.dtype.is_floating_point:
            raise ConfigError(f"Expected an (N,) integer archetype tensor (got {self.archetype.dtype} "
                              f"of shape {tuple(self.archetype.shape)})")
        k = self.stance_shift.shape[0] if self.stance_shift.dim() == 2 else -1
        if tuple(self.stance_shift.shape) != (k, c) or tuple(self.arousal.shape) != (k, c) \
                or self.reaction_embeddings.dim() != 3 or tuple(self.reaction_embeddings.shape[:2]) != (k, c):
            raise ConfigError(f"Expected stance_shift and arousal (K, {c}) and reaction_embeddings (K, {c}, D) (got "
                              f"{tuple(self.stance_shift.shape)}, {tuple(self.arousal.shape)}, "
                              f"{tuple(self.reaction_embeddings.shape)})")
        if self.archetype.numel() and (int(self.archetype.min()) < 0 or int(self.archetype.max()) >= k):
            raise ConfigError(f"Expected archetypes in [0, {k}) (got [{int(self.archetype.min())}, "
                              f"{int(self.archetype.max())}])")

    @property
    def num_archetypes(self) -> int:
        return self.stance_shift.shape[0]

    @classmethod
    def from_table(cls, table: DecisionTable, archetype: Tensor) -> "StanceDecisions":
        """The :data:`CONTEXTS` columns of ``table`` (built with them, e.g. by
        :meth:`lpm.archetypes.ArchetypeSetup.build`) for agents of archetypes ``archetype``."""
        sub = table.select(CONTEXTS)
        return cls(archetype.long(), sub.stance_shift.double(), sub.emotion_impulse[..., _AROUSAL - 2].double(),
                   sub.reaction_embeddings.double())

    @classmethod
    def random(cls, archetype: Tensor, k: int, dim: int = 384, *, seed: int = 0) -> "StanceDecisions":
        """Decisions without information, for the control arm: stance shifts uniform in [-0.3, 0.3]
        (the prompt's usual range), arousal uniform in [-1, 1], unit reaction embeddings uniform on the sphere."""
        gen = torch.Generator().manual_seed(seed)
        c = len(CONTEXTS)
        embeddings = torch.randn(k, c, dim, generator=gen, dtype=torch.float64)
        return cls(archetype.long(), (torch.rand(k, c, generator=gen, dtype=torch.float64) - 0.5) * 0.6,
                   torch.rand(k, c, generator=gen, dtype=torch.float64) * 2 - 1,
                   embeddings / embeddings.norm(dim=-1, keepdim=True))


class ArchetypeStanceModel(StanceModel):
    """The stance model with archetype decisions shaping initial beliefs, arousal and the take-up
    of evidence (module docstring).

    Args:
        config: as :class:`StanceModel`; ``config.agents`` must equal the decisions' N.
        decisions: the archetypes' :class:`StanceDecisions`.
        params: starting values of :data:`~lpm.calibration.stance_model.LEARNABLE` and :data:`GAINS`
            (gains default to 0: the model is then the plain stance model).
        seed: population seed, as :class:`StanceModel`.
    """

    def __init__(self, config: StanceConfig, decisions: StanceDecisions,
                 params: Optional[Mapping[str, float]] = None, *, seed: int = 0) -> None:
        params = dict(params or {})
        gains = [float(params.pop(name, 0.0)) for name in GAINS]
        super().__init__(config, params, seed=seed)
        if decisions.archetype.numel() != config.agents:
            raise ConfigError(f"Expected decisions for {config.agents} agents (got {decisions.archetype.numel()})")
        self.register_buffer("archetype", decisions.archetype.clone())
        self.register_buffer("decided_stance", decisions.stance_shift.clone())
        self.register_buffer("decided_arousal", decisions.arousal.clone())
        self.register_buffer("reaction_embeddings", decisions.reaction_embeddings.clone())
        self.head = BehaviourHead(decisions.reaction_embeddings.shape[-1], len(EMOTIONS)).double()
        self.gains = nn.Parameter(torch.tensor(gains, dtype=torch.float64))

    def decision_terms(self) -> tuple[Tensor, Tensor]:
        """``(stance (K, 4), arousal (K, 4))``: the decisions plus the head's offsets."""
        offset = self.head(self.reaction_embeddings.to(self.head.linear.weight.dtype))  # (K, 4, 2 + E)
        return self.decided_stance + offset[..., 1], self.decided_arousal + offset[..., _AROUSAL]

    def values(self) -> dict[str, Tensor]:
        return {**super().values(), **{name: self.gains[i] for i, name in enumerate(GAINS)}}

    def initial_state(self, belief_offset: Optional[Tensor] = None, arousal_scale: Optional[Tensor] = None):
        stance, arousal = self.decision_terms()
        own_offset = self.gains[0] * stance[self.archetype, 0]  # (N,)
        own_scale = torch.exp(self.gains[1] * arousal[self.archetype, 0])
        return super().initial_state(own_offset if belief_offset is None else own_offset + belief_offset,
                                     own_scale if arousal_scale is None else own_scale * arousal_scale)

    def simulate_counts(self, seed: int = 0) -> Tensor:
        stance, _ = self.decision_terms()
        # computed here (not in a buffer) so that every simulation sees the current head and gains
        self.evidence.agent_scale = torch.exp(self.gains[2] * stance[self.archetype, 1:]).T  # (3, N)
        try:
            return super().simulate_counts(seed)
        finally:
            self.evidence.agent_scale = None


def fit_shares(model: StanceModel, observed: Tensor, *, steps: int, budget_s: Optional[float] = None,
               learning_rate: float = 0.05, seed: int = 0, clip: float = 50.0) -> dict[str, float]:
    """Fit ``model``'s trainable parameters to ``observed`` stance counts by Adam on the count-weighted
    KL of the shares (the loss of :class:`~lpm.calibration.fit_stance.StanceCalibration`), in place, and
    leave it at the parameters of the lowest loss seen.

    Args:
        observed: ``(3, K, 4)`` replies per veracity, bin and stance.
        steps: optimiser steps at most; ``budget_s``: wall seconds at most (checked between steps).

    Returns:
        ``{"loss": lowest loss, "initial_loss", "steps": steps taken, "wall_s": seconds}``.
    """
    if steps < 0:
        raise ConfigError(f"Expected steps >= 0 (got {steps})")
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=learning_rate)
    start, best, best_state, first, taken = time.perf_counter(), math.inf, None, math.nan, 0
    target = observed.double()
    for step in range(steps + 1):  # the last pass only evaluates the final step's parameters
        loss = stance_kl(stance_shares(model.simulate_counts(seed)), target.to(torch.float64))
        value = float(loss.detach())
        if step == 0:
            first = value
        if value < best:
            best, best_state = value, copy.deepcopy(model.state_dict())
        if step == steps or (budget_s is not None and time.perf_counter() - start > budget_s):
            break
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        optimiser.step()
        taken += 1
    if best_state is not None:
        model.load_state_dict(best_state)
    return {"loss": best, "initial_loss": first, "steps": taken, "wall_s": time.perf_counter() - start}


def paired_bootstrap(shares: Tensor, reference: Tensor, replies: ThreadReplies, *, draws: int = 1000,
                     level: float = 0.9, seed: int = 0) -> tuple[float, float, float]:
    """``mae_stance(shares) - mae_stance(reference)`` on ``replies`` pooled per (veracity, bin), with a
    percentile interval from resampling threads (both predictions on the same resample).

    Shapes:
        shares, reference: ``(3, K, 4)`` predicted shares per veracity and bin.

    Returns:
        ``(difference, low, high)``.
    """
    if not 0.0 < level < 1.0 or draws < 1:
        raise ConfigError(f"Expected level in (0, 1) and draws >= 1 (got {level}, {draws})")
    units = replies.veracity.numel()
    gen = torch.Generator().manual_seed(seed)

    def difference(index: Optional[Tensor]) -> float:
        part = replies if index is None else replies.select(index)
        counts = part.pooled(part.every)  # a cell a resample leaves empty drops out of both MAEs
        return metrics(shares, counts)["mae_stance"] - metrics(reference, counts)["mae_stance"]

    found = torch.tensor([difference(torch.randint(units, (units,), generator=gen)) for _ in range(draws)],
                         dtype=torch.float64)
    tail = (1.0 - level) / 2
    low, high = torch.quantile(found, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return difference(None), low, high


def compare(posts, decisions: Mapping[str, StanceDecisions], config: StanceConfig = StanceConfig(), *,
            steps: int = 60, extra_steps: int = 30, budget_s: Optional[float] = None, seed: int = 0,
            draws: int = 1000, learning_rate: float = 0.05) -> list[dict[str, object]]:
    """Held-out stance errors of the model without and with each set of archetype decisions.

    The model without archetypes is fitted on the training threads for ``steps``; every arm then
    continues from that fit for ``extra_steps`` (the baseline too, so each arm gets the same
    optimisation), the archetype arms with their gains and head added at 0. All are checked on the
    test threads (``mae_stance``, ``kl_stance`` of :func:`~lpm.calibration.stance_evaluation.metrics`),
    beside the references of ``lpm check stance`` from the training threads.

    Args:
        posts: RumourEval posts (:func:`~lpm.calibration.stance_data.load_posts`).
        decisions: ``{arm name: decisions}``, each for ``config.agents`` agents.
        budget_s: wall seconds per fit stage (``None``: steps only).
        draws: bootstrap resamples of the test threads for the paired difference from the baseline.

    Returns:
        One row per arm, then per reference: ``arm``, ``kind`` (``model`` / ``reference``),
        ``train_loss`` (models), ``mae_stance``, ``kl_stance``, ``diff``, ``diff_low``, ``diff_high``
        (``mae_stance`` minus the baseline's, 90% paired bootstrap interval), ``steps``, ``wall_s`` and
        the fitted gains.
    """
    if BASELINE in decisions:
        raise ConfigError(f"Expected arm names other than {BASELINE!r} (got it among {list(decisions)})")
    train_counts, _ = observed_counts(posts, config, "train")
    test = thread_replies(posts, config, "test")
    test_counts = test.pooled(test.every)
    base = StanceModel(config, seed=seed)
    first = fit_shares(base, train_counts, steps=steps, budget_s=budget_s, learning_rate=learning_rate, seed=seed)
    start = base.fitted_params()
    arms: dict[str, StanceModel] = {BASELINE: StanceModel(config, start, seed=seed)}
    arms.update({name: ArchetypeStanceModel(config, d, start, seed=seed) for name, d in decisions.items()})
    rows, shares = [], {}
    for name, model in arms.items():
        found = fit_shares(model, train_counts, steps=extra_steps, budget_s=budget_s, learning_rate=learning_rate,
                           seed=seed)
        with torch.no_grad():
            shares[name] = stance_shares(model.simulate_counts(seed)).double()
        fitted = model.fitted_params()
        rows.append({"arm": name, "kind": "model", "train_loss": found["loss"],
                     "steps": first["steps"] + found["steps"], "wall_s": first["wall_s"] + found["wall_s"],
                     **{g: fitted[g] for g in GAINS if g in fitted}})
    references = _reference_shares(train_counts.double())
    for name, value in references.items():
        shares[name] = value
        rows.append({"arm": name, "kind": "reference"})
    for row in rows:
        name = str(row["arm"])
        row.update({k: v for k, v in metrics(shares[name], test_counts).items() if k in ("mae_stance", "kl_stance")})
        diff, low, high = paired_bootstrap(shares[name], shares[BASELINE], test, draws=draws, seed=seed)
        row.update(diff=diff, diff_low=low, diff_high=high)
    return rows
