# The two entry points of the README: `make serve` and `make test`.
# Both install everything first (system tools the sandbox needs, then a .venv), so a fresh
# Linux machine with Python 3.11 needs nothing else.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install serve test lint typecheck pytest sysdeps testdeps clean

serve: install
	$(BIN)/burrow serve --local-model

test: install testdeps lint typecheck pytest

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

# slirp4netns gives boxes with network="egress" user-mode networking; e2fsprogs formats each
# box's disk image.
sysdeps:
	$(call apt_missing,system,\
	  command -v slirp4netns >/dev/null || missing="$$missing slirp4netns"; \
	  command -v mkfs.ext4 >/dev/null || missing="$$missing e2fsprogs"; \
	  command -v unshare >/dev/null || missing="$$missing util-linux";)

# Only the tests need a browser: the dashboard test drives Debian's headless chromium through
# its chromedriver (never a downloaded one), so `make serve` does not install it.
testdeps:
	$(call apt_missing,test,\
	  [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	  [ -x /usr/bin/chromedriver ] || missing="$$missing chromium-driver";)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip install -q -e '.[dev,local-model]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check gateway boxes tenant_agent knowledge workers burrow tests bench examples

typecheck: install
	$(BIN)/mypy

pytest: install testdeps
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .burrow .pytest_cache .mypy_cache .ruff_cache test-artifacts
