"""The scan for CSV lines shorter than the header: blocks against Python's csv module, on hand-made files."""

import doctest
import io

import pytest

import pipeline.csv_lines
from pipeline.csv_lines import ShortLines, short_lines

# Each line is a case the scan must read as pandas does: quoted commas and line breaks, escaped
# quotes, an empty quoted value (a row, not a blank line), blank and whitespace-only lines, a line
# longer than the header (pandas skips it: no row), CRLF, and a bare \r, where pandas breaks a line.
FILE = (b'\xef\xbb\xbf"id",amount,note\r\n'  # line 1, with a byte-order mark
        b'1,"2,5","say ""hi"""\r\n'  # 2
        b'2,3\r\n'  # 3: short
        b'\r\n'  # 4: blank
        b'   \r\n'  # 5: blank
        b'3,4,"x\ny"\r\n'  # 6-7: a quoted line break
        b'""\r\n'  # 8: short (one empty value)
        b'4,5,6,7\r\n'  # 9: longer: pandas skips it
        b'5,6,a\rb\r\n'  # 10: a bare \r ends the line "5,6,a" (complete); "b" is line 11, short
        b'6,7')  # 12: short, and the file ends mid-line
EXPECTED = ShortLines(width=3, lines={1: (3, 2, False), 3: (8, 1, False), 5: (11, 1, False), 6: (12, 2, True)})


def test_module_example_runs():
    assert doctest.testmod(pipeline.csv_lines).failed == 0


@pytest.mark.parametrize("block", [1, 2, 3, 5, 8, 13, 64, 1 << 22])
def test_blocks_of_any_size_find_the_short_lines_the_csv_module_finds(monkeypatch, block):
    monkeypatch.setattr(pipeline.csv_lines, "BLOCK", block)
    monkeypatch.setattr(pipeline.csv_lines, "MAX_RECORD", 1 << 30)
    assert short_lines(io.BytesIO(FILE)) == EXPECTED
    assert pipeline.csv_lines._scan_records(io.BytesIO(FILE)) == EXPECTED  # the reference the fallback uses


def test_a_quote_inside_an_unquoted_value_is_read_by_the_csv_module(monkeypatch):
    # The parity count would take the quote of 5" as opening a value and swallow the next lines.
    data = b'id,size,note\n1,5" screen,x\n2,3\n3,"a,b",c\n4'
    fallback = []
    monkeypatch.setattr(pipeline.csv_lines, "_scan_records",
                        lambda source, scan=pipeline.csv_lines._scan_records: fallback.append(1) or scan(source))
    assert short_lines(io.BytesIO(data)) == ShortLines(width=3, lines={1: (3, 2, False), 3: (5, 1, True)})
    assert fallback == [1]
    assert short_lines(io.BytesIO(FILE)) == EXPECTED and fallback == [1]  # regular quotes: no fallback


def test_edges_a_scan_once_got_wrong():
    # a file cut inside a quoted value: its rest is its last line (the scan looped until 16 MiB)
    assert short_lines(io.BytesIO(b'id,a,b\n1,"abc\n2,3')) == ShortLines(width=3, lines={0: (2, 2, True)},
                                                                         ends_in_quote=True)
    assert short_lines(io.BytesIO(b'id,a,b\n1,2,"ab')).ends_in_quote  # every field there, the last one cut
    # the csv module's reading: a whitespace line after the last record is no cut last line
    assert short_lines(io.BytesIO(b'id,a,b\n1,5" x,2\n3,4\n  ')) == ShortLines(width=3, lines={1: (3, 2, False)})
    # a value over the csv module's limit (which pandas reads): not checked, not an error
    assert short_lines(io.BytesIO(b'id,a,b\n1,5" x,2\n2,' + b"x" * 200_000 + b",3\n")) == ShortLines()


def test_an_empty_file_and_a_header_have_no_short_lines_and_a_line_without_breaks_is_not_checked(monkeypatch):
    assert short_lines(io.BytesIO(b"")) == ShortLines()
    assert short_lines(io.BytesIO(b"a,b\n")) == ShortLines(width=2)
    monkeypatch.setattr(pipeline.csv_lines, "BLOCK", 4)
    monkeypatch.setattr(pipeline.csv_lines, "MAX_RECORD", 16)
    assert short_lines(io.BytesIO(b'a,b\n1,"' + b"x" * 40 + b'"\n2\n')) == ShortLines()  # a record over 16 bytes
