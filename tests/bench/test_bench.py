"""The benchmark suite's smoke run: it must finish and write valid JSON and plots.
It asserts no timing (timings belong in the benchmark's output, not in tests)."""

import json

import pytest

from attnrec.bench.run import compare

pytestmark = pytest.mark.integration


def test_quick_bench_writes_results(checkpoint, tmp_path, capsys):
    """`attnrec bench --quick`, exactly as a user (and CI) runs it."""
    from attnrec.serving.cli import main

    assert main(["bench", "--quick", "--checkpoint", str(checkpoint), "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["versions"]["torch"] and saved["config"]["concurrency"] == [1, 8]
    r = saved["results"]
    assert {m["batch_size"] for m in r["model_alone"]} == {1, 32} and {m["threads"] for m in r["model_alone"]} >= {1}
    for threads in {m["threads"] for m in r["model_alone"]}:  # pytest-benchmark's own JSON, kept beside ours
        kept = json.loads((tmp_path / f"model_alone_{threads}threads.json").read_text())["benchmarks"]
        assert sorted(b["extra_info"]["batch_size"] for b in kept) == [1, 32]
        assert all(b["stats"]["rounds"] == 3 and b["extra_info"]["threads"] == threads for b in kept)
    ray = [r["ray_serve"]["proxy"], r["ray_serve"]["direct_ingress"]]
    for sweep in [r["plain_grpc"]["recommend"]] + [x[label] for x in ray for label in ("batching_on", "batching_off")]:
        assert [s["concurrency"] for s in sweep] == [1, 8]
        assert all(s["calls"] > 0 and not s["errors"] for s in sweep)
    assert all(x["explain"]["calls"] > 0 and x["recommend_batch"]["calls"] > 0 for x in ray)
    assert r["plain_grpc"]["recommend_batch"]["calls"] > 0
    for open_loop in [r["plain_grpc"]["open_loop"]] + [x["open_loop"] for x in ray]:
        assert [o["fraction"] for o in open_loop] == [0.5] and all(o["calls"] > 0 and not o["errors"] for o in open_loop)
    assert all(s["mean_batch_size"] >= 1 for x in ray for s in x["batching_on"])
    assert all(s["mean_batch_size"] >= 1 for s in r["plain_grpc"]["recommend"])
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert set(saved["ratios"]) >= {f"{i}: {k}" for i in ("proxy", "direct_ingress")
                                    for k in ("ray_vs_plain_saturated", "recommend_batch_vs_model_alone")}
    assert "Ray direct, batching on" in capsys.readouterr().out and "B/A" in compare(saved, saved)
