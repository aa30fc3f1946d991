# One entry point for people and CI. `make serve` and `make test` are the two commands in README.md.
# CUDA machines: the default PyPI torch wheel on Linux is CUDA-enabled, so the same commands work; pick
# another build with e.g. `make serve TORCH_SPEC="torch==2.13.0"` plus PIP_INDEX_URL/PIP_EXTRA_INDEX_URL.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
DEV_ENV := .dev.env

.PHONY: install install-test weights serve token test lint bench bench-http deploy-check reliability clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.runtime
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.runtime
install-test: $(VENV)/.test

weights: $(VENV)/.runtime
	$(BIN)/face3d models pull

# A random development signing key, made once and kept out of git; production sets FACE3D_JWT_SECRET
# (or a public key / JWKS URL) through its own secret store.
$(DEV_ENV):
	@umask 077; echo "FACE3D_JWT_SECRET=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(48))')" > $@

# Prints a ready-to-open link to the web page with a fresh 12-hour development token in its fragment
# (the browser never sends a fragment to the server; the page strips it from the address bar).
serve: weights $(DEV_ENV)
	@set -a; . ./$(DEV_ENV); set +a; \
	echo "face3d: open http://localhost:$${FACE3D_PORT:-8000}/#token=$$($(BIN)/face3d token --sub dev --scope reconstruct --scope results:read --scope results:delete --ttl 12h)"; \
	echo "face3d: or get a token for curl in another shell with:  make token"
	set -a; . ./$(DEV_ENV); set +a; exec $(BIN)/face3d serve

token: $(VENV)/.runtime $(DEV_ENV)
	@set -a; . ./$(DEV_ENV); set +a; $(BIN)/face3d token --sub dev --scope reconstruct --scope results:read \
		--scope results:delete --ttl 12h

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# pytest exits 5 when it collected nothing: that is a failure here, never a silent green.
test: $(VENV)/.test weights lint
	$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# The hardening suites at full length (RELIABILITY.md): schemathesis with more cases, overload and
# fault injection at c=32, a 10-minute soak, minutes of fuzzing; `make test` runs them bounded.
# Prints the figures they measured (also kept in build/reliability/figures.jsonl). About 25 minutes.
FIGURES := build/reliability/figures.jsonl
reliability: $(VENV)/.test weights
	@mkdir -p $(dir $(FIGURES)); rm -f $(FIGURES)
	RELIABILITY_LONG=1 RELIABILITY_FIGURES=$(CURDIR)/$(FIGURES) $(BIN)/python -m pytest -q -m reliability \
		tests/test_contract.py tests/test_quota.py tests/test_hostile_images.py tests/test_fuzz_decode.py \
		tests/test_reliability_auth.py tests/test_reliability_uploads.py tests/test_reliability_faults.py \
		tests/test_reliability_overload.py tests/test_reliability_soak.py; rc=$$?; \
	$(BIN)/python -m tests.figures $(FIGURES); exit $$rc

bench: weights
	$(BIN)/python -m bench.engine

# httpx (the load client) and scikit-image (the bench photo) come with the test extra.
bench-http: $(VENV)/.test weights
	$(BIN)/python -m bench.http_load

deploy-check: $(VENV)/.test
	$(BIN)/python scripts/check_deploy.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
