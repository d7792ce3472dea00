"""lvc — a learned video codec toolkit.

The public API mirrors the CLI: :func:`encode`, :func:`decode` and :func:`info`.
Heavy modules are imported lazily so ``import lvc`` stays cheap and has no side effects.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["encode", "decode", "info", "__version__"]


def __getattr__(name: str):
    if name in ("encode", "decode", "info"):
        from lvc.codec import api

        return getattr(api, name)
    raise AttributeError(f"module 'lvc' has no attribute {name!r}")
