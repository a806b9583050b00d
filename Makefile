# The README's two commands are `make run` and `make test`.
PERIOD ?= 2026-10
SIZE ?= 100
BILLBOT = .venv/bin/billbot

.PHONY: setup run cycle test lint bench bench-all clean lock

setup:
	scripts/setup.sh run

run: setup
	scripts/run.sh $(PERIOD) $(SIZE)

test:
	scripts/test.sh

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy .
	.venv/bin/lint-imports

# `make bench` lists the benchmarks with how to run each (README "Benchmarks"); `make bench-all` runs those
# that need no arguments, one after the other (long: the machine should be otherwise idle).
bench:
	@for b in bench/*.py; do echo "== $$b: $$(head -1 $$b | sed 's/^"""//')"; \
	  grep -E '^ +(\.venv/bin/)?python bench/' $$b | sed -E 's/^ +/   /'; done

bench-all:
	for b in ack_latency billing_run ingest month_close payments pdf variance; do echo "== $$b"; .venv/bin/python bench/$$b.py; done

# Refresh requirements.lock deliberately: the newest versions pyproject.toml's ranges allow, with hashes.
# pip-tools lives in a venv of its own, so `pip freeze` of .venv stays equal to the lock.
lock:
	test -x .venv-lock/bin/pip-compile || (python3 -m venv .venv-lock && .venv-lock/bin/pip install -q pip-tools)
	CUSTOM_COMPILE_COMMAND="make lock" .venv-lock/bin/pip-compile -q --upgrade --generate-hashes --allow-unsafe \
		--strip-extras --extra test --all-build-deps --no-emit-index-url --no-emit-find-links \
		--annotation-style line --output-file requirements.lock pyproject.toml

clean:
	rm -rf var test-artifacts
