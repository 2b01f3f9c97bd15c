"""The request-counting proxy of bench/counting_proxy.py (one module, shared by the benchmark and the tests)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_PATH = Path(__file__).resolve().parent.parent / "bench" / "counting_proxy.py"


def counting_proxy() -> ModuleType:
    """bench/counting_proxy.py as a module (bench/ is not a package)."""
    name = "counting_proxy"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _PATH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def stack(project: str, n: int, image: str) -> str:
    """N sleeping containers on one network: the stack the request-count tests measure at several sizes."""
    docs = [f"apiVersion: reconciler/v1\nkind: Network\nmetadata: {{name: {project}-net}}\n"]
    docs += [
        "apiVersion: reconciler/v1\nkind: Container\n"
        f"metadata: {{name: {project}-c{i}}}\n"
        f"spec:\n  image: {image}\n  command: [sleep, '3600']\n  networks: [{{name: {project}-net}}]\n"
        "  stopTimeout: 1\n"
        for i in range(n)
    ]
    return "---\n".join(docs)
