"""The analyst's report as plain data in, HTML out, and the checks on an analyst's verdict file.

No model is needed: the page is rendered from made-up summaries, flagged records and PNGs.
(``test_report_browser`` opens a real screening run's report in Chromium; ``test_review`` runs the
verdicts loop.)
"""

import base64
import doctest
import hashlib
import io
import re
import zlib
from html import unescape

import numpy as np
import pandas as pd
import pytest

from pipeline import report, report_plots, verdicts
from pipeline.report import expected_flag_rate, parse_reasons, render_report
from pipeline.report_plots import count_scores, histogram_edges
from pipeline.screening_output import evidence_summary, reasons_text
from pipeline.verdicts import VerdictError, read_verdicts
from tests.conftest import IMG, SCRIPT


def png(width: int, height: int, shade: int) -> bytes:
    """A tiny grey PNG, written by hand: the report takes images from any backend."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    rows = b"".join(b"\x00" + bytes([shade]) * width for _ in range(height))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def summary(**changes) -> dict:
    base = {
        "rows_in": 1203, "rows_scored": 1200, "rows_quarantined": 3, "rows_flagged": 3, "flag_rate": 0.0025,
        "id_column": "transaction_id",
        "model": {"name": "fraud", "version": "3", "alias": "champion", "uri": "models:/fraud/3"},
        "calibration": {"strategy": "fpr", "level": 0.01, "objective": None, "threshold": 2.5,
                        "threshold_kind": "fixed"},
        "drift": {"ks_statistic": 0.04, "ks_p_value": 0.2, "score_mean": 0.1, "calibration_score_mean": 0.05},
        "input": {"path": f"/data/{SCRIPT}.csv", "sha256": "ab" * 32, "bytes": 10, "columns": []},
        "started_at": "2026-01-08T02:00:00+00:00", "finished_at": "2026-01-08T02:01:00+00:00",
        "mlflow_run_id": "r1",
    }
    return base | changes


FLAGGED = pd.DataFrame({
    "transaction_id": ["tx2", "tx1", IMG],
    "anomaly_score": [3.1, 9.7, 4.0], "p_value": [0.002, 0.001, 0.001],
    "reasons": ["unlike any training record +2.5 sd; amount=4822.5 (expected ~60.12, 81%)",
                "merchant_category=a; b (expected ~fuel, 52%); hour=3 (expected ~14, 20%)",
                "country=IT (expected ~DE, 30%)"],
    "amount": [4822.5, 55.0, 12.0], "merchant_category": ["travel", "a; b", "fuel"], "hour": [13, 3, 12],
    "merchant": [SCRIPT, "shop", IMG], "country": ["GB", "GB", "IT"],
})
QUARANTINED = pd.DataFrame({"transaction_id": ["tx9"], "merchant": [SCRIPT], "quarantine_reason": [f"amount: {IMG}"]})


def page(**changes) -> str:
    scores = np.random.default_rng(0).normal(size=1200)
    edges = histogram_edges(scores, 2.5)
    args = {"summary": summary(), "flagged": FLAGGED, "quarantined": QUARANTINED,
            "score_histogram": (count_scores(scores, edges), edges), "calibration_scores": scores[:500]}
    return render_report(**(args | changes))


@pytest.mark.parametrize("module", [report, report_plots, verdicts])
def test_module_examples_run(module):
    assert doctest.testmod(module).failed == 0


def test_every_value_from_the_data_is_escaped():
    html = page()
    assert SCRIPT not in html and IMG not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert html.count("<script>") == 1 and "onerror=" not in html.replace("&lt;img src=x onerror=", "")


def test_the_page_is_self_contained_and_allows_only_its_own_script():
    html = page()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)  # nothing to fetch
    assert not re.search(r"""<(link|script)[^>]+(src|href)=["'](?!data:)""", html)
    policy = unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)[1])
    assert "default-src 'none'" in policy and "img-src data:" in policy
    script = re.search(r"<script>(.*?)</script>", html, re.DOTALL)[1]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy
    assert html.count('src="data:image/png;base64,') == 2  # histogram and drift plot


