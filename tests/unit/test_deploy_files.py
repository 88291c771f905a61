"""The files of deploy/, checked offline: the compose file against the compose spec, the Kubernetes
manifests against Kubernetes' schemas, the Strimzi topics against topics/topics.toml, and what the
README promises of the image, the workers and the ACLs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from pipeline.kafka.strimzi import API_VERSION, render
from pipeline.kafka.topic_specs import TOPICS_FILE
from pipeline.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
#: How the committed topics.yaml is generated (the Makefile's target says the same).
GENERATED_WITH = {"INBOUND_AUDIT_REPLICATION_FACTOR": "3"}

#: The part of Strimzi's KafkaTopic CRD (v1beta2) the generator writes, strictly.
KAFKA_TOPIC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "kafka.strimzi.io/v1beta2"},
        "kind": {"const": "KafkaTopic"},
        "metadata": {
            "type": "object",
            "required": ["name", "labels"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"},
                "labels": {"type": "object", "required": ["strimzi.io/cluster"]},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "topicName": {"type": "string"},
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
            },
        },
    },
}


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, timeout=120, check=False)


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def test_compose_file_validates_against_the_compose_spec(tmp_path: Path) -> None:
    done = _run("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "compose.yaml"  # the validator does reject what the spec forbids
    broken.write_text("services:\n  worker:\n    image: x\n    no_such_key: true\n")
    assert _run("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(broken)).returncode == 1


def test_compose_runs_kafka_in_kraft_mode_and_two_workers_with_the_same_settings() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    workers = [s for name, s in services.items() if name.startswith("worker-")]
    assert len(workers) == 2
    assert workers[0]["environment"] == workers[1]["environment"] == services["topics"]["environment"]
    assert workers[0]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert all(w["build"]["dockerfile"] == "deploy/Containerfile" for w in workers)


def test_kubernetes_manifests_validate_against_the_kubernetes_schemas(tmp_path: Path) -> None:
    manifests = [str(DEPLOY / "k8s" / name) for name in ("worker.yaml", "prometheus.yaml")]
    done = _run("kubernetes-validate", "--strict", "--quiet", *manifests)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.yaml"
    worker = (DEPLOY / "k8s" / "worker.yaml").read_text(encoding="utf-8")
    broken.write_text(worker.replace("containerPort: 6066", "containerPort: http-port"))
    assert _run("kubernetes-validate", "--strict", "--quiet", str(broken)).returncode != 0


def test_worker_deployment_probes_the_health_endpoints_and_runs_unprivileged() -> None:
    docs = {doc["kind"]: doc for doc in _documents(DEPLOY / "k8s" / "worker.yaml")}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 6066}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    config = docs["ConfigMap"]["data"]
    assert (config["INBOUND_AUDIT_WEB_HOST"], config["INBOUND_AUDIT_WEB_PORT"]) == ("0.0.0.0", "6066")
    offline = {
        "INBOUND_AUDIT_SASL_PASSWORD": "x",
        "INBOUND_AUDIT_SASL_PASSWORD_FILE": "",
        "INBOUND_AUDIT_SSL_CAFILE": "",
    }
    settings = load_settings({**config, **offline})  # the mounted files exist only in the pod
    assert (settings.security_protocol, settings.sasl_username) == ("SASL_SSL", "worker")
    scrape = yaml.safe_load(_documents(DEPLOY / "k8s" / "prometheus.yaml")[0]["data"]["prometheus.yml"])
    (job,) = scrape["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert {"source_labels": ["__meta_kubernetes_endpoint_port_name"], "regex": "http", "action": "keep"} in (
        job["relabel_configs"]
    )


def test_container_image_is_slim_unprivileged_and_installs_like_the_makefile() -> None:
    text = (DEPLOY / "Containerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.1[1-9]-slim$", text, re.MULTILINE)
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["inbound-audit", "worker"]' in text
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")  # the same two steps, without the dev extras
    assert "python3 -m venv $(VENV)" in makefile and "-e '.[dev]'" in makefile
    assert "python3 -m venv .venv" in text and ".venv/bin/python -m pip install --quiet -e ." in text


def test_committed_strimzi_topics_equal_the_generator_output() -> None:
    committed = (DEPLOY / "k8s" / "topics.yaml").read_text(encoding="utf-8")
    assert committed == render(load_settings(GENERATED_WITH), "inbound-audit"), "run: make deploy/k8s/topics.yaml"


def test_strimzi_topics_agree_with_topics_toml() -> None:
    declared = tomllib.loads(TOPICS_FILE.read_text(encoding="utf-8"))["topics"]
    resources = _documents(DEPLOY / "k8s" / "topics.yaml")
    settings = load_settings(GENERATED_WITH)
    assert [r["metadata"]["annotations"]["inbound-audit/topic-role"] for r in resources] == list(declared)
    for resource, (role, decl) in zip(resources, declared.items(), strict=True):
        jsonschema.validate(resource, KAFKA_TOPIC_SCHEMA)
        spec = resource["spec"]
        assert resource["apiVersion"] == API_VERSION
        assert spec["topicName"] == getattr(Settings(), decl["setting"]), role
        assert spec["partitions"] == (settings.partitions if decl["partitions"] == "settings" else decl["partitions"])
        assert spec["replicas"] == 3
        for key, value in decl.get("configs", {}).items():
            assert spec["config"][key] == str(value), (role, key)
        assert set(spec["config"]) == set(decl.get("configs", {})) | set(decl.get("computed", {})), role
    state = next(r["spec"] for r in resources if r["metadata"]["annotations"]["inbound-audit/topic-role"] == "state")
    assert state["config"]["retention.ms"] == str((1800 * 4 + 3600) * 1000)  # longest default monitor + 1 h


@pytest.mark.parametrize("role", ["mta", "policy", "worker", "analytics"])
def test_every_role_has_documented_grants(role: str) -> None:
    done = subprocess.run(
        [str(DEPLOY / "acls.sh"), "--dry-run", role],
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(f"--allow-principal User:{role} " in line for line in lines)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"| `{role}` |" in readme  # the README's ACL table has a row per role
    if role == "mta":
        assert lines == [
            "kafka-acls.sh --bootstrap-server kafka:9092 --add --allow-principal User:mta "
            "--resource-pattern-type literal --operation Write --operation Describe --topic mta.events"
        ]
