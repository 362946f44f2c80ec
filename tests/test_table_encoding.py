import warnings

import numpy as np
import pandas as pd
import pytest

from maskae.table_encoding import UNKNOWN_CODE, ColumnWarning, TableEncoder, UnusableValueWarning


def test_kinds_scaling_and_round_trip(mixed_frame):
    enc = TableEncoder().fit(mixed_frame)
    assert [c.name for c in enc.numeric_] == ["amount", "hour"]
    assert [c.name for c in enc.categorical_] == ["category", "channel", "country", "card_present"]
    batch = enc.transform(mixed_frame)
    assert abs(batch.numeric.mean()) < 1e-4 and abs(batch.numeric.std() - 1) < 1e-3
    decoded = enc.decode(batch.numeric, batch.categorical)
    assert list(decoded.columns) == list(mixed_frame.columns)
    np.testing.assert_allclose(decoded["amount"], mixed_frame["amount"], rtol=1e-4)
    assert (decoded["category"] == mixed_frame["category"]).all()


def test_skewed_amounts_get_a_log_and_extremes_are_kept():
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"amount": rng.lognormal(3, 1.2, 2000)})
    enc = TableEncoder().fit(train)
    assert enc.numeric_[0].log_scale is not None
    codes = enc.transform(pd.DataFrame({"amount": [1e3, 1e5, 1e7]})).numeric[:, 0]
    assert codes[0] < codes[1] < codes[2]  # no clipping: more extreme stays more extreme


def test_a_skewed_column_with_values_whose_squares_overflow_is_still_logged_without_warnings():
    x = np.abs(np.random.default_rng(0).normal(size=200))
    x[3] = 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's and scipy's overflow warnings reached the user
        column = TableEncoder().fit(pd.DataFrame({"a": x})).numeric_[0]
    assert column.log_scale is not None and np.isfinite(column.center + column.scale)


def test_missing_unseen_and_bad_cells_are_reported_not_crashed():
    enc = TableEncoder().fit(pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}))
    with pytest.warns(UnusableValueWarning, match=r"column 'x': 2 value\(s\)"):  # inf and "oops"; NaN is missing
        batch = enc.transform(pd.DataFrame({"x": [np.nan, np.inf, "oops"], "c": ["zz", None, "b"]}))
    assert batch.missing[:, 0].all()  # NaN, inf and text in a numeric column are hidden cells
    assert batch.missing[:, 1].tolist() == [False, True, False]
    assert batch.categorical[0, 0] == UNKNOWN_CODE and batch.unseen_counts == {"c": 1}


def test_categories_are_matched_as_str_writes_them_whatever_the_dtype():
    # Saved models hold their categories as text: a value must map to the same code from an
    # object column of mixed types, a pyarrow string column or a nullable boolean column.
    mixed = pd.Series([1, 2.5, "x", True, pd.Timestamp("2024-01-01"), None], dtype=object)
    train = pd.DataFrame({"m": mixed, "s": pd.array(["p", "q", None, "p", "q", "p"], dtype="string[pyarrow]"),
                          "b": pd.array([True, False, None, True, True, False], dtype="boolean")})
    enc = TableEncoder().fit(train)
    assert [c.categories for c in enc.categorical_] == [
        ["1", "2.5", "2024-01-01 00:00:00", "True", "x"], ["p", "q"], ["False", "True"]]
    batch = enc.transform(pd.DataFrame({"m": ["x", 2.5, "new", np.nan], "s": ["q", "p", None, "r"],
                                        "b": [False, True, None, True]}))
    assert batch.categorical.tolist() == [[5, 2, 1], [2, 1, 2], [UNKNOWN_CODE, UNKNOWN_CODE, UNKNOWN_CODE],
                                          [UNKNOWN_CODE, UNKNOWN_CODE, 2]]
    assert batch.missing.tolist() == [[False] * 3, [False] * 3, [False, True, True], [True, False, False]]
    assert batch.unseen_counts == {"m": 1, "s": 1}


def test_a_boolean_column_reads_1_0_and_true_false_spellings_as_its_values():
    # Trained from Parquet (booleans), screened from a CSV export that writes the flag as 1/0.
    enc = TableEncoder().fit(pd.DataFrame({"online": [True, False, True], "c": ["1", "0", "1"]}))
    as_bools = enc.transform(pd.DataFrame({"online": [True, False, None], "c": ["1", "0", "1"]}))
    for spelling in ([1, 0, None], [1.0, 0.0, np.nan], ["TRUE", "false", None], ["1", "0", None]):
        batch = enc.transform(pd.DataFrame({"online": spelling, "c": ["1", "0", "1"]}))
        assert batch.categorical.tolist() == as_bools.categorical.tolist() and batch.unseen_counts == {}
        assert batch.missing.tolist() == as_bools.missing.tolist()
    # only in a boolean column, and only these spellings: 2 is no boolean, and in column c True is not "1"
    assert enc.transform(pd.DataFrame({"online": [2], "c": [True]})).unseen_counts == {"online": 1, "c": 1}


