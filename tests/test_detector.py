"""The estimator contract of DESIGN.md, on a small mixed-type table."""

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import check_estimator

from maskae import MaskedAutoencoderDetector
from maskae.table_encoding import EmptyRowWarning, UnknownCategoryWarning, UnusableValueWarning
from tests.conftest import FAST, card_like


def test_scores_follow_scikit_learn_conventions(fitted, mixed_frame):
    anomaly = fitted.anomaly_score(mixed_frame)
    np.testing.assert_allclose(fitted.score_samples(mixed_frame), -anomaly)
    decision = fitted.decision_function(mixed_frame)
    assert ((decision < 0) == (fitted.predict(mixed_frame) == -1)).all()
    assert set(np.unique(fitted.predict(mixed_frame))) <= {-1, 1}
    # contamination=0.1: a tenth of the training rows (scored out-of-sample) lie above the threshold,
    # and about a tenth of fresh rows from the same distribution are flagged
    assert abs((fitted.training_scores_ > fitted.threshold_).mean() - 0.1) < 0.01
    assert 0.05 < (fitted.predict(card_like(2000, seed=1)) == -1).mean() < 0.2


def test_scoring_the_training_rows_again_gives_their_training_scores(fitted, mixed_frame):
    # fit(X) then anomaly_score(X): a record is not its own neighbour here either
    np.testing.assert_allclose(fitted.anomaly_score(mixed_frame), fitted.training_scores_, rtol=1e-4, atol=1e-4)


def test_duplicated_training_rows_scored_again_get_their_training_scores(mixed_frame):
    # Copies of a row are one row to "never its own neighbour", at fit as at scoring.
    doubled = pd.concat([mixed_frame, mixed_frame.head(150)], ignore_index=True)
    det = MaskedAutoencoderDetector(**{**FAST, "max_steps": 50}).fit(doubled)
    np.testing.assert_allclose(det.anomaly_score(doubled), det.training_scores_, rtol=1e-4, atol=1e-4)


def test_duplicated_rows_get_their_training_scores_when_the_reference_adds_copies_to_the_pool():
    # 6,000 rows, each twice: the nearest term's 2,048 reference rows bring copies into the pool
    # that the samples lacked, which changes which copy is "first" (358 rows differed, by up to 0.08).
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3000, 4)).astype(np.float32)
    doubled = base[rng.permutation(np.repeat(np.arange(3000), 2))]
    det = MaskedAutoencoderDetector(**{**FAST, "max_steps": 50}).fit(doubled)
    assert len(det.neighbours_.pool) > len(np.unique(np.concatenate([s.ravel() for s in det.neighbours_.samples])))
    np.testing.assert_allclose(det.anomaly_score(doubled), det.training_scores_, rtol=1e-4, atol=1e-4)


