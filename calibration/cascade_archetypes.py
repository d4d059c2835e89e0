"""Archetype decisions in the cascade model: do they carry information about how rumours spread?

The cascade half of issue 20, item 3 (the stance half is :mod:`lpm.calibration.stance_archetypes`).
Twitter15 has no tweet texts, but every cascade carries a label (:data:`LABELS`: a rumour later
confirmed, one debunked, one never resolved, or ordinary news), so the archetypes are asked about
one generic text per label (:data:`CONTEXTS`).

How decisions enter (:class:`ArchetypePrior`): item ``c`` of the simulated world stands for a
cascade of label ``label(c) = c mod L`` (Twitter15's four labels are about equally common), and an
agent of archetype ``a`` has the extra reshare logit

    prior[a, c] = reshare_gain * share[a, l] + arousal_gain * arousal[a, l] + head(e[a, l])_0,  l = label(c)

with ``share`` the decided share probability's logit (centred over archetypes and labels, so that
the gain moves contrasts, not the level ``transmissibility`` already sets), ``arousal`` the decided
arousal impulse, and ``e`` the reaction's embedding through the learnable
:class:`~lpm.archetypes.BehaviourHead`. Both gains and the head start at 0, so the extended model
starts exactly at the fit without archetypes. The head's D + 1 weights give it flexibility of its
own (with 4 labels per archetype it can set almost any per-(archetype, label) offset); the
``random`` control (:meth:`CascadeDecisions.random`) measures what that flexibility alone buys, and
the ``label offsets`` reference (:meth:`CascadeDecisions.per_label`: one-hot embeddings, no
decisions) what a free reshare offset per label buys.

Loss (:class:`LabelledCascadeCalibration`): the mean-field loss of
:class:`~lpm.calibration.fit_cascades.CascadeCalibration`, per label: the simulated items of label
``l`` against the observed cascades of label ``l``, summed over labels. Without archetypes every
label shares one distribution; only decisions (or the head) can make them differ.

Comparison (:func:`compare`, ``scripts/cascade_archetypes.py``): every arm continues the same plain
fit for the same steps (:func:`fit_labels`) and is scored on held-out cascades, on mean-field and on
sampled cascades (:func:`held_out_loss`), with a paired bootstrap over the held-out cascades
(:func:`paired_bootstrap`). Results on Twitter15 are in the README.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from lpm.archetypes import EMOTIONS, BehaviourHead, DecisionTable
from lpm.calibration.cascade_world import DEFAULT_FIXED, RECORD, CascadeWorld
from lpm.calibration.fit_cascades import CascadeCalibration, _quantiles
from lpm.data.cascades import CascadeTable
from lpm.errors import ConfigError, DataFormatError
from lpm.relax import Hard
from lpm.simulate import simulate
from lpm.targets import GROWTH_HOURS, cascade_targets

__all__ = ["LABELS", "CONTEXTS", "GAINS", "BASELINE", "CascadeDecisions", "ArchetypePrior", "LabelTargets",
           "LabelledCascadeCalibration", "label_targets", "fit_labels", "match_loss", "paired_bootstrap",
           "held_out_loss", "compare"]

#: Twitter15's cascade labels, in the order items take them (item ``c`` has label ``c mod 4``).
LABELS = ("true", "false", "unverified", "non-rumor")
#: What the archetypes are asked about, one generic text per label.
CONTEXTS = {
    "true": "A surprising claim is spreading on social media, and news outlets and official sources have since "
            "confirmed that it is true.",
    "false": "A shocking claim is spreading on social media, but fact-checkers have debunked it: it is false.",
    "unverified": "A surprising claim is spreading on social media. Nobody has confirmed or denied it yet.",
    "non-rumor": "An ordinary news report from a major outlet: confirmed facts, no controversy.",
}
#: The learnable gains of :class:`ArchetypePrior`, in the order of its ``gains`` parameter.
GAINS = ("reshare_gain", "arousal_gain")
#: The row name of the model without archetypes.
BASELINE = "no archetypes"
_AROUSAL = EMOTIONS.index("arousal")


@dataclass(frozen=True)
class CascadeDecisions:
    """Archetype decisions about the labels' :data:`CONTEXTS`, and each agent's archetype.

    Shapes:
        archetype: ``(N,)`` int64 in ``[0, K)``.
        share_logit: ``(K, L)`` decided share logit, centred (mean 0 over archetypes and labels).
        arousal: ``(K, L)`` decided arousal impulse in [-1, 1].
        reaction_embeddings: ``(K, L, D)``.
    """

    archetype: Tensor
    share_logit: Tensor
    arousal: Tensor
    reaction_embeddings: Tensor

    def __post_init__(self) -> None:
        if self.archetype.dim() != 1 or self.archetype.dtype.is_floating_point:
            raise ConfigError(f"Expected an (N,) integer archetype tensor (got {self.archetype.dtype} "
                              f"of shape {tuple(self.archetype.shape)})")
        shape = tuple(self.share_logit.shape)
        if len(shape) != 2 or tuple(self.arousal.shape) != shape or self.reaction_embeddings.dim() != 3 \
                or tuple(self.reaction_embeddings.shape[:2]) != shape:
            raise ConfigError(f"Expected share_logit and arousal (K, L) and reaction_embeddings (K, L, D) (got "
                              f"{shape}, {tuple(self.arousal.shape)}, {tuple(self.reaction_embeddings.shape)})")
        if self.archetype.numel() and (int(self.archetype.min()) < 0 or int(self.archetype.max()) >= shape[0]):
            raise ConfigError(f"Expected archetypes in [0, {shape[0]}) (got [{int(self.archetype.min())}, "
                              f"{int(self.archetype.max())}])")

    @property
    def num_archetypes(self) -> int:
        return self.share_logit.shape[0]

    @classmethod
    def from_table(cls, table: DecisionTable, archetype: Tensor,
                   labels: Sequence[str] = LABELS) -> "CascadeDecisions":
        """The columns of ``table`` for ``labels``' :data:`CONTEXTS` (in that order), for agents of
        archetypes ``archetype``."""
        sub = table.select([CONTEXTS[label] for label in labels])
        share = sub.share_logit.double()
        return cls(archetype.long(), share - share.mean(), sub.emotion_impulse[..., _AROUSAL].double(),
                   sub.reaction_embeddings.double())

    @classmethod
    def random(cls, archetype: Tensor, k: int, labels: int = len(LABELS), dim: int = 384, *,
               seed: int = 0) -> "CascadeDecisions":
        """Decisions without information, for the control arm: share probabilities uniform in
        [0.05, 0.95] (as logits, centred), arousal uniform in [-1, 1], unit reaction embeddings
        uniform on the sphere."""
        gen = torch.Generator().manual_seed(seed)
        p = 0.05 + 0.9 * torch.rand(k, labels, generator=gen, dtype=torch.float64)
        share = torch.log(p) - torch.log1p(-p)
        embeddings = torch.randn(k, labels, dim, generator=gen, dtype=torch.float64)
        return cls(archetype.long(), share - share.mean(), torch.rand(k, labels, generator=gen, dtype=torch.float64) * 2 - 1,
                   embeddings / embeddings.norm(dim=-1, keepdim=True))


    @classmethod
    def per_label(cls, agents: int, labels: int = len(LABELS)) -> "CascadeDecisions":
        """Not decisions but a reference: one archetype, no decided values, and one-hot "reaction
        embeddings" per label, so that the head's weights are a free reshare-logit offset per label
        (what label-specific reshare rates alone buy, with L + 1 parameters)."""
        eye = torch.eye(labels, dtype=torch.float64)
        zeros = torch.zeros(1, labels, dtype=torch.float64)
        return cls(torch.zeros(agents, dtype=torch.long), zeros, zeros.clone(), eye[None])


class ArchetypePrior(nn.Module):
    """The ``(K, C)`` reshare-logit offsets of the module docstring, as a :class:`~lpm.dynamics.Cascade`
    ``prior`` (called every step, so gradients reach the gains and the head).

    Args:
        decisions: the archetypes' decisions about the L labels.
        item_label: ``(C,)`` int64 label index of each simulated item.
    """

    def __init__(self, decisions: CascadeDecisions, item_label: Tensor) -> None:
        super().__init__()
        labels = decisions.share_logit.shape[1]
        if item_label.dim() != 1 or item_label.dtype.is_floating_point or int(item_label.min()) < 0 \
                or int(item_label.max()) >= labels:
            raise ConfigError(f"Expected item labels as a (C,) integer tensor in [0, {labels}) (got "
                              f"{item_label.dtype} {item_label.tolist()})")
        self.register_buffer("item_label", item_label.long().clone())
        self.register_buffer("decided", torch.stack([decisions.share_logit, decisions.arousal]))  # (2, K, L)
        self.register_buffer("reaction_embeddings", decisions.reaction_embeddings.clone())
        self.head = BehaviourHead(decisions.reaction_embeddings.shape[-1]).double()
        self.gains = nn.Parameter(torch.zeros(len(GAINS), dtype=torch.float64))

    def per_label(self) -> Tensor:
        """``(K, L)`` offsets per archetype and label."""
        offset = self.head(self.reaction_embeddings)[..., 0]
        return torch.einsum("g,gkl->kl", self.gains, self.decided) + offset

    def forward(self) -> Tensor:
        return self.per_label()[:, self.item_label]

    def values(self) -> dict[str, float]:
        return {name: float(self.gains[i].detach()) for i, name in enumerate(GAINS)}


@dataclass(frozen=True)
class LabelTargets:
    """Observed cascades of one label, read at the fit's reading hours.

    Shapes:
        size: ``(M, T')`` sizes (clamped at 1 node).
        root_share: ``(M,)`` share of reshares attached to the root (NaN for a lone root).
    """

    size: Tensor
    root_share: Tensor

    def select(self, index: Tensor) -> "LabelTargets":
        return LabelTargets(self.size[index], self.root_share[index])


def label_targets(table: CascadeTable, labels: Sequence[str], hours: Sequence[float]) -> list[LabelTargets]:
    """One :class:`LabelTargets` per label of ``labels``, from the cascades of ``table`` with that label."""
    if table.labels is None:
        raise DataFormatError("Expected a cascade table with labels (got labels=None)")
    found = []
    for label in labels:
        index = [i for i, value in enumerate(table.labels) if value == label]
        if not index:
            raise DataFormatError(f"Expected cascades labelled {label!r} (got labels {sorted(set(table.labels))})")
        targets = cascade_targets(table.select(index), hours)
        found.append(LabelTargets(targets.size.clamp_min(1.0), targets.root_share))
    return found


def match_loss(size: Tensor, direct: Tensor, target: LabelTargets, *, shape_weight: float = 4.0,
               root_weight: float = 10.0) -> dict[str, Tensor]:
    """:class:`~lpm.calibration.fit_cascades.CascadeCalibration`'s loss terms of ``M'`` simulated
    cascades against observed ones: quantiles of log sizes, the mean growth curve, quantiles of the
    root share.

    Shapes:
        size: ``(M', T')`` simulated sizes at the reading hours; direct: ``(M',)`` reshares of the root.
    """
    count = size.size(0)
    size = size.clamp_min(1.0)
    log_size = torch.sort(size.log(), dim=0).values
    observed = target.size
    size_loss = ((log_size - _quantiles(observed.log(), count).to(size.dtype)) ** 2).mean()
    target_shape = (observed / observed[:, -1:]).mean(0).to(size.dtype)
    shape_loss = (((size / size[:, -1:]).mean(0) - target_shape) ** 2).sum()
    finite = target.root_share[torch.isfinite(target.root_share)]
    children = (size[:, -1] - 1.0).clamp_min(1.0)
    root_share = torch.sort(direct / children).values
    root_loss = ((root_share - _quantiles(finite[:, None], count)[:, 0].to(size.dtype)) ** 2).mean()
    return {"size": size_loss, "shape": shape_loss, "root": root_loss,
            "loss": size_loss + shape_weight * shape_loss + root_weight * root_loss}


class LabelledCascadeCalibration(CascadeCalibration):
    """:class:`~lpm.calibration.fit_cascades.CascadeCalibration` with labelled items, the per-label
    loss and, given ``decisions``, the :class:`ArchetypePrior` (module docstring).

    Args:
        table: the observed cascades, with labels.
        world: the simulated world; item ``c`` has label ``labels[c mod L]`` (``world.items >= L``).
        init, fixed, batch, fit_horizon_h, seed, dtype, kwargs: as the parent class, except that the
            depth-2 term is off (``depth_weight=0``): the comparison was measured without it.
        decisions: archetype decisions for the world's agents about ``labels``; ``None``: no archetypes.
        labels: the labels the loss matches, each item's in turn.

    One process only (the per-label loss is not sharded over DDP ranks).
    """

    def __init__(self, table: CascadeTable, world: CascadeWorld, init: Optional[Mapping[str, float]] = None,
                 fixed: Sequence[str] = DEFAULT_FIXED, *, decisions: Optional[CascadeDecisions] = None,
                 labels: Sequence[str] = LABELS, batch: int = 2, fit_horizon_h: float = 12.0, seed: int = 0,
                 dtype: torch.dtype = torch.float32, **kwargs) -> None:
        hours = [h for h in GROWTH_HOURS if h <= fit_horizon_h + 1e-9]
        targets = label_targets(table, labels, hours)
        kwargs.setdefault("depth_weight", 0.0)
        super().__init__(cascade_targets(table, hours), world, init, fixed, batch=batch, fit_horizon_h=fit_horizon_h,
                         seed=seed, dtype=dtype, **kwargs)
        if world.items < len(labels):
            raise ConfigError(f"Expected at least one item per label ({len(labels)}; got {world.items} items)")
        self.labels, self.targets, self.read_hours = tuple(labels), targets, hours
        self.item_label = torch.arange(world.items) % len(labels)
        if decisions is not None:
            if decisions.archetype.numel() != world.agents or decisions.share_logit.shape[1] != len(labels):
                raise ConfigError(f"Expected decisions for {world.agents} agents and {len(labels)} labels (got "
                                  f"{decisions.archetype.numel()} agents, {decisions.share_logit.shape[1]} labels)")
            cascade = self.model.cascade
            # replaces the Cascade's empty prior buffer; in the model's dtype, as simulate() requires
            cascade.prior = ArchetypePrior(decisions, self.item_label).to(dtype)
            cascade.archetype = decisions.archetype.clone()

    @property
    def prior(self) -> Optional[ArchetypePrior]:
        prior = self.model.cascade.prior
        return prior if isinstance(prior, ArchetypePrior) else None

    def fitted_params(self) -> dict[str, float]:
        return {**super().fitted_params(), **(self.prior.values() if self.prior is not None else {})}

    def simulate_sizes(self, step_seed: int, batch: Optional[int] = None) -> tuple[Tensor, Tensor]:
        """``(size (T', B, C), direct (B, C))`` of the mean-field dynamics: sizes at the reading hours
        and reshares of the root, with the parent's seeds for ``step_seed`` (``batch``: default the fit's)."""
        batch = self.batch if batch is None else batch
        state = self.world.initial_state(batch, self.device, self.dtype_)
        seeds = [self.seed * 7919 + step_seed * batch + b for b in range(batch)]
        trajectory = simulate(self.model, state, self.graph, steps=self.steps, record=RECORD, seed=seeds,
                              estimator=self.estimator)
        return trajectory["size"][self.steps_at], trajectory["direct"][1 : self.steps + 1].sum(0)

    def label_losses(self, size: Tensor, direct: Tensor,
                     targets: Optional[Sequence[LabelTargets]] = None) -> list[dict[str, Tensor]]:
        """:func:`match_loss` of each label's simulated items (of :meth:`simulate_sizes`) against
        ``targets`` (default: the fit's)."""
        targets = self.targets if targets is None else targets
        found = []
        for label, target in enumerate(targets):
            columns = (self.item_label == label).nonzero().squeeze(1)
            found.append(match_loss(size[:, :, columns].reshape(size.size(0), -1).T, direct[:, columns].reshape(-1),
                                    target, shape_weight=self.shape_weight, root_weight=self.root_weight))
        return found

    def loss_terms(self, step_seed: int) -> dict[str, Tensor]:
        """The per-label loss and its terms, each summed over labels."""
        if self._shard()[1] > 1:
            raise ConfigError("Expected a one-process fit for the per-label loss (got several processes)")
        parts = self.label_losses(*self.simulate_sizes(step_seed))
        return {name: sum(part[name] for part in parts) for name in parts[0]}


def fit_labels(module: LabelledCascadeCalibration, *, steps: int, learning_rate: Optional[float] = None,
               clip: float = 50.0, budget_s: Optional[float] = None, first_seed: int = 0) -> dict[str, object]:
    """Adam on ``module``'s per-label loss for ``steps`` steps (seeds ``first_seed + step``), in
    place, gradient norm clipped at ``clip`` as :func:`lpm.calibration.common.fit` does.

    The head's weights take steps of ``learning_rate / sqrt(D)``: Adam moves every weight by about
    its learning rate, so at the full rate one step would move an offset by about
    ``learning_rate * sqrt(D)`` (over a logit on the 384-wide embeddings) and the first steps
    overshoot; at this rate an offset moves about as much as a gain-weighted decision.

    Returns:
        ``{"losses": per-step losses, "steps": steps taken, "wall_s": seconds}``.
    """
    if steps < 0:
        raise ConfigError(f"Expected steps >= 0 (got {steps})")
    rate = module.learning_rate if learning_rate is None else learning_rate
    params = [p for p in module.parameters() if p.requires_grad]
    head = [p for p in module.prior.head.parameters()] if module.prior is not None else []
    groups = [{"params": [p for p in params if all(p is not h for h in head)], "lr": rate}]
    if head:
        groups.append({"params": head, "lr": rate / math.sqrt(module.prior.reaction_embeddings.shape[-1])})
    optimiser = torch.optim.Adam(groups)
    start, losses = time.perf_counter(), []
    for step in range(steps):
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
        loss = module.loss_terms(first_seed + step)["loss"]
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        optimiser.step()
        losses.append(float(loss.detach()))
    return {"losses": losses, "steps": len(losses), "wall_s": time.perf_counter() - start}


def paired_bootstrap(loss_a, loss_b, targets: Sequence[LabelTargets], *, draws: int = 1000, level: float = 0.9,
                     seed: int = 0) -> tuple[float, float, float]:
    """``loss_a(targets) - loss_b(targets)`` with a percentile interval from resampling the observed
    cascades within each label (both losses on the same resample).

    Args:
        loss_a, loss_b: callables from a list of :class:`LabelTargets` (one per label) to a float.

    Returns:
        ``(difference, low, high)``.
    """
    if not 0.0 < level < 1.0 or draws < 1:
        raise ConfigError(f"Expected level in (0, 1) and draws >= 1 (got {level}, {draws})")
    gen = torch.Generator().manual_seed(seed)
    found = []
    for _ in range(draws):
        sample = [t.select(torch.randint(t.size.size(0), (t.size.size(0),), generator=gen)) for t in targets]
        found.append(loss_a(sample) - loss_b(sample))
    tail = (1.0 - level) / 2
    low, high = torch.quantile(torch.tensor(found, dtype=torch.float64),
                               torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return loss_a(list(targets)) - loss_b(list(targets)), low, high


def held_out_loss(module: LabelledCascadeCalibration, seeds: Sequence[int], batch: int, *, exact: bool = False):
    """A callable ``targets -> float``: the per-label loss of ``module``'s cascades at ``seeds``
    (``batch`` scenarios each, simulated once here), averaged over seeds.

    ``exact``: sampled cascades (:class:`~lpm.relax.Hard` reshare draws, as real cascades are)
    instead of the fit's mean-field dynamics, whose expected sizes are smoother than any sample. The
    root's reshares are then the engine's attribution of the sampled reshares to their exposures
    (no parent is drawn: trees are not recorded), so the root share is an expectation given the sample."""
    estimator = module.estimator
    module.estimator = Hard() if exact else estimator
    try:
        with torch.no_grad():
            sims = [module.simulate_sizes(s, batch) for s in seeds]
    finally:
        module.estimator = estimator

    def loss(targets: Sequence[LabelTargets]) -> float:
        with torch.no_grad():
            return sum(float(sum(part["loss"] for part in module.label_losses(size, direct, targets)))
                       for size, direct in sims) / len(sims)

    return loss


def compare(train: CascadeTable, test: CascadeTable, world: CascadeWorld, params: Mapping[str, float],
            decisions: Mapping[str, CascadeDecisions], *, fixed: Sequence[str] = DEFAULT_FIXED, extra_steps: int = 50,
            batch: int = 4, eval_batch: int = 8, eval_seeds: Sequence[int] = (100_000,), draws: int = 1000,
            seed: int = 0, budget_s: Optional[float] = None, labels: Sequence[str] = LABELS,
            fit_horizon_h: float = 12.0, learning_rate: Optional[float] = None, exact_seeds: Sequence[int] = (),
            progress=None) -> list[dict[str, object]]:
    """Per-label losses of the cascade model without and with each set of archetype decisions.

    Every arm starts from ``params`` (a fit without archetypes), the archetype arms with gains and
    head at 0, and takes ``extra_steps`` Adam steps on the per-label loss of the training cascades
    (the baseline too, so each arm gets the same optimisation). Each is then scored on mean-field
    cascades simulated at ``eval_seeds`` (``eval_batch`` scenarios each; the same for every arm):
    the per-label loss against the training cascades (``train_loss``) and the test cascades
    (``test_loss``), with a 90% paired bootstrap interval over test cascades, resampled within label,
    of the difference from the baseline; with ``exact_seeds``, the same for sampled cascades
    (``exact_train_loss``, ``exact_test_loss``, ``exact_diff``...; ``eval_batch`` scenarios per seed).

    Args:
        decisions: ``{arm name: decisions}`` for ``world.agents`` agents.
        budget_s: wall seconds per arm's fit at most (``None``: steps only).
        progress: called with each finished row and its fitted module (e.g. to write partial results).

    Returns:
        One row per arm, first the baseline's fit as given (``extra_steps`` 0) and the baseline:
        ``arm``, ``train_loss``, ``test_loss``, ``diff``, ``diff_low``, ``diff_high``, ``steps``,
        ``wall_s``, ``last_train_losses`` (mean of the last 10 steps' losses) and fitted parameters.
    """
    if BASELINE in decisions:
        raise ConfigError(f"Expected arm names other than {BASELINE!r} (got it among {list(decisions)})")
    arms: dict[str, Optional[CascadeDecisions]] = {f"{BASELINE}, as given": None, BASELINE: None, **decisions}
    test_targets: Optional[list[LabelTargets]] = None
    baselines: dict[str, object] = {}
    rows = []
    for name, decided in arms.items():
        module = LabelledCascadeCalibration(train, world, params, fixed, decisions=decided, labels=labels, batch=batch,
                                            fit_horizon_h=fit_horizon_h, seed=seed)
        steps = 0 if name.endswith(", as given") else extra_steps
        found = fit_labels(module, steps=steps, learning_rate=learning_rate, budget_s=budget_s, first_seed=1000)
        if test_targets is None:
            test_targets = label_targets(test, labels, module.read_hours)
        row: dict[str, object] = {"arm": name, "steps": found["steps"], "wall_s": found["wall_s"],
                                  "last_train_losses": (sum(found["losses"][-10:]) / len(found["losses"][-10:])
                                                        if found["losses"] else math.nan),
                                  "params": module.fitted_params()}
        for prefix, seeds, exact in (("", eval_seeds, False), ("exact_", exact_seeds, True)):
            if not seeds:
                continue
            loss = held_out_loss(module, seeds, eval_batch, exact=exact)
            if name == BASELINE:
                baselines[prefix] = loss
            row.update({f"{prefix}train_loss": loss(module.targets), f"{prefix}test_loss": loss(test_targets)})
            if prefix in baselines:
                diff, low, high = paired_bootstrap(loss, baselines[prefix], test_targets, draws=draws, seed=seed)
                row.update({f"{prefix}diff": diff, f"{prefix}diff_low": low, f"{prefix}diff_high": high})
        rows.append(row)
        if progress is not None:
            progress(row, module)
    return rows
