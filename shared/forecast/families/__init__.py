"""Model families of the forecaster, one module each, selectable by name.

Each family module defines ``NAME``, ``DESCRIPTION`` and ``build()`` returning a fresh River
regressor of the volatility-scaled next-minute return. :func:`shared.forecast.forecaster.make_forecaster`
wraps it with the guard, the interval and the drift detector.

>>> MODEL_NAMES
('linear', 'tree')
"""

from __future__ import annotations

from types import ModuleType

from shared.forecast.families import linear, tree

FAMILIES: dict[str, ModuleType] = {module.NAME: module for module in (linear, tree)}
"""Family name -> module."""
MODEL_NAMES: tuple[str, ...] = tuple(FAMILIES)
"""Valid model family names; the first is the default."""
DEFAULT_MODEL = MODEL_NAMES[0]


def family(name: str = "") -> ModuleType:
    """The family module called ``name`` (``""`` = :data:`DEFAULT_MODEL`).

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`MODEL_NAMES`; the message lists them.
    """
    key = (name or DEFAULT_MODEL).strip().lower()
    if key not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    return FAMILIES[key]
