"""The feedback loop's write side over real gRPC, on the shared service (which logs to a
directory of its own): request ids, impressions, Feedback answers, and durability when the
log's replica is killed under load."""

import itertools
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pyarrow.compute as pc
import pytest

from attnrec.model.feedback_log import read_events, read_impressions, read_log
from attnrec.serving.client import RecommenderClient

pytestmark = pytest.mark.integration

ev = RecommenderClient.event


def wait_for(condition, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (result := condition()):
            return result
        time.sleep(0.2)
    return condition()


def test_answers_carry_request_ids_and_are_logged_as_impressions(client, service):
    one = client.recommend(["i1", "i2"], k=4, user_id="u7")
    batch = client.recommend_batch([RecommenderClient.request(["i3"], 3, user_id="u8"),
                                    RecommenderClient.request(["i1"], 0)])
    ids = [one.request_id, batch.responses[0].request_id]
    assert all(len(i) == 32 for i in ids) and len(set(ids)) == 2 and batch.responses[1].request_id == ""
    assert batch.responses[1].error.index == 1

    def logged():
        table = read_impressions(service["feedback_dir"])
        return table.filter(pc.is_in(table.column("request_id"), value_set=pc.cast(ids, "string")))
    table = wait_for(lambda: (t := logged()).num_rows == 7 and t)
    mine = table.filter(pc.equal(table.column("request_id"), one.request_id)).sort_by("rank")
    assert mine.column("item_id").to_pylist() == [i.item_id for i in one.items]
    assert mine.column("user_id").to_pylist() == ["u7"] * 4
    assert set(table.column("model_version").to_pylist()) == {one.model_version}


def test_feedback_answers_each_event_and_keeps_a_retry_once(client, service):
    answer = client.recommend(["i1"], k=2, user_id="u9")
    events = [ev("fb-a", "u9", answer.items[0].item_id, "click", request_id=answer.request_id),
              ev("fb-b", "u9", "i5", "rating", value=4.5), ev("fb-a", "u9", "i5", "click"),
              ev("fb-c", "u9", "i5", "like"), ev("", "u9", "i5", "click")]
    first = client.feedback(events)
    assert (first.accepted, first.duplicates) == (2, 1)
    assert [(e.index, e.message.split(":")[0]) for e in first.errors] == [(3, "events[3].event_type"),
                                                                         (4, "events[4].event_id")]
    again = client.feedback(events[:2])  # a client retrying after a lost answer
    assert (again.accepted, again.duplicates, len(again.errors)) == (0, 2, 0)
    logged = read_events(service["feedback_dir"])
    mine = logged.filter(pc.is_in(logged.column("event_id"), value_set=pc.cast(["fb-a", "fb-b"], "string")))
    assert mine.num_rows == 2  # on disk already: acknowledged means durable
    clicked = mine.filter(pc.equal(mine.column("event_id"), "fb-a"))
    assert clicked.column("request_id").to_pylist() == [answer.request_id]
    with pytest.raises(grpc.RpcError) as e:
        client.feedback([])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and e.value.details().startswith("events")


def _feedback_log_pid() -> int | None:
    """The process of the log's replica (Ray titles it "ray::ServeReplica:attnrec:FeedbackLog")."""
    import psutil

    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if any("ServeReplica:attnrec:FeedbackLog" in part for part in p.cmdline()):
                return p.pid
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def test_acknowledged_events_survive_a_kill_9_of_the_log_exactly_once(client, service):
    """6 callers send calls of 10 events (each call with a bad event and a repeated id) and
    retry a failed call unchanged until it is answered; the log's replica is killed with
    SIGKILL mid-run (again, once replaced, if a kill happened to find no call in flight: up
    to three times). Every acknowledged event is on disk once after de-duplication, and
    nothing else is."""
    prefix = f"kill-{time.time_ns()}"
    acked: set[str] = set()
    failures = []
    lock = threading.Lock()
    counter = itertools.count()
    stop = threading.Event()

    def caller(c: int) -> None:
        # no retry policy on this channel: the kill's failures must reach the test to be counted
        channel = grpc.insecure_channel(f"127.0.0.1:{service['port']}")
        with RecommenderClient(timeout=10, channel=channel) as mine:
            while not stop.is_set():
                n = next(counter)
                good = [ev(f"{prefix}-{n}-{j}", f"u{c}", f"i{j + 1}", "purchase") for j in range(8)]
                events = [*good, good[0], ev(f"{prefix}-{n}-bad", f"u{c}", "i1", "unknown")]
                deadline = time.monotonic() + 120  # a replacement replica may take a while on a busy machine
                while True:
                    try:
                        answer = mine.feedback(events)
                        break
                    except grpc.RpcError as e:
                        with lock:
                            failures.append(e.code())
                        if time.monotonic() > deadline:
                            raise AssertionError("a Feedback call was never answered") from e
                        time.sleep(0.1)
                assert answer.accepted + answer.duplicates == 9 and len(answer.errors) == 1
                with lock:
                    acked.update(e.event_id for e in good)

    victims: list[int] = []
    with ThreadPoolExecutor(6) as pool:
        running = [pool.submit(caller, c) for c in range(6)]
        for _ in range(3):
            time.sleep(3)  # calls flowing (to the replacement, after an earlier kill)
            victim = wait_for(lambda: (p := _feedback_log_pid()) not in (None, *victims) and p, 60)
            assert victim, "no FeedbackLog replica to kill"
            victims.append(victim)
            os.kill(victim, signal.SIGKILL)
            time.sleep(2)  # the calls it held fail now
            with lock:
                if failures:
                    break
        time.sleep(1)
        stop.set()
        for f in running:
            f.result()
    assert failures, f"{len(victims)} kills interrupted no call: it proves nothing"
    # UNAVAILABLE / INTERNAL: the call was in the killed replica; DEADLINE_EXCEEDED: it waited for
    # the replacement longer than its deadline. Nothing of any of them was acknowledged.
    assert set(failures) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED}
    written = read_log(service["feedback_dir"], "events")
    ours = written.filter(pc.starts_with(written.column("event_id"), prefix))
    once = read_events(service["feedback_dir"])
    once = once.filter(pc.starts_with(once.column("event_id"), prefix))
    assert sorted(once.column("event_id").to_pylist()) == sorted(acked)
    assert ours.num_rows >= once.num_rows  # a retry whose first answer was lost may be written twice
    assert wait_for(lambda: _feedback_log_pid() not in (None, *victims), 60)  # replaced


