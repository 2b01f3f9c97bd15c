"""The dead-code check's allow-list: names vulture reports unused that are used where it cannot see.

scripts/test runs `vulture` over reconciler/ and this file (the paths are in pyproject.toml, [tool.vulture]);
vulture matches by name, so each line below marks one name as used. Every entry says who uses it. Nothing imports
this file. Before adding a name, check that it is really used: code that nothing calls is deleted instead.
"""
# ruff: noqa: B018

from types import SimpleNamespace

_ = SimpleNamespace()

# Driver classes: loaded by name from the entry points in pyproject.toml and core/plugins.BUILTIN_DRIVERS.
_.ImageDriver
_.VolumeDriver
_.NetworkDriver
_.ContainerDriver
_.FirewallDriver
_.ServiceDriver
_.SecretDriver
_.ConfigDriver

# Part of the driver contract for drivers of other distributions (docs/drivers.md names it).
_.PROGRESS_STATES

# Called by the standard library or a third-party library by name.
_.__getattr__  # drivers/engine/lazy.py: the module's attribute hook (PEP 562)
_.on_any_event  # watch/triggers.py: watchdog's FileSystemEventHandler
_.do_GET  # watch/metrics.py: BaseHTTPRequestHandler dispatches on do_<METHOD>
_.do_HEAD
_.do_POST
_.do_PUT
_.do_DELETE
_.do_PATCH
_.do_OPTIONS
_.do_TRACE
_.do_CONNECT
_.log_message  # watch/metrics.py: BaseHTTPRequestHandler's log hook, overridden to keep quiet
_.format  # its parameter, named as in the base class
_.address_family  # watch/metrics.py: socketserver reads it to open an IPv6 socket
_.daemon_threads  # watch/metrics.py: socketserver's ThreadingMixIn reads it

# Attributes set on library objects, read by the library.
_.trust_env  # requests.Session: no proxy or netrc from the environment (engine client, registry session)
_.autocommit  # python-iptables Table: batch the rule changes of a pass
_._content  # requests.Response: the body of a response built by drivers/engine/retry.py

# Read through getattr: drivers/container/fields.py or_image("working_dir"), or_image("healthcheck").
_.working_dir
_.healthcheck

# The Container field table's documented exceptions (docs/containers.md); tests/unit/test_container_fields.py
# checks them against the table and the schema.
_.NOT_CREATED
_.NOT_FIELDS

# Read only by the tests (kept as the tested surface of their module).
_.hits  # drivers/engine/remembered.py: answers served from memory (tests/unit/test_remembered.py)
_.enforced_view  # drivers/firewall/observe.py (tests/unit/test_firewall_rules.py)
_.list_name  # drivers/firewall/rules.py (tests/unit/test_firewall_rules.py)

# drivers/swarm/observe.py: ServiceState fields nothing reads yet; `status` is to report a paused or rolled-back
# update as not in sync with them (issue 24, item 1).
_.update_state
_.update_message

_.close_connection  # watch/metrics.py: read by BaseHTTPRequestHandler after each request