def test_header_counts_and_flag_rate_against_the_expectation():
    html = page()
    for text in ("fraud v3 (@champion)", "fpr at level 0.01", "1,203", "Flag rate 0.25%", "at most 1.00% of normal"):
        assert text in html
    assert "Kolmogorov" in html and 'id="drift-plot"' in html
    small = page(summary=summary(rows_scored=300))
    assert 'id="drift-plot"' not in small and "too few to read drift" in small
    drifted = summary(rows_scored=300)
    drifted["drift"] |= {"ks_statistic": 0.98, "ks_p_value": 0.0}  # 300 rows all far above calibration's
    assert "too few to plot drift, but they differ from calibration beyond chance" in page(summary=drifted)
    assert "the budget, 2.00% of the batch" in expected_flag_rate({"strategy": "budget", "level": 0.02}, 100)
    assert "= 5.00% of this batch" in expected_flag_rate({"strategy": "budget", "level": 5}, 100)
    assert "at most 10% of the flagged" in expected_flag_rate({"strategy": "fdr", "level": 0.1}, 100)
    assert "labelled validation data" in expected_flag_rate({"strategy": "labels", "level": None}, 100)


def test_flagged_records_most_anomalous_first_with_readable_reasons_and_a_cap():
    html = page()
    ids = re.findall(r'<td class="record-id">([^<]*)</td>', html)
    assert ids == ["tx1", "&lt;img src=x onerror=alert(2)&gt;", "tx2"]
    assert "<b>amount</b> 4,822.50 where ~60.12 was expected (81% of the mismatch)" in html
    assert '<span class="reason">unlike any training record +2.5 sd</span>' in html  # the evidence, as written
    assert "<b>merchant_category</b> a; b where ~fuel was expected" in html  # "; " inside a value stays whole
    assert 'href="#record-1"' in html and 'id="record-1"' in html
    capped = page(max_rows=2)
    assert "Showing 2 of 3; all are in flagged.csv" in capped and len(re.findall('class="record-id"', capped)) == 2
    assert parse_reasons("no reasons in this form", ["amount"]) == [{"text": "no reasons in this form"}]


def test_reasons_lead_with_the_evidence_that_stood_out_in_words():
    evidence = pd.DataFrame({"reconstruction": [0.3, 2.0, 1.5], "tails": [4.0, 0.2, 1.1],
                             "neighbours@16": [1.0, 0.0, 0.4], "neighbours@64": [2.0, 0.4, 0.8]})
    lead = evidence_summary(evidence, kinds=("reconstruction", "neighbours", "tails"))
    assert lead == ["values rare in their own columns +4.0 sd, unlike any training record +1.5 sd",
                    "columns that do not fit together +2.0 sd",
                    "columns that do not fit together +1.5 sd, values rare in their own columns +1.1 sd"]
    # A kind the model's score leaves out is not named, however large.
    assert evidence_summary(evidence, kinds=("reconstruction", "neighbours"))[0] == "unlike any training record +1.5 sd"
    why = pd.DataFrame({"row": [0], "feature": ["amount"], "observed": [9000.0], "expected": [60.0],
                        "contribution": [3.0], "share": [0.9], "tail_share": [0.2], "beyond": [np.nan],
                        "unseen": [None]})
    text = reasons_text(why, 2, evidence=["unlike any training record +3.0 sd", ""])
    assert text == ["unlike any training record +3.0 sd; amount=9000 (expected ~60, 90% of the mismatch)", ""]
    parsed = parse_reasons(text[0], ["amount"])
    assert parsed[0] == {"text": "unlike any training record +3.0 sd"} and parsed[1]["feature"] == "amount"
    huge = reasons_text(why.assign(observed=[1e308]), 1)[0]  # not the 309 digits of a whole float
    assert huge.startswith("amount=1e+308 (expected ~60,") and parse_reasons(huge, ["amount"])[0]["observed"] == "1e+308"


