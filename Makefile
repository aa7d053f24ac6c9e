# Serval's two set-up commands:
#   make serve   fetch the default model, build, serve on port 30000
#   make test    fetch what tests need, build, run unit + integration tests
SHELL := /bin/bash
PORT ?= 30000
SWIFT_FLAGS := -c release -Xswiftc -enable-testing
BIN := .build/release/serval
PYTHON ?= python3
PYDEPS := .build/pydeps

.PHONY: serve build test test-swift test-integration lint model pydeps release-static clean

model:
	@scripts/fetch-default-model >/dev/null

build:
	swift build $(SWIFT_FLAGS) --product serval

serve: model build
	$(BIN) launch-server --model-path "$$(scripts/fetch-default-model)" --host 127.0.0.1 --port $(PORT)

# Python test clients (openai, requests, pytest) go into a private folder so the
# system's packages are untouched.
pydeps:
	@mkdir -p $(PYDEPS)
	@$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(PYDEPS) --upgrade openai requests pytest jsonschema >/dev/null

test: lint model pydeps
	swift build $(SWIFT_FLAGS) --build-tests
	$(MAKE) test-swift test-integration

test-swift:
	SERVAL_MODEL="$$(scripts/fetch-default-model)" SERVAL_BIN="$(CURDIR)/$(BIN)" swift test $(SWIFT_FLAGS) --skip-build

test-integration:
	SERVAL_MODEL="$$(scripts/fetch-default-model)" SERVAL_BIN="$(CURDIR)/$(BIN)" \
	  PYTHONPATH="$(CURDIR)/$(PYDEPS)" $(PYTHON) -m pytest -q -rs -p no:cacheprovider tests/integration

# The tree stays formatted (.swift-format: 4 spaces, 120 columns); `swift format -i -r Sources Tests` fixes it.
lint:
	swift format lint --strict --recursive Sources Tests Package.swift

# A stripped static binary (for the GPU machine, which has no Swift).
release-static:
	swift build -c release --static-swift-stdlib --product serval
	strip -o .build/serval-static .build/release/serval

clean:
	rm -rf .build
