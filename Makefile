# Two commands for a newcomer: `make demo` and `make test`. Both set the machine up first
# (infra/setup.sh skips whatever is already done, so a second run takes seconds).

SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python

.DEFAULT_GOAL := help
.PHONY: help setup setup-test demo test lint model

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

setup: ## install what the demo needs (apt packages, uv, .venv, embedded model)
	bash infra/setup.sh --for demo

setup-test: ## install what the test suite needs (adds docker.io, debootstrap)
	bash infra/setup.sh --for test

demo: setup ## set up, then run the code SFT recipe on the embedded model (out/code-sft)
	$(VENV)/bin/winnow run code-sft --out out/code-sft

test: setup-test ## set up, then run the whole test suite, slow tests included (ARGS=... for pytest)
	$(PY) -m pytest $(ARGS)

lint: ## ruff check + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

model: ## install (if needed) and check the embedded model
	$(VENV)/bin/winnow model