def test_a_value_far_out_in_its_column_is_named_with_how_far_whatever_its_share():
    why = pd.DataFrame({"row": [0, 0, 0], "feature": ["amount", "hour", "country"],
                        "observed": [9000.0, 3.0, "FR"], "expected": [8000.0, 14.0, "GB"],
                        "contribution": [0.1, 2.0, 0.9], "share": [0.03, 0.67, 0.3],
                        "tail_share": [1 / 601, 0.2, np.nan], "beyond": [np.nan, np.nan, np.nan],
                        "unseen": [None, None, None]})
    text = reasons_text(why, 1)[0]
    assert text == ("amount=9000 (expected ~8000, 3% of the mismatch, as far out as 1 in 600 training values); "
                    "hour=3 (expected ~14, 67% of the mismatch); country=FR (expected ~GB, 30% of the mismatch)")
    amount, hour, _ = parse_reasons(text, ["amount", "hour", "country"])
    # With top_k, the rare amount is still read though it comes last by share; the third by share is not.
    merchant = why.iloc[[2]].assign(feature="merchant", observed="x", expected="y", contribution=0.5, share=0.2)
    ranked = pd.concat([why, merchant]).sort_values("contribution", ascending=False)  # explain's order
    top = reasons_text(ranked, 1, top_k=2)[0]
    assert top == "hour=3 (expected ~14, 67% of the mismatch); country=FR (expected ~GB, 30% of the mismatch); " \
                  "amount=9000 (expected ~8000, 3% of the mismatch, as far out as 1 in 600 training values)"
    # A model whose score leaves the tails out is not explained by them.
    assert reasons_text(ranked, 1, top_k=2, far_out_values=False)[0] == \
        "hour=3 (expected ~14, 67% of the mismatch); country=FR (expected ~GB, 30% of the mismatch)"
    assert amount["tail"] == "as far out as 1 in 600 training values" and hour["tail"] is None
    assert amount["share"] == "3%"
    html = page(flagged=pd.DataFrame({"transaction_id": ["tx1"], "anomaly_score": [9.0], "p_value": [0.001],
                                      "reasons": [text], "amount": [9000.0], "hour": [3.0], "country": ["FR"]}))
    assert "<b>amount</b> 9,000 where ~8,000 was expected (3% of the mismatch; as far out as 1 in 600 training values)" in html


def test_a_value_the_model_expected_but_doubted_is_named_when_it_carries_much_of_the_mismatch():
    why = pd.DataFrame({"row": [0, 0, 0], "feature": ["card_present", "hour", "country"],
                        "observed": [False, 4.0, "GB"], "expected": [False, 13.0, "GB"],
                        "contribution": [2.0, 0.2, 0.1], "share": [0.87, 0.08, 0.05], "tail_share": [np.nan] * 3,
                        "beyond": [np.nan] * 3, "unseen": [None] * 3})
    text = reasons_text(why, 1)[0]  # country, expected and barely doubted, stays out
    assert text == ("card_present=False (expected ~False but doubted, 87% of the mismatch); "
                    "hour=4 (expected ~13, 8% of the mismatch)")
    # A flag given as 1/0 (a database's export) is the value the model expected when it reads so.
    as_numbers = why.assign(observed=[0, 4.0, "GB"]).assign(share=[0.1, 0.85, 0.05])
    assert reasons_text(as_numbers, 1)[0] == "hour=4 (expected ~13, 85% of the mismatch)"
    doubted, hour = parse_reasons(text, ["card_present", "hour", "country"])
    assert (doubted["expected"], doubted["doubted"], hour["doubted"]) == ("False", True, False)
    html = page(flagged=pd.DataFrame({"transaction_id": ["tx1"], "anomaly_score": [9.0], "p_value": [0.001],
                                      "reasons": [text], "card_present": [False], "hour": [4.0], "country": ["GB"]}))
    assert "<b>card_present</b> False as expected, but doubted (87% of the mismatch)" in html


