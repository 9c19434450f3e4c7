from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecommendRequest(_message.Message):
    __slots__ = ("user_id", "history", "user_features", "k", "candidate_item_ids", "include_history", "rerank", "rerank_weight", "model_name")
    class UserFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    USER_FEATURES_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    RERANK_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    history: _containers.RepeatedScalarFieldContainer[str]
    user_features: _containers.ScalarMap[str, str]
    k: int
    candidate_item_ids: _containers.RepeatedScalarFieldContainer[str]
    include_history: bool
    rerank: str
    rerank_weight: float
    model_name: str
    def __init__(self, user_id: _Optional[str] = ..., history: _Optional[_Iterable[str]] = ..., user_features: _Optional[_Mapping[str, str]] = ..., k: _Optional[int] = ..., candidate_item_ids: _Optional[_Iterable[str]] = ..., include_history: _Optional[bool] = ..., rerank: _Optional[str] = ..., rerank_weight: _Optional[float] = ..., model_name: _Optional[str] = ...) -> None: ...

class ScoredItem(_message.Message):
    __slots__ = ("item_id", "score")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class RequestError(_message.Message):
    __slots__ = ("code", "message", "index")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    index: int
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., index: _Optional[int] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "unknown_item_ids", "model_version", "history_used", "unknown_user", "error", "request_id")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    HISTORY_USED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_USER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoredItem]
    unknown_item_ids: _containers.RepeatedScalarFieldContainer[str]
    model_version: str
    history_used: int
    unknown_user: bool
    error: RequestError
    request_id: str
    def __init__(self, items: _Optional[_Iterable[_Union[ScoredItem, _Mapping]]] = ..., unknown_item_ids: _Optional[_Iterable[str]] = ..., model_version: _Optional[str] = ..., history_used: _Optional[int] = ..., unknown_user: _Optional[bool] = ..., error: _Optional[_Union[RequestError, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RecommendBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[RecommendRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[RecommendRequest, _Mapping]]] = ...) -> None: ...

class RecommendBatchResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[RecommendResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[RecommendResponse, _Mapping]]] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("user_id", "history", "user_features", "item_id", "n_steps", "include_image", "include_html", "include_faithfulness", "methods", "top_k", "model_name", "counterfactual", "counterfactual_max_size", "counterfactual_rank")
    class UserFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    USER_FEATURES_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    N_STEPS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HTML_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FAITHFULNESS_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    COUNTERFACTUAL_FIELD_NUMBER: _ClassVar[int]
    COUNTERFACTUAL_MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    COUNTERFACTUAL_RANK_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    history: _containers.RepeatedScalarFieldContainer[str]
    user_features: _containers.ScalarMap[str, str]
    item_id: str
    n_steps: int
    include_image: bool
    include_html: bool
    include_faithfulness: bool
    methods: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    model_name: str
    counterfactual: bool
    counterfactual_max_size: int
    counterfactual_rank: int
    def __init__(self, user_id: _Optional[str] = ..., history: _Optional[_Iterable[str]] = ..., user_features: _Optional[_Mapping[str, str]] = ..., item_id: _Optional[str] = ..., n_steps: _Optional[int] = ..., include_image: _Optional[bool] = ..., include_html: _Optional[bool] = ..., include_faithfulness: _Optional[bool] = ..., methods: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., model_name: _Optional[str] = ..., counterfactual: _Optional[bool] = ..., counterfactual_max_size: _Optional[int] = ..., counterfactual_rank: _Optional[int] = ...) -> None: ...

class Contribution(_message.Message):
    __slots__ = ("item_id", "position", "attention", "attention_heads", "rollout", "attribution", "combined", "deletion")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_HEADS_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    COMBINED_FIELD_NUMBER: _ClassVar[int]
    DELETION_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    position: int
    attention: float
    attention_heads: _containers.RepeatedScalarFieldContainer[float]
    rollout: float
    attribution: float
    combined: float
    deletion: float
    def __init__(self, item_id: _Optional[str] = ..., position: _Optional[int] = ..., attention: _Optional[float] = ..., attention_heads: _Optional[_Iterable[float]] = ..., rollout: _Optional[float] = ..., attribution: _Optional[float] = ..., combined: _Optional[float] = ..., deletion: _Optional[float] = ...) -> None: ...

class FeatureAttribution(_message.Message):
    __slots__ = ("feature", "value", "attribution")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    feature: str
    value: str
    attribution: float
    def __init__(self, feature: _Optional[str] = ..., value: _Optional[str] = ..., attribution: _Optional[float] = ...) -> None: ...