def test_the_neighbour_search_beside_the_network_gives_the_scores_of_one_after_the_other(fitted, monkeypatch):
    import maskae.detector as detector

    started = []

    class Recorded(detector.ThreadPoolExecutor):
        def __init__(self, *args, **kwargs):
            started.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(detector, "ThreadPoolExecutor", Recorded)
    batch = card_like(detector.OVERLAP_ROWS, seed=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        beside = fitted.anomaly_score(batch)
        assert started == [1]  # the search ran in its own thread
        monkeypatch.setattr(detector, "OVERLAP_ROWS", len(batch) + 1)
        np.testing.assert_array_equal(fitted.anomaly_score(batch), beside)
        assert started == [1]  # ... and now in turn
        torch.set_num_threads(1)
        monkeypatch.setattr(detector, "OVERLAP_ROWS", 1)
        fitted.anomaly_score(batch[:10])
        assert started == [1]  # one torch thread: one core, nothing to overlap
    finally:
        torch.set_num_threads(threads)


def test_same_random_state_gives_same_scores(mixed_frame):
    a = MaskedAutoencoderDetector(**FAST).fit(mixed_frame).anomaly_score(mixed_frame)
    b = MaskedAutoencoderDetector(**FAST).fit(mixed_frame).anomaly_score(mixed_frame)
    c = MaskedAutoencoderDetector(**{**FAST, "random_state": 1}).fit(mixed_frame).anomaly_score(mixed_frame)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    MaskedAutoencoderDetector(**FAST).fit(mixed_frame)
    assert torch.equal(torch.rand(3), expected)  # fitting left the caller's global torch RNG as it was


def test_save_load_gives_identical_scores(fitted, mixed_frame, tmp_path):
    fitted.save(tmp_path / "model")
    again = MaskedAutoencoderDetector.load(tmp_path / "model")
    np.testing.assert_array_equal(again.anomaly_score(mixed_frame), fitted.anomaly_score(mixed_frame))
    assert again.get_params() == fitted.get_params()
    assert not list((tmp_path / "model").glob("*.pkl"))
    assert json.loads((tmp_path / "model" / "maskae.json").read_text())["format_version"] == 9
    with pytest.raises(FileNotFoundError, match="no such folder .*'.*modle'"):  # a typo: not "not a saved detector"
        MaskedAutoencoderDetector.load(tmp_path / "modle")
    with pytest.raises(FileNotFoundError, match="is not a saved maskae detector"):
        MaskedAutoencoderDetector.load(tmp_path)


def test_save_never_deletes_other_files_and_replaces_an_earlier_save(fitted, tmp_path):
    shared = tmp_path / "models"
    shared.mkdir()
    (shared / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"holds other files \(notes.txt\).*folder of its own"):
        fitted.save(shared)
    with pytest.raises(ValueError, match="it is a file"):
        fitted.save(shared / "notes.txt")
    assert (shared / "notes.txt").read_text() == "keep me" and sorted(p.name for p in shared.iterdir()) == ["notes.txt"]
    fitted.save(shared / "fraud")
    fitted.save(shared / "fraud")  # again: the earlier save is replaced, nothing left beside it
    assert sorted(p.name for p in shared.iterdir()) == ["fraud", "notes.txt"]
    assert sorted(p.name for p in (shared / "fraud").iterdir()) == ["maskae.json", "weights.safetensors"]
    (shared / "current").symlink_to(shared / "fraud")
    fitted.save(shared / "current")  # through a link: the folder it points at is replaced, the link kept
    assert (shared / "current").is_symlink() and sorted(p.name for p in shared.iterdir()) == ["current", "fraud", "notes.txt"]


def test_a_saved_detector_is_readable_as_the_umask_allows(fitted, tmp_path):
    umask = os.umask(0o022)
    try:
        fitted.save(tmp_path / "model")
    finally:
        os.umask(umask)
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o755  # not mkdtemp's owner-only 0o700
    assert (tmp_path / "model" / "weights.safetensors").stat().st_mode & 0o777 == 0o644


def test_a_pickle_posing_as_weights_is_refused(fitted, tmp_path):
    import pickle

    fitted.save(tmp_path / "model")
    (tmp_path / "model" / "weights.safetensors").write_bytes(pickle.dumps({"evil": print}))
    with pytest.raises(ValueError, match="refusing to load"):
        MaskedAutoencoderDetector.load(tmp_path / "model")


def test_a_term_with_no_observed_cell_is_left_out_not_read_as_a_perfect_fit(fitted, mixed_frame):
    numeric = [c for c in mixed_frame.columns if pd.api.types.is_float_dtype(mixed_frame[c])]
    rows = mixed_frame.head(3).astype(object)
    rows.loc[rows.index[0], :] = np.nan  # nothing observed
    rows.loc[rows.index[1], numeric] = np.nan  # categories only: still as rare as they are
    with pytest.warns(EmptyRowWarning, match="1 row"):
        z = fitted.evidence_scores(rows)
    assert z.loc[0, ["reconstruction", "tails"]].isna().all() and z.loc[1:].notna().all().all()
    assert z.drop(columns=["reconstruction", "tails"]).notna().all().all()
    weights = pd.Series(fitted.evidence_weights_)[z.columns]
    present = z.notna()
    expected = (z.fillna(0) * weights).sum(axis=1) / (present * weights).sum(axis=1)
    with pytest.warns(EmptyRowWarning):
        np.testing.assert_allclose(fitted.anomaly_score(rows), expected, rtol=1e-9)  # once -51 sd read as very normal


def test_a_row_left_with_no_evidence_scores_as_typical_and_a_constant_term_adds_nothing():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"c": rng.choice(list("xyz"), 200), "d": rng.choice(list("ab"), 200)})
    X.loc[:4, ["c", "d"]] = None  # nothing observed in 5 rows
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        det = MaskedAutoencoderDetector(max_steps=10, random_state=0, evidence=("reconstruction",)).fit(X)
    assert [str(w.message)[:14] for w in said if w.category is EmptyRowWarning] == ["5 row(s) have "]  # once
    with pytest.warns(EmptyRowWarning):
        assert np.isfinite(det.threshold_) and np.isfinite(det.training_scores_).all()
        assert (det.anomaly_score(X.head(5)) == 0).all()  # no term left: a typical training row's score, not NaN
    z = det.evidence_scores(X.tail(50))
    assert z.index.equals(X.tail(50).index)  # rows keep their labels, as reconstruct's do
    # one value per column: the tails term is constant, standardised to 0 (its rounding-error spread once blew it up)
    same = pd.DataFrame({"c": ["x"] * 50, "d": ["a"] * 50})
    constant = MaskedAutoencoderDetector(max_steps=10, random_state=0).fit(same).evidence_scores(same)
    assert np.abs(constant["tails"]).max() < 1e-6


def test_text_or_infinity_in_a_numeric_column_warns_and_reads_as_missing(fitted, mixed_frame):
    rows = mixed_frame.head(4).astype({"amount": object})
    as_missing = fitted.anomaly_score(rows.assign(amount=np.nan))
    for value, shown in ((np.inf, "inf"), (-np.inf, "-inf"), ("abc", "'abc'")):
        with pytest.warns(UnusableValueWarning, match=rf"column 'amount': 4 value\(s\) are not finite numbers \(e.g. {shown}\)"):
            np.testing.assert_array_equal(fitted.anomaly_score(rows.assign(amount=value)), as_missing)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnusableValueWarning)
        rows.loc[rows.index[:3], "amount"] = ["", "NA", None]  # how files spell a missing amount: no warning
        fitted.anomaly_score(rows)
    # impute fills what the model reads as missing, text and infinity included
    rows.loc[rows.index[:2], "amount"] = ["abc", np.inf]
    with pytest.warns(UnusableValueWarning):
        filled = fitted.impute(rows)
        expected = fitted.reconstruct(rows)
    assert np.isfinite(filled["amount"].astype(float)).all()
    np.testing.assert_allclose(filled["amount"][:3].astype(float), expected["amount"][:3].astype(float))
    assert filled.loc[rows.index[3], "amount"] == rows.loc[rows.index[3], "amount"]  # an observed cell is kept


def test_clone_and_params():
    det = MaskedAutoencoderDetector(mask_ratio=0.5, n_neighbour_samples=3, random_state=7)
    copy = clone(det)
    assert copy.get_params() == det.get_params()
    assert copy.set_params(mask_ratio=0.25).mask_ratio == 0.25


def test_mixed_types_missing_values_and_unseen_category(fitted, mixed_frame):
    new = mixed_frame.head(5).copy()
    new.loc[0, "amount"] = np.nan
    new.loc[1, "category"] = "casino"  # never seen in training
    new.loc[2, "country"] = None
    new["extra"] = 1  # ignored with a warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = fitted.anomaly_score(new)
    assert np.isfinite(scores).all()
    messages = " ".join(str(w.message) for w in caught)
    assert "casino" not in messages and "'category'" in messages and "extra" in messages
    filled = fitted.impute(new.drop(columns="extra"))
    assert filled.notna().all().all()
    assert 10 < filled.loc[0, "amount"] < 2000


