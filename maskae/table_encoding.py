"""Mixed-type table encoding: DataFrame or array in, model-ready tensors out.

Numeric columns are centred and scaled (never clipped or quantile-mapped: how extreme a value
is *is* the evidence), heavy-tailed non-negative columns such as amounts go through a signed
``log1p`` first. Strings, categories and booleans become integer codes with slot 0 kept for
categories never seen in training (a boolean column also reads 1/0 and true/false as its two
values). A column with more than ``max_categories`` distinct values keeps that many of its most
frequent ones seen at least twice; rarer values share slot 0 ("other") with the never-seen ones,
much as scikit-learn's encoders group infrequent categories.
Without that bound an identifier or timestamp column (a category per row) makes the embeddings,
the output layer and the one-hot neighbour space grow with the rows, and a fit's time about with
their square (``benchmarks/identifier_column.py``). Missing values are reported as a mask so
the model treats them as hidden cells. The whole state is JSON, so a saved model needs no pickle.

Example
-------
>>> import pandas as pd
>>> enc = TableEncoder().fit(pd.DataFrame({"amount": [3.0, 5.0, 80.0], "mcc": ["a", "b", "a"]}))
>>> batch = enc.transform(pd.DataFrame({"amount": [4.0], "mcc": ["zzz"]}))
>>> batch.categorical.tolist(), batch.unseen_counts
([[0]], {'mcc': 1})
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import skew

UNKNOWN_CODE = 0  # values never seen in training map here, and a capped column's rarer ones ("other")
SKEW_FOR_LOG = 2.0  # a non-negative column this skewed (amount-like) is log-transformed
# Codes are held within +-MAX_CODE standard units: a value that far out is already as anomalous as
# any, and a finite 1e200 would overflow float32 errors into inf and NaN scores.
MAX_CODE = 1e4
# A categorical column with this many distinct values per observed row cannot generalise: it is
# an identifier or a timestamp, and fitting warns (so it does for dates, however few).
UNIQUE_SHARE = 0.5
# The detector fits the encoding on the training rows it does not hold out for calibration.
_FIT_ROWS_FIX = (" in the rows it is fit on (all of them, less any held out for calibration): leave it out, or train on rows "
                 "where it is filled")
MIN_KEPT_COUNT = 2  # a capped column keeps no value seen once: one row cannot teach a category
MIN_ROWS_FOR_ORDER = 100  # a numeric column this long that only grows down the rows is a clock or a counter
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}.*)?")
# Names of identifiers and codes (customer_id, accountId, uuid, zip_code), and of numbers that may
# be one (card number, order-no, merchant_nr) or may count something (week_number, floor_no): those
# are named only with more distinct values than a count of weeks or floors has.
_ID_NAME = re.compile(r"(?i:(?:^|[\s_.-])(?:id|uuid|guid|code))$|[a-z0-9](?:Id|ID|Code)$")
_NUMBER_NAME = re.compile(r"(?i:(?:^|[\s_.-])(?:key|no|nr|num|number))$|[a-z0-9](?:Key|No|Nr|Num|Number)$")
MIN_DISTINCT_NUMBERS = 100
# A column trained on booleans reads these spellings (lower-cased) as its values: a CSV export or a
# database writes a flag as 1/0 or true/false, which would otherwise be categories never seen.
BOOLEAN_SPELLINGS = {"true": "True", "1": "True", "1.0": "True", "false": "False", "0": "False", "0.0": "False"}
_PACKAGE = str(Path(__file__).resolve().parent) + os.sep


def outside_stacklevel() -> int:
    """``stacklevel`` for a warning raised here that points at the first caller outside maskae
    (Python 3.11 has no ``skip_file_prefixes``)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


class ColumnWarning(UserWarning):
    """At fit: a column the model can learn little from as given (an identifier, a date, a clock, a
    code read as a number), or one whose rarer categories read as one ("other")."""


class MissingColumnError(ValueError, KeyError):
    """A column the model was fitted on is not in the data. A ValueError, as scikit-learn raises for
    columns that do not match the fit, and a KeyError, as earlier versions raised."""

    __str__ = Exception.__str__  # the message as written, not quoted as KeyError's repr


