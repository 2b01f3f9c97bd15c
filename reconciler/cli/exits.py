"""Exit statuses of every command (docs/cli.md): 0 done / in sync, 1 error (usage errors too), 2 changes pending
(plan) or not all in sync (status)."""

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2
EXIT_INTERRUPTED = 130  # SIGINT outside `watch` (which stops cleanly with 0)
