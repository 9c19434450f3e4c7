"""Ray Serve over real gRPC, on the service the integration tests share (conftest.py)."""

import itertools
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from attnrec.model.checkpoint import load_checkpoint
from attnrec.model.retrieval import Ranker
from attnrec.serving.app import APP_NAME, ServeFile
from attnrec.serving.client import RecommenderClient
from attnrec.serving.codec import Catalog, decode_recommend
from attnrec.serving.config import DEFAULT_CONFIG
from attnrec.serving.ranking import rank
from attnrec.v1 import recommender_pb2 as pb
from tests.serving.live import LOOPBACK, direct_target, listening, options, redeploy

pytestmark = pytest.mark.integration

SHARED = Path(__file__).resolve().parents[3] / "shared" / "contract_check.py"


def handle():
    from ray import serve

    return serve.get_deployment_handle("Recommender", app_name=APP_NAME)


def test_results_over_grpc_equal_the_models_own_topk(client, checkpoint, service):
    ckpt = load_checkpoint(checkpoint)
    catalog = Catalog(ckpt)
    for hist, user in ((["i1", "i5", "i9"], ""), (["i40", "i41"], "u7"), (["i3"] * 2 + ["i100"], "u8")):
        got = client.recommend(hist, k=10, user_id=user)
        want = rank(Ranker(ckpt.model), [decode_recommend(RecommenderClient.request(hist, 10, user), catalog,
                                                  service["config"])])[0]
        assert [i.item_id for i in got.items] == catalog.item_ids[want.items].tolist()
        np.testing.assert_allclose([i.score for i in got.items], want.scores, rtol=1e-4, atol=1e-5)
        assert got.model_version == ckpt.model_version


def test_every_socket_of_the_service_listens_on_loopback_only(service):
    """Serve's proxies and replicas, and Ray's own servers (GCS, raylet, workers, agents,
    metrics): all started by this process, none reachable from another machine."""
    import os

    found = listening(os.getpid())
    assert any(port == service["port"] for _, _, port in found), found
    assert len({name for name, _, _ in found}) >= 3, found  # the driver, gcs_server, raylet at least
    assert [s for s in found if s[1] not in LOOPBACK] == []


def test_batch_isolates_a_bad_entry(client):
    good = RecommenderClient.request(["i1", "i2"], 3)
    bad = RecommenderClient.request(["i1"], 0)
    r = client.recommend_batch([good, bad, RecommenderClient.request(["nope"], 2, user_id="u1")])
    assert [len(x.items) for x in r.responses] == [3, 0, 2]
    assert r.responses[1].error.code == "INVALID_ARGUMENT" and "requests[1].k" in r.responses[1].error.message
    assert list(r.responses[2].unknown_item_ids) == ["nope"]


@pytest.mark.parametrize("kwargs, field", [
    (dict(history=["i1"], k=0), "k"),
    (dict(history=["i1"], k=101), "k"),
    (dict(history=[], k=3), "history"),
    (dict(history=["i1"], k=3, candidates=["i2", "i2"]), "candidate_item_ids"),
])
def test_bad_input_is_invalid_argument_naming_the_field(client, kwargs, field):
    with pytest.raises(grpc.RpcError) as e:
        client.recommend(**kwargs)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith(field)