def near_names_hint(missing: list[str], columns: pd.Index) -> str:
    """`` (it has 'amnt' for 'amount': ...)`` for the ``missing`` names that ``columns`` nearly
    hold (:func:`_near_names`), else ""."""
    near = {name: close for name in missing if (close := _near_names(name, columns))}
    if not near:
        return ""
    return (" (it has " + ", ".join(f"{c!r} for {name!r}" for name, cs in near.items() for c in cs)
            + ": renamed, or spelt with other case or spaces?)")


def _near_names(name: str, columns: pd.Index) -> list[str]:
    """The batch's columns that look like ``name``: the same but for case and spaces, close in
    spelling (difflib's ratio of 0.8: "amt" is not near "amount", "amout" is), or else one holding
    the other as a word ("fraud" and "is_fraud")."""
    key, names = name.strip().lower(), [str(c) for c in columns]
    same = [c for c in names if c.strip().lower() == key]
    close = same or difflib.get_close_matches(name, names, n=2, cutoff=0.8)
    return close or [c for c in names if key in _words(c) or c.strip().lower() in _words(name)][:2]


def _words(text: str) -> set[str]:
    return set(re.split(r"[^0-9a-z]+", text.lower())) - {""}


class UnknownCategoryWarning(UserWarning):
    """Scored values that a categorical column reads as "unknown" (never seen) or "other" (rarer
    than its ``max_categories`` kept values)."""


def _skewness(values: np.ndarray) -> float:
    """Skewness, also of values whose squares overflow (1e300): it does not depend on the scale, so
    those are measured in units of the largest one."""
    with np.errstate(all="ignore"):
        measured = skew(values)
        return float(measured if np.isfinite(measured) else skew(values / np.abs(values).max()))


MISSING_TEXT = {"", "nan", "na", "n/a", "null", "none"}  # the CSV reader's usual NA spellings


def missing_cells(series: pd.Series) -> pd.Series:
    """True where a cell is missing: NaN or None, or text that spells it (:data:`MISSING_TEXT`, in any
    case and spacing). Numbers and flags as read are only checked for NaN: as text, 20x slower."""
    if series.dtype.kind in "biuf":
        return series.isna()
    return series.isna() | series.astype(str).str.strip().str.lower().isin(MISSING_TEXT)


class UnusableValueWarning(UserWarning):
    """Cells of a numeric column that hold text or an infinity: read as missing."""


def _warn_if_unusable(name: str, given: pd.Series, bad: np.ndarray) -> None:
    """Warn of the cells of numeric column ``name`` that hold something (``given``) but not a finite
    number (``bad``): read as missing, they would pass unnoticed (the pipeline quarantines them)."""
    if not bad.any():
        return
    unread = given[bad]
    held = unread[~missing_cells(unread).to_numpy()]  # text that spells "missing" is missing
    if len(held):
        example = held.iloc[0].item() if isinstance(held.iloc[0], np.generic) else held.iloc[0]
        warnings.warn(f"column {name!r}: {len(held):,} value(s) are not finite numbers (e.g. {example!r}); they "
                      f"are read as missing", UnusableValueWarning, stacklevel=outside_stacklevel())


class EmptyRowWarning(UserWarning):
    """Rows without a single observed value: their reconstruction and tails terms are left out."""


@dataclass
class NumericColumn:
    name: str
    log_scale: float | None  # divide by this, then signed log1p; None = no log
    center: float
    scale: float

    def encode(self, values: np.ndarray) -> np.ndarray:
        if self.log_scale is not None:
            values = np.sign(values) * np.log1p(np.abs(values) / self.log_scale)
        return (values - self.center) / self.scale

    def decode(self, codes: np.ndarray) -> np.ndarray:
        values = codes * self.scale + self.center
        if self.log_scale is not None:
            values = np.sign(values) * np.expm1(np.abs(values)) * self.log_scale
        return values


