# Two entry points for a fresh machine: `make demo` runs the main job, `make test` the tests.
# Both create .venv at the repository root when it is missing and install the locked versions.
PY := .venv/bin/python
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.venv/installed: pyproject.toml constraints.txt
	test -x $(PY) || python3.11 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,bench]"
	touch $@

.PHONY: demo test
demo: .venv/installed
	.venv/bin/maskae demo

test: .venv/installed
	$(PY) -m pytest -q
