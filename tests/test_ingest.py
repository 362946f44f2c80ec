"""Ingest and validation: reading files, schema checks and quarantine, on small hand-made tables."""

import doctest
import json
import warnings

import numpy as np
import pandas as pd
import pytest

import pipeline.ingest
from pipeline.ingest import (REASON_COLUMN, FileChangedError, IngestError, Schema, SchemaError, SeenIds, iter_batches,
                             read_table, validate)


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame({
        "txn_id": [f"T{i:03d}" for i in range(25)],
        "amount": np.round(np.linspace(1, 250, 25), 2),
        "mcc": ["grocery", "fuel", "travel", "grocery", "online"] * 5,
        "card_present": [True, False] * 12 + [True],
    })


@pytest.fixture
def schema(table) -> Schema:
    return Schema.infer(table, id_column="txn_id")


def write(frame: pd.DataFrame, path):
    frame.to_parquet(path, index=False) if path.suffix == ".parquet" else frame.to_csv(path, index=False)
    return path


def test_module_example_runs():
    assert doctest.testmod(pipeline.ingest).failed == 0


@pytest.mark.parametrize("name", ["batch.csv", "batch.parquet"])
def test_round_trip_and_batches_concatenate_to_the_file(tmp_path, table, name):
    path = write(table, tmp_path / name)
    whole = read_table(path, text_columns=["txn_id"])
    pd.testing.assert_frame_equal(whole, table, check_dtype=False)
    chunks = list(iter_batches(path, batch_rows=10, text_columns=["txn_id"]))
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert chunks[1].index[0] == 10  # indexed by row number in the file
    pd.testing.assert_frame_equal(pd.concat(chunks), whole)


def test_csv_ids_stay_text(tmp_path):
    path = write(pd.DataFrame({"txn_id": ["007", "010"], "x": [1, 2]}), tmp_path / "ids.csv")
    assert read_table(path, text_columns=["txn_id"])["txn_id"].tolist() == ["007", "010"]


def test_csv_categories_are_read_as_text_in_every_chunk(tmp_path, table):
    # Read as numbers, a chunk of digit-only codes would turn "01234" into 1234, and another chunk
    # holding a letter would keep it: two categories for one value.
    zips = table.assign(zip=["01234", "02115", "SW1A", "01234", "90210"] * 5)
    path = write(zips, tmp_path / "zips.csv")
    schema = Schema.infer(zips, "txn_id")
    assert schema.text_columns == ["txn_id", "mcc", "card_present", "zip"]
    chunks = list(iter_batches(path, batch_rows=2, text_columns=schema.text_columns))
    assert pd.concat(c["zip"] for c in chunks).tolist() == zips["zip"].tolist()
    assert validate(chunks[0], schema).clean["zip"].tolist() == ["01234", "02115"]


def test_parquet_decimals_are_numbers_and_rows_are_numbered_from_0(tmp_path, table):
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    amounts = pa.array([decimal.Decimal(f"{v:.2f}") for v in table["amount"]], pa.decimal128(12, 2))
    shuffled = table.assign(amount=0.0).iloc[::-1]  # a frame saved with its (reversed) index
    arrow = pa.Table.from_pandas(shuffled).set_column(1, "amount", amounts[::-1])
    pq.write_table(arrow, tmp_path / "warehouse.parquet")
    whole = read_table(tmp_path / "warehouse.parquet")
    assert whole["amount"].dtype == np.float64 and whole.index.equals(pd.RangeIndex(25))
    assert Schema.infer(whole, "txn_id").features["amount"] == "numeric"
    assert next(iter_batches(tmp_path / "warehouse.parquet"))["amount"].dtype == np.float64


def test_parquet_ids_stay_exact_with_gaps_and_as_whole_decimals(tmp_path, table):
    """An int64 id column with one null, or ids exported as NUMBER(19) decimals: NumPy's float64
    would round ids above 2**53 into duplicates of each other and write 12 as 12.0."""
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    big = [2**60 + i for i in range(25)]
    arrow = pa.Table.from_pandas(table, preserve_index=False).replace_schema_metadata().set_column(
        0, "txn_id", pa.array([None if i == 20 else v for i, v in enumerate(big)], pa.int64()))
    arrow = arrow.append_column("order_no", pa.array([decimal.Decimal(10**17 + i) for i in range(25)], pa.decimal128(19, 0)))
    arrow = arrow.append_column("qty", pa.array([None if i == 3 else i for i in range(25)], pa.int32()))
    arrow = arrow.append_column("ref", pa.array([decimal.Decimal(10**30 + i) for i in range(25)], pa.decimal128(38, 0)))
    pq.write_table(arrow, tmp_path / "ids.parquet", row_group_size=10)
    schema = Schema.infer(read_table(tmp_path / "ids.parquet"), "txn_id", column_types={"order_no": "categorical"})
    seen, clean, quarantined = SeenIds(), [], []
    for chunk in iter_batches(tmp_path / "ids.parquet", batch_rows=10):  # the null id is in the last chunk
        result = validate(chunk, schema, seen_ids=seen)
        clean.append(result.clean)
        quarantined.append(result.quarantined)
    clean = pd.concat(clean)
    assert clean["txn_id"].tolist() == big[:20] + big[21:]  # none read as a duplicate of another
    assert pd.concat(quarantined)[REASON_COLUMN].tolist() == ["missing id ('txn_id' is empty)"]
    assert clean["order_no"].tolist() == [str(10**17 + i) for i in range(25) if i != 20]
    whole = read_table(tmp_path / "ids.parquet")
    assert whole["qty"].tolist()[2:5] == [2, pd.NA, 4] and whole["ref"].iloc[1] == str(10**30 + 1)
    assert Schema.infer(whole, "txn_id").features["qty"] == "numeric"