@dataclass
class CategoricalColumn:
    name: str
    categories: list[str]  # code i + 1 is categories[i]; code 0 is "unknown" (or "other")
    n_distinct: int | None = None  # distinct training values (None: saved before max_categories)
    integers: bool = False  # trained on whole numbers (codes as ints): decoded back to ints
    # Read as an identifier or a date at fit (and warned of): its new values are routine, not news.
    # False in models saved before format 8.
    identifier_like: bool = False

    @property
    def labels(self) -> list:
        """``categories`` as the training data held them: bools for a flag, ints for whole numbers."""
        if self.is_flag:
            return [c == "True" for c in self.categories]
        return [int(c) for c in self.categories] if self.integers else list(self.categories)

    @property
    def n_codes(self) -> int:
        return len(self.categories) + 1

    @property
    def capped(self) -> bool:
        """Whether rarer training values were left out of ``categories`` (they read as code 0)."""
        return self.n_distinct is not None and self.n_distinct > len(self.categories)

    @property
    def is_flag(self) -> bool:
        """Whether the column holds booleans: read in any spelling of them, decoded to bools."""
        return bool(self.categories) and set(self.categories) <= {"False", "True"}

    @property
    def reads_as(self) -> str:
        """What a value outside ``categories`` is scored as: "other" in a capped column, else "unknown"."""
        return "other" if self.capped else "unknown"

    def encode(self, series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(codes, missing): each value's position among ``categories`` + 1, UNKNOWN_CODE for values
        never seen, "other" and missing ones; and which values are missing."""
        if self.integers and series.dtype.kind == "f":  # an int column with a gap reads as floats: 5812.0
            whole = ((series == np.round(series)) & (series.abs() < 2**63)).to_numpy(dtype=bool, na_value=False)
            values = series.to_numpy(dtype=object)
            values[whole] = series.to_numpy()[whole].astype(np.int64)
            series = pd.Series(values, index=series.index, dtype=object)
        strings = _category_strings(series)
        known = pd.Index(self.categories, dtype=object)
        codes = known.get_indexer(strings)
        if self.is_flag:
            # only the values not spelt True/False are read again: the usual spelling costs nothing more
            other = (codes < 0) & strings.notna().to_numpy()
            if other.any():
                codes[other] = known.get_indexer(strings[other].str.lower().map(BOOLEAN_SPELLINGS))
        return codes + 1, strings.isna().to_numpy()

    def unknown_message(self, count: int) -> str:
        if self.capped and not self.categories:
            return f"column {self.name!r}: {count:,} value(s) scored as 'other', as all its values are (max_categories)"
        if self.capped:
            return (f"column {self.name!r}: {count:,} value(s) outside the {len(self.categories)} training values it "
                    f"keeps (the most frequent seen at least twice, max_categories), scored as 'other'")
        return f"column {self.name!r}: {count:,} value(s) never seen in training, scored as 'unknown'"


@dataclass
class EncodedBatch:
    """A table as the network sees it (row order kept)."""

    numeric: np.ndarray  # (n, n_numeric) float32, 0 where missing
    categorical: np.ndarray  # (n, n_categorical) int64, UNKNOWN_CODE where missing, unseen or "other"
    missing: np.ndarray  # (n, n_features) bool, numeric columns first, then categorical
    unseen_counts: dict[str, int] = field(default_factory=dict)


def as_frame(X, feature_names: list[str] | None = None) -> pd.DataFrame:
    """Accept a DataFrame or a 2-D array; arrays get names ``x0..x{d-1}``."""
    if isinstance(X, pd.DataFrame):
        return X
    array = np.asarray(X)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D table (rows x columns), got an array of shape {array.shape}: Reshape your "
                         f"data with array.reshape(-1, 1) for a single feature or array.reshape(1, -1) for a single "
                         f"sample")
    names = feature_names or [f"x{j}" for j in range(array.shape[1])]
    if len(names) != array.shape[1]:
        raise ValueError(f"X has {array.shape[1]} features, but MaskedAutoencoderDetector is expecting {len(names)} "
                         f"features as input (the columns it was fitted on)")
    return pd.DataFrame(array, columns=names)


def is_numeric_column(series: pd.Series) -> bool:
    """Whether a column is read as numbers (numeric and not boolean, or durations); anything else is
    categorical."""
    return ((pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))
            or pd.api.types.is_timedelta64_dtype(series))


def numbers(series: pd.Series) -> np.ndarray:
    """A numeric column's values as float64, NaN where missing or not a number. Durations (the gap
    since a card's last transaction) in seconds: pandas' own conversion gives their nanoseconds,
    and a missing one (NaT) as -9.2e18."""
    if pd.api.types.is_timedelta64_dtype(series):
        return series.dt.total_seconds().to_numpy(dtype=float)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


def _holds_integers(series: pd.Series) -> bool:
    """Whether a categorical column's values are whole numbers (codes given as ints, or a pandas
    category of ints), which ``str`` and ``int`` turn into each other exactly."""
    values = series.cat.categories if isinstance(series.dtype, pd.CategoricalDtype) else series.dropna()
    return len(values) > 0 and pd.api.types.infer_dtype(values, skipna=True) == "integer"


def _holds_dates(series: pd.Series, strings: pd.Series) -> bool:
    """Dates or times, as a datetime column, date objects or ISO-8601 text (a CSV read as is)."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    sample = series.dropna().head(100)
    if pd.api.types.infer_dtype(sample, skipna=True) in ("date", "datetime", "datetime64"):
        return True
    text = strings.dropna().head(100)
    return len(text) > 0 and bool(text.str.fullmatch(_ISO_DATE).all())


