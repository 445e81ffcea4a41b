# Everything a fresh machine needs: `make demo` and `make test` create .venv and install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint types pytest docs bench fuzz clean softhsm

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,signers]'
	touch $(STAMP)

# SoftHSM2 gives the PKCS#11 signer test a real token. Installed when missing and this
# machine can (root with apt-get); otherwise that one test says why it skips.
softhsm:
	@command -v softhsm2-util >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 >/dev/null 2>&1 || \
	     { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 >/dev/null 2>&1; }) || \
	    echo "note: could not install softhsm2; the PKCS#11 signer test will skip"; \
	  else echo "note: softhsm2 is not installed (apt-get install softhsm2); the PKCS#11 signer test will skip"; fi; }

demo: $(STAMP)
	$(BIN)/pinsdk demo

test: lint types pytest docs

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy --strict pinsdk benchmarks

pytest: $(STAMP) softhsm
	$(BIN)/python -m pytest

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $(VENV)/site

# BENCH_ARGS: e.g. --quick, --no-fail (report missed goals, exit 0), --update-docs.
BENCH_ARGS ?=

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q tests/security/test_fuzz.py tests/security/test_der_property.py tests/security/test_host_spellings.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache site
