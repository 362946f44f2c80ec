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

# The report's browser test drives Debian's chromium through Debian's chromedriver (no browser
# download). Installed when missing and apt-get can run; otherwise that one test skips and says why.
.PHONY: demo test browser
demo: .venv/installed
	.venv/bin/maskae demo

browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium not installed: the browser test will skip (apt-get install chromium chromium-driver)"; fi; \
	fi

test: .venv/installed browser
	$(PY) -m pytest -q
