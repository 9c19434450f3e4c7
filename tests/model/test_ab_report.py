"""The A/B readout: attribution of events to shown items, rates and intervals, the z-test."""

import math

import pyarrow as pa
import pytest

from attnrec.model.ab_report import ab_report, design_effect, plot_report, report_text, two_proportion_test, wilson
from attnrec.model.feedback_log import EVENT_SCHEMA, IMPRESSION_SCHEMA, FeedbackWriter

T0 = 1_764_720_000_000  # 2025-12-03T00:00:00Z


def impressions(version: str, answers: int, per_answer: int = 10, users: int = 5) -> pa.Table:
    """`answers` answers of `per_answer` items each, request ids "<version>-<answer>", items "i<rank>"."""
    rows = [(f"{version}-{a}", f"u{a % users}", version, f"i{r}", r, 1.0 - r / 100, T0 + a)
            for a in range(answers) for r in range(per_answer)]
    names = IMPRESSION_SCHEMA.names
    return pa.table({n: [row[i] for row in rows] for i, n in enumerate(names)}, schema=IMPRESSION_SCHEMA)


def events(rows: list[tuple[str, str, str]]) -> pa.Table:
    """Events from (request_id, item_id, event_type), each with its own event_id."""
    n = len(rows)
    return pa.table({"event_id": [f"e{i}" for i in range(n)], "request_id": [r[0] for r in rows],
                     "user_id": ["u0"] * n, "item_id": [r[1] for r in rows], "event_type": [r[2] for r in rows],
                     "timestamp_ms": [T0 + 1_000 + i for i in range(n)], "value": [0.0] * n,
                     "received_ms": [T0 + 2_000 + i for i in range(n)]}, schema=EVENT_SCHEMA)


def write(root, shown: pa.Table, acted: list[tuple[str, str, str]]):
    writer = FeedbackWriter(root)
    writer.append("impressions", shown)
    writer.append("events", events(acted))
    return root


def clicks(version: str, n: int, event_type: str = "click") -> list[tuple[str, str, str]]:
    """One event on the first item of each of the first `n` answers."""
    return [(f"{version}-{a}", "i0", event_type) for a in range(n)]


def test_counts_and_rates_on_a_known_log(tmp_path):
    shown = pa.concat_tables([impressions("a", 10), impressions("b", 10)])  # 100 impressions each
    write(tmp_path, shown, clicks("a", 10) + clicks("b", 10) + [(f"b-{a}", "i1", "click") for a in range(10)]
          + clicks("b", 3, "purchase"))
    report = ab_report(tmp_path)
    a, b = report["versions"]["a"], report["versions"]["b"]
    assert (a["impressions"], a["answers"], a["users"], a["clicks"], a["purchases"]) == (100, 10, 5, 10, 0)
    assert (b["impressions"], b["answers"], b["users"], b["clicks"], b["purchases"]) == (100, 10, 5, 20, 3)
    assert a["ctr"] == pytest.approx(0.10) and b["ctr"] == pytest.approx(0.20)
    assert b["purchase_rate"] == pytest.approx(0.03)
    assert a["ctr_low"] < 0.10 < a["ctr_high"] and a["purchase_rate_low"] == 0.0
    assert report["control"] == "a"  # a tie in impressions: the first by name
    assert report["comparisons"]["b"]["difference"] == pytest.approx(0.10)
    assert report["unattributed"] == {} and report["not_shown"] == {}


def test_repeated_clicks_on_one_shown_item_count_once(tmp_path):
    write(tmp_path, impressions("a", 10), clicks("a", 4) * 3 + clicks("a", 1, "purchase") * 2)
    got = ab_report(tmp_path)["versions"]["a"]
    assert (got["clicks"], got["purchases"]) == (4, 1)


def test_an_event_on_an_item_not_shown_in_that_answer_is_not_attributed(tmp_path):
    write(tmp_path, impressions("a", 2, per_answer=3), [("a-0", "i9", "click"), ("a-0", "i2", "click")])
    report = ab_report(tmp_path)
    assert report["versions"]["a"]["clicks"] == 1
    assert report["not_shown"] == {"click": 1}


def test_organic_events_are_counted_as_unattributed(tmp_path):
    write(tmp_path, impressions("a", 2), [("", "i0", "click"), ("", "i0", "click"), ("gone", "i0", "purchase"),
                                         ("a-0", "i0", "click")])
    report = ab_report(tmp_path)
    assert report["versions"]["a"]["clicks"] == 1
    assert report["unattributed"] == {"click": 2, "purchase": 1}


