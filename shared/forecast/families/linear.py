"""Model family ``linear``: online median (least-absolute-deviation) linear regression.

``StandardScaler | LinearRegression(loss=Absolute, optimizer=SGD(lr))`` from River, without
an intercept, fed the sign-carrying features in volatility units of :mod:`shared.forecast.inputs`
and taught the volatility-scaled return ``z = r / sigma`` (see
:class:`shared.forecast.forecaster.ReturnForecaster`). No intercept: a constant term is a
standing bet on one direction (issue 16; the inputs are odd under a mirrored price path, so
the model is too).

Why the absolute loss: the forecast is judged by its mean absolute error, whose minimiser is
the conditional median (R. Koenker and G. Bassett, "Regression quantiles", Econometrica 46,
1978). Its gradient is ±1 whatever the error, so one extreme minute moves each weight by at
most ``lr * |x_j|`` with standardised ``x_j`` -- no divergence, unlike River's default
squared-loss ``LinearRegression`` (measured: it blows up on one extreme BTC minute).

Learning rate, from the projected-subgradient bound of M. Zinkevich, "Online convex
programming and generalized infinitesimal gradient ascent" (ICML 2003): for weights in a
ball of radius D and gradients of norm at most G, the fixed step ``D / (G sqrt(T))`` gives
regret ``D G sqrt(T)`` over a horizon of T steps. Here

- ``D = MAX_ABS_Z`` of :mod:`shared.forecast.limits` (≈ 0.07): the index ``w · x`` of
  standardised features should reach the largest plausible conditional median of ``z``
  at one standard deviation;
- ``G = sqrt(d)``: the absolute loss has gradient ``±x``, and ``d`` standardised features
  have norm about ``sqrt(d)``;
- ``T`` = one week of minutes (10,080): the model should track a market over about a week.

Examples
--------
>>> x = dict.fromkeys(INPUTS, 0.001)
>>> model = build()
>>> model.learn_one(x, 0.5)
>>> isinstance(model.predict_one(x), float)
True
"""

from __future__ import annotations

import math

from river import compose, linear_model, optim, preprocessing

from shared.forecast.inputs import MODEL_INPUTS
from shared.forecast.limits import MAX_ABS_Z

NAME = "linear"
DESCRIPTION = "online median linear regression (standardised features, absolute loss, SGD)"
TRACKING_MINUTES = 10_080
"""Horizon T of the step-size rule: one week of one-minute bars."""
INPUTS = MODEL_INPUTS
"""Inputs the regressor sees (:func:`shared.forecast.inputs.model_inputs`, built by the forecaster).
Not a ``compose.Select``: that keeps its keys in a set, whose iteration order -- hence the order
of float sums -- can change across a pickle round trip."""


def learning_rate(max_abs_z: float, n_features: int = len(INPUTS), horizon: int = TRACKING_MINUTES) -> float:
    """Zinkevich's step ``D / (G sqrt(T))`` with ``D = max_abs_z``, ``G = sqrt(n_features)``.

    >>> f"{learning_rate(0.0707, 8, 10_080):.2e}"
    '2.49e-04'
    """
    return max_abs_z / (math.sqrt(n_features) * math.sqrt(horizon))


def build(max_abs_z: float | None = None):
    """Return a fresh River regressor of this family (unfitted), for inputs :data:`INPUTS`."""
    if max_abs_z is None:
        max_abs_z = MAX_ABS_Z
    lr = learning_rate(max_abs_z)
    return compose.Pipeline(
        preprocessing.StandardScaler(),
        linear_model.LinearRegression(
            optimizer=optim.SGD(lr), loss=optim.losses.Absolute(), intercept_lr=0.0, l2=0.0, clip_gradient=1.0
        ),
    )
