"""The engine-agnostic core: manifests in, a plan out, the plan applied through drivers."""