def _counts_up(values: np.ndarray) -> bool:
    """Whether numbers in row order only grow (or only fall) and mostly differ: a clock or a counter."""
    if values.size < MIN_ROWS_FOR_ORDER:
        return False
    steps = np.diff(values)
    return bool((steps >= 0).all() or (steps <= 0).all()) and np.unique(values).size >= UNIQUE_SHARE * values.size


def _names_an_identifier(name: str, values: np.ndarray) -> bool:
    """Whether whole numbers under this name are an identifier or a code, not a quantity."""
    at_least = 3 if _ID_NAME.search(name) else MIN_DISTINCT_NUMBERS + 1 if _NUMBER_NAME.search(name) else None
    if at_least is None or not np.array_equal(values, np.round(values)):  # two values: a yes/no flag
        return False
    return np.unique(values).size >= at_least


def _identifier_message(name: str) -> str:
    return f"column {name!r} is named as an identifier or a code and holds whole numbers"


def identifier_warning(name: str) -> str:
    """A regular expression matching the start of the warning that names column ``name`` as an
    identifier, case-sensitively (``warnings.filterwarnings`` compiles its pattern ignoring case)."""
    return "(?-i:" + re.escape(_identifier_message(name)) + ")"


def _check_unique_names(columns) -> None:
    names = pd.Index([str(c) for c in columns])
    if names.has_duplicates:
        raise ValueError(f"column name(s) {sorted(set(names[names.duplicated()]))} appear more than once: columns "
                         f"are matched by name, so rename them")


def _category_strings(series: pd.Series) -> pd.Series:
    """Each value as ``str(value)`` (object dtype, so a Timestamp reads as ``str`` writes it), missing
    as None; one vectorised conversion, not a Python call per cell (scoring millions of rows)."""
    return series.astype("object").astype(str).where(series.notna().to_numpy(), None)


def _unseen(encoded: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, int]:
    """Column name -> (codes, missing) in; the count of observed values read as code 0 out (none: left out)."""
    counts = {name: int(((codes == UNKNOWN_CODE) & ~missing).sum()) for name, (codes, missing) in encoded.items()}
    return {name: n for name, n in counts.items() if n}