def test_missing_column_names_it(fitted, mixed_frame):
    with pytest.raises(ValueError, match="'channel'") as raised:  # scikit-learn's type for columns that do not match
        fitted.anomaly_score(mixed_frame.drop(columns="channel"))
    assert isinstance(raised.value, KeyError)  # as before
    assert str(raised.value).startswith("column(s) ['channel'] are missing")  # not quoted as a KeyError's repr
    renamed = mixed_frame.rename(columns={"channel": "Channel "})  # as an export may respell it
    with pytest.raises(ValueError, match=r"it has 'Channel ' for 'channel'"):
        fitted.anomaly_score(renamed)


def test_expected_values_stay_within_the_training_range(fitted, mixed_frame):
    odd = mixed_frame.head(20).copy()
    odd["amount"] = np.geomspace(1e-3, 1e7, 20)  # far below and above anything trained on
    odd["hour"] = np.linspace(-200, 200, 20)
    expected = fitted.explain(odd).pivot(index="row", columns="feature", values="expected")
    for name in ("amount", "hour"):
        low, high = mixed_frame[name].min(), mixed_frame[name].max()
        values = expected[name].astype(float)
        assert values.between(low - 1e-4 * (high - low), high + 1e-4 * (high - low)).all(), name
        assert fitted.reconstruct(odd)[name].between(low - 1e-4 * (high - low), high + 1e-4 * (high - low)).all()


def test_an_array_for_a_model_fitted_on_a_frame_asks_for_a_frame(fitted, mixed_frame):
    with pytest.raises(ValueError, match=r"fitted on a DataFrame .* pass a DataFrame with columns \['amount', 'hour'"):
        fitted.anomaly_score(mixed_frame.to_numpy())


def test_injected_extreme_value_scores_high_and_is_explained(fitted, mixed_frame):
    odd = mixed_frame.iloc[[0]].copy()
    odd["hour"] = 60.0  # far outside the 5..23 seen in training
    score = fitted.anomaly_score(odd)[0]
    assert score > np.quantile(fitted.anomaly_score(mixed_frame), 0.99)
    reasons = fitted.explain(odd, top_k=1)
    assert reasons.loc[0, "feature"] == "hour"
    assert reasons.loc[0, "observed"] == 60.0 and abs(reasons.loc[0, "expected"] - 14) < 5
    assert reasons.loc[0, "tail_share"] == pytest.approx(1 / (len(mixed_frame) + 1))  # beyond every training hour
    assert reasons.loc[0, "beyond"] == mixed_frame["hour"].max()  # where the training hours end
    low = fitted.explain(odd.assign(hour=-5.0)).set_index("feature")["beyond"]
    assert low["hour"] == mixed_frame["hour"].min() and low.drop("hour").isna().all()  # the others lie within


def test_a_training_ranges_end_is_shown_rounded_but_never_past_the_value_beyond_it():
    from maskae.detector import _shown_bound
    from maskae.table_encoding import NumericColumn

    plain = NumericColumn("x", log_scale=None, center=0.0, scale=1.0)
    ends = np.array([22.9999995, 123456.7890625, 123456.7890625, 2.0000001, np.nan], dtype=np.float32)
    observed = np.array([47.0, 123456.8, 123456.7895, 1.5, 3.0])  # past the ends (the fourth below its start)
    shown = _shown_bound(plain, ends, observed)
    # rounded to its resolution, 123456.7890625 reads 123456.79, which would lie past 123456.7895
    assert shown[:4].tolist() == [23, 123456.79, 123456.7890625, 2] and np.isnan(shown[4])


def test_a_range_starting_at_zero_is_said_to_start_at_zero_whatever_the_columns_spread():
    rng = np.random.default_rng(0)
    # centred far from 0 and scaled by thousands, 0 decoded as -2.3e-05 before
    X = pd.DataFrame({f"x{k}": np.maximum(rng.normal(7.3 * k, 10.0 ** k, 2000), 0) for k in range(5)})
    X.iloc[0] = 0.0
    detector = MaskedAutoencoderDetector(max_steps=20, random_state=0).fit(X)
    beyond = detector.explain(pd.DataFrame({c: [-0.001] for c in X})).set_index("feature")["beyond"]
    assert (beyond == 0.0).all(), beyond


def test_explain_reads_how_rare_each_value_is_in_its_own_column(fitted, mixed_frame):
    long = fitted.explain(mixed_frame).set_index(["row", "feature"])["tail_share"]
    hours = mixed_frame["hour"]
    median_row, lowest_row = int((hours - hours.median()).abs().argmin()), int(hours.argmin())
    assert long[(median_row, "hour")] > 0.4  # about half the training hours lie on either side
    assert long[(lowest_row, "hour")] <= (hours == hours.min()).mean() + 0.01
    # a category: the share of training values whose category is at most as frequent (1 for the commonest)
    categories = long.xs("category", level="feature")
    frequency = mixed_frame["category"].map(mixed_frame["category"].value_counts(normalize=True))
    commonest = frequency == frequency.max()
    assert (categories[commonest.to_numpy()] == 1).all() and (categories[~commonest.to_numpy()] < 1).all()
    with pytest.warns(UserWarning, match="never seen in training"):
        new = fitted.explain(mixed_frame.head(1).assign(category="boats")).set_index("feature")["tail_share"]
    assert new["category"] == pytest.approx(1 / (len(mixed_frame) + 1))  # as rare as beyond every number


def test_impossible_combination_scores_high_and_is_explained(fitted, mixed_frame):
    # Every value is common on its own; "travel" at a grocery-sized amount is not.
    grocery = mixed_frame[mixed_frame["category"] == "grocery"].head(20).copy()
    broken = grocery.assign(category="travel")
    normal_scores = fitted.anomaly_score(grocery)
    broken_scores = fitted.anomaly_score(broken)
    assert (broken_scores > normal_scores).mean() > 0.9
    top = fitted.explain(broken, top_k=2)
    assert set(top.groupby("row")["feature"].apply(set).explode()) & {"category", "amount"}
    assert (top.groupby("row")["feature"].apply(lambda f: bool({"category", "amount"} & set(f)))).all()