def test_whole_number_categories_decode_as_ints_and_text_stays_text():
    # Merchant codes given as a pandas category of ints or as Python ints are matched as text,
    # and given back as the ints they were; codes read as text ("0042") keep their zeros.
    train = pd.DataFrame({"mcc": pd.Series([5411, 5812, 5411]).astype("category"),
                          "code": pd.Series([1, 2, 3], dtype=object), "text": ["0042", "0007", "0042"]})
    enc = TableEncoder().fit(train)
    assert [c.integers for c in enc.categorical_] == [True, True, False]
    # [5812, None] is a float column (5812.0): an int column with a gap
    batch = enc.transform(pd.DataFrame({"mcc": [5812, None], "code": ["3", 2.5], "text": ["0007", None]}))
    assert batch.unseen_counts == {"code": 1}  # 2.5 is no code
    decoded = enc.decode(batch.numeric, batch.categorical)
    assert decoded["mcc"].tolist() == [5812, None] and isinstance(decoded.loc[0, "mcc"], int)
    assert decoded["code"].tolist() == [3, None] and decoded.loc[0, "text"] == "0007"
    nullable = enc.transform(pd.DataFrame({"mcc": pd.array([5812.0, None], dtype="Float64"), "code": [1, 2],
                                           "text": ["0042", "0042"]}))  # pandas' nullable floats: <NA>
    assert nullable.categorical[:, 0].tolist() == batch.categorical[:, 0].tolist()
    state = enc.to_dict()  # a model saved before: its categories decode as text, as they did
    del state["categorical"][0]["integers"]
    assert TableEncoder.from_dict(state).decode(batch.numeric, batch.categorical).loc[0, "mcc"] == "5812"


def test_missing_column_is_named_in_the_error():
    enc = TableEncoder().fit(pd.DataFrame({"x": [1.0, 2.0], "merchant": ["a", "b"]}))
    with pytest.raises(KeyError, match="merchant"):
        enc.transform(pd.DataFrame({"x": [1.0]}))


def test_state_is_plain_json():
    import json

    enc = TableEncoder().fit(pd.DataFrame({"x": [1.0, 2.0, 5.0], "c": [True, False, True]}))
    again = TableEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    frame = pd.DataFrame({"x": [4.0], "c": [False]})
    assert (again.transform(frame).numeric == enc.transform(frame).numeric).all()


def test_a_column_keeps_its_most_frequent_categories_and_rarer_values_read_as_other():
    import json

    train = pd.DataFrame({"m": list("aaaaabbbccde") + [None]})
    with pytest.warns(ColumnWarning, match=r"'m' has 5 distinct values: the 2 most frequent, 67% of its rows"):
        enc = TableEncoder(max_categories=2).fit(train)
    column = enc.categorical_[0]
    assert column.categories == ["a", "b"] and column.n_codes == 3 and column.capped
    batch = enc.transform(pd.DataFrame({"m": ["c", "a", "never", None, "b"]}))
    assert batch.categorical[:, 0].tolist() == [UNKNOWN_CODE, 1, UNKNOWN_CODE, UNKNOWN_CODE, 2]
    assert batch.missing[:, 0].tolist() == [False, False, False, True, False]  # 'other' is a value, not missing
    assert batch.unseen_counts == {"m": 2}
    assert "outside the 2 training values it keeps (the most frequent seen at least twice" in column.unknown_message(2)
    again = TableEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert again.categorical_[0] == column and again.max_categories == 2


def test_ties_at_the_cut_keep_the_first_values_in_order_and_no_value_seen_once():
    train = pd.DataFrame({"m": ["q", "b", "z", "b", "a", "q", "z", "a", "c"]})
    with pytest.warns(UserWarning, match="the 3 most frequent"):
        assert TableEncoder(max_categories=3).fit(train).categorical_[0].categories == ["a", "b", "q"]
    with pytest.warns(UserWarning, match="the 4 most frequent"):  # c, seen once, is not kept
        assert TableEncoder(max_categories=4).fit(train).categorical_[0].categories == ["a", "b", "q", "z"]


