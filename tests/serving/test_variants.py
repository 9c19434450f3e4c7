"""Several models side by side: the split, and the ingress handing requests to the other
model's Recommender (its handle stood in for by the replica object itself, without Ray)."""

import asyncio

import pytest

from attnrec.serving import deployments
from attnrec.serving.codec import InvalidArgument
from attnrec.serving.config import ServingConfig
from attnrec.serving.ranking import rank_each
from attnrec.serving.variants import Split, Variant, bucket, check_variants, parse_model
from attnrec.v1 import recommender_pb2 as pb
from tests.serving.test_deployments import Context


def test_model_flags_parse_and_shares_are_scaled():
    assert parse_model("b=s3://bucket/model:0.1") == Variant("b", "s3://bucket/model", 0.1)
    for bad in ("b", "b=dir", "b=dir:x", "=dir:1"):
        with pytest.raises(ValueError, match="NAME=DIR:SHARE|model name"):
            check_variants([parse_model(bad)])
    assert [v.share for v in check_variants([Variant("a", "x", 9), Variant("b", "y", 1)])] == [0.9, 0.1]
    with pytest.raises(ValueError, match="must differ"):
        check_variants([Variant("a", "x", 1), Variant("a", "y", 1)])
    with pytest.raises(ValueError, match="share must be > 0"):
        check_variants([Variant("a", "x", 1), Variant("b", "y", 0)])


def test_a_user_keeps_a_model_and_the_models_get_their_shares():
    assert bucket("u1") == bucket("u1") == 0.5726517085561739  # the same on every machine, run and release
    split = Split(check_variants([Variant("a", "x", 0.7), Variant("b", "y", 0.3)]))
    picked = [split.pick(f"user{u}") for u in range(20_000)]
    assert abs(picked.count("b") / len(picked) - 0.3) < 0.01
    assert [split.pick(f"user{u}") for u in range(100)] == picked[:100]
    assert split.pick("user1", "b") == "b"
    with pytest.raises(InvalidArgument, match="model_name: no model 'c' is served .models: a, b."):
        split.pick("user1", "c")
    with pytest.raises(InvalidArgument, match="no model 'a' is served"):
        Split(()).pick("user1", "a")


class Handle:
    """A DeploymentHandle's `.method.remote(...)` over a replica object in this process."""

    def __init__(self, replica):
        self.replica = replica

    def __getattr__(self, method):
        replica = self.replica

        class Method:
            @staticmethod
            def remote(*args):
                return getattr(replica, method)(*args)

        return Method


class Explainer:
    """Answers who explained."""

    def __init__(self, name):
        self.name = name

    async def explain(self, payload):
        return pb.ExplainResponse(model_version=self.name).SerializeToString(), "", ""


async def unbatched(job):
    return rank_each([job])[0]


@pytest.fixture
def ingress(checkpoint, retrained):
    config = ServingConfig(checkpoint="", device="cpu", models=({"name": "a", "checkpoint": str(checkpoint),
                                                                 "share": 0.5},
                                                                {"name": "b", "checkpoint": str(retrained),
                                                                 "share": 0.5}))
    other = deployments.Recommender.func_or_class(config.alone(config.models[1]))
    replica = deployments.Recommender.func_or_class(config, Handle(Explainer("a")), None,
                                                    {"b": (Handle(other), Handle(Explainer("b")))})
    for r in (replica, other):  # @serve.batch needs a Serve replica around it: one query at a time instead
        r._rank_batched = unbatched
    replica.feedback = object()  # answers are queued as impressions (the flusher is left out below)
    replica._flush_impressions = lambda: asyncio.sleep(0)
    return replica, {"a": replica.loaded.model_version, "b": other.loaded.model_version}


def test_each_model_answers_its_users_and_a_pinned_request(ingress):
    replica, versions = ingress
    assert versions["a"] != versions["b"]
    split = replica.split

    async def recommend(user, pinned=""):
        return await replica.Recommend(pb.RecommendRequest(user_id=user, history=["i1", "i2"], k=3,
                                                           model_name=pinned), Context())

    for user in ("u1", "u2", "u3", "u4", "u5", "u6"):
        assert asyncio.run(recommend(user)).model_version == versions[split.pick(user)]
    assert asyncio.run(recommend("u1", "b")).model_version == versions["b"]
    context = Context()
    asyncio.run(replica.Recommend(pb.RecommendRequest(user_id="u1", history=["i1"], k=3, model_name="z"), context))
    assert context.code.name == "INVALID_ARGUMENT" and "model_name" in context.details
    assert {r.model_version for _, r, _ in replica.shown} == set(versions.values())
    for user, pinned in (("u1", ""), ("u2", ""), ("u3", ""), ("u1", "b"), ("u1", "a")):
        explained = asyncio.run(replica.Explain(pb.ExplainRequest(user_id=user, history=["i1"], model_name=pinned),
                                                Context()))
        assert explained.model_version == (pinned or split.pick(user))


def test_a_batch_is_split_by_model_and_answered_in_order_with_each_error_in_its_place(ingress):
    replica, versions = ingress
    users = [f"u{i}" for i in range(12)]
    requests = [pb.RecommendRequest(user_id=u, history=["i1"], k=2) for u in users]
    requests[5].k = 0  # refused by whichever model gets it, named by its index in the whole call
    requests[7].model_name = "nope"
    response = asyncio.run(replica.RecommendBatch(pb.RecommendBatchRequest(requests=requests), Context()))
    for i, (user, answer) in enumerate(zip(users, response.responses)):
        if i == 5:
            assert answer.error.index == 5 and answer.error.message.startswith("requests[5].k")
        elif i == 7:
            assert answer.error.index == 7 and answer.error.message.startswith("requests[7].model_name")
        else:
            assert answer.model_version == versions[replica.split.pick(user)] and len(answer.items) == 2
    assert {replica.split.pick(u) for u in users} == {"a", "b"}  # both models took part
    assert len(replica.shown) == 10