def test_the_z_test_flags_a_large_difference_with_many_impressions_not_a_small_one_with_few(tmp_path):
    many = write(tmp_path / "many", pa.concat_tables([impressions("a", 200), impressions("b", 100)]),
                 clicks("a", 200) + clicks("b", 100) + [(f"b-{a}", "i1", "click") for a in range(100)])
    few = write(tmp_path / "few", pa.concat_tables([impressions("a", 2), impressions("b", 2)]),
                clicks("a", 1) + clicks("b", 2))
    big = ab_report(many)
    assert big["control"] == "a"  # the most impressions
    assert big["comparisons"]["b"]["significant"] and big["comparisons"]["b"]["p_value"] < 1e-6
    small = ab_report(few)["comparisons"]["b"]
    assert not small["significant"] and small["low"] < 0 < small["high"]
    assert "b vs a" in report_text(big) and "not significant" in report_text(ab_report(few))


def test_two_proportion_test_and_wilson_match_hand_computed_values():
    got = two_proportion_test(10, 100, 20, 100)  # pooled p 0.15: z = 0.1 / sqrt(0.1275 * 0.02)
    assert got["z"] == pytest.approx(0.1 / math.sqrt(0.15 * 0.85 * 0.02))
    assert got["p_value"] == pytest.approx(0.0477, abs=1e-4)  # z = 1.980
    assert two_proportion_test(0, 10, 0, 10)["p_value"] == 1.0
    assert wilson(10, 100) == pytest.approx((0.0552, 0.1744), abs=1e-4)


def test_design_effect_is_zero_when_users_click_alike_and_above_one_when_clicks_cluster():
    shown = pa.array([10, 10, 10, 10]).to_numpy()
    assert design_effect(pa.array([2, 2, 2, 2]).to_numpy(), shown) == pytest.approx(0.0)
    assert design_effect(pa.array([8, 0, 0, 0]).to_numpy(), shown) > 1
    assert design_effect(pa.array([0, 0]).to_numpy(), pa.array([5, 5]).to_numpy()) is None


def test_a_named_control_and_an_unknown_one(tmp_path):
    write(tmp_path, pa.concat_tables([impressions("a", 3), impressions("b", 2)]), clicks("b", 1))
    assert ab_report(tmp_path, control="b")["comparisons"].keys() == {"a"}
    with pytest.raises(ValueError, match="'c' has no impressions"):
        ab_report(tmp_path, control="c")


def test_report_text_and_plot(tmp_path):
    write(tmp_path / "log", pa.concat_tables([impressions("a", 10), impressions("b", 10)]),
          clicks("a", 5) + clicks("b", 8) + clicks("b", 1, "purchase") + [("", "i3", "rating")])
    report = ab_report(tmp_path / "log")
    text = report_text(report)
    assert text.splitlines()[0].split()[:5] == ["version", "users", "answers", "impressions", "clicks"]
    assert "a (control)" in text and "5.00% [" in text and "unattributed (organic): rating 1" in text
    out = plot_report(report, tmp_path / "ab.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 1000


def test_an_empty_log_or_one_without_impressions_raises_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=f"no impressions were logged under {tmp_path}"):
        ab_report(tmp_path)
    FeedbackWriter(tmp_path).append("events", events([("", "i0", "click")]))
    with pytest.raises(ValueError, match="no impressions were logged"):
        ab_report(tmp_path)


def test_the_report_command_prints_the_table_and_writes_the_plot_and_json(tmp_path, capsys):
    from attnrec.serving.cli import main

    write(tmp_path / "log", pa.concat_tables([impressions("a", 10), impressions("b", 10)]),
          clicks("a", 2) + clicks("b", 6))
    assert main(["report", "--feedback", str(tmp_path / "log"), "--plot", str(tmp_path / "ab.png"),
                 "--json", str(tmp_path / "ab.json")]) == 0
    printed = capsys.readouterr().out
    assert "b vs a: CTR +4.00%" in printed and (tmp_path / "ab.png").stat().st_size > 1000
    assert main(["report", "--feedback", str(tmp_path / "empty")]) == 2
    assert "no impressions were logged" in capsys.readouterr().err
