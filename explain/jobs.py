"""Several explanation requests at once, below any server: group, explain, measure.

Requests that run the same methods with the same step count are explained together (one
attention pass, one integrated-gradients call). A failure stays with the request that
caused it: when a group fails, its requests are explained one by one, so every request
succeeds or fails on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from attnrec.explain.config import ExplainConfig
from attnrec.explain.counterfactual import Counterfactual, CounterfactualConfig, counterfactual
from attnrec.explain.explain import Explanation, explain_batch
from attnrec.explain.faithfulness import Comprehensiveness, comprehensiveness
from attnrec.explain.feature_reasons import Reason, feature_reasons, history_codes, value_attributions
from attnrec.explain.features import feature_attributions
from attnrec.model.checkpoint import Checkpoint
from attnrec.model.retrieval import Retrieval

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExplainJob:
    """One decoded explanation request, in model indices."""

    history: np.ndarray  # known item indices within the window, oldest first
    user: list[np.ndarray] | None  # per user feature: code () or (L,); None = unknown user or no user token
    targets: tuple[int, ...]  # item indices to explain, in the order the answer lists them
    n_steps: int  # integrated-gradients steps
    integrated: bool  # run integrated gradients (and feature attributions)
    deletion: bool  # run single-position deletion (the combined score builds on it)
    faithfulness: bool  # measure comprehensiveness of the combined ranking
    seen: np.ndarray | None = None  # every known history item, oldest first (the window is its end)
    counterfactual: CounterfactualConfig | None = None  # search one per target (needs `seen`)

    @property
    def group(self) -> tuple[int, bool, bool]:
        """Jobs with the same group share one explain_batch call."""
        return self.n_steps, self.integrated, self.deletion


@dataclass
class Explained:
    """One target's explanation with what was derived from it."""

    explanation: Explanation
    features: list[tuple[str, str, float]]  # (feature, value, attribution); empty when IG did not run
    faithfulness: Comprehensiveness | None  # None unless the job asked for it
    counterfactual: Counterfactual | None = None  # None unless the job asked for it
    reasons: list[Reason] = field(default_factory=list)  # side-feature values, most necessary first


def explain_jobs(ckpt: Checkpoint, jobs: Sequence[ExplainJob], config: ExplainConfig = ExplainConfig(),
                 retrieval: Retrieval | None = None) -> list[list[Explained] | Exception]:
    """Per job: one Explained per target, or the exception that job alone raised. `retrieval`:
    how the service ranks whole catalogues (None = exactly), which counterfactual sets and
    feature reasons' ranks follow."""
    groups: dict[tuple[int, bool, bool], list[int]] = {}
    for j, job in enumerate(jobs):
        groups.setdefault(job.group, []).append(j)
    answers: list[list[Explained] | Exception | None] = [None] * len(jobs)
    for members in groups.values():
        try:
            results = _explain_together(ckpt, [jobs[j] for j in members], config, retrieval)
        except Exception:  # noqa: BLE001 (one bad request must not fail its neighbours: retry alone)
            log.warning("a batch of %d explanations failed; explaining them one by one", len(members), exc_info=True)
            results = []
            for j in members:
                try:
                    results.append(_explain_together(ckpt, [jobs[j]], config, retrieval)[0])
                except Exception as e:  # noqa: BLE001 (reported to this request's caller)
                    results.append(e)
        for j, result in zip(members, results):
            answers[j] = result
    return answers  # type: ignore[return-value]


def _explain_together(ckpt: Checkpoint, jobs: Sequence[ExplainJob], config: ExplainConfig,
                      retrieval: Retrieval | None) -> list[list[Explained]]:
    pairs = [(job, target) for job in jobs for target in job.targets]
    n_steps, integrated, deletion = jobs[0].group
    explanations = explain_batch(ckpt.model, [job.history for job, _ in pairs], [job.user for job, _ in pairs],
                                 [target for _, target in pairs], config, n_steps, integrated, deletion)
    out: dict[int, list[Explained]] = {id(job): [] for job in jobs}
    for (job, _), e in zip(pairs, explanations):
        labels = ckpt.items.ids_of(job.history)
        features = feature_attributions(e.part_attribution, labels, history_codes(ckpt.model, job.history), job.user,
                                        ckpt.item_encoders, ckpt.user_encoders) if job.integrated else []
        faithful = comprehensiveness(ckpt.model, job.history, job.user, e) if job.faithfulness else None
        found = None
        if job.counterfactual is not None:
            found = counterfactual(ckpt.model, job.seen if job.seen is not None else job.history, job.user,
                                   e.target, job.counterfactual, retrieval)
        credit = value_attributions(e.part_attribution, ckpt.model, job.history, job.user) if job.integrated else None
        reasons = feature_reasons(ckpt.model, job.history, job.user, e.target, ckpt.item_encoders,
                                  ckpt.user_encoders, labels, credit, retrieval=retrieval)
        out[id(job)].append(Explained(e, features, faithful, found, reasons))
    return [out[id(job)] for job in jobs]