def test_two_models_answer_their_shares_of_users_and_the_report_reads_the_log(service, checkpoint, retrained,
                                                                              tmp_path):
    """An A/B run: model b gets 30% of 5,000 users by their ids' hash, each user keeps their
    model, a request can pin one, and `attnrec report` credits clicks to the model shown."""
    from dataclasses import replace

    from attnrec.model.ab_report import ab_report
    from attnrec.model.checkpoint import load_checkpoint
    from attnrec.serving.server import deploy
    from attnrec.serving.variants import Variant

    version = {name: load_checkpoint(path).model_version for name, path in (("a", checkpoint), ("b", retrained))}
    config = replace(service["config"], feedback_dir=str(tmp_path / "ab"),
                     models=(Variant("a", str(checkpoint), 0.7), Variant("b", str(retrained), 0.3)))
    users = [f"ab{u}" for u in range(5000)]
    try:
        deploy(config, service["serve_file"].with_models(config))
        with RecommenderClient(f"127.0.0.1:{service['port']}", timeout=60) as c:
            answers = [r for s in range(0, len(users), 1000) for r in c.recommend_batch(
                [c.request(["i1", "i2"], 3, user_id=u) for u in users[s : s + 1000]]).responses]
            shown = [r.model_version for r in answers]
            assert set(shown) == set(version.values())
            assert abs(shown.count(version["b"]) / len(users) - 0.3) < 0.02
            for u, r in zip(users[:10], answers[:10]):  # a user keeps their model, call after call
                assert c.recommend(["i3"], 2, user_id=u).model_version == r.model_version
            pinned = c.recommend(["i1"], 2, user_id=users[0], model_name="b")
            assert pinned.model_version == version["b"]
            # users click the first item of every answer of b, and of every third answer of a
            clicked = [(u, r) for i, (u, r) in enumerate(zip(users, answers))
                       if r.model_version == version["b"] or i % 3 == 0]
            for s in range(0, len(clicked), 1000):
                c.feedback([ev(f"ab-{r.request_id}", u, r.items[0].item_id, "click", r.request_id)
                            for u, r in clicked[s : s + 1000]])
        report = wait_for(lambda: (r := ab_report(tmp_path / "ab"))["versions"].get(version["b"], {}).get(
            "impressions", 0) >= 3 * shown.count(version["b"]) and r)
        b, a = report["versions"][version["b"]], report["versions"][version["a"]]
        assert b["clicks"] == shown.count(version["b"]) and a["clicks"] == sum(
            1 for i, v in enumerate(shown) if v == version["a"] and i % 3 == 0)
        assert report["control"] == version["a"] and report["comparisons"][version["b"]]["significant"]
    finally:
        deploy(service["config"], service["serve_file"])
