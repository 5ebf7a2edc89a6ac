# The two commands a new user runs: `make demo` and `make test`. Both set up .venv first.
PY      := .venv/bin/python
STAMP   := .venv/.installed

.PHONY: setup browser demo test test-heavy test-fast test-snapshot-update bench lint format clean

setup: $(STAMP)

# torch==2.13.0 first: that exact spec takes the local CPU wheel; any other spec pulls CUDA.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,integrations,c-validator,stalls]'
	touch $(STAMP)

# pre-flight (shown, nothing asked), then the run in the live monitor (plain lines when not a terminal)
demo: setup
	.venv/bin/cockpit run --yes

# every test but the heaviest few (under 10 min on 2 cores); CI runs test-heavy too
test: setup
	$(PY) -m pytest -q -m "not heavy"

test-heavy: setup browser
	$(PY) -m pytest -q -m heavy

# headless Chromium (Debian's) for the browser test of `cockpit serve`; where it cannot be
# installed (not root, no apt-get) that test skips and says why
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; } || \
	  echo "make browser: no chromium here and no way to install it (needs root and apt-get): the browser test will skip"

# refresh the SVG snapshots on purpose (look at the diff), and the README's screenshots with them
test-snapshot-update: setup
	$(PY) -m pytest -q tests/cockpit/ui/test_tui_snapshots.py tests/cockpit/ui/test_preflight_screen.py -k snapshot --snapshot-update
	cp "tests/cockpit/ui/__snapshots__/test_preflight_screen/test_snapshot_the_summary_ready_to_confirm[160x48].svg" docs/screenshots/preflight.svg
	cp "tests/cockpit/ui/__snapshots__/test_tui_snapshots/test_monitor[gpu-160x48].svg" docs/screenshots/monitor.svg
	cp "tests/cockpit/ui/__snapshots__/test_tui_snapshots/test_runs[160x48].svg" docs/screenshots/runs.svg
	cp "tests/cockpit/ui/__snapshots__/test_tui_snapshots/test_compare[160x48].svg" docs/screenshots/compare.svg

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not heavy"

bench: setup
	$(PY) bench/train_throughput.py
	$(PY) bench/tokenize_throughput.py
	$(PY) bench/follower.py
	$(PY) bench/sampler.py
	$(PY) bench/cockpit_overhead.py
	$(PY) bench/preflight_big.py
	$(PY) bench/secrets_scan.py
	$(PY) bench/adapters.py
	$(PY) bench/tui_latency.py
	$(PY) bench/tui_open.py
	$(PY) bench/notify.py
	$(PY) bench/serve_page.py

# ruff, the import contracts (pyproject.toml: layers, no cycles, core knows no UI), mypy
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	.venv/bin/lint-imports
	$(PY) -m mypy

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf .venv data build *.egg-info
