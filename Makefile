# The README's two commands. Both need only python3, java (17+) and mvn on a fresh machine: the venv is
# created here, and the local Kafka is fetched and started by the worker / the test session. `make test`
# also installs the Debian packages of the browser and Prometheus tests when missing (deploy/system-deps).
# Where cargo is on PATH the native decoder (pipeline/native) is built into the venv too; without
# it the pure-Python decoder does the same work, slower.
VENV := .venv
STAMP := $(VENV)/.installed
PIP := $(VENV)/bin/python -m pip install --quiet --disable-pip-version-check

.PHONY: run test lint fuzz-decoder system-deps screenshot soak fuzz

run: $(STAMP)
	exec $(VENV)/bin/inbound-audit worker

test: $(STAMP) system-deps
	$(VENV)/bin/python -m pytest

# Style and types, as CI checks them.
lint: $(STAMP)
	$(VENV)/bin/ruff check pipeline tests benchmarks
	$(VENV)/bin/ruff format --check pipeline tests benchmarks
	$(VENV)/bin/mypy pipeline

# chromium, chromium-driver and prometheus from Debian, only when missing (a no-op otherwise).
system-deps:
	deploy/system-deps

# docs/dashboard.png, the README's picture: a worker, `inbound-audit simulate` traffic, headless Chromium.
screenshot: $(STAMP) system-deps
	$(VENV)/bin/python tests/support/dashboard_screenshot.py docs/dashboard.png

# A million mutated event messages through both decoders (needs the native one built).
fuzz-decoder: $(STAMP)
	$(VENV)/bin/python tests/support/decoder_fuzz.py --inputs 1000000

# About 10 minutes of faults (20 SIGKILLs, 5 SIGSTOPs, 5 restarts, 5 joins and leaves, a broker and
# 2 publisher restarts) on a private broker (ports 19492-19493), then every worker's answers checked.
soak: $(STAMP)
	$(VENV)/bin/python tests/support/soak.py

# A million mutated events and requests published to a live worker on a private broker (19592-19593).
fuzz: $(STAMP)
	$(VENV)/bin/python tests/support/worker_fuzz.py --inputs 1000000

# Re-install only when the dependencies or the native sources may have changed.
$(STAMP): pyproject.toml pipeline/native/pyproject.toml pipeline/native/Cargo.toml $(wildcard pipeline/native/src/*.rs)
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(PIP) -e '.[dev]'
	if command -v cargo >/dev/null; then $(PIP) ./pipeline/native; \
	else echo "cargo not found: the native decoder is not built, the Python decoder will be used"; fi
	touch $@

# The Strimzi KafkaTopic resources of deploy/k8s, generated from topics/topics.toml with the default
# settings and 3 replicas, whatever this shell's INBOUND_AUDIT_* say (a test checks the committed file).
deploy/k8s/topics.yaml: topics/topics.toml pipeline/kafka/strimzi.py pipeline/kafka/topic_specs.py $(STAMP)
	env -i PATH="$$PATH" INBOUND_AUDIT_REPLICATION_FACTOR=3 $(VENV)/bin/python -m pipeline.kafka.strimzi >$@