class Faithfulness(_message.Message):
    __slots__ = ("k", "combined_drop", "recent_drop", "random_drop")
    K_FIELD_NUMBER: _ClassVar[int]
    COMBINED_DROP_FIELD_NUMBER: _ClassVar[int]
    RECENT_DROP_FIELD_NUMBER: _ClassVar[int]
    RANDOM_DROP_FIELD_NUMBER: _ClassVar[int]
    k: int
    combined_drop: float
    recent_drop: float
    random_drop: float
    def __init__(self, k: _Optional[int] = ..., combined_drop: _Optional[float] = ..., recent_drop: _Optional[float] = ..., random_drop: _Optional[float] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("item_id", "score", "baseline_score", "contributions", "feature_attributions", "convergence_delta", "n_steps", "faithfulness", "image_png", "html", "unknown_item_ids", "model_version", "more", "counterfactual", "reason", "feature_reasons")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_SCORE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    CONVERGENCE_DELTA_FIELD_NUMBER: _ClassVar[int]
    N_STEPS_FIELD_NUMBER: _ClassVar[int]
    FAITHFULNESS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PNG_FIELD_NUMBER: _ClassVar[int]
    HTML_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    COUNTERFACTUAL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FEATURE_REASONS_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    baseline_score: float
    contributions: _containers.RepeatedCompositeFieldContainer[Contribution]
    feature_attributions: _containers.RepeatedCompositeFieldContainer[FeatureAttribution]
    convergence_delta: float
    n_steps: int
    faithfulness: Faithfulness
    image_png: bytes
    html: str
    unknown_item_ids: _containers.RepeatedScalarFieldContainer[str]
    model_version: str
    more: _containers.RepeatedCompositeFieldContainer[ExplainResponse]
    counterfactual: Counterfactual
    reason: str
    feature_reasons: _containers.RepeatedCompositeFieldContainer[FeatureReason]
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., baseline_score: _Optional[float] = ..., contributions: _Optional[_Iterable[_Union[Contribution, _Mapping]]] = ..., feature_attributions: _Optional[_Iterable[_Union[FeatureAttribution, _Mapping]]] = ..., convergence_delta: _Optional[float] = ..., n_steps: _Optional[int] = ..., faithfulness: _Optional[_Union[Faithfulness, _Mapping]] = ..., image_png: _Optional[bytes] = ..., html: _Optional[str] = ..., unknown_item_ids: _Optional[_Iterable[str]] = ..., model_version: _Optional[str] = ..., more: _Optional[_Iterable[_Union[ExplainResponse, _Mapping]]] = ..., counterfactual: _Optional[_Union[Counterfactual, _Mapping]] = ..., reason: _Optional[str] = ..., feature_reasons: _Optional[_Iterable[_Union[FeatureReason, _Mapping]]] = ...) -> None: ...

class FeatureReason(_message.Message):
    __slots__ = ("feature", "value", "rank_without", "rank_now", "attribution", "item_ids", "score_drop")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    RANK_WITHOUT_FIELD_NUMBER: _ClassVar[int]
    RANK_NOW_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    SCORE_DROP_FIELD_NUMBER: _ClassVar[int]
    feature: str
    value: str
    rank_without: int
    rank_now: int
    attribution: float
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    score_drop: float
    def __init__(self, feature: _Optional[str] = ..., value: _Optional[str] = ..., rank_without: _Optional[int] = ..., rank_now: _Optional[int] = ..., attribution: _Optional[float] = ..., item_ids: _Optional[_Iterable[str]] = ..., score_drop: _Optional[float] = ...) -> None: ...

class Counterfactual(_message.Message):
    __slots__ = ("found", "positions", "item_ids", "new_top_item_id", "new_rank", "sets_scored")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    NEW_TOP_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_RANK_FIELD_NUMBER: _ClassVar[int]
    SETS_SCORED_FIELD_NUMBER: _ClassVar[int]
    found: bool
    positions: _containers.RepeatedScalarFieldContainer[int]
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    new_top_item_id: str
    new_rank: int
    sets_scored: int
    def __init__(self, found: _Optional[bool] = ..., positions: _Optional[_Iterable[int]] = ..., item_ids: _Optional[_Iterable[str]] = ..., new_top_item_id: _Optional[str] = ..., new_rank: _Optional[int] = ..., sets_scored: _Optional[int] = ...) -> None: ...

class FeedbackEvent(_message.Message):
    __slots__ = ("event_id", "request_id", "user_id", "item_id", "event_type", "timestamp_ms", "value")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    request_id: str
    user_id: str
    item_id: str
    event_type: str
    timestamp_ms: int
    value: float
    def __init__(self, event_id: _Optional[str] = ..., request_id: _Optional[str] = ..., user_id: _Optional[str] = ..., item_id: _Optional[str] = ..., event_type: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[FeedbackEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[FeedbackEvent, _Mapping]]] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("accepted", "duplicates", "errors")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    errors: _containers.RepeatedCompositeFieldContainer[RequestError]
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[RequestError, _Mapping]]] = ...) -> None: ...
