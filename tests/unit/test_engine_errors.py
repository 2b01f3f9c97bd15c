"""Transport failures in sentences (issue 24, outcome 3): what TLS, urllib3 and ssh said, as the user reads it,
never `HTTPSConnectionPool(...): Max retries exceeded ...`."""

from __future__ import annotations

import pytest

from reconciler.drivers.engine.errors import reason
from reconciler.drivers.engine.ssh import ssh_reason

POOL = "HTTPSConnectionPool(host='10.213.0.11', port=2376): Max retries exceeded with url: /version (Caused by "


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (
            POOL + "SSLError(SSLError(116, '[X509: KEY_VALUES_MISMATCH] key values mismatch (_ssl.c:3921)')))",
            "TLS: the client key does not belong to the client certificate (spec.tls.key)",
        ),
        (
            POOL + "SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
            "unable to get local issuer certificate (_ssl.c:1006)')))",
            "TLS: the engine's certificate is not signed by the Host's CA",
        ),
        (
            POOL + "SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
            "certificate has expired (_ssl.c:1006)')))",
            "TLS: the engine's certificate has expired",
        ),
        (
            POOL + "SSLError(SSLError(1, '[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca (_ssl.c:2580)')))",
            "TLS: the engine does not trust the client certificate (signed by another CA)",
        ),
        (
            POOL + "SSLError(SSLError(1, '[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate')))",
            "TLS: the engine refused the client certificate",
        ),
        (
            POOL
            + "SSLError(SSLError(1, '[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required')))",
            "TLS: the engine wants a client certificate",
        ),
        (
            POOL
            + "SSLError(SSLEOFError(8, '[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation of protocol')))",
            "TLS: the engine closed the connection during the handshake",
        ),
        (
            POOL + "ConnectTimeoutError(<urllib3.connection.HTTPSConnection object>, 'Connection to 10.213.0.11 timed "
            "out. (connect timeout=10)'))",
            "timed out",
        ),
        (
            "HTTPSConnectionPool(host='10.213.0.11', port=2376): Read timed out. (read timeout=120)",
            "the engine did not answer in time",
        ),
        (
            "('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))",
            "the engine closed the connection without answering",
        ),
        (
            "('Connection aborted.', ConnectionAbortedError('the ssh connection to the engine was closed'))",
            "the ssh connection to the engine was closed",
        ),
    ],
)
def test_tls_and_transport_failures_are_sentences(raw: str, said: str) -> None:
    assert reason(Exception(raw)) == said


@pytest.mark.parametrize(
    ("stderr", "said"),
    [
        ("Host key verification failed.", "the Host's host key is unknown or changed; add it to known_hosts"),
        (
            "@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@@@@\n"
            "Host key verification failed.",
            "the Host's host key changed (a new machine, or someone between)",
        ),
        ("root@10.213.0.12: Permission denied (publickey).", "the Host refused the login (key not authorized"),
        ("ssh: connect to host 10.9.9.9 port 22: Connection timed out", "timed out connecting to the Host"),
        ("ssh: connect to host 10.213.0.12 port 22: Connection refused", "nothing listens on the Host's ssh port"),
        ("ssh: Could not resolve hostname nope: Name or service not known", "unknown host name"),
        ("bash: line 1: docker: command not found", "no docker CLI on the Host"),
        (
            "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock",
            "this user may not use the Host's engine",
        ),
        ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock.", "the Host's Docker engine is not"),
    ],
)
def test_ssh_failures_are_sentences(stderr: str, said: str) -> None:
    last = stderr.splitlines()[-1]
    assert ssh_reason(stderr, last).startswith(said)
    assert ssh_reason(stderr, last).endswith(f"({last[:120]})")


def test_an_unknown_ssh_failure_keeps_its_last_line() -> None:
    assert ssh_reason("something odd\nkex_exchange_identification: read: Connection reset", "x" * 300) == "x" * 200