def test_explain_contributions_sum_to_the_reconstruction_evidence(fitted, mixed_frame):
    rows = mixed_frame.head(3)
    long = fitted.explain(rows)
    assert len(long) == 3 * mixed_frame.shape[1]
    passes, data = fitted._passes(rows)
    evidence = fitted._local_evidence(passes, data)["reconstruction"]
    np.testing.assert_allclose(long.groupby("row")["contribution"].sum(), evidence, rtol=1e-5)


def test_transform_and_reconstruct_shapes(fitted, mixed_frame):
    assert fitted.transform(mixed_frame.head(4)).shape == (4, FAST["latent_size"])
    rebuilt = fitted.reconstruct(mixed_frame.head(4))
    assert list(rebuilt.columns) == list(mixed_frame.columns)


def test_numpy_input_and_wrong_width():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    det = MaskedAutoencoderDetector(**FAST).fit(X)
    assert det.feature_names_in_ is None and det.n_features_in_ == 4
    assert det.anomaly_score(X[:3]).shape == (3,)
    with pytest.raises(ValueError, match="X has 3 features, but MaskedAutoencoderDetector is expecting 4 features"):
        det.anomaly_score(X[:, :3])


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="mask_ratio"):
        MaskedAutoencoderDetector(mask_ratio=1.5).fit(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="backend"):
        MaskedAutoencoderDetector(backend="transformer").fit(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="max_categories"):
        MaskedAutoencoderDetector(max_categories=0).fit(np.zeros((10, 2)))


def test_an_identifier_column_is_named_at_fit_and_keeps_the_model_small(mixed_frame):
    # Every row its own category used to grow the embeddings and the one-hot neighbour space with
    # the rows (50,000 rows with a timestamp column ran out of memory).
    frame = mixed_frame.assign(txn=[f"t{i}" for i in range(len(mixed_frame))])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        det = MaskedAutoencoderDetector(**{**FAST, "max_steps": 50, "max_categories": 8}).fit(frame)
    messages = [(str(w.message), w.filename) for w in caught]
    n = len(frame)
    assert any(f"'txn' has {n:,} distinct values in {n:,} observed training rows" in m and f == __file__
               for m, f in messages)  # and the warning points at the caller's line
    assert not any("training values it keeps" in m for m, _ in messages)  # fitting warns once, not of its own rows
    assert det.encoder_.categorical_[-1].n_codes == 1  # no id is kept: every one reads as 'other'
    n_codes = sum(c.n_codes for c in det.encoder_.categorical_)
    assert det.neighbours_.pool.shape[1] == len(det.encoder_.numeric_) + n_codes
    new = frame.head(5).assign(txn=[f"new{i}" for i in range(5)])
    with pytest.warns(UnknownCategoryWarning, match=r"'txn': 5 value\(s\) scored as 'other', as all its values are") as caught:
        assert np.isfinite(det.anomaly_score(new)).all()
    assert caught[0].filename == __file__


def test_a_capped_column_is_reconstructed_as_its_likeliest_kept_category():
    rng = np.random.default_rng(0)
    shop = rng.choice(["a", "b"], size=400).astype(object)
    shop[::5] = [f"rare{i}" for i in range(80)]  # a fifth of the rows: values seen once, read as 'other'
    frame = pd.DataFrame({"x": rng.normal(size=400), "shop": shop})
    with pytest.warns(UserWarning, match="max_categories"):
        det = MaskedAutoencoderDetector(**{**FAST, "max_steps": 50, "max_categories": 2}).fit(frame)
    gaps = frame.head(10).assign(shop=None)
    assert set(det.impute(gaps)["shop"]) <= {"a", "b"}  # a value, not None for 'other'
    assert det.explain(frame.head(10))["expected"].notna().all()


def test_impossible_combination_of_categories_scores_high(fitted, mixed_frame):
    # In training, card-present (pos) payments happen only in GB; FR is common, but only online.
    pos = mixed_frame[mixed_frame["channel"] == "pos"].head(20)
    broken = pos.assign(country="FR")
    assert (fitted.anomaly_score(broken) > fitted.anomaly_score(pos)).mean() > 0.9
    top = fitted.explain(broken, top_k=1)
    assert top["feature"].isin(["country", "channel", "card_present"]).mean() > 0.9


def test_explain_marks_category_values_the_model_did_not_learn(fitted, mixed_frame):
    rows = mixed_frame.head(2).assign(country=["XK", "GB"])
    with pytest.warns(UserWarning, match="never seen in training"):
        unseen = fitted.explain(rows).set_index(["row", "feature"])["unseen"]
    assert unseen[(0, "country")] == "unknown"
    assert unseen.drop((0, "country")).isna().all()  # numbers, and values seen in training
    shop = np.array(["a", "b"] * 100 + [f"rare{i}" for i in range(40)], dtype=object)
    frame = pd.DataFrame({"x": np.random.default_rng(0).normal(size=len(shop)), "shop": shop})
    with pytest.warns(UserWarning, match="max_categories"):
        capped = MaskedAutoencoderDetector(**{**FAST, "max_steps": 20, "max_categories": 2}).fit(frame)
    with pytest.warns(UserWarning, match="scored as 'other'"):
        assert capped.explain(frame.tail(1)).set_index("feature").loc["shop", "unseen"] == "other"
    assert capped.explain(frame.head(1).assign(shop=None)).set_index("feature").loc["shop", "unseen"] is None


def test_a_date_column_is_remembered_as_one_whose_new_values_are_routine(tmp_path):
    frame = pd.DataFrame({"x": np.arange(60.0) % 7, "day": pd.date_range("2026-01-01", periods=60).astype(str)})
    with pytest.warns(UserWarning, match="as an identifier or a date has"):
        det = MaskedAutoencoderDetector(**{**FAST, "max_steps": 20}).fit(frame)
    loaded = MaskedAutoencoderDetector.load(det.save(tmp_path / "model"))
    assert [c.identifier_like for c in loaded.encoder_.categorical_] == [True]


