"""reconciler: declarative reconciliation controller for Docker hosts."""

__version__ = "0.1.0"
