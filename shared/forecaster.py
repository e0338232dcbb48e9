"""The online forecaster: next-minute log return with River, turned into a price and an interval.

The model predicts ``r = ln(close_{m+1} / close_m)`` from the features of the bar
that just closed, and is taught each label when it is realised (predict, then
learn; no look-ahead). The price forecast is ``close_m * exp(r_hat)``.

Why it cannot diverge on real data: River's default ``LinearRegression`` blows up
on one extreme minute of real BTC data (measured, ARCHITECTURE.md). Here the
features are standardised online (``StandardScaler``), the target is
standardised online (``TargetStandardScaler``), the squared-loss gradient is
clipped at ``clip_gradient`` standard units, and the learning rate is small, so a
single extreme minute moves each weight by at most ``lr * clip_gradient``.
The returned log return is also bounded to ``±max_abs_return``.

The interval is conformal on a rolling window of out-of-sample residuals
(each residual is computed before its learning step), *normalised* by the
current volatility feature: residual quantiles are kept in units of ``vol_15``
and scaled back by the ``vol_15`` of the minute being forecast (normalised
conformal prediction: H. Papadopoulos, V. Vovk, A. Gammerman, "Normalized
nonconformity measures for regression conformal prediction", AIA 2008). So the
interval widens and narrows with the market at once, and a model trained on one
venue or year stays calibrated on another.

Examples
--------
>>> f = ReturnForecaster()
>>> x = {"ret_1": 0.001, "ret_5": 0.002, "ret_15": 0.0, "vol_15": 0.001, "rsi_14": 0.1, "range_1": 0.002}
>>> r, lo, hi = f.predict(x)
>>> lo <= r <= hi
True
>>> f.learn(x, 0.0005)
>>> f.steps
1
"""

from __future__ import annotations

import math

from river import compose, linear_model, optim, preprocessing, stats

DEFAULT_INTERVAL_LEVEL = 0.9
DEFAULT_RESIDUAL_WINDOW = 1_000
"""Residuals kept for the conformal interval: about 17 hours of minutes."""
DEFAULT_SCALE_FEATURE = "vol_15"
"""Feature whose value scales the residuals of the interval (a volatility, same units as returns)."""
PARKINSON_FACTOR = 1 / math.sqrt(4 * math.log(2))
"""Parkinson's range-based volatility of one bar is ``ln(high / low) * PARKINSON_FACTOR``
(M. Parkinson, "The extreme value method for estimating the variance of the rate of
return", Journal of Business 53, 1980). Used as the residual scale while ``vol_15``
is still undefined (fewer than two returns seen)."""
MIN_SCALE = 1e-5
"""Floor of the residual scale (0.1 basis point), so quiet or flat minutes cannot divide by zero."""
DEFAULT_MAX_ABS_RETURN = 0.05
"""Cap on a predicted one-minute log return (≈ ±5 %), far beyond any BTC minute on record here."""


def default_regressor(lr: float = 0.001, clip_gradient: float = 1.0, l2: float = 1e-3):
    """Return the default River regressor for standardised features and target.

    ``TargetStandardScaler(StandardScaler | LinearRegression(SGD(lr), clip_gradient, l2))``.
    """
    return preprocessing.TargetStandardScaler(
        regressor=compose.Pipeline(
            preprocessing.StandardScaler(),
            linear_model.LinearRegression(
                optimizer=optim.SGD(lr),
                intercept_lr=lr,
                l2=l2,
                clip_gradient=clip_gradient,
            ),
        )
    )


class ReturnForecaster:
    """Online forecaster of the next one-minute log return with a conformal interval.

    Parameters
    ----------
    regressor : a River regressor (default :func:`default_regressor`).
    interval_level : coverage of the prediction interval, in (0, 1).
    residual_window : number of recent residuals the interval is calibrated on.
    max_abs_return : bound on the predicted log return.

    Raises
    ------
    ValueError
        If ``interval_level`` is not in (0, 1).
    """

    def __init__(
        self,
        regressor=None,
        interval_level: float = DEFAULT_INTERVAL_LEVEL,
        residual_window: int = DEFAULT_RESIDUAL_WINDOW,
        max_abs_return: float = DEFAULT_MAX_ABS_RETURN,
        scale_feature: str = DEFAULT_SCALE_FEATURE,
    ) -> None:
        if not 0 < interval_level < 1:
            raise ValueError(f"interval_level must lie in (0, 1), got {interval_level}")
        self.interval_level = interval_level
        self.max_abs_return = max_abs_return
        self.scale_feature = scale_feature
        self.regressor = regressor if regressor is not None else default_regressor()
        alpha = (1 - interval_level) / 2
        self._lower = stats.RollingQuantile(alpha, residual_window)
        self._upper = stats.RollingQuantile(1 - alpha, residual_window)
        self.steps = 0

    def _bound(self, r: float) -> float:
        if not math.isfinite(r):
            return 0.0
        return max(-self.max_abs_return, min(self.max_abs_return, r))

    def _scale(self, x: dict[str, float]) -> float:
        scale = x.get(self.scale_feature, 0.0)
        if scale <= 0.0:  # not yet defined: one bar's range stands in
            scale = x.get("range_1", 0.0) * PARKINSON_FACTOR
        return max(scale, MIN_SCALE)

    def predict(self, x: dict[str, float]) -> tuple[float, float, float]:
        """Return ``(r_hat, lower, upper)``: the predicted log return and its interval bounds."""
        r = self._bound(self.regressor.predict_one(x))
        scale = self._scale(x)
        lower = self._bound(r + (self._lower.get() or 0.0) * scale)
        upper = self._bound(r + (self._upper.get() or 0.0) * scale)
        return r, min(lower, r), max(upper, r)

    def learn(self, x: dict[str, float], r: float) -> None:
        """Teach the realised log return ``r`` for the features ``x`` it was predicted from.

        The out-of-sample residual (before learning) enters the interval's window first.
        """
        residual = (r - self._bound(self.regressor.predict_one(x))) / self._scale(x)
        self._lower.update(residual)
        self._upper.update(residual)
        self.regressor.learn_one(x, r)
        self.steps += 1

    def predict_price(self, x: dict[str, float], last_close: float) -> tuple[float, float, float]:
        """Return ``(predicted_close, lower, upper)`` in the quote currency of ``last_close``."""
        r, lo, hi = self.predict(x)
        return last_close * math.exp(r), last_close * math.exp(lo), last_close * math.exp(hi)