@pytest.mark.parametrize("ingress", ["proxy", "direct"])
def test_oversized_requests_and_ids_are_refused_with_short_answers(service, ingress):
    from attnrec.serving.proxy_hooks import MAX_REQUEST_BYTES

    target = f"127.0.0.1:{service['port']}" if ingress == "proxy" else direct_target()
    with RecommenderClient(target, timeout=30) as c:
        with pytest.raises(grpc.RpcError) as e:  # 9 MiB of ids: gRPC refuses it before parsing
            c.recommend(["x" * 1024] * (MAX_REQUEST_BYTES // 1024 + 1024), k=3)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.RpcError) as e:  # one 20 KB unknown id: named, not echoed
            c.recommend(["i1", "y" * 20_000], k=3)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and e.value.details().startswith("history")
        assert len(e.value.details()) < 300


def test_calibrated_rerank_over_grpc(client):
    fair = client.recommend(["i1", "i2", "i3"], k=5, rerank="calibrated", rerank_weight=0.5)
    assert len({i.item_id for i in fair.items}) == 5 and not {"i1", "i2", "i3"} & {i.item_id for i in fair.items}
    batch = client.recommend_batch([RecommenderClient.request(["i1", "i2", "i3"], 5, rerank="calibrated",
                                                              rerank_weight=0.5)])
    assert [i.item_id for i in batch.responses[0].items] == [i.item_id for i in fair.items]
    with pytest.raises(grpc.RpcError) as e:
        client.recommend(["i1"], k=3, rerank="fair")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and e.value.details().startswith("rerank")


def test_empty_batch_is_invalid(client):
    with pytest.raises(grpc.RpcError) as e:
        client.recommend_batch([])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "requests" in e.value.details()


def test_client_deadline_is_honoured(client):
    with pytest.raises(grpc.RpcError) as e:
        client.recommend(["i1"], k=5, timeout=0.0005)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_concurrent_calls_are_batched(client):
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda i: client.recommend([f"i{i}", f"i{i + 1}"], k=3), range(96)))
    assert all(len(r.items) == 3 for r in results)
    seen = max(handle().stats_summary.remote().result()["max_batch_size_seen"] for _ in range(4))
    assert seen > 1


def test_reconfigure_changes_batching_at_run_time(service):

    redeploy(service, options(batch_size=3, wait=0.01))
    summary = handle().stats_summary.remote().result()
    assert summary["batch_config"] == {"max_batch_size": 3, "batch_wait_timeout_s": 0.01, "adaptive_wait": False}


def test_direct_ingress_answers_like_the_proxy(client, service):
    import psutil

    target = direct_target()
    with RecommenderClient(target, timeout=30) as direct:
        for hist in (["i1", "i5", "i9"], ["i40", "i41"]):
            a, b = client.recommend(hist, k=10), direct.recommend(hist, k=10)
            assert [i.item_id for i in a.items] == [i.item_id for i in b.items]
            np.testing.assert_allclose([i.score for i in a.items], [i.score for i in b.items], rtol=1e-5)
        with pytest.raises(grpc.RpcError) as e:
            direct.recommend(["i1"], k=0)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and e.value.details().startswith("k")
        assert direct.explain(history=["i20", "i21"], n_steps=16).contributions
    port = int(target.rsplit(":", 1)[1])
    listening = {c.laddr.ip for c in psutil.net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    assert listening and all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for ip in listening), listening


