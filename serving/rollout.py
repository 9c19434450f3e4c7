"""A new checkpoint takes over a running attnrec with no failed calls (`attnrec rollout`).

1. The new checkpoint is checked where the replicas run (a Ray task): it loads, its weights
   fit its config, it gives finite scores, and it knows the same item catalogue and user
   features as the served one (unless allowed). Refused here, nothing changes.
2. attnrec's application config goes back to Serve with `user_config.checkpoint` set on the
   Recommender and the Explainer. Only user_config changed, so Serve reconfigures the running
   replicas a few at a time instead of replacing them; each loads the new weights beside the
   old (off its event loop) and swaps one reference, so calls in flight and arriving are
   answered throughout, each by one model whose model_version its answer names.
3. Done when Serve reports the application RUNNING and every replica asked names the new
   model_version; otherwise the previous config is handed back and the rollout fails.
A replica that starts later (a crash, autoscaling) reads the same user_config: it serves the
new checkpoint too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from attnrec.model.checkpoint import CheckpointError, resolve_checkpoint
from attnrec.serving.app import APP_NAME, MODEL_DEPLOYMENTS, served_checkpoint, with_checkpoint
from attnrec.serving.loaded import check_rollout
from attnrec.serving.server import apply, deployed_app, wait_running


class RolloutRefused(Exception):
    """The checkpoint may not replace the served one; nothing changed."""


class RolloutFailed(Exception):
    """The replicas did not all take the new checkpoint in time; the previous config was restored."""


@dataclass(frozen=True)
class Rollout:
    checkpoint: str
    old_version: str
    new_version: str
    switch_s: float  # from the new config handed to Serve until every replica serves it


def rollout(checkpoint: str, allow_new_catalog: bool = False, timeout_s: float = 120.0,
            say: Callable[[str], None] = lambda _: None) -> Rollout:
    """Roll the attnrec application on the connected Ray cluster over to `checkpoint`."""
    import ray

    app = deployed_app()
    if app is None:
        raise RolloutRefused(f"no '{APP_NAME}' application deployed from a config on this Ray cluster: "
                             "start it with `attnrec serve` (or `serve deploy serving/serve.yaml`)")
    new_path, current = resolve_checkpoint(checkpoint), served_checkpoint(app)
    say(f"checking {new_path} against the served {current} ...")
    try:
        old_version, new_version = ray.get(ray.remote(num_cpus=0)(check_rollout).remote(
            current, new_path, allow_new_catalog))
    except (CheckpointError, FileNotFoundError) as e:  # raised in the task: Ray re-raises it as both
        raise RolloutRefused(str(getattr(e, "cause", e))) from None
    if new_version == old_version:
        say(f"already serving {new_version}")
        return Rollout(new_path, old_version, new_version, 0.0)
    say(f"rolling {old_version} -> {new_version} ...")
    started = time.monotonic()
    apply(with_checkpoint(app, new_path))
    try:
        wait_running(timeout_s)
        stale = replicas_not_serving(new_version)
        if stale:
            raise RuntimeError(f"replicas still serving another model: {stale}")
    except (RuntimeError, TimeoutError) as e:
        apply(app)
        raise RolloutFailed(f"{e}; the previous config ({old_version}) was handed back to Serve") from None
    return Rollout(new_path, old_version, new_version, time.monotonic() - started)


def replicas_not_serving(version: str, asks: int = 16) -> list[str]:
    """Model versions other than `version` that the model deployments' replicas answer with
    (`asks` calls one after another, which Serve's router spreads over the replicas)."""
    from ray import serve

    wrong = set()
    for name in MODEL_DEPLOYMENTS:
        handle = serve.get_deployment_handle(name, app_name=APP_NAME)
        for _ in range(asks):
            answered = handle.stats_summary.remote().result(timeout_s=30)["model_version"]
            if answered != version:
                wrong.add(f"{name}: {answered}")
    return sorted(wrong)
