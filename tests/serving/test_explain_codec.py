import pytest

from attnrec.model.checkpoint import load_checkpoint
from attnrec.serving.codec import Catalog, InvalidArgument, decode_recommend
from attnrec.serving.config import ServingConfig
from attnrec.serving.explain_codec import answer_explain, answer_explains
from attnrec.serving.ranking import rank
from attnrec.v1 import recommender_pb2 as pb

CONFIG = ServingConfig(checkpoint="unused")
HISTORY = ["i3", "i8", "i13", "i21"]


@pytest.fixture(scope="module")
def ckpt(checkpoint):
    return load_checkpoint(checkpoint)


def ask(ckpt, **kw):
    return answer_explain(pb.ExplainRequest(history=HISTORY, n_steps=8, **kw), ckpt, Catalog(ckpt), CONFIG)


def test_top_k_explains_the_recommendations_in_rank_order(ckpt):
    catalog = Catalog(ckpt)
    top = rank(ckpt.model, [decode_recommend(pb.RecommendRequest(history=HISTORY, k=3), catalog, CONFIG)])[0]
    r = ask(ckpt, top_k=3)
    assert [r.item_id] + [m.item_id for m in r.more] == catalog.item_ids[top.items].tolist()
    assert all(m.contributions and m.HasField("convergence_delta") for m in r.more)


def test_methods_select_the_costly_work(ckpt):
    ig_only = ask(ckpt, methods=["ig"])
    assert ig_only.feature_attributions and ig_only.HasField("convergence_delta") and ig_only.n_steps == 8
    assert all(c.deletion == 0 and c.combined == 0 for c in ig_only.contributions)
    deletion_only = ask(ckpt, methods=["deletion"])
    assert not deletion_only.feature_attributions and not deletion_only.HasField("convergence_delta")
    assert deletion_only.n_steps == 0 and any(c.deletion != 0 for c in deletion_only.contributions)
    assert any(c.attention > 0 for c in deletion_only.contributions)  # attention always comes along


def test_batched_answers_isolate_bad_requests(ckpt):
    good = pb.ExplainRequest(history=HISTORY, n_steps=8)
    answers = answer_explains([good, pb.ExplainRequest(history=HISTORY, methods=["shap"]), good], ckpt,
                              Catalog(ckpt), CONFIG)
    assert isinstance(answers[1], InvalidArgument) and answers[1].field == "methods"
    assert answers[0] == answers[2]


@pytest.mark.parametrize("kw, field", [(dict(top_k=11), "top_k"), (dict(methods=["lime"]), "methods"),
                                       (dict(n_steps=1000), "n_steps"), (dict(item_id="nope"), "item_id")])
def test_bad_explain_fields_are_named(ckpt, kw, field):
    with pytest.raises(InvalidArgument) as e:
        answer_explain(pb.ExplainRequest(history=HISTORY, **kw), ckpt, Catalog(ckpt), CONFIG)
    assert e.value.field == field
