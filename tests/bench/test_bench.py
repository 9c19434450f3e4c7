"""The benchmark suite's smoke run: it must finish and write valid JSON and plots.
It asserts no timing (timings belong in the benchmark's output, not in tests)."""

import json

import pytest

from attnrec.bench.run import BenchConfig, compare, run, table

pytestmark = pytest.mark.integration


def test_quick_bench_writes_results(checkpoint, tmp_path):
    config = BenchConfig(str(checkpoint), concurrency=(1, 2), duration_s=0.5, history=10, model_batch_sizes=(1, 4),
                         explain_steps=(8,), explain_repeats=1)
    report = run(config, tmp_path, progress=False)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["versions"]["torch"] and saved["config"]["concurrency"] == [1, 2]
    r = saved["results"]
    assert {m["batch_size"] for m in r["model_alone"]} == {1, 4} and {m["threads"] for m in r["model_alone"]} >= {1}
    ray = [r["ray_serve"]["proxy"], r["ray_serve"]["direct_ingress"]]
    for sweep in [r["plain_grpc"]["recommend"]] + [x[label] for x in ray for label in ("batching_on", "batching_off")]:
        assert [s["concurrency"] for s in sweep] == [1, 2]
        assert all(s["calls"] > 0 and not s["errors"] for s in sweep)
    assert all(x["explain"]["calls"] > 0 and x["recommend_batch"]["calls"] > 0 for x in ray)
    assert r["plain_grpc"]["recommend_batch"]["calls"] > 0
    assert all(s["mean_batch_size"] >= 1 for x in ray for s in x["batching_on"])
    assert all(s["mean_batch_size"] >= 1 for s in r["plain_grpc"]["recommend"])
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert set(saved["ratios"]) >= {f"{i}: {k}" for i in ("proxy", "direct_ingress")
                                    for k in ("ray_vs_plain_saturated", "recommend_batch_vs_model_alone")}
    assert "Ray Serve" in table(report) and "B/A" in compare(saved, saved)
