"""The regressor's inputs: the sign-carrying features, in volatility units, winsorised.

Which features (no sign bias by construction): a one-minute return has no drift worth
forecasting, so a forecast of its median should flip sign when the past price path is
mirrored (``r -> -r``). The inputs are therefore the features that are *odd* under that
mirror: the returns over 1, 5, 15 and 60 minutes, RSI, the MACD histogram, Bollinger %B
(odd about 0.5) and the distance from the VWAP. Even features -- volatility and ATR levels,
volume, time of day -- and the intercept would let the regression lean to one side for
hours (issue 16: 59-61 % of forecasts sat below the last close). The issue's audit found
the edge in exactly these odd features (short-horizon reversal: bid-ask bounce, R. Roll,
"A simple implicit measure of the effective bid-ask spread", Journal of Finance 39, 1984).

Units: each price-path feature is divided by ``sigma * unit``, where ``unit`` is the
feature's standard deviation per unit of one-minute return volatility under a random walk
(the root sum of squares of its impulse response to one log return, computed below from
the feature's definition), and winsorised to ``±Z_CLIP`` -- as the labels are. So the
inputs are dimensionless and comparable across venues, years and regimes, and a bad print
(a -20 % close that comes back) enters as a 5-unit move instead of a 100-unit one.
``rsi_14`` and ``bb_pctb`` are bounded already and pass as they are.

>>> [round(UNITS[k], 3) for k in ("ret_1", "ret_60", "vwap_dist", "macd_hist")]
[1.0, 7.746, 4.416, 0.338]
"""

from __future__ import annotations

import math

from shared.forecast.limits import Z_CLIP
from shared.stream.features import MACD_FAST, MACD_SIGNAL, MACD_SLOW, RETURN_LAGS, VWAP_WINDOW
from shared.stream.orderflow import FLOW_FEATURES


def _macd_hist_unit(horizon: int = 2_000) -> float:
    """Root sum of squares of the MACD histogram's response to a unit log return (a unit price step).

    ``EMA_n`` of a unit step seen ``j`` bars ago is ``1 - (1 - a_n)^(j+1)`` with ``a_n = 2 / (n + 1)``;
    the histogram is ``MACD - EMA_9(MACD)``. Both are linear filters of the log price, so the
    response to each past return is the response to a step at that lag.
    """
    a_fast, a_slow, a_sig = (2.0 / (n + 1.0) for n in (MACD_FAST, MACD_SLOW, MACD_SIGNAL))
    signal, total = 0.0, 0.0
    for j in range(horizon):
        macd = (1.0 - a_slow) ** (j + 1) - (1.0 - a_fast) ** (j + 1)
        signal += a_sig * (macd - signal)
        total += (macd - signal) ** 2
    return math.sqrt(total)


def _vwap_unit(window: int = VWAP_WINDOW) -> float:
    """Root sum of squares of ``ln(c_t) - mean(ln c_{t-i}, i < window)``'s response to past returns.

    The return ``j`` minutes back (``j = 0`` the newest) enters with weight ``(window - 1 - j) / window``
    (equal volumes; the VWAP's typical price is taken as the close).
    """
    return math.sqrt(sum(((window - 1 - j) / window) ** 2 for j in range(window)))


UNITS: dict[str, float] = {f"ret_{k}": math.sqrt(k) for k in RETURN_LAGS} | {
    "macd_hist": _macd_hist_unit(),
    "vwap_dist": _vwap_unit(),
}
"""Feature -> its standard deviation in units of the one-minute volatility, under a random walk."""
PASSED = ("rsi_14", "bb_pctb")
"""Bounded oscillators, passed as they are."""
MODEL_INPUTS: tuple[str, ...] = (*UNITS, *PASSED)
"""Names of the regressor's inputs, in a stable order (always present)."""
_UNIT_ITEMS = tuple(UNITS.items())
FLOW_INPUTS: tuple[str, ...] = FLOW_FEATURES
"""Optional inputs, present only when the engine runs on ticks (:mod:`shared.stream.orderflow`):
``ofi_1`` (bounded in [-1, 1]) as it is, ``flow_1`` winsorised to ``±Z_CLIP``. Both are odd under
a mirrored market, like the inputs above."""


def model_inputs(x: dict[str, float], sigma: float) -> dict[str, float]:
    """The regressor's inputs from a feature dict and the volatility scale.

    Parameters
    ----------
    x : features of :class:`shared.stream.features.BarFeatures` (log returns, dimensionless).
    sigma : one-minute volatility scale (log return per minute, > 0).

    Returns
    -------
    dict
        ``{name: value}`` for :data:`MODEL_INPUTS`: ``x[name] / (sigma * UNITS[name])``
        winsorised to ``±Z_CLIP``, then the :data:`PASSED` oscillators; missing features read 0.
        Then :data:`FLOW_INPUTS` when ``x`` has them (the regressor skips inputs it is not given).
    """
    out = {}
    get = x.get
    for name, unit in _UNIT_ITEMS:
        z = get(name, 0.0) / (sigma * unit)
        out[name] = Z_CLIP if z > Z_CLIP else (-Z_CLIP if z < -Z_CLIP else z)
    for name in PASSED:
        out[name] = get(name, 0.0)
    if "ofi_1" in x:  # tick features (absent on bars alone: left out, not read as 0)
        out["ofi_1"] = x["ofi_1"]
        flow = x.get("flow_1", 0.0)
        out["flow_1"] = Z_CLIP if flow > Z_CLIP else (-Z_CLIP if flow < -Z_CLIP else flow)
    return out
