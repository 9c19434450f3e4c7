from attnrec.protos.codegen import stale
from attnrec.v1 import recommender_pb2 as pb


def test_generated_code_is_fresh():
    assert stale() == [], "run: python -m attnrec.protos.codegen"


def test_round_trip_keeps_every_field():
    req = pb.RecommendRequest(user_id="u1", history=["a", "b"], user_features={"age": "30"}, k=5,
                              candidate_item_ids=["c"], include_history=True)
    assert pb.RecommendRequest.FromString(req.SerializeToString()) == req
    batch = pb.RecommendBatchRequest(requests=[req, req])
    assert pb.RecommendBatchRequest.FromString(batch.SerializeToString()).requests[1].history == ["a", "b"]


def test_every_field_is_commented():
    from pathlib import Path

    import attnrec.protos

    text = (Path(attnrec.protos.__file__).parent / "attnrec" / "v1" / "recommender.proto").read_text().splitlines()
    for i, line in enumerate(text):
        s = line.strip()
        if s.endswith(";") and "=" in s and not s.startswith(("syntax", "package", "//", "option")):
            assert text[i - 1].strip().startswith("//"), f"field without a comment: {s}"
