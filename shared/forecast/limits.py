"""The forecaster's bounds and defaults, apart so that model families and the forecaster share them.

Each constant states its unit and where it comes from. This module imports nothing, which is
what lets :mod:`shared.forecast.families` and :mod:`shared.forecast.forecaster` both depend on
it without importing each other.

``MAX_ABS_Z`` derivation: for a Laplace-distributed standardised return (one-minute returns
are close to Laplace; scale ``b = 1/sqrt(2)`` at unit variance, density ``1 / (2b)`` at the
median) the conditional median moves by ``2 b (p - 1/2)`` when the probability of an up
minute is ``p``. A directional edge above 5 points (``p = 0.55``) at one minute is beyond
anything the efficient-market literature reports, so ``MAX_ABS_Z = sqrt(2) * 0.05`` ≈ 0.071.

>>> round(MAX_ABS_Z, 4)
0.0707
"""

from __future__ import annotations

import math

DEFAULT_INTERVAL_LEVEL = 0.9
"""Default coverage of the prediction interval (90 %)."""
MAX_ABS_EDGE = 0.05
"""Largest plausible one-minute directional edge ``p - 1/2`` (see the module docstring)."""
MAX_ABS_Z = 2.0 * (1.0 / math.sqrt(2.0)) * MAX_ABS_EDGE
"""Cap on the model's forecast of ``z = r / sigma`` (≈ 0.0707)."""
Z_CLIP = 5.0
"""Labels ``z`` are winsorised to ``±Z_CLIP`` before learning (five standard units)."""
MIN_SCALE = 1e-5
"""Floor of ``sigma`` (0.1 basis point), so flat markets cannot divide by zero."""
DEFAULT_MAX_ABS_RETURN = 0.05
"""Cap on a served one-minute log return and on the interval bounds (≈ ±5 % of the last close)."""
DRIFT_DELTA = 0.002
"""ADWIN's confidence parameter (River's and Bifet & Gavaldà's default)."""