class TableEncoder:
    """Learns column kinds and scalings on training data; encodes any later batch by column name."""

    def __init__(self, log_transform: bool = True, max_categories: int | None = None):
        self.log_transform = log_transform
        self.max_categories = max_categories

    def fit(self, frame: pd.DataFrame) -> "TableEncoder":
        if frame.shape[1] == 0:
            raise ValueError("the table has no columns to learn from")
        _check_unique_names(frame.columns)
        self.columns_ = [str(c) for c in frame.columns]
        self.numeric_: list[NumericColumn] = []
        self.categorical_: list[CategoricalColumn] = []
        for name in frame.columns:
            series = frame[name]
            if is_numeric_column(series):
                self.numeric_.append(self._fit_numeric(str(name), numbers(series)))
            else:
                self.categorical_.append(self._fit_categorical(str(name), series))
        return self

    def _fit_categorical(self, name: str, series: pd.Series) -> CategoricalColumn:
        strings = _category_strings(series)
        counts = strings.value_counts()
        n_observed = int(counts.sum())
        if n_observed == 0:  # all its categories would be unseen: every later value would read as unknown
            raise ValueError(f"column {name!r} has no value to learn categories from{_FIT_ROWS_FIX}")
        if self.max_categories is not None and len(counts) > self.max_categories:
            # The most frequent values, ties in value order so that a refit keeps the same ones.
            ranked = counts[counts >= MIN_KEPT_COUNT].rename_axis("value").reset_index(name="n").sort_values(
                ["n", "value"], ascending=[False, True], kind="stable")
            kept = ranked["value"].iloc[: self.max_categories]
        else:
            kept = counts.index
        identifier_like = len(counts) >= max(UNIQUE_SHARE * n_observed, 20) or _holds_dates(series, strings)
        column = CategoricalColumn(name, sorted(kept), n_distinct=len(counts), integers=_holds_integers(series),
                                   identifier_like=identifier_like)
        if identifier_like:
            values = "value" if len(counts) == 1 else "values"
            warnings.warn(f"column {name!r} has {len(counts):,} distinct {values} in {n_observed:,} observed training "
                          f"rows, as an identifier or a date has: as categories they cannot generalise, and new "
                          f"values read as {column.reads_as!r}. Leave the column out (maskae train's --exclude-columns), "
                          f"or derive features from it (an hour, a weekday)", ColumnWarning, stacklevel=outside_stacklevel())
        elif column.capped:
            share = counts[column.categories].sum() / n_observed
            warnings.warn(f"column {name!r} has {len(counts):,} distinct values: the {len(column.categories)} most "
                          f"frequent, {share:.0%} of its rows, are kept as categories and the rest read as 'other' "
                          f"(max_categories)", ColumnWarning, stacklevel=outside_stacklevel())
        return column

    def _fit_numeric(self, name: str, values: np.ndarray) -> NumericColumn:
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            raise ValueError(f"column {name!r} has no finite value to learn a scale from{_FIT_ROWS_FIX}")
        if _counts_up(finite):
            warnings.warn(f"column {name!r} only grows (or only falls) down its {finite.size:,} training rows, as a "
                          f"timestamp or a row counter does: later batches will lie beyond its training range and "
                          f"read as extreme values. If it is one, leave it out, or derive features from it (an hour, "
                          f"a weekday)", ColumnWarning, stacklevel=outside_stacklevel())
        elif _names_an_identifier(name, finite):
            # Read as a number, an id's order and distances mean nothing, yet they would be scaled,
            # reconstructed and measured like an amount's.
            warnings.warn(f"{_identifier_message(name)}, which are read as amounts. Leave it out if it is an "
                          f"identifier; if its numbers are codes (a merchant category code), have them read as "
                          f"categories: [data] column_types = {{{name!r} = 'categorical'}} in maskae train's "
                          f"config, or strings in a DataFrame",
                          ColumnWarning, stacklevel=outside_stacklevel())
        log_scale = None
        positive = finite[finite > 0]
        if (
            self.log_transform
            and finite.min() >= 0
            and np.unique(finite).size > 10
            and _skewness(finite) > SKEW_FOR_LOG
        ):
            log_scale = float(np.median(positive))
            finite = np.log1p(finite / log_scale)
        with np.errstate(over="ignore"):
            center, scale = float(finite.mean()), float(finite.std())
        if not np.isfinite(center + scale):  # sums of squares beyond 1e308 (values of 1e154 and more)
            unit = float(np.abs(finite).max())
            center, scale = float((finite / unit).mean()) * unit, float((finite / unit).std()) * unit
        return NumericColumn(name, log_scale, center, scale if scale > 1e-12 else 1.0)

    @property
    def feature_names(self) -> list[str]:
        """Column names in the network's order: numeric columns first, then categorical."""
        return [c.name for c in self.numeric_] + [c.name for c in self.categorical_]

    @property
    def n_features(self) -> int:
        return len(self.numeric_) + len(self.categorical_)

    def transform(self, frame: pd.DataFrame) -> EncodedBatch:
        _check_unique_names(frame.columns)
        missing_cols = [name for name in self.columns_ if name not in frame.columns]
        if missing_cols:
            raise MissingColumnError(
                f"column(s) {missing_cols} are missing from the data"
                f"{near_names_hint(missing_cols, frame.columns.difference(self.columns_, sort=False))}; "
                f"the model was fitted on "
                f"{self.columns_}: add them (empty values are allowed) or refit the model"
            )
        extra = [str(c) for c in frame.columns if str(c) not in set(self.columns_)]
        if extra:
            warnings.warn(f"ignoring column(s) the model was not fitted on: {extra}", stacklevel=3)
        n = len(frame)
        numeric, missing_numbers = self.numeric_codes(frame)
        categorical = np.zeros((n, len(self.categorical_)), dtype=np.int64)
        missing = np.zeros((n, self.n_features), dtype=bool)
        missing[:, : len(self.numeric_)] = missing_numbers
        offset, encoded = len(self.numeric_), {}
        for j, col in enumerate(self.categorical_):
            encoded[col.name] = col.encode(frame[col.name])
            categorical[:, j], missing[:, offset + j] = encoded[col.name]
        return EncodedBatch(numeric, categorical, missing, _unseen(encoded))

    def numeric_codes(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, missing)``, each (n, numeric columns): the numeric columns as the network reads
        them (float32, 0 where missing), and where a value is missing or not a number."""
        codes = np.zeros((len(frame), len(self.numeric_)), dtype=np.float32)
        missing = np.zeros(codes.shape, dtype=bool)
        for j, col in enumerate(self.numeric_):
            values = numbers(frame[col.name])
            with np.errstate(all="ignore"):
                encoded = col.encode(values)
            bad = ~np.isfinite(values)  # a finite value whose code overflows is extreme, not missing
            codes[:, j] = np.where(bad, 0.0, np.clip(encoded, -MAX_CODE, MAX_CODE))
            missing[:, j] = bad
            _warn_if_unusable(col.name, frame[col.name], bad)
        return codes, missing

    def unseen_values(self, frame: pd.DataFrame) -> dict[str, Counter]:
        """Per categorical column of ``frame``, its values that :meth:`transform` reads as "unknown" or
        "other", each with how often (as text; columns with none left out), without encoding the
        rest of the table."""
        found = {}
        for col in self.categorical_:
            codes, missing = col.encode(frame[col.name])
            unseen = (codes == UNKNOWN_CODE) & ~missing
            if unseen.any():
                found[col.name] = Counter(_category_strings(frame[col.name][unseen]).tolist())
        return found

    def decode(self, numeric: np.ndarray, categorical: np.ndarray) -> pd.DataFrame:
        """Codes back to values in the original units (UNKNOWN_CODE, "unknown" or "other", decodes to None)."""
        columns: dict[str, object] = {}
        for j, col in enumerate(self.numeric_):
            columns[col.name] = col.decode(numeric[:, j].astype(float))
        for j, col in enumerate(self.categorical_):
            labels = np.array([None] + col.labels, dtype=object)
            columns[col.name] = labels[categorical[:, j]]
        return pd.DataFrame(columns)[self.columns_]

    def to_dict(self) -> dict:
        return {
            "log_transform": self.log_transform,
            "max_categories": self.max_categories,
            "columns": self.columns_,
            "numeric": [asdict(c) for c in self.numeric_],
            "categorical": [asdict(c) for c in self.categorical_],
        }

    @classmethod
    def from_dict(cls, state: dict) -> "TableEncoder":
        encoder = cls(log_transform=state["log_transform"], max_categories=state.get("max_categories"))
        encoder.columns_ = state["columns"]
        encoder.numeric_ = [NumericColumn(**c) for c in state["numeric"]]
        encoder.categorical_ = [CategoricalColumn(**c) for c in state["categorical"]]
        return encoder
