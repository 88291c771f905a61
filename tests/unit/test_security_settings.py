"""Security settings: parsed from the environment, refused with one line naming the variable, turned
into the same client arguments for aiokafka and Faust, and the password never shown."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from pipeline.errors import ConfigError
from pipeline.kafka.connection import client_options, faust_broker_options
from pipeline.settings import Secret, load_settings

PASSWORD = "s3cret-Passw0rd"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, and a client certificate and key it signed (for mTLS), made with openssl."""
    d = tmp_path_factory.mktemp("pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=mta-1",
            "-keyout", str(d / "client.key"), "-out", str(d / "client.csr"))  # fmt: skip
    openssl("x509", "-req", "-in", str(d / "client.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-days", "1", "-out", str(d / "client.crt"))  # fmt: skip
    (d / "password").write_text(PASSWORD + "\n")
    (d / "not-pem").write_text("this is not a certificate\n")
    return {p.name: p for p in d.iterdir()}


def _sasl_ssl(pki: dict[str, Path], **extra: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": "kafka-0.example:9094,kafka-1.example:9094",
        "INBOUND_AUDIT_SECURITY_PROTOCOL": "sasl_ssl",
        "INBOUND_AUDIT_SASL_USERNAME": "mta",
        "INBOUND_AUDIT_SASL_PASSWORD_FILE": str(pki["password"]),
        "INBOUND_AUDIT_SSL_CAFILE": str(pki["ca.crt"]),
        **extra,
    }


def test_plaintext_is_the_default_and_needs_nothing_else() -> None:
    settings = load_settings({})
    assert client_options(settings) == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    assert client_options(settings, "10.0.0.1:9092")["bootstrap_servers"] == "10.0.0.1:9092"
    assert faust_broker_options(settings) == {"broker": ["kafka://127.0.0.1:9092"]}


def test_sasl_ssl_options_carry_the_credentials_and_a_verifying_context(pki: dict[str, Path]) -> None:
    options = client_options(load_settings(_sasl_ssl(pki, INBOUND_AUDIT_SASL_MECHANISM="scram-sha-256")))
    context = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": "kafka-0.example:9094,kafka-1.example:9094",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "mta",
        "sasl_plain_password": PASSWORD,  # from the file, without its newline
    }
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "test CA"),),)]


def test_hostname_check_can_be_turned_off_but_the_chain_is_still_verified(pki: dict[str, Path]) -> None:
    context = client_options(load_settings(_sasl_ssl(pki, INBOUND_AUDIT_SSL_CHECK_HOSTNAME="false")))["ssl_context"]
    assert not context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_mtls_loads_the_client_certificate_and_refuses_a_key_that_does_not_match(pki: dict[str, Path]) -> None:
    env = {
        "INBOUND_AUDIT_SECURITY_PROTOCOL": "SSL",
        "INBOUND_AUDIT_SSL_CAFILE": str(pki["ca.crt"]),
        "INBOUND_AUDIT_SSL_CERTFILE": str(pki["client.crt"]),
        "INBOUND_AUDIT_SSL_KEYFILE": str(pki["client.key"]),
    }
    assert client_options(load_settings(env))["security_protocol"] == "SSL"
    wrong_key = load_settings({**env, "INBOUND_AUDIT_SSL_KEYFILE": str(pki["ca.key"])})
    with pytest.raises(ConfigError, match=r"cannot load the TLS files \(.*INBOUND_AUDIT_SSL_KEYFILE="):
        client_options(wrong_key)


def test_a_ca_file_that_is_not_pem_is_a_config_error(pki: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="INBOUND_AUDIT_SSL_CAFILE="):
        client_options(load_settings(_sasl_ssl(pki, INBOUND_AUDIT_SSL_CAFILE=str(pki["not-pem"]))))


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SSL", "PLAINTEXT"])
def test_faust_gets_what_the_aiokafka_clients_get(pki: dict[str, Path], protocol: str) -> None:
    env = _sasl_ssl(pki, INBOUND_AUDIT_SECURITY_PROTOCOL=protocol)
    if protocol != "SASL_SSL":
        env = {k: v for k, v in env.items() if "SASL" not in k}
    if protocol == "PLAINTEXT":
        env.pop("INBOUND_AUDIT_SSL_CAFILE")
    settings = load_settings(env)
    faust_options = faust_broker_options(settings)
    assert faust_options["broker"] == ["kafka://kafka-0.example:9094", "kafka://kafka-1.example:9094"]
    from_faust = dict(credentials_to_aiokafka_auth(faust_options.get("broker_credentials")))
    ours = client_options(settings)
    for options in (from_faust, ours):
        context = options.pop("ssl_context", None)
        assert (context is not None) == (protocol != "PLAINTEXT")
    ours.pop("bootstrap_servers")
    assert from_faust == ours


