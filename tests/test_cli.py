"""The `maskae` command: the demo runs end to end and errors are one clear line."""

import pytest

from flows.cli import main


def test_demo_prints_the_most_anomalous_with_reasons(capsys):
    assert main(["demo", "--customers", "300", "--top", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "the 3 most anomalous" in out
    assert "was expected" in out  # every printed record carries its reasons
    assert "AUROC" in out


def test_help_and_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--customers", "many"])
    assert exit_info.value.code == 2


def test_errors_are_one_line_not_a_traceback(capsys):
    assert main(["demo", "--customers", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("maskae demo: error:") and "Traceback" not in err and err.count("\n") == 1
