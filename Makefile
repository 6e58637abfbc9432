# vpce-approver: every target sets up what it needs from scratch and is safe to re-run.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.13 (the Lambda runtime): the first candidate that really runs 3.13 (a pyenv shim on PATH
# may exist without working), from PATH or pyenv's versions; override with `make PYTHON=...`.
PYTHON ?= $(shell for c in "$$(command -v python3.13)" $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13; do \
	  [ -n "$$c" ] && "$$c" -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1 \
	  && "$$c" -c 'import sys; print(sys.executable)' && break; done)
PY313_BIN := $(dir $(PYTHON))
VENV := .venv
VPY := $(VENV)/bin/python
SAM_VENV := .tools/sam
SAM := $(SAM_VENV)/bin/sam
SAM_CLI_VERSION := 1.170.0
# checkov (the IaC scanner security teams run) pins its own dependencies: a venv of its own too.
CHECKOV_VENV := .tools/checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
CHECKOV_VERSION := 3.3.30
# SAM and cfn-lint never need a real account here: keep them away from any credentials on the machine.
SAM_ENV := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
	AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing PATH="$(PY313_BIN):$$PATH"
PYTEST_ARGS ?=

.PHONY: help venv sam-tool checkov-tool lint typecheck validate scan build unit test demo bench soak local browser clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

check-python:
	@if [ -z "$(PYTHON)" ] || ! "$(PYTHON)" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then \
	  echo "error: Python 3.13 not found (the Lambda runtime is python3.13)."; \
	  echo "       Install it (e.g. 'pyenv install 3.13') or run 'make PYTHON=/path/to/python3.13 ...'."; \
	  exit 1; fi

$(VENV)/.installed: requirements-dev.txt functions/requirements.txt pyproject.toml | check-python
	@test -x $(VPY) || "$(PYTHON)" -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(VPY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(VENV)/.installed ## create .venv with the pinned dependencies (idempotent)

# The SAM CLI pins its own boto3: it gets a venv of its own so it can never skew the project's pins.
$(SAM_VENV)/.installed: | check-python
	@test -x $(SAM_VENV)/bin/python || "$(PYTHON)" -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check aws-sam-cli==$(SAM_CLI_VERSION)
	@touch $@

sam-tool: $(SAM_VENV)/.installed ## install the SAM CLI into .tools/sam

$(CHECKOV_VENV)/.installed: | check-python
	@test -x $(CHECKOV_VENV)/bin/python || "$(PYTHON)" -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	@touch $@

checkov-tool: $(CHECKOV_VENV)/.installed ## install checkov into .tools/checkov

browser: ## install Debian chromium + chromium-driver for the browser tests (needs root)
	@if [ -x /usr/bin/chromium ]; then echo "chromium present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	  || echo "warning: could not install chromium; browser tests will be skipped"; \
	else echo "warning: /usr/bin/chromium missing and not root: browser tests will be skipped"; fi

lint: venv ## ruff lint + format check
	$(VENV)/bin/ruff check functions src tests
	$(VENV)/bin/ruff format --check functions src tests

typecheck: venv ## mypy --strict over the Lambda package and the tools
	$(VENV)/bin/mypy

validate: sam-tool ## sam validate --lint (cfn-lint) on template.yaml
	$(SAM_ENV) $(SAM) validate --lint --template template.yaml

# 0 failed checks: real findings are fixed in the template; each remaining one is skipped in its
# resource's Metadata (checkov: skip: id + comment), so the reason sits next to the resource.
# --skip-download: offline, no attempt to fetch the vendor platform's guidelines (a traceback here).
scan: checkov-tool ## checkov on template.yaml (IaC scanner; must report 0 failed)
	$(CHECKOV) --file template.yaml --framework cloudformation --quiet --compact --skip-download

build: sam-tool ## sam build, offline (no AWS account needed)
	$(SAM_ENV) $(SAM) build --template template.yaml --parallel

unit: venv ## pytest only (PYTEST_ARGS=... to pass arguments)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: venv sam-tool browser lint typecheck validate scan build ## the full suite CI runs: set-up, lint, types, SAM checks, pytest
	SAM_CLI=$(abspath $(SAM)) $(VENV)/bin/pytest -n 2 $(PYTEST_ARGS)

demo: venv ## the main job on the local emulator: accept, reject, escalate, registry grant, Slack click, sweep
	$(VENV)/bin/vpce-approver demo

bench: venv ## performance benchmark on the emulator (throttle on); writes docs/BENCHMARKS.md
	$(VENV)/bin/python -m vpce_tools.bench --out docs/BENCHMARKS.md

soak: venv ## long fault-injection runs (docs/RELIABILITY.md)
	$(VENV)/bin/pytest -m soak -p no:randomly $(PYTEST_ARGS)

local: venv ## run the emulator + service as a local server (vpce-approver local)
	$(VENV)/bin/vpce-approver local

clean: ## remove build output (keeps the venvs)
	rm -rf .aws-sam .mypy_cache .ruff_cache
