"""The optional compiled module (``pipeline_native``, the Rust crate in ``pipeline/native``).

Built where ``cargo`` was on PATH at install time, like aiokafka's C extension: everything it does
has a pure-Python reference beside it (``decoding.py``, ``prefix_counts.py``), used when it is
missing and held to the same results by the differential tests.
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["NATIVE"]


def _import_native() -> ModuleType | None:
    try:
        import pipeline_native
    except ImportError:
        return None
    return pipeline_native


#: The compiled module, or None when it was not built (no cargo at install time).
NATIVE = _import_native()
