"""The page's HTTP layer without Ray: requests built from query parameters, what it shows of
items, and the answers (statuses, headers, errors) for a stand-in replica."""

import asyncio
import json

import grpc
import pytest
from starlette.requests import Request

from attnrec.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from attnrec.serving.codec import Catalog, InvalidArgument
from attnrec.serving.page import (
    MAX_BODY_BYTES,
    Service,
    Shelf,
    explain_request,
    feedback_request,
    recommend_request,
    respond,
)
from attnrec.v1 import recommender_pb2 as pb


@pytest.fixture(scope="module")
def shelf():
    ckpt = load_checkpoint(DEFAULT_CHECKPOINT)  # MovieLens: titles, year and genres
    return Shelf.of(ckpt, Catalog(ckpt))


def test_requests_come_from_query_parameters_and_bad_ones_name_the_field():
    r = recommend_request({"history": " 1, 2,,3 ", "user_id": "u7", "k": "4"})
    assert list(r.history) == ["1", "2", "3"] and r.user_id == "u7" and r.k == 4
    assert recommend_request({"history": "1"}).k == 10  # the default
    for k, words in (("abc", "whole number"), ("99999999999", "between"), ("-1", "between")):
        with pytest.raises(InvalidArgument, match=f"^k: .*{words}"):
            recommend_request({"history": "1", "k": k})
    e = explain_request({"history": "1,2", "item_id": "9"})
    assert e.item_id == "9" and e.include_image and e.counterfactual and e.counterfactual_rank == 10
    with pytest.raises(InvalidArgument, match="^item_id: required"):
        explain_request({"history": "1"})
    assert feedback_request(b'{"events": [{"event_id": "e", "event_type": "click"}]}').events[0].event_type == "click"
    for body in (b"not json", b'{"events": 3}', b'{"no_such_field": 1}', b"\xff"):
        with pytest.raises(InvalidArgument, match="^body: "):
            feedback_request(body)


def test_the_shelf_shows_titles_and_feature_values_and_finds_items(shelf):
    card = shelf.card("260")
    assert card["title"].startswith("Star Wars: Episode IV") and "Sci-Fi" in card["features"]["genres"]
    assert set(card["features"]) == {"year", "genres"}
    assert shelf.card("no-such-item") == {}
    found = [i["item_id"] for i in shelf.search("star WARS", 10)]
    assert {"260", "1196", "1210"} <= set(found)
    assert all("star wars" in shelf.card(i)["title"].lower() for i in found)
    assert shelf.search("260", 3)[0]["item_id"] == "260"  # an exact id comes first
    assert len(shelf.search("the", 5)) == 5 and shelf.search("   ", 5) == []
    assert len(shelf.popular) == 5 and shelf.card(shelf.popular[0])  # the example history: known items


class Replica:
    """Stands in for the Recommender: answers as its RPC methods would, and keeps what it was asked."""

    def __init__(self, shelf, code=grpc.StatusCode.OK, details=""):
        self.asked, self.code, self.details, self.shelf_ = [], code, details, shelf
        self.service = Service(self.rpc(pb.RecommendResponse(items=[pb.ScoredItem(item_id="1196", score=2.0)])),
                               self.rpc(pb.ExplainResponse(item_id="1196", reason="Because.")),
                               self.rpc(pb.FeedbackResponse(accepted=1)), self.shelf,
                               lambda: {"model_version": "v1", "models": [], "feedback": True})

    async def shelf(self):
        return self.shelf_

    def rpc(self, answer):
        async def call(request, context):
            self.asked.append(request)
            if self.code != grpc.StatusCode.OK:
                context.set_code(self.code)
                context.set_details(self.details)
                return type(answer)()
            return answer
        return call


def get(replica, path, query="", method="GET", body=b"", headers=()):
    scope = {"type": "http", "method": method, "path": path, "query_string": query.encode(), "root_path": "",
             "headers": [(k.encode(), v.encode()) for k, v in headers]}
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    return asyncio.run(respond(Request(scope, receive), replica.service))


def body_of(response):
    return json.loads(response.body)


def test_the_page_and_its_api(shelf):
    replica = Replica(shelf)
    assert get(replica, "/").status_code == 307 and get(replica, "/").headers["location"] == "/ui/"
    page = get(replica, "/ui/")
    assert page.status_code == 200 and b"page.js" in page.body and page.media_type.startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]  # nothing from elsewhere
    assert get(replica, "/ui/page.js").status_code == 200
    assert get(replica, "/ui/../deployments.py").status_code == 404
    assert get(replica, "/elsewhere").status_code == 404

    answer = get(replica, "/ui/api/recommend", "history=260,nope&k=3")
    assert answer.status_code == 200 and list(replica.asked[-1].history) == ["260", "nope"]
    cards = body_of(answer)["cards"]
    assert body_of(answer)["items"][0]["item_id"] == "1196" and set(cards) == {"1196", "260"}  # not the unknown id

    why = get(replica, "/ui/api/explain", "history=260&item_id=1196")
    assert body_of(why)["reason"] == "Because." and replica.asked[-1].include_image
    info = body_of(get(replica, "/ui/api/info"))
    assert info["feedback"] and info["example_history"] == list(shelf.popular)
    assert body_of(get(replica, "/ui/api/items", "q=star%20wars&limit=2"))["items"][0]["title"].startswith("Star Wars")

    sent = get(replica, "/ui/api/feedback", method="POST",
               body=b'{"events": [{"event_id": "e1", "user_id": "u", "item_id": "1196", "event_type": "click"}]}')
    assert body_of(sent)["accepted"] == 1 and replica.asked[-1].events[0].item_id == "1196"
    assert get(replica, "/ui/api/feedback").status_code == 405
    assert get(replica, "/ui/api/recommend", method="POST").status_code == 405


def test_errors_reach_the_page_as_statuses_with_the_rpcs_message(shelf):
    bad = get(Replica(shelf), "/ui/api/recommend", "history=1&k=x")
    assert bad.status_code == 400 and body_of(bad) == {"error": "k: expected a whole number, got 'x'",
                                                       "code": "INVALID_ARGUMENT"}
    for code, status in ((grpc.StatusCode.INVALID_ARGUMENT, 400), (grpc.StatusCode.UNAVAILABLE, 503),
                         (grpc.StatusCode.RESOURCE_EXHAUSTED, 429), (grpc.StatusCode.INTERNAL, 500)):
        answer = get(Replica(shelf, code, f"said {code.name}"), "/ui/api/explain", "history=1&item_id=2")
        assert answer.status_code == status and body_of(answer) == {"error": f"said {code.name}", "code": code.name}
    huge = get(Replica(shelf), "/ui/api/feedback", method="POST", body=b"x" * (MAX_BODY_BYTES + 1))
    assert huge.status_code == 400 and body_of(huge)["error"].startswith("body: more than")
    told = get(Replica(shelf), "/ui/api/feedback", method="POST", headers=[("content-length", str(10**9))])
    assert told.status_code == 400 and "at most" in body_of(told)["error"]
    assert get(Replica(shelf), "/ui/api/nothing").status_code == 404