@pytest.mark.parametrize("rows", [slice(2, None), [0, 2, 3, 5]])  # an index pandas stores as a range, as a column
def test_parquet_integers_with_a_gap_stay_on_their_rows_when_pandas_wrote_the_file(tmp_path, rows):
    frame = pd.DataFrame({"txn_id": pd.array([1, 2, 3, None, 5, 6], dtype="Int64"), "x": [1.0, 2, 3, 4, 5, 6]})
    frame.iloc[rows].to_parquet(tmp_path / "pandas.parquet")
    expected = frame.iloc[rows].reset_index(drop=True)
    for read in (read_table(tmp_path / "pandas.parquet"), next(iter_batches(tmp_path / "pandas.parquet"))):
        assert read["txn_id"].tolist() == expected["txn_id"].tolist() and read["x"].tolist() == expected["x"].tolist()


def test_in_ids_and_categories_only_an_empty_cell_is_missing(tmp_path, table, schema):
    """'NA' (Namibia) and 'null' are values of a text column; an empty one is missing; numbers keep
    pandas' missing spellings."""
    frame = table.astype({"amount": object})
    frame.loc[0, "txn_id"], frame.loc[1, "txn_id"] = "NA", ""
    frame.loc[2:4, "mcc"] = ["NA", "null", ""]
    frame.loc[5, "amount"] = "NA"
    path = write(frame, tmp_path / "na.csv")
    for read in (read_table(path, text_columns=schema.text_columns),
                 next(iter_batches(path, batch_rows=10, text_columns=schema.text_columns))):
        result = validate(read, schema)
        assert result.quarantined[REASON_COLUMN].tolist() == ["missing id ('txn_id' is empty)"]
        assert result.clean.loc[[0, 2, 3], ["txn_id", "mcc"]].values.tolist() == [
            ["NA", "grocery"], ["T002", "NA"], ["T003", "null"]]
        assert pd.isna(result.clean.loc[4, "mcc"]) and np.isnan(result.clean.loc[5, "amount"])


def test_categories_read_as_text_are_spelt_as_a_typed_read_spells_them(tmp_path, table):
    # Training reads a CSV typed but for the id and the categories column_types names (so booleans
    # are parsed), screening reads every category as text: both must give the same categories,
    # as a Parquet file's True and 5411 do.
    frame = table.assign(card_present=["true", "FALSE"] * 12 + ["True"],
                         mcc=["5411.0", "0742", "", "5812.0", "0742"] * 5)
    path = write(frame, tmp_path / "typed.csv")
    typed = next(iter_batches(path, text_columns=["txn_id", "mcc"]))  # as pipeline.train reads it
    schema = Schema.infer(typed, "txn_id", column_types={"mcc": "categorical"})
    as_text = next(iter_batches(path, text_columns=schema.text_columns))  # as pipeline.screen reads it
    trained, screened = validate(typed, schema).clean, validate(as_text, schema).clean
    assert screened["card_present"].tolist() == trained["card_present"].tolist() == ["True", "False"] * 12 + ["True"]
    assert screened["mcc"].tolist() == trained["mcc"].tolist()
    assert screened["mcc"].tolist()[:2] == ["5411", "0742"] and pd.isna(screened["mcc"].iloc[2])


