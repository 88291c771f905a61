# The README's two commands. Both need only python3, java (17+) and mvn on a fresh machine: the venv is
# created here, and the local Kafka is fetched and started by the worker / the test session.
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test

run: $(STAMP)
	exec $(VENV)/bin/inbound-audit worker

test: $(STAMP)
	$(VENV)/bin/python -m pytest

# Re-install only when the dependencies may have changed.
$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# The Strimzi KafkaTopic resources of deploy/k8s, generated from topics/topics.toml with the default
# settings and 3 replicas, whatever this shell's INBOUND_AUDIT_* say (a test checks the committed file).
deploy/k8s/topics.yaml: topics/topics.toml pipeline/kafka/strimzi.py pipeline/kafka/topic_specs.py $(STAMP)
	env -i PATH="$$PATH" INBOUND_AUDIT_REPLICATION_FACTOR=3 $(VENV)/bin/python -m pipeline.kafka.strimzi >$@