@pytest.mark.skipif(not SHARED.exists(), reason="shared/contract_check.py sits beside the repository in CI only")
@pytest.mark.parametrize("ingress", ["proxy", "direct"])
def test_contract_through_reflection_alone(service, ingress):
    port = service["port"] if ingress == "proxy" else int(direct_target().rsplit(":", 1)[1])
    items = ",".join(f"i{i}" for i in range(20, 30))
    out = subprocess.run([sys.executable, str(SHARED), "--port", str(port), "--items", items],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_explain_over_grpc(client):
    r = client.explain(history=["i20", "i21", "i22", "i23"], item_id="i24", include_faithfulness=True,
                       include_image=True)
    assert r.item_id == "i24" and [c.item_id for c in r.contributions][-4:] == ["i20", "i21", "i22", "i23"]
    assert abs(r.convergence_delta) < 0.05 * abs(r.score - r.baseline_score)
    assert r.feature_attributions and r.image_png.startswith(b"\x89PNG") and r.faithfulness.k == 3
    bad_inputs = ((dict(item_id="nope"), "item_id"), (dict(n_steps=2), "n_steps"), (dict(history=["zz"]), "history"))
    for bad, field in bad_inputs:
        with pytest.raises(grpc.RpcError) as e:
            client.explain(**{"history": ["i20"], **bad})
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and e.value.details().startswith(field)


def test_a_counterfactual_holds_when_the_client_recommends_without_it(client):
    """What the contract promises a caller: Recommend with the history minus the returned
    entries, and k = the rank, never returns the explained item."""
    history = ["i3", "i8", "nope", "i13", "i21", "i34", "i55", "i89"]
    r = client.explain(history, methods=["deletion"], counterfactual=True, counterfactual_rank=5, top_k=3)
    checked = 0
    for answer in (r, *r.more):
        cf = answer.counterfactual
        if cf.found:
            kept = [h for i, h in enumerate(history) if i not in set(cf.positions)]
            assert answer.item_id not in [i.item_id for i in client.recommend(kept, k=5).items]
            checked += 1
    assert checked
    with pytest.raises(grpc.RpcError) as e:
        client.stub.Explain(pb.ExplainRequest(history=history, counterfactual=True, counterfactual_rank=5000))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and e.value.details().startswith("counterfactual_rank")


METHOD_SETS = [(), ("ig",), ("deletion",), ("combined",), ("ig", "deletion")]


@pytest.mark.parametrize("methods", METHOD_SETS, ids=lambda m: "+".join(m) or "all")
def test_every_explain_option_combination_answers_with_exactly_its_fields(client, methods):
    """methods x include_image x include_html x include_faithfulness: each answers OK and fills
    what it promises, and nothing it does not."""
    history = ["i30", "i31", "i32", "i33"]
    ig = not methods or "ig" in methods
    for image, page, faithful in itertools.product((False, True), repeat=3):
        r = client.explain(history=history, methods=methods, n_steps=8, include_image=image, include_html=page,
                           include_faithfulness=faithful)
        case = f"methods={methods} image={image} html={page} faithfulness={faithful}"
        deletion = not methods or bool({"deletion", "combined"} & set(methods)) or faithful
        assert [c.item_id for c in r.contributions][-4:] == history, case
        assert r.HasField("convergence_delta") == ig and (r.n_steps == 8) == ig, case
        assert bool(r.feature_attributions) == ig, case
        assert any(c.attribution != 0 for c in r.contributions) == ig, case
        assert any(c.deletion != 0 for c in r.contributions) == deletion, case
        assert r.image_png.startswith(b"\x89PNG") == image and (not image) == (r.image_png == b""), case
        assert bool(r.html) == page and (not page or ("convergence delta" in r.html) == ig), case
        assert r.HasField("faithfulness") == faithful, case
        assert r.reason.startswith("Recommended") and not r.HasField("counterfactual"), case


def test_concurrent_explanations_are_batched(client):
    from ray import serve

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: client.explain(history=[f"i{i}", f"i{i + 1}", f"i{i + 2}"], n_steps=16),
                                range(12)))
    assert all(a.contributions and abs(a.convergence_delta) < 0.05 * abs(a.score - a.baseline_score) for a in answers)
    explainer = serve.get_deployment_handle("Explainer", app_name=APP_NAME)
    assert explainer.stats_summary.remote().result()["max_batch_size_seen"] > 1


def test_explain_sheds_load_when_the_explainers_queue_is_full(client, service):
    """Past the Explainer's max_queued_requests, Explain answers RESOURCE_EXHAUSTED at once,
    naming Explain, instead of queueing; the calls it admits are answered."""

    tight = options()
    tight["Explainer"] = {**tight["Explainer"], "max_ongoing_requests": 1, "max_queued_requests": 1}
    redeploy(service, tight)

    def call(i: int):
        try:
            return client.explain(history=[f"i{i}", f"i{i + 1}", f"i{i + 2}"], n_steps=256)
        except grpc.RpcError as e:
            return e

    try:
        refused, answered = [], []
        deadline = time.monotonic() + 30  # the Recommender's handle learns the new limit by long poll
        while not refused and time.monotonic() < deadline:
            with ThreadPoolExecutor(16) as pool:
                outcomes = list(pool.map(call, range(16)))
            refused = [o for o in outcomes if isinstance(o, grpc.RpcError)]
            answered += [o for o in outcomes if not isinstance(o, grpc.RpcError)]
        assert refused and answered and all(a.contributions for a in answered)
        assert all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for e in refused)
        assert all(e.details().startswith("Explain") for e in refused)
    finally:
        redeploy(service, options())


def test_recommend_unaffected_when_the_explainer_is_killed(client):
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "Explainer" in a["name"]]
    assert names
    for name in names:
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    for i in range(5):
        assert len(client.recommend([f"i{i}"], k=3).items) == 3
    try:  # Explain fails cleanly (or is already served by a replacement replica), never hangs
        client.explain(history=["i1"], timeout=30)
    except grpc.RpcError as e:
        assert e.code() != grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.slow