def test_an_identifier_or_timestamp_column_is_named_at_fit_and_its_codes_stay_bounded():
    ids = pd.DataFrame({"x": np.random.default_rng(0).normal(size=200), "txn": [f"t{i}" for i in range(200)]})
    with pytest.warns(ColumnWarning, match=r"'txn' has 200 distinct values in 200 observed training rows, as an ident"):
        enc = TableEncoder(max_categories=16).fit(ids)
    assert enc.categorical_[0].categories == [] and enc.categorical_[0].n_codes == 1  # every id reads as 'other'
    # A date column cannot generalise either (every new day is unseen), however few its values:
    # as datetimes, as date objects (Parquet dates) or as ISO text (a CSV read as is).
    import datetime

    for days in (pd.to_datetime(["2024-01-01", "2024-01-02"] * 50), [datetime.date(2024, 1, d) for d in (1, 2)] * 50,
                 ["2024-01-01", "2024-01-02 13:05:00"] * 50):
        with pytest.warns(ColumnWarning, match="'day' has 2 distinct values in 100 observed training rows"):
            TableEncoder().fit(pd.DataFrame({"day": days}))


def test_models_saved_before_max_categories_read_unseen_values_as_before():
    state = TableEncoder().fit(pd.DataFrame({"c": ["a", "b"]})).to_dict()
    del state["max_categories"], state["categorical"][0]["n_distinct"]
    column = TableEncoder.from_dict(state).categorical_[0]
    assert not column.capped and "never seen in training" in column.unknown_message(1)


def test_repeated_column_names_are_refused_by_name():
    frame = pd.DataFrame([[1.0, 2.0, 3.0]], columns=["amount", "amount", "hour"])
    with pytest.raises(ValueError, match=r"\['amount'\] appear more than once"):
        TableEncoder().fit(frame)


def test_a_column_without_any_value_is_named_with_the_fix():
    with pytest.raises(ValueError, match="column 'k' has no finite value to learn a scale from in the rows it is fit on"):
        TableEncoder().fit(pd.DataFrame({"x": [1.0, 2.0], "k": [np.nan, np.inf]}))
    with pytest.raises(ValueError, match="column 'c' has no value to learn categories from in the rows it is fit on"):
        TableEncoder().fit(pd.DataFrame({"x": [1.0, 2.0], "c": [None, None]}))


def test_a_number_that_only_grows_down_the_rows_is_named_as_a_clock_or_counter():
    import warnings

    rng = np.random.default_rng(0)
    seconds = 1.7e9 + np.cumsum(rng.integers(0, 90, size=500)).astype(float)  # epoch seconds, sorted, some repeated
    with pytest.warns(ColumnWarning, match="'epoch' only grows .* down its 500 training rows, as a timestamp"):
        TableEncoder().fit(pd.DataFrame({"epoch": seconds, "x": rng.normal(size=500)}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same values shuffled, or a short column, are not named
        TableEncoder().fit(pd.DataFrame({"epoch": rng.permutation(seconds)}))
        TableEncoder().fit(pd.DataFrame({"short": np.arange(50.0)}))


def test_whole_numbers_in_a_column_named_as_an_identifier_are_named_at_fit():
    import warnings

    rng = np.random.default_rng(0)
    ids = rng.permutation(np.arange(10_000, 10_300))  # unordered, so not taken for a counter
    for name in ("customer_id", "accountId", "zip_code", "card number", "merchant_nr"):
        with pytest.warns(ColumnWarning, match=f"'{name}' is named as an identifier or a code and holds whole numbers"):
            TableEncoder().fit(pd.DataFrame({name: ids, "amount": rng.gamma(2.0, size=300)}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fractions, a yes/no code, a name that only ends in the letters, or a
        # number that may count something (weeks) with fewer distinct values than an id column has
        TableEncoder().fit(pd.DataFrame({"customer_id": ids + 0.5, "status_code": rng.integers(0, 2, 300),
                                         "paid": ids, "android": ids, "week_number": rng.integers(1, 54, 300)}))
        TableEncoder().fit(pd.DataFrame({"accountNo": rng.permutation(100) + 1000}))  # 100 numbers: not yet
    with pytest.warns(ColumnWarning, match="'accountNo' is named as an identifier"):  # 101: named
        TableEncoder().fit(pd.DataFrame({"accountNo": rng.permutation(101) + 1000}))


def test_unseen_values_match_what_transform_counts(mixed_frame):
    with pytest.warns(ColumnWarning, match="the 2 most frequent"):
        enc = TableEncoder(max_categories=2).fit(mixed_frame)
    new = mixed_frame.copy()
    new.loc[:4, "category"] = "never-seen"
    new.loc[5, "channel"] = None  # missing, not unseen
    kept = next(c for c in enc.categorical_ if c.name == "category").categories  # 2 most frequent: a third is "other"
    others = int((~mixed_frame.loc[5:, "category"].isin(kept)).sum())
    values = enc.unseen_values(new)
    assert {name: sum(c.values()) for name, c in values.items()} == enc.transform(new).unseen_counts == {
        "category": 5 + others}
    assert values["category"]["never-seen"] == 5 and not set(values["category"]) & set(kept)