def test_a_column_the_others_decide_does_not_lead_the_reasons_of_an_unusual_row():
    # card_present is channel != "online" in these transactions: rebuilt in training all but
    # perfectly, so its prediction's wobble on a fraud row (caused by the amount, hour, country)
    # led 17% of these rows' reasons before category errors had a floor.
    from data.transactions import generate_transactions
    from flows.demo import FEATURES

    week = generate_transactions(n_customers=500, days=7, fraud_rate=0.02, seed=0)
    det = MaskedAutoencoderDetector(**FAST).fit(week.loc[week["is_fraud"] == 0, FEATURES])
    leading = det.explain(week.loc[week["is_fraud"] == 1, FEATURES], top_k=1)["feature"]
    assert (leading == "card_present").mean() < 0.05
    assert (leading == "amount").mean() > 0.5
    # The floor does not silence a real contradiction: a card present in an online payment.
    online = week[(week["is_fraud"] == 0) & (week["channel"] == "online")].head(20).assign(card_present=True)
    assert det.explain(online[FEATURES], top_k=1)["feature"].isin(["card_present", "channel"]).all()


def test_absurd_finite_values_score_highest_not_nan(fitted, mixed_frame):
    rows = mixed_frame.head(3).copy()
    rows.loc[rows.index[0], "amount"] = 2.4e210  # finite, but its square overflows any float
    rows.loc[rows.index[1], "hour"] = -1e300
    scores = fitted.anomaly_score(rows)
    assert np.isfinite(scores).all() and scores[:2].min() > scores[2]


def test_tiny_tables_overflowing_values_empty_batches_and_any_index():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(scale=0.01, size=40), "b": rng.normal(size=40)})
    quick = dict(max_steps=4, random_state=0)
    for n in (3, 4):  # the second neighbour draw keeps 2 or 3 rows: each still has a neighbour
        assert np.isfinite(MaskedAutoencoderDetector(**quick).fit(X.head(n)).training_scores_).all()
    det = MaskedAutoencoderDetector(**quick).fit(X)
    assert det.anomaly_score(X.head(0)).shape == (0,)
    far = X.head(2).copy()
    far.iloc[0, 0] = 1e308  # finite, but its code overflows: the most extreme value, not a missing one
    assert det.evidence_scores(far)["tails"].iloc[0] > det.evidence_scores(far)["tails"].iloc[1] + 1
    huge = X.copy()
    huge.iloc[0, 1] = 1e200  # the sum of squares overflows: the column still gets a finite scale
    fitted_huge = MaskedAutoencoderDetector(**quick).fit(huge)
    assert np.isfinite(fitted_huge.encoder_.numeric_[1].scale) and fitted_huge.training_scores_.argmax() == 0
    gap = X.head(5).set_axis(range(100, 105))
    gap.iloc[2, 1] = np.nan
    filled = det.impute(gap)  # predictions meet the cells by the frame's own index
    assert filled.index.equals(gap.index) and not filled.isna().any().any()


def test_evidence_scores_show_each_term_and_average_to_the_anomaly_score(fitted, mixed_frame):
    rows = mixed_frame.head(5)
    terms = fitted.evidence_scores(rows)
    samples = ["neighbours@16", "neighbours@64", "neighbours@256"]
    assert list(terms.columns) == ["reconstruction", "tails", *samples, "nearest"]
    # each kind of evidence weighs the same: the neighbour samples share one kind's weight
    by_kind = (terms["reconstruction"] + terms["tails"] + terms[samples].mean(axis=1) + terms["nearest"]) / 4
    np.testing.assert_allclose(by_kind, fitted.anomaly_score(rows), rtol=1e-5, atol=1e-6)
    default = fitted.evidence
    try:
        fitted.set_params(evidence=("tails",))
        np.testing.assert_allclose(fitted.anomaly_score(rows), terms["tails"], rtol=1e-5, atol=1e-6)
    finally:
        fitted.set_params(evidence=default)


def test_nearest_evidence_sees_a_cluster_of_anomalies_hiding_in_the_training_data():
    # 4 % of the training rows form one tight cluster away from the normal rows: unlabelled fraud
    # of one kind, each other's close company. A record of that kind is near training rows (plain
    # nearest-row distance, as KNN measures it, calls it normal), but those rows are suspect: far
    # from the small samples, yet in close company. The nearest evidence inherits their suspicion.
    rng = np.random.default_rng(7)
    normal = rng.normal(size=(960, 4))
    cluster = np.array([5.0, -5.0, 5.0, -5.0]) + 0.05 * rng.normal(size=(40, 4))
    det = MaskedAutoencoderDetector(max_steps=60, hidden_size=16, latent_size=4, random_state=0)
    det.fit(pd.DataFrame(np.vstack([normal, cluster]), columns=list("abcd")))
    records = pd.DataFrame([[5.02, -4.98, 5.01, -5.0], [0.1, -0.2, 0.3, 0.0]], columns=list("abcd"))
    space = det._neighbour_space(det._tensors(records))
    plain, _ = det.neighbours_.nearest(space, 1)
    assert plain[0, 0] < plain[1, 0]  # the fraud-like record has the closer company
    nearest = det.evidence_scores(records)["nearest"]
    assert nearest[0] > 2 and nearest[0] > nearest[1] + 2
    assert det.anomaly_score(records)[0] > det.threshold_ > det.anomaly_score(records)[1]


