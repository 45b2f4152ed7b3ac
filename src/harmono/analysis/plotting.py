"""Lazy access to matplotlib, the ``plots`` extra."""

from __future__ import annotations

from types import ModuleType


def pyplot() -> ModuleType:
    """Return ``matplotlib.pyplot`` on the non-interactive Agg backend.

    Raises
    ------
    ImportError
        When matplotlib is missing, naming the extra that provides it.
    """
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plotting needs matplotlib: install the plots extra, `pip install 'harmono[plots]'`"
        ) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
