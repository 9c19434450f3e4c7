"""The model's one frozen config, saved as JSON beside every checkpoint."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

# what may run a replica's transformer pass (model/onnx_encoder.py); "torch" = SASRec.encode itself
ENGINES = ("onnxruntime", "torch")


@dataclass(frozen=True)
class FeatureSpec:
    """One side-feature embedding table."""

    name: str
    cardinality: int  # codes 0..cardinality-1 (0 = missing)
    max_values: int = 1  # values per row; > 1 or `multi` means a mean-pooled multi-valued feature
    multi: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """SASRec-style causal self-attention recommender.

    Defaults are the compact SASRec that, trained with full-softmax cross-entropy, is the
    strongest published SASRec set-up on MovieLens-sized data (Klenitskiy & Vasilev 2023,
    "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?").
    """

    n_items: int  # catalogue size, padding excluded: item indices are 1..n_items
    item_features: tuple[FeatureSpec, ...] = ()  # added to the item-id embedding, input and output side
    user_features: tuple[FeatureSpec, ...] = ()  # summed into a user token placed before the history
    max_len: int = 200  # history window: older items are dropped; 200 covers the median user many times
    d_model: int = 64  # small catalogues overfit beyond this on a CPU budget
    n_layers: int = 2  # two blocks let an item attend to combinations of earlier items
    n_heads: int = 2
    dropout: float = 0.2  # sequences are short and the catalogue sparse: regularise hard
    n_negatives: int = 0  # 0: full softmax over the catalogue; > 0: sampled softmax with this many shared negatives

    @property
    def has_user_token(self) -> bool:
        return bool(self.user_features)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @staticmethod
    def from_json(text: str) -> ModelConfig:
        d = json.loads(text)
        d["item_features"] = tuple(FeatureSpec(**f) for f in d.get("item_features", ()))
        d["user_features"] = tuple(FeatureSpec(**f) for f in d.get("user_features", ()))
        return ModelConfig(**d)


@dataclass(frozen=True)
class TrainConfig:
    """How `attnrec train` fits a model."""

    epochs: int = 100  # an upper bound: early stopping usually ends well before
    batch_size: int = 64  # windows per step: more updates per epoch converge faster than bigger batches here
    lr: float = 2e-3  # converges in ~25 epochs on MovieLens (1e-3: ~50, to a similar test NDCG)
    weight_decay: float = 0.0
    patience: int = 10  # epochs without a gain in validation NDCG@10 (see min_improvement) before stopping
    # relative gain over the last gain that counts for patience: 0.5% let a million-interaction
    # run stop at epoch 48 (98.5% of the NDCG@10 of 85 epochs) and changed no best epoch on
    # MovieLens or a 1,000-user shop (docs/training.md)
    min_improvement: float = 0.005
    eval_every: int = 1  # epochs between validations
    seed: int = 0
    device: str = "auto"  # "cpu", "cuda" or "auto" (cuda when available)
    use_item_features: bool = True
    use_user_features: bool = True
    max_minutes: float = field(default=0.0)  # 0: no limit; otherwise stop (keeping the best epoch) after this long
    # False: train exactly `epochs` epochs and keep the last, with no validation and no early
    # stopping: the refit on the validation items too, once validation has chosen the epochs (model/refit.py)
    validate: bool = True
