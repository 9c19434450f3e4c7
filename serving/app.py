"""Assembling the Serve application, and reading the Serve config YAML."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import yaml
from ray.serve import Application

from attnrec.model.checkpoint import resolve_checkpoint
from attnrec.serving.config import CHECKPOINT_KEY, DEFAULT_CONFIG, ServingConfig
from attnrec.serving.deployments import Explainer, FeedbackLog, Recommender

APP_NAME = "attnrec"
SERVICER = "attnrec.serving.wire.add_RecommenderServicer_to_server"
IMPORT_PATH = "attnrec.serving.app:app_builder"
MODEL_DEPLOYMENTS = ("Recommender", "Explainer")  # every deployment that loads the checkpoint


def build_app(config: ServingConfig, options: dict[str, dict] | None = None) -> Application:
    """The application: Recommender (ingress, batched) -> Explainer, and -> FeedbackLog when
    config.feedback_dir is set; with several models, also a Recommender and an Explainer per
    model after the first (Recommender-NAME, Explainer-NAME). `options` per deployment name are
    Serve deployment options (num_replicas, autoscaling_config, ray_actor_options, user_config...)."""
    options = options or {}
    config = ServingConfig(**{**vars(config), "checkpoint": resolve_checkpoint(config.checkpoint)})
    explainer = Explainer.options(**options.get("Explainer", {})).bind(config)
    feedback = FeedbackLog.options(**options.get("FeedbackLog", {})).bind(config) if config.feedback_dir else None
    others = {}
    for v in config.models[1:]:
        names = (f"Recommender-{v.name}", f"Explainer-{v.name}")
        others[v.name] = (
            Recommender.options(name=names[0], **options.get(names[0], {})).bind(config.alone(v)),
            Explainer.options(name=names[1], **options.get(names[1], {})).bind(config.alone(v)))
    return Recommender.options(**options.get("Recommender", {})).bind(config, explainer, feedback, others)


def deployments_of(config: ServingConfig) -> tuple[str, ...]:
    """The deployments the application of `config` has."""
    names = ["Recommender", "Explainer"] + (["FeedbackLog"] if config.feedback_dir else [])
    for v in config.models[1:]:
        names += [f"Recommender-{v.name}", f"Explainer-{v.name}"]
    return tuple(names)


def _options_of(name: str, deployments: dict[str, dict]) -> dict | None:
    """Serve options for a deployment: its own entry, else (a model's Recommender-NAME or
    Explainer-NAME) those of Recommender or Explainer, without the checkpoint a rollout set."""
    if name in deployments:
        return deployments[name]
    base = deployments.get(name.split("-", 1)[0])
    if base is None:
        return None
    own = copy.deepcopy(base)
    if CHECKPOINT_KEY in (own.get("user_config") or {}):
        del own["user_config"][CHECKPOINT_KEY]
    return own


def app_builder(args: dict) -> Application:
    """Entry point for `serve run` / `serve deploy` with serve.yaml (`import_path`)."""
    return build_app(ServingConfig(**args))


def app_config(config: ServingConfig, deployments: dict[str, dict], route_prefix: str,
               runtime_env: dict | None = None) -> dict:
    """The application as a Serve config (one entry of serve.yaml's `applications`), which is how
    attnrec deploys it: Serve then applies a later config that changes only `user_config` (a new
    checkpoint, batching knobs) to the running replicas, without restarting them."""
    args = asdict(replace(config, checkpoint=resolve_checkpoint(config.checkpoint)))
    args["models"] = list(args["models"])
    # Serve refuses options for a deployment the app does not have
    options = {name: _options_of(name, deployments) for name in deployments_of(config)}
    return {"name": APP_NAME, "route_prefix": route_prefix, "import_path": IMPORT_PATH, "args": args,
            "runtime_env": runtime_env or {},
            "deployments": [{"name": name, **o} for name, o in options.items() if o is not None]}


def served_checkpoint(app: dict) -> str:
    """The checkpoint an application config serves: the last rollout's, else the one it started with."""
    for d in app.get("deployments", []):
        if d["name"] == "Recommender" and CHECKPOINT_KEY in (d.get("user_config") or {}):
            return d["user_config"][CHECKPOINT_KEY]
    return resolve_checkpoint(app.get("args", {}).get("checkpoint"))


def with_checkpoint(app: dict, checkpoint: str) -> dict:
    """The same application config, every model deployment told to serve `checkpoint` (their
    other user_config keys kept)."""
    new = copy.deepcopy(app)
    entries = {d["name"]: d for d in new.setdefault("deployments", [])}
    for name in MODEL_DEPLOYMENTS:
        if name not in entries:
            entries[name] = {"name": name}
            new["deployments"].append(entries[name])
        # batching keys left out keep BatchConfig's defaults, as when there was no user_config
        entries[name]["user_config"] = {**(entries[name].get("user_config") or {}), CHECKPOINT_KEY: checkpoint}
    return new


@dataclass
class ServeFile:
    """What attnrec takes from a Serve config YAML."""

    grpc_port: int = 9000
    http_port: int = 8000
    request_timeout_s: float | None = None
    servicer_functions: list[str] = field(default_factory=lambda: [SERVICER])  # grpc_servicer_functions
    route_prefix: str = "/"  # HTTP paths below it: the page at /ui/
    args: dict = field(default_factory=dict)
    deployments: dict[str, dict] = field(default_factory=dict)

    def custom_resources(self) -> dict[str, float]:
        """Custom Ray resources the deployments ask for, enough for every one at max_replicas:
        what a single machine must offer for them all to be placed."""
        total: dict[str, float] = {}
        for options in self.deployments.values():
            scaling = options.get("autoscaling_config") or {}
            replicas = scaling.get("max_replicas", options.get("num_replicas", 1))
            for name, amount in (options.get("ray_actor_options", {}).get("resources") or {}).items():
                total[name] = total.get(name, 0) + float(amount) * replicas
        return total

    def with_models(self, config: ServingConfig) -> ServeFile:
        """The same file with an entry for each deployment of config's other models (Recommender-NAME,
        Explainer-NAME): their own if the file has one, else a copy of Recommender's or Explainer's."""
        deployments = {name: o for name in deployments_of(config)
                       if (o := _options_of(name, self.deployments)) is not None}
        return replace(self, deployments={**self.deployments, **deployments})

    def fit_to(self, cpus: float) -> list[str]:
        """Lower the deployments' min_replicas so that together they fit in `cpus` CPUs (one
        machine): each first gets one replica, then the CPUs left go to more, in file order;
        returns a note per change."""
        asking = []
        for name, options in self.deployments.items():
            holder, key = ((options["autoscaling_config"], "min_replicas") if options.get("autoscaling_config")
                           else (options, "num_replicas"))
            per_replica = float((options.get("ray_actor_options") or {}).get("num_cpus", 1))
            if per_replica > 0:
                asking.append((name, holder, key, per_replica, int(holder.get(key, 1))))
        notes, left = [], cpus - sum(a[3] for a in asking)
        if left < 0:
            notes.append(f"{', '.join(a[0] for a in asking)}: one replica each needs "
                         f"{cpus - left:g} CPUs, {cpus:g} here: some wait for a CPU")
        for name, holder, key, per_replica, wanted in asking:
            fits = 1 + min(wanted - 1, int(max(left, 0) // per_replica))
            left -= (fits - 1) * per_replica
            if fits < wanted:
                holder[key] = fits
                notes.append(f"{name}: {key} {wanted} -> {fits} ({cpus:g} CPUs, {per_replica:g} per replica)")
        return notes

    @staticmethod
    def load(path: str | Path = DEFAULT_CONFIG) -> ServeFile:
        doc = yaml.safe_load(Path(path).read_text())
        apps = [a for a in doc.get("applications", []) if a.get("name") == APP_NAME] or doc.get("applications", [])
        if not apps:
            raise ValueError(f"{path}: no applications section")
        app = apps[0]
        grpc = doc.get("grpc_options", {})
        return ServeFile(
            grpc_port=int(grpc.get("port", 9000)),
            http_port=int(doc.get("http_options", {}).get("port", 8000)),
            request_timeout_s=grpc.get("request_timeout_s"),
            servicer_functions=list(grpc.get("grpc_servicer_functions") or [SERVICER]),
            route_prefix=app.get("route_prefix", "/"),
            args=dict(app.get("args", {})),
            deployments={d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app.get("deployments", [])},
        )
