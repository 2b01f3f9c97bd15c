"""The one translation of docker-py and transport errors into the contract's error classes.

Errors a retry may cure (engine 5xx, registry unreachable) become TemporaryError, an unreachable engine
EngineUnavailable, everything else PermanentError; each message names what was being done.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from reconciler.drivers.engine import lazy
from reconciler.drivers.engine.retry import never_sent, spec_refusal
from reconciler.errors import EngineFault, EngineUnavailable, PermanentError, TemporaryError

_RETRYABLE = ("connection refused", "i/o timeout", "timeout", "tls handshake", "no route to host", "eof")
_AUTH = ("unauthorized", "denied", "authentication required", "access to the resource")
_DNS = ("no such host", "server misbehaving", "name or service not known")


def explain(exc: lazy.APIError) -> str:
    """The engine's own message of an API error."""
    text = exc.explanation
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text or exc).strip()


# The transport's words (OpenSSL's, urllib3's, http.client's) and what they mean, first match wins: the more
# specific before the general ("certificate has expired" is also a CERTIFICATE_VERIFY_FAILED).
_TLS_REASONS = (
    ("certificate has expired", "TLS: the engine's certificate has expired"),
    ("certificate expired", "TLS: the engine refused the client certificate: it has expired"),
    ("hostname mismatch", "TLS: the engine's certificate is not for this address"),
    ("IP address mismatch", "TLS: the engine's certificate is not for this address"),
    ("CERTIFICATE_VERIFY_FAILED", "TLS: the engine's certificate is not signed by the Host's CA"),
    ("KEY_VALUES_MISMATCH", "TLS: the client key does not belong to the client certificate (spec.tls.key)"),
    ("PEM lib", "TLS: a client certificate or key file is not PEM"),
    ("unknown ca", "TLS: the engine does not trust the client certificate (signed by another CA)"),
    ("bad certificate", "TLS: the engine refused the client certificate"),
    ("certificate unknown", "TLS: the engine refused the client certificate"),
    ("certificate required", "TLS: the engine wants a client certificate"),
    ("WRONG_VERSION_NUMBER", "TLS: the engine does not speak TLS on this port"),
    ("EOF occurred in violation of protocol", "TLS: the engine closed the connection during the handshake"),
)
_TRANSPORT_REASONS = (
    ("Read timed out", "the engine did not answer in time"),
    ("timed out", "timed out"),
    ("Connection refused", "connection refused"),
    ("No such file or directory", "no such file or directory"),
    ("Permission denied", "permission denied"),
    ("RemoteDisconnected", "the engine closed the connection without answering"),
    ("Remote end closed connection", "the engine closed the connection without answering"),
    ("ssh connection to the engine", "the ssh connection to the engine was closed"),
    ("Connection reset", "the connection was reset"),
    ("Broken pipe", "the connection was closed"),
    ("BrokenPipeError", "the connection was closed"),
    ("Name or service not known", "unknown host name"),
    ("No route to host", "no route to host"),
    ("Network is unreachable", "network unreachable"),
)


def reason(exc: BaseException) -> str:
    """A short reason for a transport failure: a sentence for what TLS or the connection said, never urllib3's
    `HTTPSConnectionPool(...): Max retries exceeded ...`."""
    text = str(exc)
    lowered = text.lower()
    for marker, said in _TLS_REASONS + _TRANSPORT_REASONS:
        if marker.lower() in lowered:
            return said
    return text.splitlines()[0][:200] if text else type(exc).__name__


def registry_failure(where: str, message: str) -> PermanentError | TemporaryError:
    """An engine message about a registry, as a clear retryable or permanent error."""
    lowered = message.lower()
    if any(m in lowered for m in _DNS):
        return PermanentError(f"{where}: unknown registry host: {message}")
    if any(m in lowered for m in _AUTH):
        return PermanentError(f"{where}: the registry refused access: {message}")
    if "manifest unknown" in lowered or "not found" in lowered:
        return PermanentError(f"{where}: not found in the registry: {message}")
    if any(m in lowered for m in _RETRYABLE):
        return TemporaryError(f"{where}: registry unreachable: {message}")
    return PermanentError(f"{where}: {message}")


# The engine's words for an object someone else is removing: whatever the plan wanted of it, the next pass re-plans
# from its absence (`docker rm -f` kills first, so a pass started by the kill's events may try to start it).
_BEING_REMOVED = ("already in progress", "marked for removal")


@contextmanager
def engine_errors(what: str, registry: bool = False) -> Iterator[None]:
    """Translate the errors of the engine calls inside into ReconcileErrors naming `what`; `registry` calls
    (pull, push) get the registry's wording."""
    try:
        yield
    except lazy.NotFound as exc:
        if registry:
            raise registry_failure(what, explain(exc)) from None
        raise PermanentError(f"{what}: {explain(exc)}") from None
    except lazy.APIError as exc:
        message = explain(exc)
        if registry:
            raise registry_failure(what, message) from None
        if (exc.status_code or 0) >= 500 and "already" not in message and not spec_refusal(message):
            raise EngineFault(f"{what}: {message}") from None
        if any(m in message for m in _BEING_REMOVED):  # the engine is busy with the object (a removal someone
            raise TemporaryError(f"{what}: {message}") from None  # started): the next pass sees it gone
        raise PermanentError(f"{what}: {message}") from None
    except (lazy.requests.ConnectionError, lazy.requests.Timeout) as exc:
        if (
            isinstance(exc, lazy.requests.ConnectionError)
            and not isinstance(exc, lazy.requests.Timeout)
            and not never_sent(exc)
        ):
            # sent, then the connection dropped: the engine may have acted; the next pass observes and re-plans
            raise EngineFault(f"{what}: the connection to the engine was lost: {reason(exc)}") from None
        raise EngineUnavailable(f"{what}: engine unreachable: {reason(exc)}") from None
    except lazy.DockerException as exc:
        raise PermanentError(f"{what}: {exc}") from None