def test_a_repeated_ordinary_record_is_not_a_suspect_cluster():
    # Identical copies are each other's closest company, but not a cluster of anomalies: a record
    # like them, or one of them, must read as normal (it read +7 sd when copies counted as company).
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(1000, 4)), np.tile([0.3, -0.2, 0.1, 0.0], (8, 1))])
    det = MaskedAutoencoderDetector(max_steps=40, random_state=0).fit(pd.DataFrame(X, columns=list("abcd")))
    records = pd.DataFrame([[0.3, -0.2, 0.1, 0.0], [0.31, -0.21, 0.1, 0.0]], columns=list("abcd"))
    assert (det.evidence_scores(records)["nearest"] < 0).all()
    assert (det.anomaly_score(records) < det.threshold_).all()
    # the nearest term alone is a valid setting to fit with, not only to score with
    alone = MaskedAutoencoderDetector(max_steps=20, evidence=("nearest",), random_state=0).fit(X)
    np.testing.assert_allclose(alone.anomaly_score(X[:5]), alone.evidence_scores(X[:5])["nearest"], rtol=1e-5)


def test_unlabelled_anomalies_in_training_sit_out_the_second_half_of_it():
    # 5 % of the training rows break x1 = 2 x0 the same way (x1 = -2 x0): unlabelled fraud of one
    # kind. Left out of the second half of training (contamination 0.1), the network does not
    # learn to rebuild them, so reconstruction keeps telling such rows apart; with (next to)
    # nothing left out (0.001), it learns them and tells them apart worse.
    rng = np.random.default_rng(0)

    def rows(n, slope):
        x0 = rng.normal(size=n)
        return np.c_[x0, slope * x0 + 0.1 * rng.normal(size=n), rng.normal(size=(n, 2))]

    train = np.r_[rows(950, 2.0), rows(50, -2.0)]
    test, is_fraud = np.r_[rows(200, 2.0), rows(50, -2.0)], np.r_[np.zeros(200), np.ones(50)]

    def reconstruction_auroc(contamination):
        det = MaskedAutoencoderDetector(max_steps=400, contamination=contamination, random_state=0).fit(train)
        return roc_auc_score(is_fraud, det.evidence_scores(test)["reconstruction"])

    assert reconstruction_auroc(0.1) > reconstruction_auroc(0.001) + 0.03


def test_the_loss_curve_runs_through_both_halves_and_marks_where_rows_were_left_out(fitted):
    assert len(fitted.history_["train_loss"]) == FAST["max_steps"]
    assert fitted.history_["trimmed_from_step"] == [FAST["max_steps"] // 2]


def test_format_1_models_load_and_score_as_before():
    """Folders written by maskae's first save format (commit c2ff6e8) still load and score the same."""
    folder = Path(__file__).parent / "fixtures" / "format1"
    expected = json.loads((folder / "scores.json").read_text())
    table = MaskedAutoencoderDetector.load(folder / "table")
    # table.csv is the training table. At c2ff6e8 a training row scored again was its own neighbour
    # (scores.json); now it gets the training score that commit gave it when fitting.
    np.testing.assert_allclose(table.anomaly_score(pd.read_csv(folder / "table.csv")), table.training_scores_, rtol=1e-4, atol=1e-5)
    cnn = MaskedAutoencoderDetector.load(folder / "cnn")
    assert cnn.evidence == ("reconstruction",)  # format 1 CNN models had no neighbour evidence
    with pytest.raises(ValueError, match="a CNN model reads images, not columns"):
        cnn.training_range()
    np.testing.assert_allclose(cnn.anomaly_score(np.load(folder / "images.npy")), expected["cnn"], rtol=1e-4, atol=1e-5)


def test_format_2_models_keep_their_tail_evidence():
    """Format 2 (commit 5b34526) scored tails as a squared robust z-score; its models still score the same."""
    folder = Path(__file__).parent / "fixtures" / "format2"
    table = MaskedAutoencoderDetector.load(folder / "table")
    scores = table.anomaly_score(pd.read_csv(folder / "table.csv"))
    # rows 0 and 1 were changed; the others are training rows, which now get their training scores
    # (at 5b34526 a training row scored again was its own neighbour)
    np.testing.assert_allclose(scores[:2], json.loads((folder / "scores.json").read_text())["table"][:2], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores[2:], table.training_scores_[2:20], rtol=1e-4, atol=1e-5)
    # it kept no training range of its columns: nothing reads as beyond it
    assert table.training_range() == {} and not table.training_range_sides(pd.read_csv(folder / "table.csv")).any().any()


def test_format_3_models_keep_one_tail_grid_for_all_columns():
    """Format 3 (commit f3a67bc) read every column's tails on one grid over all training rows, also
    for a column observed in a few of them; its models still score the same."""
    folder = Path(__file__).parent / "fixtures" / "format3"
    table = MaskedAutoencoderDetector.load(folder / "table")
    assert table.tails_.probabilities.ndim == 1
    assert table.training_range()["amount"][2] == 200  # the one grid's row count, for every column
    scores = table.anomaly_score(pd.read_csv(folder / "table.csv"))
    np.testing.assert_allclose(scores, json.loads((folder / "scores.json").read_text())["table"], rtol=1e-4, atol=1e-5)
    # Before format 5 every category was kept: a clone refits the same way.
    assert table.encoder_.categorical_[0].n_distinct is None and clone(table).max_categories is None


def test_format_6_models_score_as_before_without_the_distance_floor():
    """Format 6 (commit 8c9d6a8) read a distance below every training row's as it was."""
    folder = Path(__file__).parent / "fixtures" / "format6"
    table = MaskedAutoencoderDetector.load(folder / "table")
    assert table.evidence_floor_ == {}
    scores = table.anomaly_score(pd.read_csv(folder / "table.csv"))
    np.testing.assert_allclose(scores, json.loads((folder / "scores.json").read_text())["table"], rtol=1e-4, atol=1e-5)


def test_an_older_model_saved_again_loads_and_scores_as_it_did(tmp_path):
    """A format 6 model has no category tails: saved again, it keeps scoring with numbers' only."""
    folder = Path(__file__).parent / "fixtures" / "format6"
    table = MaskedAutoencoderDetector.load(folder / "table")
    again = MaskedAutoencoderDetector.load(table.save(tmp_path / "again"))
    assert table.category_tails_ is None and again.category_tails_ is None
    batch = pd.read_csv(folder / "table.csv")
    np.testing.assert_array_equal(again.anomaly_score(batch), table.anomaly_score(batch))


def test_a_date_column_has_no_rare_values_each_new_day_is_routine():
    days = pd.date_range("2026-01-01", periods=6).astype(str)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=600), "day": np.repeat(days, 100)})
    with pytest.warns(UserWarning, match="as an identifier or a date has"):
        det = MaskedAutoencoderDetector(**{**FAST, "max_steps": 50}).fit(frame)
    tomorrow = frame.head(100).assign(day="2026-01-07")
    with pytest.warns(UserWarning, match="never seen in training"):
        shares = det.explain(tomorrow).set_index("feature")["tail_share"]
        assert (shares["day"] == 1).all()  # a new day is no rarer than any other
        np.testing.assert_allclose(det.evidence_scores(tomorrow)["tails"], det.evidence_scores(frame.head(100))["tails"])


