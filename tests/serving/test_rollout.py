"""`attnrec rollout` on the shared service: a new checkpoint takes over under load with no
failed call, every answer naming the model that produced it; bad checkpoints change nothing."""

import time

import pytest

from attnrec.model.checkpoint import load_checkpoint
from attnrec.serving.client import RecommenderClient
from attnrec.serving.rollout import RolloutRefused, rollout
from tests.serving.test_loaded import broken

pytestmark = pytest.mark.integration


def test_a_rollout_under_load_fails_no_call_and_every_answer_names_its_model(service, client, checkpoint, retrained):
    from attnrec.bench.faults import Load

    old, new = load_checkpoint(checkpoint).model_version, load_checkpoint(retrained).model_version
    answers: list[tuple[float, float, str]] = []  # (sent, answered, model_version)

    def recommend(c: RecommenderClient, i: int) -> None:
        sent = time.monotonic()
        r = c.recommend([f"i{i % 30 + 1}", f"i{(i + 7) % 30 + 1}"], k=5)
        answers.append((sent, time.monotonic(), r.model_version))

    try:
        with Load(f"127.0.0.1:{service['port']}", 8, recommend) as load:
            time.sleep(2)
            done = rollout(str(retrained), timeout_s=120)
            switched = time.monotonic()
            time.sleep(2)
        assert (done.old_version, done.new_version) == (old, new)
        assert dict(load.outcomes) == {"OK": load.outcomes["OK"]}, (load.outcomes, load.details[:3])
        assert {v for _, _, v in answers} == {old, new}
        assert all(v == new for sent, _, v in answers if sent > switched)
        assert client.explain(history=["i1", "i2", "i3"], n_steps=8).model_version == new
    finally:
        back = rollout(str(checkpoint), timeout_s=120)
    assert back.new_version == old and client.recommend(["i1"], k=3).model_version == old


@pytest.mark.parametrize("how", ["missing_weights", "wrong_shapes", "other_catalogue"])
def test_a_bad_checkpoint_is_refused_and_the_served_model_keeps_answering(service, client, checkpoint,
                                                                           other_shop_checkpoint, tmp_path, how):
    served = client.recommend(["i1", "i2"], k=3).model_version
    bad = other_shop_checkpoint if how == "other_catalogue" else broken(checkpoint, tmp_path, how)
    with pytest.raises(RolloutRefused) as refused:
        rollout(str(bad), timeout_s=60)
    assert "Traceback" not in str(refused.value) and len(str(refused.value)) < 1000
    assert client.recommend(["i1", "i2"], k=3).model_version == served
