# Two commands on a fresh machine (root, Debian): `make demo` and `make test`.
# Each installs what it needs first (apt + a venv in .venv); re-runs skip what is present.

VENV    ?= .venv
PY      := $(VENV)/bin/python
# binary:package pairs; only the packages whose binary is missing are installed (npm is
# normally there with Node.js; Debian's npm would conflict with a NodeSource nodejs).
APT_NEEDS := radosgw:radosgw ceph-mon:ceph-mon ceph-osd:ceph-osd ceph:ceph-common openssl:openssl \
             unshare:util-linux curl:curl npm:npm promtool:prometheus setpriv:util-linux
LS03_DIR := .work/litestream-0.3

.PHONY: deps venv test test-fast lint demo image bench manifests clean coverage monitoring

deps: venv
	@missing=""; for need in $(APT_NEEDS); do command -v $${need%%:*} >/dev/null || missing="$$missing $${need#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# Litestream 0.3.13 (for the 0.3-replica restore test), shipped by Fly's npm package.
	@[ -x $(LS03_DIR)/node_modules/@flydotio/litestream-linux-x64/litestream ] || \
	  (mkdir -p $(LS03_DIR) && cd $(LS03_DIR) && npm install --silent --no-audit --no-fund @flydotio/litestream-linux-x64@1.0.1 >/dev/null)

venv: $(VENV)/.installed supervisor/_botocore_data/VERSION $(VENV)/.optimized
	@$(PY) -OO -m compileall -q supervisor >/dev/null

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# botocore's S3/STS models cut to what the supervisor calls (supervisor/identity/clients.py), for the
# installed botocore: written once here rather than parsed whole by every process.
supervisor/_botocore_data/VERSION: $(VENV)/.installed
	$(PY) -m supervisor.identity.clients

# The image runs Python with -OO (PYTHONOPTIMIZE=2) and so do the tests and the bench
# (tests/bed/pod.py): its bytecode compiled once, for the stdlib too, rather than per process.
$(VENV)/.optimized: $(VENV)/.installed
	$(PY) -OO -m compileall -q -j0 -x '/(test|tests|lib2to3|idlelib)/' \
	  $$($(PY) -c 'import sysconfig; print(sysconfig.get_path("stdlib"), sysconfig.get_path("purelib"))') >/dev/null \
	  || echo "note: some bytecode could not be precompiled at -OO (only process start-up is slower)"
	touch $@

# Two workers, each with its own bed: the end-to-end tests mostly wait (on the store, on timers),
# so two share this 2-core machine well (15 min -> 12). PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
test: deps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -q tests/unit

lint: venv
	$(VENV)/bin/ruff check .

demo: deps
	$(PY) -m demo

image: deps
	bash images/build-and-test.sh

bench: deps
	@$(PY) -c "import matplotlib" 2>/dev/null || $(VENV)/bin/pip install -q -e '.[bench]'
	$(PY) -m bench

manifests: venv
	$(PY) manifests/generate.py

clean:
	rm -rf .work bench/.work

coverage: venv
	$(PY) -m coverage run --source=supervisor -m pytest -q -p no:cacheprovider tests/unit
	$(PY) -m coverage report

monitoring: venv
	$(PY) manifests/monitoring/generate.py
