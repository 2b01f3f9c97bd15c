"""`reconcile watch`: the loop, its triggers, retry memory, last-good manifests, status page, metrics."""