def test_a_category_value_never_seen_in_training_is_named_whatever_its_share():
    why = pd.DataFrame({"row": [0] * 4, "feature": ["amount", "merchant", "hour", "country"],
                        "observed": [90.0, "zz-shop", 3.0, "XK"], "expected": [40.0, "Tesco", 14.0, "GB"],
                        "contribution": [2.0, 0.5, 0.06, 0.04], "share": [0.78, 0.19, 0.02, 0.01],
                        "tail_share": [0.3, np.nan, 1e-4, np.nan], "beyond": [np.nan] * 4,
                        "unseen": [None, "other", None, "unknown"]})
    # top_k=1: the first by share, the rarest number, and the new country besides them
    text = reasons_text(why, 1, top_k=1)[0]
    assert text == ("amount=90 (expected ~40, 78% of the mismatch); "
                    "hour=3 (expected ~14, 2% of the mismatch, as far out as 1 in 10,000 training values); "
                    "country=XK (expected ~GB, 1% of the mismatch, never seen in training)")
    # A capped column's 'other' value is common there: said of only when named for its share.
    everything = reasons_text(why, 1)[0]
    assert ("merchant=zz-shop (expected ~Tesco, 19% of the mismatch, not among the column's kept training values); "
            in everything)
    parsed = parse_reasons(everything, ["amount", "merchant", "hour", "country"])
    assert [r["tail"] for r in parsed] == [None, "not among the column's kept training values",
                                           "as far out as 1 in 10,000 training values", "never seen in training"]
    # In an identifier or a date column new values are routine: named only for their share.
    assert "country=" not in reasons_text(why, 1, top_k=1, routine_new=["country"])[0]
    # A rare category is rare, not far out; a never-seen one takes no place of the rarest.
    rare = why.assign(tail_share=[0.3, 0.002, 1e-4, 1e-4])
    text = reasons_text(rare, 1, top_k=1, categories=["merchant", "country"])[0]
    assert text == ("amount=90 (expected ~40, 78% of the mismatch); "
                    "hour=3 (expected ~14, 2% of the mismatch, as far out as 1 in 10,000 training values); "
                    "country=XK (expected ~GB, 1% of the mismatch, never seen in training)")
    assert "merchant=zz-shop (expected ~Tesco, 19% of the mismatch, not among the column's kept training values)" \
        in reasons_text(rare, 1, categories=["merchant", "country"])[0]
    seen = rare.assign(unseen=None)
    assert "country=XK (expected ~GB, 1% of the mismatch, as rare as 1 in 10,000 training values)" in reasons_text(
        seen, 1, categories=["merchant", "country"])[0]
    assert parse_reasons(reasons_text(seen, 1, categories=["country"])[0], ["amount", "merchant", "hour", "country"])[
        -1]["tail"] == "as rare as 1 in 10,000 training values"


def test_a_value_beyond_every_training_value_says_where_they_end_however_few_they_were():
    # 1 in 31 is not rare, but 47 lies past every one of the 30 training hours: where they end says more.
    why = pd.DataFrame({"row": [0, 1, 2], "feature": ["hour", "amount", "amount"], "observed": [47.0, 0.61, "0.61"],
                        "expected": [14.0, 40.0, 40.0], "contribution": [2.0, 2.0, 2.0], "share": [0.05, 0.02, 0.02],
                        "tail_share": [1 / 31, 1e-4, 1e-4], "beyond": [23.0, 1234.5, 1234.5],
                        "unseen": [None] * 3})
    why.loc[1:, "beyond"] = 0.79  # the smallest training amount
    text = reasons_text(why, 3)
    assert text == ["hour=47 (expected ~14, 5% of the mismatch, above the largest training value, 23)",
                    "amount=0.61 (expected ~40, 2% of the mismatch, below the smallest training value, 0.79)",
                    # a number given as text, which the library reads but cannot compare
                    "amount=0.61 (expected ~40, 2% of the mismatch, outside the training values, which end at 0.79)"]
    assert parse_reasons(text[0], ["hour"])[0]["tail"] == "above the largest training value, 23"
    assert parse_reasons("amount=5000 (expected ~40, 2% of the mismatch, above the largest training value, 3573.32)",
                         ["amount"])[0]["tail"] == "above the largest training value, 3,573.32"  # as the report writes


def test_the_filter_finds_a_value_as_shown_and_as_flagged_csv_spells_it():
    html = page(flagged=FLAGGED.assign(amount=[4822.5, 12345.0, np.nan]))
    assert "amount=4,822.50\namount=4822.5\n" in html and "amount=12,345\namount=12345\n" in html


def test_new_category_values_are_named_and_lower_bounds_said_so():
    unseen = {"merchant": {"values": 9, "share": 0.0075, "reads_as": "unknown", "most_common": {"ACME": 7, "Zed": 2},
                           "counts_exact": False},
              "country": {"values": 1, "share": 0.001, "reads_as": "unknown"}}  # a run screened before names
    html = page(summary=summary(unseen_categories=unseen))
    assert "merchant: 9 (0.75% of rows scored), read as unknown, most frequent ACME (at least 7), Zed (at least " \
           "2); country: 1 (0.10% of rows scored), read as unknown" in html


