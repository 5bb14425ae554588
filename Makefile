# The README's two commands: `make app` (dashboard on the demo zoo) and `make test` (whole suite).
# Both create the virtual environment on first use and reuse it afterwards.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1
export NO_PROXY := localhost,127.0.0.1
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: app test test-fast lint browser bench notebooks card

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[test,notebooks,cluster]"
	touch $(STAMP)

app: $(STAMP)
	$(PY) app.py --host $(HOST) --port $(PORT)

# Browser tests drive Debian's chromium; install it when it is missing and we may (root + apt).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); } || \
	  echo "chromium is not installed: browser tests will be skipped (apt-get install chromium)"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The whole suite on every core (pytest-xdist, one torch thread per worker); the notebooks run in quick mode
# (notebooks/conftest.py). The 20 slowest tests are printed at the end. A notebook whose Jupyter kernel dies before it
# starts (two workers' kernels racing for the same TCP ports) is rerun once; no other failure is retried.
test: $(STAMP) browser
	$(PY) -m pytest -q -n auto --dist loadscope --durations=20 --reruns 1 --only-rerun "Kernel died before replying" \
	  tests --nbmake notebooks

# The inner loop: every unit and fuzz test, without the browser, the notebooks and the slow tests (under 2 minutes).
test-fast: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadscope -m "not slow and not e2e" tests

# Re-execute the teaching notebooks and save their outputs in place (figures with their PNGs), to commit them.
notebooks: $(STAMP) browser
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace notebooks/0[1-9]_*.ipynb

# Rewrite the demo zoo's card from its weights (full run, ~8 min) and the quick card the tests compare against.
card: $(STAMP)
	$(VENV)/bin/explorer zoo card demo --threads 2 > explorer/demozoo/weights/README.md
	EXPLORER_QUICK=1 $(VENV)/bin/explorer zoo card demo --threads 2 > tests/demozoo/data/card_quick.md

bench: $(STAMP)
	for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done