def test_the_password_is_never_shown(pki: dict[str, Path]) -> None:
    settings = load_settings(_sasl_ssl(pki))
    assert settings.sasl_password == Secret(PASSWORD)
    for text in (repr(settings), str(settings), repr(settings.sasl_password), f"{settings.sasl_password}"):
        assert PASSWORD not in text
    with pytest.raises(ConfigError) as refused:
        load_settings({**_sasl_ssl(pki), "INBOUND_AUDIT_SASL_PASSWORD": PASSWORD})
    assert PASSWORD not in str(refused.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"INBOUND_AUDIT_SECURITY_PROTOCOL": "TLS"},
            "INBOUND_AUDIT_SECURITY_PROTOCOL='TLS' is invalid: must be one of",
        ),
        ({"INBOUND_AUDIT_SASL_MECHANISM": "GSSAPI"}, "INBOUND_AUDIT_SASL_MECHANISM='GSSAPI' is invalid"),
        ({"INBOUND_AUDIT_SSL_CHECK_HOSTNAME": "maybe"}, "INBOUND_AUDIT_SSL_CHECK_HOSTNAME='maybe' is invalid"),
        ({"INBOUND_AUDIT_SASL_USERNAME": ""}, "INBOUND_AUDIT_SASL_USERNAME is required"),
        (
            {"INBOUND_AUDIT_SASL_PASSWORD_FILE": ""},
            "INBOUND_AUDIT_SASL_PASSWORD (or INBOUND_AUDIT_SASL_PASSWORD_FILE) is required",
        ),
        ({"INBOUND_AUDIT_SASL_PASSWORD": "x"}, "set INBOUND_AUDIT_SASL_PASSWORD or INBOUND_AUDIT_SASL_PASSWORD_FILE"),
        ({"INBOUND_AUDIT_SASL_PASSWORD_FILE": "/nonexistent/pw"}, "INBOUND_AUDIT_SASL_PASSWORD_FILE='/nonexistent/pw'"),
        ({"INBOUND_AUDIT_SSL_CAFILE": "/nonexistent/ca.crt"}, "INBOUND_AUDIT_SSL_CAFILE='/nonexistent/ca.crt' is"),
        ({"INBOUND_AUDIT_SECURITY_PROTOCOL": "SSL"}, "does not use SASL"),
        ({"INBOUND_AUDIT_SSL_KEYFILE": "{password}"}, "INBOUND_AUDIT_SSL_KEYFILE needs INBOUND_AUDIT_SSL_CERTFILE"),
    ],
)
def test_bad_security_settings_name_the_variable(pki: dict[str, Path], env: dict[str, str], message: str) -> None:
    full = _sasl_ssl(pki, **{k: v.format(password=pki["password"]) for k, v in env.items()})
    with pytest.raises(ConfigError) as refused:
        load_settings(full)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_tls_files_without_tls_are_refused(pki: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="INBOUND_AUDIT_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use TLS"):
        load_settings(_sasl_ssl(pki, INBOUND_AUDIT_SECURITY_PROTOCOL="SASL_PLAINTEXT"))


def test_the_cli_stops_on_a_bad_security_setting_with_one_line() -> None:
    env = {**os.environ, "INBOUND_AUDIT_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    env.pop("INBOUND_AUDIT_SASL_USERNAME", None)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "topics"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "inbound-audit: INBOUND_AUDIT_SASL_USERNAME is required with INBOUND_AUDIT_SECURITY_PROTOCOL=SASL_SSL"
    ]
