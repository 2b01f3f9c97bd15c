"""Driver plugins: one per kind, found through the `reconciler.drivers` entry-point group."""
