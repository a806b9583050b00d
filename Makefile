# The README's two commands are `make run` and `make test`.
PERIOD ?= 2026-10
SIZE ?= 100
BILLBOT = .venv/bin/billbot

.PHONY: setup run cycle test lint bench clean

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

bench:
	for b in bench/*.py; do echo "== $$b"; .venv/bin/python $$b; done

clean:
	rm -rf var test-artifacts