def test_a_near_copy_of_a_training_row_is_no_closer_than_the_training_rows_are():
    """A training row cast to float32 or read back from a CSV finds its own row at 1e-7, where the
    row itself found its next neighbour: each distance term stays within its training range."""
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(300, 4)), columns=list("abcd"))
    detector = MaskedAutoencoderDetector(**{**FAST, "max_steps": 30}).fit(X)
    trained, again = detector.evidence_scores(X), detector.evidence_scores(X + 1e-9)
    for term in ("neighbours@16", "neighbours@64", "neighbours@256", "nearest"):
        assert again[term].min() >= trained[term].min() - 1e-9, term


def test_format_5_models_score_as_before_without_the_nearest_evidence():
    """Format 5 (commit 50b9164) had no nearest evidence and weighed every term the same."""
    folder = Path(__file__).parent / "fixtures" / "format5"
    table = MaskedAutoencoderDetector.load(folder / "table")
    assert table.neighbours_.suspect.size == 0 and set(table.evidence_weights_.values()) == {1.0}
    with pytest.warns(UnknownCategoryWarning):
        scores = table.anomaly_score(pd.read_csv(folder / "table.csv"))
    np.testing.assert_allclose(scores, json.loads((folder / "scores.json").read_text())["table"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("params, message", [
    ({"contamination": "auto"}, "contamination must be a number"),
    ({"max_steps": 0}, "max_steps must be a positive int"),
    ({"batch_size": 0}, "batch_size must be a positive int"),
    ({"n_mask_repeats": 0}, "n_mask_repeats must be a positive int"),
    ({"neighbour_sample_sizes": ()}, "neighbour_sample_sizes must be positive ints"),
    ({"neighbour_sample_sizes": (16, 0)}, "neighbour_sample_sizes must be positive ints"),
    ({"neighbour_sample_sizes": (), "evidence": ("reconstruction", "tails")}, "neighbour_sample_sizes must be"),
    ({"evidence": "tails"}, r"evidence must be a tuple of kinds, e.g. \('tails',\), got the string"),
    ({"random_state": -1}, "random_state must be None, a non-negative int or a NumPy RandomState or Generator"),
])
def test_bad_parameters_are_refused_at_fit_with_their_name(mixed_frame, params, message):
    with pytest.raises(ValueError, match=message):  # not numpy's "need at least one array" or a silent fit
        MaskedAutoencoderDetector(**params).fit(mixed_frame)


def test_scikit_learn_inputs_numpy_parameters_random_states_and_sparse_tables(fitted, mixed_frame, tmp_path):
    numbers = mixed_frame.select_dtypes("number").head(200)
    grid = MaskedAutoencoderDetector(**{**FAST, "hidden_size": np.int64(32), "contamination": np.float32(0.1)})
    grid.fit(numbers).save(tmp_path / "grid")  # as a grid search over np.arange sets them
    assert MaskedAutoencoderDetector.load(tmp_path / "grid").get_params()["hidden_size"] == 32
    one, two = (MaskedAutoencoderDetector(**{**FAST, "random_state": np.random.RandomState(5)}).fit(numbers)
                for _ in range(2))
    np.testing.assert_array_equal(one.anomaly_score(numbers), two.anomaly_score(numbers))
    MaskedAutoencoderDetector(**{**FAST, "random_state": np.random.default_rng(5)}).fit(numbers).save(tmp_path / "rng")
    assert MaskedAutoencoderDetector.load(tmp_path / "rng").get_params()["random_state"] is None
    with pytest.raises(TypeError, match=r"sparse input is not supported \(csr_matrix of shape \(200, \d+\)\)"):
        MaskedAutoencoderDetector(**FAST).fit(scipy.sparse.csr_matrix(numbers.to_numpy()))
    with pytest.raises(ValueError, match="top_k must be a positive int"):
        fitted.explain(mixed_frame.head(2), top_k=-1)
    with pytest.warns(UserWarning, match="patience has no effect without validation_fraction"):
        MaskedAutoencoderDetector(**{**FAST, "patience": 2}).fit(numbers)
    fitted.save(tmp_path / "cut")
    (tmp_path / "cut" / "maskae.json").write_text('{"format_version": 7, "par')  # a copy cut short
    with pytest.raises(ValueError, match=r"maskae.json is not a readable saved detector .*: save the detector again"):
        MaskedAutoencoderDetector.load(tmp_path / "cut")


def test_outputs_keep_the_callers_column_labels_index_and_other_columns(mixed_frame):
    numbers = mixed_frame.select_dtypes("number").head(300)
    labelled = numbers.set_axis(range(numbers.shape[1]), axis=1)  # int labels, as pd.DataFrame(array) has
    det = MaskedAutoencoderDetector(max_steps=50, random_state=0).fit(labelled)
    batch = labelled.head(4).set_axis([10, 11, 12, 13]).assign(tx_id=["a", "b", "c", "d"])
    batch.loc[10, 0] = np.nan
    with pytest.warns(UserWarning, match="tx_id"):
        rebuilt, filled, why = det.reconstruct(batch), det.impute(batch), det.explain(batch)
    assert list(rebuilt.columns) == list(labelled.columns) and list(rebuilt.index) == [10, 11, 12, 13]
    assert list(filled.columns) == list(batch.columns) and list(filled["tx_id"]) == ["a", "b", "c", "d"]
    assert filled.loc[10, 0] == rebuilt.loc[10, 0] and filled.loc[11, 0] == batch.loc[11, 0]
    assert set(why["feature"]) == set(labelled.columns)


def test_a_duration_column_is_read_as_seconds_and_given_back_as_durations():
    rng = np.random.default_rng(0)
    base, gap = pd.DataFrame({"a": rng.normal(size=300)}), rng.integers(1, 10, 300)
    as_durations = MaskedAutoencoderDetector(max_steps=50, random_state=0).fit(
        base.assign(gap=pd.to_timedelta(gap, unit="min")))
    as_seconds = MaskedAutoencoderDetector(max_steps=50, random_state=0).fit(base.assign(gap=gap * 60.0))
    batch = base.head(3).assign(gap=pd.to_timedelta([10**5, None, 3], unit="min"))  # a gap of 70 days
    np.testing.assert_array_equal(as_durations.anomaly_score(batch),
                                  as_seconds.anomaly_score(batch.assign(gap=[6e6, np.nan, 180.0])))
    assert as_durations.anomaly_score(batch)[0] > as_durations.threshold_  # as categories it scored as typical
    filled = as_durations.impute(batch)
    assert pd.api.types.is_timedelta64_dtype(filled["gap"]) and filled["gap"].notna().all()
    assert pd.api.types.is_timedelta64_dtype(as_durations.reconstruct(batch)["gap"])


def test_scikit_learns_estimator_checks_pass_but_for_four_choices_of_design():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checks' own inputs: unseen categories, constant columns
        check_estimator(MaskedAutoencoderDetector(max_steps=30, random_state=0), expected_failed_checks={
            "check_dtype_object": "an object column is read as categories, not refused",
            "check_estimators_nan_inf": "NaN is a missing cell, which training never scores; inf too, with a warning",
            "check_transformer_preserve_dtypes": "transform gives the float32 network's embedding",
            "check_methods_subset_invariance": "float32 sums in batches of other sizes differ by about 1e-6",
        })


def test_scoring_before_fit_raises_sklearns_not_fitted_error(mixed_frame):
    with pytest.raises(NotFittedError, match="call fit"):
        MaskedAutoencoderDetector().anomaly_score(mixed_frame)


def test_an_object_array_keeps_its_number_columns_numbers():
    """A mixed DataFrame's to_numpy() is one object array; its numbers are not categories."""
    frame = pd.DataFrame({"amount": np.linspace(1, 50, 60), "mcc": ["a", "b", "c"] * 20, "hour": np.arange(60) % 24})
    detector = MaskedAutoencoderDetector(max_steps=5, random_state=0).fit(frame.to_numpy())
    assert [c.name for c in detector.encoder_.numeric_] == ["x0", "x2"]
    assert np.isfinite(detector.anomaly_score(frame.to_numpy())).all()
    # codes of ints and text: a batch whose codes are ints with a gap scores each row as it does alone
    codes = pd.DataFrame({"amount": np.linspace(1, 50, 60), "code": [101, 202, 303, "X9"] * 15}).to_numpy()
    detector = MaskedAutoencoderDetector(max_steps=5, random_state=0).fit(codes)
    batch = np.array([[10.0, 303], [20.0, None]], dtype=object)
    assert detector.anomaly_score(batch)[0] == pytest.approx(detector.anomaly_score(batch[:1])[0], abs=1e-5)


def test_a_model_fitted_on_an_array_takes_a_frames_columns_by_position():
    X = np.random.default_rng(0).normal(size=(80, 3))
    detector = MaskedAutoencoderDetector(max_steps=5, random_state=0).fit(X)
    with pytest.warns(UserWarning, match="taken by position"):
        scores = detector.anomaly_score(pd.DataFrame(X, columns=["amount", "hour", "age"]))
    np.testing.assert_allclose(scores, detector.anomaly_score(X))


def test_a_flag_column_is_reconstructed_and_imputed_as_booleans(mixed_frame):
    """Not as the text 'True' beside the frame's own True: impute would mix the two in one column."""
    flags = [c for c in mixed_frame.columns if mixed_frame[c].dtype == bool]
    assert flags, "the fixture has a boolean column"
    detector = MaskedAutoencoderDetector(max_steps=5, random_state=0).fit(mixed_frame)
    gappy = mixed_frame.astype({flags[0]: object})
    gappy.loc[gappy.index[:3], flags[0]] = None
    filled = detector.impute(gappy)[flags[0]]
    assert filled.map(type).eq(bool).all() or filled.dtype == bool
    assert set(detector.reconstruct(mixed_frame)[flags[0]].dropna().map(type)) <= {bool}


def test_values_beyond_the_training_range_are_told_by_side(fitted, mixed_frame):
    ranges = fitted.training_range()
    assert set(ranges) == {"amount", "hour"} and ranges["hour"][2] == len(mixed_frame)
    assert ranges["amount"][:2] == pytest.approx((mixed_frame["amount"].min(), mixed_frame["amount"].max()), rel=1e-5)
    batch = mixed_frame.head(4).copy()
    batch["amount"] = [-12.5, mixed_frame["amount"].min(), mixed_frame["amount"].max(), 10 * mixed_frame["amount"].max()]
    batch.loc[batch.index[0], "hour"] = np.nan  # missing: within
    sides = fitted.training_range_sides(batch)
    assert sides["amount"].tolist() == [-1, 0, 0, 1] and sides["hour"].tolist() == [0, 0, 0, 0]
    assert (fitted.training_range_sides(mixed_frame) == 0).all().all()  # training's own extremes are within
