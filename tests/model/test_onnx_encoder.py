"""The ONNX Runtime encoder computes the user states torch does, for any batch and history
length, and a replica falls back to torch when it cannot have it."""

import logging

import numpy as np
import pytest
import torch

from attnrec.model import onnx_encoder
from attnrec.model.checkpoint import load_checkpoint
from attnrec.model.inputs import stack_users
from attnrec.model.onnx_encoder import encoder_for
from attnrec.model.retrieval import Ranker
from attnrec.model.sequences import left_pad
from attnrec.serving.codec import Catalog, decode_recommend
from attnrec.serving.config import ServingConfig
from attnrec.serving.loaded import load
from attnrec.serving.ranking import rank
from attnrec.v1 import recommender_pb2 as pb


@pytest.fixture(scope="module")
def ckpt(checkpoint):
    return load_checkpoint(checkpoint, "cpu")


@pytest.fixture(scope="module")
def encode(ckpt):
    encoder = encoder_for(ckpt.model, "onnxruntime", threads=1)
    assert encoder is not None
    return encoder


def test_states_equal_torch_for_every_batch_and_history_length(ckpt, encode):
    model, rng = ckpt.model, np.random.default_rng(0)
    assert model.config.user_features  # the user token and its inputs are in the graph too
    for batch, longest in ((1, 1), (2, 1), (1, 2), (5, 7), (16, model.config.max_len)):
        histories = [rng.integers(1, model.config.n_items + 1, rng.integers(1, longest + 1)) for _ in range(batch)]
        seq = torch.as_tensor(left_pad(histories, model.config.max_len))  # (B, longest), padded on the left
        users = [None if b % 3 == 0 else [c[b] for c in ckpt.user_codes] for b in range(batch)]  # some unknown
        user = stack_users(users, model.config.user_features, "cpu")
        with torch.inference_mode():
            expected = model.encode(seq, user)
        np.testing.assert_allclose(encode(seq, user).numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    seq = torch.as_tensor(left_pad([np.array([3, 4])], model.config.max_len))
    with torch.inference_mode():
        np.testing.assert_allclose(encode(seq, None).numpy(), model.encode(seq, None).numpy(), rtol=1e-4, atol=1e-5)


def test_recommendations_rank_the_same_items_on_either_engine(ckpt, encode):
    catalog, config = Catalog(ckpt), ServingConfig(checkpoint="unused")
    requests = [pb.RecommendRequest(history=[f"i{j}" for j in range(s, s + n)], k=10)
                for s, n in ((1, 3), (20, 15), (50, 1), (7, 30))]
    queries = [decode_recommend(r, catalog, config) for r in requests]
    for on_torch, on_onnx in zip(rank(Ranker(ckpt.model), queries), rank(Ranker(ckpt.model, None, encode), queries)):
        assert on_onnx.items.tolist() == on_torch.items.tolist()
        np.testing.assert_allclose(on_onnx.scores, on_torch.scores, rtol=1e-4, atol=1e-5)


def test_a_replica_ranks_on_the_configured_engine_and_falls_back_to_torch(checkpoint, ckpt, monkeypatch, caplog):
    assert load(str(checkpoint), "cpu", ServingConfig(checkpoint="x")).encode is not None  # the default
    assert load(str(checkpoint), "cpu", ServingConfig(checkpoint="x", engine="torch")).encode is None
    with pytest.raises(ValueError, match="engine"):
        ServingConfig(checkpoint="x", engine="tensorrt")
    with pytest.raises(ValueError, match="engine"):
        encoder_for(ckpt.model, "tensorrt")

    def unexportable(model, threads):
        raise RuntimeError("an operator the exporter does not know\nand its long story")

    monkeypatch.setattr(onnx_encoder, "export_encoder", unexportable)
    with caplog.at_level(logging.WARNING):
        assert encoder_for(ckpt.model, "onnxruntime") is None
    assert "ranking with torch" in caplog.text and "an operator the exporter does not know" in caplog.text
    assert "long story" not in caplog.text  # one line