def test_verdicts_show_per_record_and_as_precision():
    marked = pd.DataFrame({"transaction_id": ["tx1", "tx2", "tx77"], "outcome": ["fraud", "legitimate", "fraud"],
                           "note": ["card reported stolen", "", ""]})
    html = page(verdicts=marked)
    assert "Reviewed 2 of 3 flagged records: 1 fraud, 1 legitimate — precision of the reviewed flags 50.0%" in html
    assert '\nverdict=fraud">' in html  # the filter finds records by their verdict
    assert "1 verdict is on a record that the run did not flag (kept, but not counted here, nor used by " \
           "promotion" in html and "card reported stolen" in html
    assert 'id="precision"' not in page()


def test_images_side_by_side_in_the_detail():
    images = {"tx1": {"original": png(4, 4, 200), "reconstruction": png(4, 4, 120), "overlay": png(4, 4, 30)}}
    html = page(images=images)
    detail = html[html.index('id="record-1"'):html.index('id="record-2"')]
    assert re.findall(r"<figcaption>(\w+)</figcaption>", detail) == ["original", "reconstruction", "overlay"]
    assert base64.b64encode(png(4, 4, 30)).decode() in detail
    with pytest.raises(ValueError, match="PNG"):
        page(images={"tx1": {"original": b"GIF89a..."}})


def test_histogram_counts_of_chunks_add_up():
    scores = np.random.default_rng(1).normal(size=1000) * 3
    edges = histogram_edges(scores[:100], threshold=4.0)
    whole = count_scores(scores, edges)
    assert whole.sum() == 1000 and (whole == sum(count_scores(c, edges) for c in np.array_split(scores, 7))).all()


@pytest.mark.parametrize("text, message", [
    ("transaction_id,verdict\ntx1,fraud\n", "needs columns 'transaction_id' (or 'id') and 'outcome'"),
    ("id,outcome,notes\ntx1,fraud,x\n", "unexpected column(s) ['notes']"),
    ("id,outcome\n", "holds no verdicts"),
    ("id,outcome\ntx1,fraud\n,legitimate\ntx2,frod\n",
     "line 3, column 'id': the id is empty; line 4, column 'outcome': 'frod'"),
    ("id,outcome\ntx1,fraud\ntx404,fraud\n", "line 3, column 'id': 'tx404' is not a record of this screening run"),
    ("transaction_id;outcome\ntx1;fraud\n", "it has ['transaction_id;outcome'] (its one column holds ';': save the "
                                            "file comma-separated)"),
    ("id,outcome\n,\n\n", "holds no verdicts"),  # a spreadsheet's empty rows are no verdicts
    ("id,outcome\ntx1,fraud\n\n,\ntx2,frod\n", "line 5, column 'outcome': 'frod'"),  # blank lines count as lines
    ("id,outcome\ntx1,frod,\n", "line 2, column 'outcome': 'frod'"),  # a trailing comma: the ids are not the index
    ("id,outcome\n tx3 ,fraud\n", "line 2, column 'id': ' tx3 ' is more than one record of this screening run once "
                                  "spaces are left out"),
])
def test_bad_verdict_files_name_the_line_and_column(text, message):
    with pytest.raises(VerdictError, match=re.escape(message)):
        read_verdicts(io.StringIO(text), "transaction_id", known_ids=pd.Index(["tx1", "tx2", "tx3", "tx3 "]))