def test_autoscales_to_two_replicas_under_load_and_back(client):
    from ray import serve

    def replicas() -> int:
        status = serve.status().applications[APP_NAME].deployments["Recommender"]
        return status.replica_states.get("RUNNING", 0)

    deadline, peak = time.monotonic() + 60, 1
    with ThreadPoolExecutor(16) as pool:
        while time.monotonic() < deadline and peak < 2:
            list(pool.map(lambda i: client.recommend_batch([RecommenderClient.request([f"i{i}"], 5)] * 64), range(64)))
            peak = max(peak, replicas())
    assert peak == 2
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and replicas() > 1:
        time.sleep(1)
    assert replicas() == 1


def test_a_replica_killed_under_load_costs_at_most_one_percent_of_calls(service, client):
    """Two Recommender replicas, 8 callers through the proxy, one replica killed mid-run: calls
    on it come back UNAVAILABLE (never Ray's traceback) and the client's retry policy lands
    them on the other replica."""

    from attnrec.bench.faults import Load, kill_one_recommender

    two = options()
    two["Recommender"] = {k: v for k, v in two["Recommender"].items() if k != "autoscaling_config"}
    two["Recommender"]["num_replicas"] = 2
    redeploy(service, two)

    def recommend(c: RecommenderClient, i: int) -> None:
        c.recommend([f"i{i % 30 + 1}", f"i{(i + 7) % 30 + 1}"], k=5)

    try:
        with Load(f"127.0.0.1:{service['port']}", 8, recommend) as load:
            time.sleep(3)
            kill_one_recommender()
            time.sleep(6)
        calls, ok, errors = sum(load.outcomes.values()), load.outcomes["OK"], load.details
        assert ok > 100 and calls - ok <= 0.01 * calls, (calls - ok, calls, errors[:3])
        assert not any("Traceback" in e or "File \"" in e or "pid=" in e for e in errors), errors[:3]
    finally:
        redeploy(service, options())


def test_recommend_recovers_from_a_replica_loss_whatever_explain_is_doing(service, client):
    """serve.yaml's real resource asks on 2 CPUs: an Explain burst scales the Explainer up,
    then the Recommender's only replica is killed. Its replacement must not wait behind the
    Explainer's replicas for a CPU (where it did, Recommend stayed down until the burst
    ended). The bound only catches that; recovery takes seconds (docs/operations.md)."""
    from ray import serve

    from attnrec.bench.faults import Load, kill_one_recommender

    real = ServeFile.load(DEFAULT_CONFIG).deployments
    tight = options()
    tight["Recommender"] = {"num_replicas": 1, "ray_actor_options": real["Recommender"]["ray_actor_options"],
                            "max_ongoing_requests": 64}
    tight["Explainer"] = {"ray_actor_options": real["Explainer"]["ray_actor_options"], "max_ongoing_requests": 2,
                          "autoscaling_config": {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
                                                 "upscale_delay_s": 0.5, "downscale_delay_s": 120,
                                                 "metrics_interval_s": 0.5, "look_back_period_s": 1}}
    redeploy(service, tight)

    def explain(c: RecommenderClient, i: int) -> None:
        c.explain(history=[f"i{i % 30 + 1}", f"i{i % 30 + 2}", f"i{i % 30 + 3}"], n_steps=128)

    def explainers() -> int:
        """Explainer replicas wanted: running, starting, or waiting for resources."""
        return sum(serve.status().applications[APP_NAME].deployments["Explainer"].replica_states.values())

    try:
        with Load(f"127.0.0.1:{service['port']}", 6, explain):  # the Explain burst
            deadline = time.monotonic() + 60
            while explainers() < 2 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert explainers() == 2, "the Explain burst should have scaled the Explainer up to two replicas"
            kill_one_recommender()
            killed, answered = time.monotonic(), None
            while answered is None and time.monotonic() - killed < 90:  # the bound catches starvation only
                try:
                    client.recommend(["i1", "i2"], k=3, timeout=2)
                    answered = time.monotonic() - killed
                except grpc.RpcError:
                    time.sleep(0.2)
            assert answered is not None, "Recommend did not come back while Explain was busy"
    finally:
        redeploy(service, options())