def test_header_only_csv_is_an_empty_frame(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("txn_id,amount\n")
    assert list(read_table(path).columns) == ["txn_id", "amount"] and read_table(path).empty
    chunks = list(iter_batches(path))
    assert len(chunks) == 1 and chunks[0].empty and list(chunks[0].columns) == ["txn_id", "amount"]


def test_parquet_without_rows_yields_one_empty_frame(tmp_path, table):
    path = write(table.iloc[:0], tmp_path / "none.parquet")
    chunks = list(iter_batches(path))
    assert len(chunks) == 1 and chunks[0].empty and list(chunks[0].columns) == list(table.columns)


@pytest.mark.parametrize("name", ["empty.csv", "empty.parquet"])
def test_empty_file_is_an_ingest_error(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(IngestError, match=f"{name}.*empty"):
        read_table(tmp_path / name)
    with pytest.raises(IngestError, match=name):
        iter_batches(tmp_path / name)


def test_truncated_parquet_is_an_ingest_error(tmp_path, table):
    path = write(table, tmp_path / "cut.parquet")
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(IngestError, match="cut.parquet.*(truncated|again)"):
        read_table(path)
    with pytest.raises(IngestError, match="cut.parquet"):
        list(iter_batches(path))


def test_missing_file_folder_and_unknown_format(tmp_path):
    with pytest.raises(IngestError, match="nowhere.csv.*no such file"):
        read_table(tmp_path / "nowhere.csv")
    with pytest.raises(IngestError, match="folder"):
        read_table(tmp_path, fmt="csv")
    (tmp_path / "notes.txt").write_text("a,b\n1,2\n")
    with pytest.raises(IngestError, match="notes.txt.*fmt="):
        read_table(tmp_path / "notes.txt")
    assert read_table(tmp_path / "notes.txt", fmt="csv").shape == (1, 2)


def test_a_csv_header_naming_a_column_twice_is_an_ingest_error(tmp_path):
    (tmp_path / "twice.csv").write_text("id,V1,V2,V1\n1,2,3,4\n")
    with pytest.raises(IngestError, match=r"twice.csv.*\['V1'\] appear more than once"):
        iter_batches(tmp_path / "twice.csv")
    (tmp_path / "blanks.csv").write_text("id,V1,,\n1,2,3,4\n")  # blank names, as a spreadsheet exports them
    assert len(read_table(tmp_path / "blanks.csv").columns) == 4


def test_not_a_table_is_an_ingest_error(tmp_path):
    path = tmp_path / "image.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" * 20)
    with pytest.raises(IngestError, match="image.csv"):
        read_table(path)


def test_a_file_named_csv_that_is_not_text_or_a_workbook_is_named_with_its_fix(tmp_path):
    import gzip

    table = pd.DataFrame({"id": [1, 2], "amount": [2.5, 3.5]})
    (tmp_path / "gz.csv").write_bytes(gzip.compress(table.to_csv(index=False).encode()))  # copied, .gz left off
    table.to_parquet(tmp_path / "pq.csv")
    (tmp_path / "u16.csv").write_text(table.to_csv(index=False), encoding="utf-16")
    for name, said in (("gz.csv", "it is gzip-compressed: name it .csv.gz"),
                       ("pq.csv", "it is a Parquet file: name it .parquet"),
                       ("u16.csv", r"it is UTF-16 text \(a spreadsheet's 'Unicode text'\), not UTF-8: save it as")):
        with pytest.raises(IngestError, match=f"cannot read '.*{name}' as csv: {said}"):
            read_table(tmp_path / name)
    (tmp_path / "none.csv.gz").write_bytes(gzip.compress(b""))  # an export of nothing, compressed
    with pytest.raises(IngestError, match="none.csv.gz': it holds no text once decompressed"):
        read_table(tmp_path / "none.csv.gz")
    for name, said in (("book.xlsx", "a spreadsheet workbook is not read; save the sheet as 'CSV UTF-8'"),
                       ("tabs.tsv", "tab-separated text is not read; export it comma-separated")):
        (tmp_path / name).write_bytes(b"PK\x03\x04" if name.endswith("xlsx") else b"id\tamount\n1\t2.5\n")
        with pytest.raises(IngestError, match=f"cannot read '.*{name}': {said}"):
            read_table(tmp_path / name)


@pytest.mark.parametrize("content, message", [
    (b"id,amount,mcc\n1,2.5,fuel\n2,3.5,caf\xe9\n", r"line 3 is not UTF-8 text \(byte 0xe9\); export the file as UTF-8"),
    # pandas would read the ids as the index and every value one column to the left
    (b"id,amount,mcc\n1,2.5,fuel,\n2,3.5,fuel,\n", r"its first row \(line 2\) has 4 fields where the header has 3; if "
                                                    r"every line ends with a comma, name that last column"),
    (b"id,amount,mcc\n\n1,2.5,fuel,X\n2,3.5,fuel\n", r"its first row \(line 3\) has 4 fields"),
])
def test_a_bad_csv_file_is_named_with_its_fix(tmp_path, content, message):
    import bz2

    plain, packed = tmp_path / "batch.csv", tmp_path / "batch.CSV.BZ2"  # compressed: its lines are counted too
    plain.write_bytes(content)
    packed.write_bytes(bz2.compress(content))
    for path in (plain, packed):
        with pytest.raises(IngestError, match=message):
            read_table(path)
        with pytest.raises(IngestError, match=message):
            list(iter_batches(path, batch_rows=1))


MALFORMED = (b'txn_id,amount,mcc\nT1,2.5,fuel\n\nT2,3.5,fuel,EXTRA\nT3,4.5,"two\nlines"\nT4,5.5,travel,X\nT5,6.5,\n'
             b'T6,7.5,fuel\nT7,1,2,3\nT8,1,2,3\n')


@pytest.mark.parametrize("name", ["batch.csv", "batch.csv.gz"])
def test_lines_with_more_fields_than_the_header_are_quarantined_with_their_line(tmp_path, name):
    import gzip

    schema = Schema.infer(pd.DataFrame({"txn_id": ["T0"], "amount": [1.0], "mcc": ["fuel"]}), id_column="txn_id")
    path = tmp_path / name
    path.write_bytes(gzip.compress(MALFORMED) if name.endswith(".gz") else MALFORMED)
    # lines as pandas counts them: the blank line counts, the quoted value's line break does not
    expected = [f"line {n} (a quoted value's line breaks not counted) has 4 fields where the header has 3, so its "
                f"values are not read: quote the values that hold a comma, or export the file again" for n in (4, 6, 9, 10)]
    for batch_rows in (1, 2, 100):  # the last two lines are met after the last row is read when chunks hold 2
        chunks = list(iter_batches(path, batch_rows=batch_rows, text_columns=["txn_id", "mcc"]))
        for chunk in chunks:  # the lines' empty values leave the chunk's numbers numbers (quarantine.csv: 7, not 7.0)
            assert validate(chunk, schema).quarantined["amount"].dtype == np.float64
        rows = pd.concat(chunks)
        assert rows["txn_id"].tolist() == ["T1", "T3", "T5", "T6"] and rows.index.tolist() == [0, 1, 2, 3]
        checked = [validate(chunk, schema) for chunk in chunks]
        quarantined = pd.concat([c.quarantined for c in checked])
        assert quarantined[REASON_COLUMN].tolist() == expected
        assert quarantined[["txn_id", "amount", "mcc"]].isna().all().all()  # not read: nothing made up
        assert sum(len(c.clean) for c in checked) == 4
        assert not any(pipeline.ingest.MALFORMED_LINES in c.clean.attrs for c in checked)
    assert validate(read_table(path), schema).quarantined[REASON_COLUMN].tolist() == expected


def test_a_file_with_many_lines_longer_than_its_header_is_refused(tmp_path, monkeypatch):
    rows = [f"T{i},{i}.5,fuel" + (",EXTRA" if i % 5 == 1 else "") for i in range(2_000)]
    path = tmp_path / "batch.csv"
    path.write_text("\n".join(["txn_id,amount,mcc", *rows]) + "\n")  # a fifth of the rows: not a few stray commas
    with pytest.raises(IngestError, match=r"200 of its first 1,000 rows have more fields than its header's 3"):
        iter_batches(path)
    path.write_text("\n".join(["txn_id,amount,mcc", *rows[:500], *(r.replace(",EXTRA", "") for r in rows[500:])]))
    assert len(read_table(path).attrs[pipeline.ingest.MALFORMED_LINES]) == 100  # the head passes: 100 of 1,000
    monkeypatch.setattr(pipeline.ingest, "MAX_MALFORMED_LINES", 50)
    for read in (lambda: read_table(path), lambda: list(iter_batches(path, batch_rows=100))):
        with pytest.raises(IngestError, match=r"more than 50 of its lines have more fields than its header \(the latest: "
                                              r"line \d+ \(a quoted"):
            read()


SHORT = b'txn_id,amount,mcc\nT1,1.5,"fu,el"\nT2,2.5\n\nT3,3.5,\nT4,4.5,"fu\nel"\nT5,5\nT6,1,2,3\nT7,7.5,fuel\nT8,8\n'


@pytest.mark.parametrize("name", ["batch.csv", "batch.csv.gz"])
def test_lines_with_fewer_fields_than_the_header_are_quarantined_with_their_values(tmp_path, name):
    import gzip

    schema = Schema.infer(pd.DataFrame({"txn_id": ["T0"], "amount": [1.0], "mcc": ["fuel"]}), id_column="txn_id")
    path = tmp_path / name
    path.write_bytes(gzip.compress(SHORT) if name.endswith(".gz") else SHORT)
    # T3's empty last value is a value; T2, T5 and T8 lack theirs: every line break counts, quoted or not
    expected = {"T2": "line 3 has 2 of the header's 3 fields: a value may hold an unquoted line break, or the "
                      "export left values out; export the file again",
                "T5": "line 8 has 2 of the header's 3 fields: a value may hold an unquoted line break, or the "
                      "export left values out; export the file again",
                "T8": "line 11 has 2 of the header's 3 fields: a value may hold an unquoted line break, or the "
                      "export left values out; export the file again"}
    for read in (lambda: [read_table(path, text_columns=["txn_id", "mcc"])],
                 *(lambda n=n: list(iter_batches(path, batch_rows=n, text_columns=["txn_id", "mcc"])) for n in (1, 2, 100))):
        checked = [validate(chunk, schema) for chunk in read()]
        quarantined = pd.concat([c.quarantined for c in checked])
        short = quarantined[~quarantined[REASON_COLUMN].str.contains("4 fields")]  # T6's line is longer
        assert dict(zip(short["txn_id"], short[REASON_COLUMN])) == expected
        assert short["amount"].tolist() == [2.5, 5.0, 8.0]  # the values the lines have are kept
        assert pd.concat([c.clean for c in checked])["txn_id"].tolist() == ["T1", "T3", "T4", "T7"]
        assert not any(pipeline.ingest.SHORT_LINES in c.clean.attrs for c in checked)
    # the same file cut mid-line, as one still being written or copied: no row of it is read
    path.write_bytes(gzip.compress(SHORT[:-1]) if name.endswith(".gz") else SHORT[:-1])
    for read in (lambda: read_table(path), lambda: list(iter_batches(path, batch_rows=2))):
        with pytest.raises(FileChangedError, match=r"it ends mid-line \(its last line, line 11, has 2 of the header's "
                                                   r"3 fields and no line break\), as a file still being written"):
            read()
    for cut in (SHORT.replace(b"T8,8\n", b'T8,8,"fu'), b'txn_id,amount,mcc\nT1,1.5,"fu'):  # cut inside a quote
        path.write_bytes(gzip.compress(cut) if name.endswith(".gz") else cut)
        with pytest.raises(FileChangedError, match="it ends inside a quoted value, as a file still being written"):
            read_table(path)
    whole = SHORT.replace(b"T8,8\n", b"T8,8,fuel")  # a last line without a break, but whole: read
    path.write_bytes(gzip.compress(whole) if name.endswith(".gz") else whole)
    assert read_table(path)["txn_id"].iloc[-1] == "T8"


def test_a_header_ending_with_a_comma_is_no_short_line_and_a_training_sample_keeps_each_reason(tmp_path):
    from pipeline.config import DataConfig
    from pipeline.train import _training_rows

    path = tmp_path / "trailing.csv"
    path.write_text("txn_id,amount,mcc,\n" + "".join(f"T{i},{i}.5,fuel\n" for i in range(300)) + "T300,1\n")
    assert read_table(path).attrs[pipeline.ingest.SHORT_LINES] == {300: "line 302 has 2 of the header's 3 fields: a "
                                                                        "value may hold an unquoted line break, or the "
                                                                        "export left values out; export the file again"}
    # the sample renumbers its rows: the reason goes with its row, and a row left out takes it along
    path.write_text("txn_id,amount,mcc\n" + "".join(f"T{i},{i}.5,fuel\n" if i != 5 else "T5,5.5\n" for i in range(300)))
    whole, _, _ = _training_rows([path], DataConfig(path=str(path), id_column="txn_id"), 0)
    assert list(whole.attrs[pipeline.ingest.SHORT_LINES]) == [5] and whole.loc[5, "txn_id"] == "T5"
    sample, rows, _ = _training_rows([path], DataConfig(path=str(path), id_column="txn_id", max_rows=100), 0)
    assert rows == 300 and len(sample) == 100 and list(sample.columns) == ["txn_id", "amount", "mcc"]
    assert [sample.loc[r, "txn_id"] for r in sample.attrs[pipeline.ingest.SHORT_LINES]] in ([], ["T5"])


def test_a_file_with_many_lines_shorter_than_its_header_is_refused(tmp_path, monkeypatch):
    rows = [f"T{i},{i}.5" + (",fuel" if i % 5 else "") for i in range(2_000)]
    path = tmp_path / "batch.csv"
    path.write_text("\n".join(["txn_id,amount,mcc", *rows]) + "\n")  # a fifth of the rows: an export that drops values
    with pytest.raises(IngestError, match=r"200 of its first 1,000 rows have fewer fields than its header's 3"):
        iter_batches(path)
    path.write_text("\n".join(["txn_id,amount,mcc", *(f"T{i},{i}.5,fuel" for i in range(1_000)), *rows[1_000:]]))
    monkeypatch.setattr(pipeline.ingest, "MAX_MALFORMED_LINES", 50)
    for read in (lambda: read_table(path), lambda: list(iter_batches(path, batch_rows=100))):
        with pytest.raises(IngestError, match=r"more than 50 of its lines have fewer fields than its header's 3"):
            read()


def test_short_lines_are_not_taken_where_pandas_splits_the_lines_otherwise(tmp_path):
    # An old Mac file (bare \r line breaks): after a blank line pandas reads the longer line ",,1,2"
    # as a row, where the scan counts it as skipped; "4,5" is then not row 2 but row 3.
    path = tmp_path / "mac.csv"
    path.write_bytes(b"a,b,c\r1,2\r\r,,1,2\r4,5\r")
    with pytest.warns(UserWarning, match=r"could not check which lines of .*mac.csv.* from line 5 on"):
        frame = read_table(path)
    assert frame.attrs[pipeline.ingest.SHORT_LINES] == {0: "line 2 has 2 of the header's 3 fields: a value may hold "
                                                           "an unquoted line break, or the export left values out; "
                                                           "export the file again"}


def test_a_field_longer_than_the_csv_modules_limit_is_read(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("txn_id,amount,note\nT1,2.5," + "x" * 200_000 + "\nT2,3.5,short\n")
    assert read_table(path)["note"].str.len().tolist() == [200_000, 5]


def test_other_warnings_met_while_reading_are_passed_on(tmp_path, monkeypatch):
    path = write(pd.DataFrame({"txn_id": ["T1"], "amount": [2.5]}), tmp_path / "batch.csv")
    read_csv = pd.read_csv

    def warning_read(*args, **kwargs):  # as a library (or another thread) warns during the read of the rows
        if "on_bad_lines" in kwargs:
            warnings.warn_explicit("from elsewhere", UserWarning, "/elsewhere/module.py", 7)
        return read_csv(*args, **kwargs)

    monkeypatch.setattr(pipeline.ingest.pd, "read_csv", warning_read)
    with pytest.warns(UserWarning, match="from elsewhere"):
        read_table(path)


def test_reads_in_threads_keep_each_files_malformed_lines(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    paths = {}
    for name, every in (("a", 13), ("b", 17)):
        rows = [f"{name}{i},{i}.5,fuel" + (",EXTRA" if i % every == 1 else "") for i in range(3_000)]
        paths[name] = tmp_path / f"{name}.csv"
        paths[name].write_text("\n".join(["txn_id,amount,mcc", *rows]) + "\n")

    def malformed(path) -> int:
        return sum(len(chunk.attrs[pipeline.ingest.MALFORMED_LINES]) for chunk in iter_batches(path, batch_rows=20))

    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(malformed, [paths["a"], paths["b"]] * 4))
    assert counts == [231, 177] * 4


def test_schema_kinds_overrides_and_json_round_trip(table):
    schema = Schema.infer(table.assign(is_fraud=0), "txn_id", label_column="is_fraud",
                          column_types={"amount": "categorical"})
    assert schema.features == {"amount": "categorical", "mcc": "categorical", "card_present": "categorical"}
    assert Schema.infer(table, "txn_id").features["amount"] == "numeric"
    assert Schema.from_dict(json.loads(json.dumps(schema.to_dict()))) == schema
    with pytest.raises(SchemaError, match="nope"):
        Schema.infer(table, "txn_id", columns=["amount", "nope"])
    excluded = Schema.infer(table, "txn_id", exclude_columns=["mcc"])
    assert list(excluded.features) == ["amount", "card_present"] and excluded.left_out == ["mcc"]
    assert Schema.from_dict(json.loads(json.dumps(excluded.to_dict()))) == excluded
    assert Schema.from_dict({"id_column": "txn_id", "features": {"amount": "numeric"}}).left_out == []  # older models
    with warnings.catch_warnings():  # a column left out at training is no news in a batch
        warnings.simplefilter("error")
        validate(table, excluded)
    with pytest.warns(UserWarning, match=r"column\(s\) \['new'\] are not in the schema"):
        validate(table.assign(new=1), excluded)
    with pytest.raises(SchemaError, match="nope"):  # a misspelt exclusion is not silently ignored
        Schema.infer(table, "txn_id", exclude_columns=["nope"])


def test_schema_warns_about_a_mostly_numeric_text_column(table):
    with pytest.warns(UserWarning, match=r"'amount' is text: 1 of its 25 values do not parse as numbers \(e.g. 'n.a.'\).*'numeric'"):
        Schema.infer(table.assign(amount=table["amount"].astype(str).where(table.index > 0, "n.a.")), "txn_id")


def check_invariant(frame: pd.DataFrame, result) -> None:
    assert len(result.clean) + len(result.quarantined) == len(frame)
    assert result.clean.index.is_monotonic_increasing and result.quarantined.index.is_monotonic_increasing
    assert set(result.clean.index) | set(result.quarantined.index) == set(frame.index)


@pytest.mark.parametrize("column, value, reason", [
    ("txn_id", None, "missing id"),
    ("txn_id", "T001", "duplicate id 'T001'"),
    ("amount", "abc", "amount: 'abc' is not a number"),
    ("amount", "38,52", "amount: '38,52' is not a number (a decimal comma? export numbers with '.' as the decimal"),
    ("amount", "1,234", "amount: '1,234' is not a number"),
    ("amount", np.inf, "amount: inf is not a finite number"),
    ("amount", "-inf", "amount: '-inf' is not a finite number"),
])
def test_each_quarantine_reason(table, schema, column, value, reason):
    batch = table.astype({"amount": object})
    batch.loc[5, column] = value
    result = validate(batch, schema)
    check_invariant(batch, result)
    assert result.quarantined.index.tolist() == [5]
    assert result.quarantined[REASON_COLUMN].iloc[0].startswith(reason)
    pd.testing.assert_frame_equal(result.quarantined.drop(columns=REASON_COLUMN), batch.loc[[5]])
    assert result.clean["amount"].dtype == np.float64


def test_a_quarantined_row_leaves_its_id_to_a_later_sound_row(table, schema):
    batch = table.astype({"amount": object})
    batch.loc[[0, 1, 2], "txn_id"] = "T900"
    batch.loc[0, "amount"] = "abc"  # quarantined for its amount: row 1 is the first with T900 to be scored
    result = validate(batch, schema)
    check_invariant(batch, result)
    assert result.quarantined.index.tolist() == [0, 2]
    assert result.quarantined[REASON_COLUMN].tolist() == ["amount: 'abc' is not a number",
                                                          "duplicate id 'T900': an earlier row has the same id"]
    seen = SeenIds()  # across chunks alike: a quarantined row's id is not remembered
    validate(batch.loc[[0]], schema, seen_ids=seen)
    assert validate(batch.loc[[1]], schema, seen_ids=seen).quarantined.empty


def test_a_float32_column_stays_float32_so_outputs_write_it_as_read(table, schema):
    clean = validate(table.astype({"amount": np.float32}), schema).clean
    assert clean["amount"].dtype == np.float32 and "1950.74" in clean.assign(amount=np.float32(1950.74)).to_csv()


def test_missing_cells_and_unseen_categories_are_not_quarantined(table, schema):
    batch = table.astype({"amount": object})
    batch.loc[[1, 2, 3], "amount"] = [np.nan, "", None]
    batch.loc[4, "mcc"] = "never-seen"
    batch.loc[6, "mcc"] = None
    result = validate(batch, schema)
    assert result.quarantined.empty and len(result.clean) == len(batch)
    assert result.clean["amount"].iloc[1:4].isna().all() and result.clean["mcc"].iloc[4] == "never-seen"


def test_a_row_without_any_feature_value_is_quarantined(tmp_path, table, schema):
    batch = table.astype({"amount": object, "card_present": object})
    batch.loc[3, ["amount", "mcc", "card_present"]] = [None, None, None]  # as a blank record reads
    batch.loc[4, ["amount", "mcc", "card_present"]] = ["", None, None]
    batch.loc[5, ["amount", "mcc"]] = [None, None]  # one value left: scored
    write(batch, tmp_path / "b.csv").write_text((tmp_path / "b.csv").read_text() + "T100,,,\n")
    for frame in (batch, read_table(tmp_path / "b.csv", text_columns=schema.text_columns)):
        result = validate(frame, schema)
        check_invariant(frame, result)
        assert sorted(result.quarantined["txn_id"]) == sorted({"T003", "T004", "T100"} & set(frame["txn_id"]))
        assert (result.quarantined[REASON_COLUMN] == "no feature values: every feature column is empty").all()


def test_duplicates_keep_the_first_within_and_across_chunks(table, schema):
    batch = pd.concat([table.iloc[:3], table.iloc[[1, 1]]], ignore_index=True)
    result = validate(batch, schema)
    check_invariant(batch, result)
    assert result.quarantined.index.tolist() == [3, 4] and result.clean["txn_id"].is_unique
    seen = SeenIds()
    validate(table.iloc[:10], schema, seen_ids=seen)
    later = validate(table.iloc[8:12], schema, seen_ids=seen)
    assert later.quarantined["txn_id"].tolist() == ["T008", "T009"]
    # spaces around an id do not make another record's (review reads a verdict's id without them)
    padded = table.iloc[10:14].assign(txn_id=[" T010", "T010 ", "T012", "t012"])
    again = validate(padded, schema, seen_ids=seen)
    assert again.quarantined["txn_id"].tolist() == [" T010", "T010 "] and again.clean["txn_id"].tolist() == ["T012", "t012"]


def test_repeated_ids_are_found_in_every_block_of_earlier_ids():
    seen = SeenIds()
    seen.BLOCK_HASHES = 5  # small blocks: the earlier chunks' ids spread over several
    for start in range(0, 30, 3):
        assert not seen.check_and_add(pd.Series([f"id{i}" for i in range(start, start + 3)])).any()
    assert len(seen._blocks) >= 6 and max(len(block) for block in seen._blocks) <= 5
    again = seen.check_and_add(pd.Series(["id0", "new", "id14", "id29", "new2"]))
    assert again.tolist() == [True, False, True, True, False]
    assert seen.check_and_add(pd.Series(["new", "new2"])).all()


def test_several_reasons_in_one_row_and_empty_batch(table, schema):
    batch = table.astype({"amount": object})
    batch.loc[0, ["txn_id", "amount"]] = [None, "x"]
    reason = validate(batch, schema).quarantined[REASON_COLUMN].iloc[0]
    assert "missing id" in reason and "amount: 'x'" in reason
    empty = validate(table.iloc[:0], schema)
    assert empty.clean.empty and list(empty.quarantined.columns) == [*table.columns, REASON_COLUMN]


def test_categories_are_text_the_same_way_in_every_chunk(table):
    # A CSV chunk with a gap reads an integer code as 5411.0: it must stay category "5411".
    codes = table.assign(mcc=[5411, 5812, 4111, 5411, 5999] * 5)
    schema = Schema.infer(codes, "txn_id", column_types={"mcc": "categorical"})
    gappy = codes.astype({"mcc": float})
    gappy.loc[0, "mcc"] = np.nan
    from_gappy, from_ints = validate(gappy, schema).clean["mcc"], validate(codes, schema).clean["mcc"]
    assert pd.isna(from_gappy.iloc[0]) and from_gappy.iloc[1:].tolist() == from_ints.iloc[1:].tolist()
    assert from_ints.iloc[1] == "5812"


def test_the_model_reads_columns_as_the_schema_says(table):
    from maskae.table_encoding import TableEncoder  # fitting the encoder trains nothing

    codes = table.assign(mcc=[5411, 5812, 4111, 5411, 5999] * 5)
    schema = Schema.infer(codes, "txn_id", column_types={"mcc": "categorical"})
    clean = validate(codes, schema).clean
    encoder = TableEncoder().fit(clean[schema.feature_columns])
    assert [c.name for c in encoder.numeric_] == schema.columns_of_kind("numeric")
    assert [c.name for c in encoder.categorical_] == schema.columns_of_kind("categorical")


def test_missing_column_is_refused_before_any_row(table, schema):
    with pytest.raises(SchemaError, match=r"\['mcc'\].*expected id column 'txn_id'"):
        validate(table.drop(columns="mcc"), schema)
    semicolons = pd.DataFrame({";".join(table.columns): table.astype(str).agg(";".join, axis=1)})
    with pytest.raises(SchemaError, match="holds ';': is the file semicolon-separated"):
        validate(semicolons, schema)
    for renamed, hint in ((" MCC", "' MCC' for 'mcc'"), ("amout", "'amout' for 'amount'")):
        with pytest.raises(SchemaError, match=f"\\(it has {hint}: renamed, or spelt with other case or spaces\\?\\)"):
            validate(table.rename(columns={hint.split("'")[3]: renamed}), schema)
    with pytest.raises(SchemaError, match=r"lacks column\(s\) \['amount'\]; expected"):  # "amt" is too far to guess
        validate(table.rename(columns={"amount": "amt"}), schema)
    pairs = table.assign(mcc_group=table["mcc"])  # a model with both mcc and mcc_group
    both = Schema.infer(pairs, "txn_id")
    with pytest.raises(SchemaError, match=r"lacks column\(s\) \['mcc'\]; expected"):  # not "it has 'mcc_group'": it
        validate(pairs.drop(columns="mcc"), both)                                         # is read as itself
    with pytest.raises(SchemaError, match=r"\(it has 'mcc_code' for 'mcc': renamed"):  # a word of it, otherwise
        validate(table.rename(columns={"mcc": "mcc_code"}), schema)


def test_a_semicolon_file_with_decimal_commas_is_named_as_such(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("txn_id;amount;mcc\nT1;2,5;fuel\nT2;3,5;food\n")
    with pytest.raises(IngestError, match=r"has 2 fields where the header has 1; is the file semicolon-separated "
                                          r"\(with decimal commas\)\? export it comma-separated"):
        read_table(path)


def test_extra_column_warns_and_is_kept(table, schema):
    with pytest.warns(UserWarning, match="merchant_name"):
        result = validate(table.assign(merchant_name="shop"), schema)
    assert "merchant_name" in result.clean.columns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate(table.assign(is_fraud=0), Schema(**{**schema.to_dict(), "label_column": "is_fraud"}))


def test_a_duration_column_is_a_number_of_seconds(tmp_path):
    """A Parquet duration (the gap since a card's last transaction) is numeric, in seconds: pandas'
    own conversion gave nanoseconds, and a missing one -9.2e18."""
    frame = pd.DataFrame({"txn_id": ["a", "b", "c"], "gap": pd.to_timedelta([90, None, 5], unit="s"),
                          "amount": [1.0, 2.0, 3.0]})
    frame.to_parquet(tmp_path / "gaps.parquet")
    read = next(iter_batches(tmp_path / "gaps.parquet"))
    schema = Schema.infer(read, "txn_id")
    assert schema.features == {"gap": "numeric", "amount": "numeric"}
    checked = validate(read, schema)
    assert checked.quarantined.empty and checked.clean["gap"].tolist()[::2] == [90.0, 5.0]
    assert np.isnan(checked.clean["gap"].iloc[1])
