"""The one translation of docker-py and transport errors into the contract's error classes.

Errors a retry may cure (engine 5xx, registry unreachable) become TemporaryError, an unreachable engine
EngineUnavailable, everything else PermanentError; each message names what was being done.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from reconciler.drivers.engine import lazy
from reconciler.drivers.engine.retry import never_sent
from reconciler.errors import EngineUnavailable, PermanentError, TemporaryError

_RETRYABLE = ("connection refused", "i/o timeout", "timeout", "tls handshake", "no route to host", "eof")
_AUTH = ("unauthorized", "denied", "authentication required", "access to the resource")
_DNS = ("no such host", "server misbehaving", "name or service not known")


def explain(exc: lazy.APIError) -> str:
    """The engine's own message of an API error."""
    text = exc.explanation
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text or exc).strip()


_TLS_REASONS = (
    ("CERTIFICATE_VERIFY_FAILED", "TLS: the engine's certificate is not signed by the Host's CA"),
    ("hostname mismatch", "TLS: the engine's certificate is not for this address"),
    ("IP address mismatch", "TLS: the engine's certificate is not for this address"),
    ("unknown ca", "TLS: the engine does not trust the client certificate"),
    ("bad certificate", "TLS: the engine refused the client certificate"),
    ("certificate required", "TLS: the engine wants a client certificate"),
    ("WRONG_VERSION_NUMBER", "TLS: the engine does not speak TLS on this port"),
)


def reason(exc: BaseException) -> str:
    """A short reason for a transport failure."""
    text = str(exc)
    for marker, said in _TLS_REASONS:
        if marker.lower() in text.lower():
            return said
    for marker in ("Connection refused", "No such file or directory", "Permission denied", "timed out"):
        if marker in text:
            return marker.lower()
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
        if (exc.status_code or 0) >= 500 and "already" not in message:
            raise TemporaryError(f"{what}: {message}") from None
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
            raise TemporaryError(f"{what}: the connection to the engine was lost: {reason(exc)}") from None
        raise EngineUnavailable(f"{what}: engine unreachable: {reason(exc)}") from None
    except lazy.DockerException as exc:
        raise PermanentError(f"{what}: {exc}") from None
