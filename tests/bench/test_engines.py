"""The engines bench times every engine on the same batches and checks each against eager torch."""

import json

from attnrec.bench.engines import main


def test_each_engine_is_checked_against_eager_torch_and_recorded(checkpoint, tmp_path, capsys):
    assert main(["--checkpoint", str(checkpoint), "--out", str(tmp_path), "--engines", "eager,onnxruntime",
                 "--batch-sizes", "1,3", "--rounds", "1"]) == 0
    rows = json.loads((tmp_path / "engines.json").read_text())["engines"]
    assert [(r["engine"], r["batch_size"]) for r in rows] == [("eager", 1), ("onnxruntime", 1), ("eager", 3),
                                                              ("onnxruntime", 3)]
    assert all(r["same_top_k"] and r["max_abs_diff"] < 1e-3 and r["recs_per_s"] > 0 for r in rows)
    assert "batch   3  onnxruntime" in capsys.readouterr().out
