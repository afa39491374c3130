# A new user's two commands: `make run` (the main job) and `make test` (the whole suite).
# Both create .venv in the checkout and install everything they need into it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
SHARED ?= ../shared
export TIKTOKEN_CACHE_DIR ?= $(abspath $(SHARED))/data/tokenizers/tiktoken
# nltk (used by llama-index) refuses hard-linked data files, which uv creates by default.
export UV_LINK_MODE ?= copy

.PHONY: install run test lint

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv

$(VENV)/.installed: $(BIN)/python pyproject.toml integrations/langchain/pyproject.toml integrations/llama_index/pyproject.toml
	$(UV) pip install --python $(BIN)/python -e '.[all,dev]' -e integrations/langchain -e integrations/llama_index
	touch $@

install: $(VENV)/.installed

# The main job: index DOCS and answer QUESTION over it (generation needs MODEL=<path or id>).
DOCS ?= docs
INDEX ?= .longcontext/index
QUESTION ?= How does longcontext keep the most relevant passage out of the middle of the prompt?
MODEL ?=
run: install
	$(BIN)/longcontext index $(DOCS) --index $(INDEX)
	$(BIN)/longcontext ask $(INDEX) "$(QUESTION)" $(if $(MODEL),--model $(MODEL) --stream,)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Tests never download: models and tokenizers come from fixtures and ../shared.
test: export HF_HUB_OFFLINE = 1
test: export TRANSFORMERS_OFFLINE = 1
test: lint
	$(BIN)/python -m pytest -q
	$(BIN)/mkdocs build --strict -q -d $(VENV)/site