def test_a_spreadsheets_verdicts_are_read_as_meant(tmp_path):
    sheet = "transaction_id,outcome,note,,\ntx1 ,fraud,a,,\n ,,,,\ntx2,legitimate,,,\n,,,,\n"  # ids padded, empty rows
    read = read_verdicts(io.StringIO(sheet), "transaction_id", known_ids=pd.Index(["tx1", "tx2 "]))
    assert read.to_dict("list") == {"transaction_id": ["tx1", "tx2 "], "outcome": ["fraud", "legitimate"],
                                    "note": ["a", ""]}  # each id as the run spells it (a CHAR column pads it)
    # Headers in any case; a row not decided yet (an id, no outcome) is left out and counted, not refused.
    read = read_verdicts(io.StringIO("Transaction ID,Outcome,Note\ntx1,Fraud,\ntx2,,ask the branch\n"),
                         "transaction_id", known_ids=pd.Index(["tx1", "tx2"]))
    assert read.to_dict("list") == {"transaction_id": ["tx1"], "outcome": ["fraud"], "note": [""]}
    assert read.attrs["undecided"] == 1
    with pytest.raises(VerdictError, match=r"holds no verdicts \(1 row\(s\) with an id have no outcome yet\)"):
        read_verdicts(io.StringIO("id,outcome\ntx2,\n"), "transaction_id")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(VerdictError, match=r"empty.csv: holds no verdicts \(the file is empty\)"):
        read_verdicts(tmp_path / "empty.csv", "transaction_id")
    with pytest.raises(VerdictError, match="line 2, column 'id': 'tx9' was quarantined, not scored"):
        read_verdicts(io.StringIO("id,outcome\ntx9,fraud\n"), "transaction_id", known_ids=pd.Index(["tx1"]),
                      quarantined_ids=pd.Index(["tx9"]))
    (tmp_path / "unicode.csv").write_text("id,outcome\ntx1,fraud\n", encoding="utf-16")
    with pytest.raises(VerdictError, match="the file is UTF-16 text .* save it as 'CSV UTF-8'"):
        read_verdicts(tmp_path / "unicode.csv", "transaction_id")
    pd.DataFrame({"id": ["tx1"], "outcome": ["fraud"]}).to_parquet(tmp_path / "parquet.csv")
    with pytest.raises(VerdictError, match="the file is a Parquet file; save it as 'CSV UTF-8'"):  # not ".parquet"
        read_verdicts(tmp_path / "parquet.csv", "transaction_id")
    (tmp_path / "excel.csv").write_text("id,outcome,note\ntx1,fraud,\ntx2,legitimate,caf\u00e9\n", encoding="cp1252")
    with pytest.raises(VerdictError, match=r"line 3 is not UTF-8 text \(byte 0xe9: likely Windows-1252, which "
                                           r"Excel's plain 'CSV' saves\); save it as 'CSV UTF-8'"):
        read_verdicts(tmp_path / "excel.csv", "transaction_id")
    # An id of digits that a spreadsheet read as a number lost its leading zeros: the run's id is named.
    with pytest.raises(VerdictError, match=r"line 2, column 'id': '4521' is not a record of this screening run "
                                           r"\(the run has '0004521': a spreadsheet drops"):
        read_verdicts(io.StringIO("id,outcome\n4521,fraud\n"), "transaction_id", known_ids=pd.Index(["0004521"]))


def test_an_id_copied_from_flagged_csv_with_its_formula_quote_is_the_runs_id():
    known = pd.Index(['=HYPERLINK("http://x","y")', "'quoted", "+44 20"])
    sheet = 'id,outcome\n"\'=HYPERLINK(""http://x"",""y"")",fraud\n\'quoted,fraud\n\'+44 20,legitimate\n'
    read = read_verdicts(io.StringIO(sheet), "path", known_ids=known)
    assert read["path"].tolist() == known.tolist()  # 'quoted is an id as given: it never needed a quote


def test_a_repeated_id_keeps_its_last_verdict():
    read = read_verdicts(io.StringIO("transaction_id,outcome,note\ntx1,fraud,a\ntx2,legitimate,\ntx1,legitimate,b\n"),
                         "transaction_id")
    assert read.to_dict("list") == {"transaction_id": ["tx2", "tx1"], "outcome": ["legitimate", "legitimate"],
                                    "note": ["", "b"]}


def test_a_p_value_at_the_calibrations_floor_is_shown_as_at_most_that():
    floor = 1 / 501  # page() calibrates on 500 scores: no p-value can be smaller
    html = page(flagged=FLAGGED.assign(p_value=[0.004, floor, floor]))
    assert html.count(f"≤ {floor:.3g}") == 4 + 1  # two records, in the table and the detail; and the note
    assert "≤ 0.004" not in html and "is the smallest the 500 calibration records can give" in html


def test_reviewed_records_the_run_did_not_flag_are_listed_a_missed_fraud_first():
    marked = pd.DataFrame({"transaction_id": ["tx1", "tx50", "tx51"], "outcome": ["fraud", "legitimate", "fraud"],
                           "note": ["", "", "skimmer at the ATM"]})
    scores = pd.DataFrame({"transaction_id": ["tx50", "tx51"], "anomaly_score": [2.4, 1.2], "p_value": [0.02, 0.2]})
    html = page(verdicts=marked, unflagged=scores)
    listed = html[html.index('id="unflagged"'):html.index("Quarantined rows")]
    assert listed.index("tx51") < listed.index("tx50") and "skimmer at the ATM" in listed
    assert "below its threshold (2.50)" in html and 'id="unflagged"' not in page(verdicts=marked)
