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

The interval is split-conformal on a rolling window of out-of-sample residuals
(River's ``conf.RegressionJackknife``: residuals are computed before each
learning step), so it is calibrated online at ``interval_level``.

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

from river import compose, conf, linear_model, optim, preprocessing

DEFAULT_INTERVAL_LEVEL = 0.9
DEFAULT_RESIDUAL_WINDOW = 1_000
"""Residuals kept for the conformal interval: about 17 hours of minutes."""
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
    ) -> None:
        if not 0 < interval_level < 1:
            raise ValueError(f"interval_level must lie in (0, 1), got {interval_level}")
        self.interval_level = interval_level
        self.max_abs_return = max_abs_return
        self.model = conf.RegressionJackknife(
            regressor if regressor is not None else default_regressor(),
            confidence_level=interval_level,
            window_size=residual_window,
        )
        self.steps = 0

    def _bound(self, r: float) -> float:
        if not math.isfinite(r):
            return 0.0
        return max(-self.max_abs_return, min(self.max_abs_return, r))

    def predict(self, x: dict[str, float]) -> tuple[float, float, float]:
        """Return ``(r_hat, lower, upper)``: the predicted log return and its interval bounds."""
        iv = self.model.predict_one(x, with_interval=True)
        lower, upper = self._bound(iv.lower), self._bound(iv.upper)
        r = self._bound(self.model.regressor.predict_one(x))
        return r, min(lower, r), max(upper, r)

    def learn(self, x: dict[str, float], r: float) -> None:
        """Teach the realised log return ``r`` for the features ``x`` it was predicted from."""
        self.model.learn_one(x, r)
        self.steps += 1

    def predict_price(self, x: dict[str, float], last_close: float) -> tuple[float, float, float]:
        """Return ``(predicted_close, lower, upper)`` in the quote currency of ``last_close``."""
        r, lo, hi = self.predict(x)
        return last_close * math.exp(r), last_close * math.exp(lo), last_close * math.exp(hi)
