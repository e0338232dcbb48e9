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

Implementation: :class:`MedianRegression` computes exactly what River's
``StandardScaler | LinearRegression(loss=Absolute, optimizer=SGD(lr), intercept_lr=0,
clip_gradient=1)`` computes (same formulas, same order of floating-point operations: the
forecasts agree to the last bit, checked by ``tests/unit/test_forecast_v2.py`` on a month of
real minutes), on plain lists instead of River's dicts and pipeline, about four times faster:
it is the hot loop of every bar close (issue 16 item 9 asks for >= 20,000 bar steps per
second). River's pipeline stays the ``tree`` family's leaf model (:func:`river_pipeline`),
and models pickled with it load and run unchanged.

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

from shared.forecast.inputs import FLOW_INPUTS, MODEL_INPUTS
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


class MedianRegression:
    """Online median linear regression on standardised inputs: River's pipeline, computed on lists.

    Per input ``j`` (in the order of ``names``) it keeps Welford's running mean ``m_j`` and
    population variance ``v_j`` (River ``preprocessing.StandardScaler``) and a weight ``w_j``.

    - predict: ``y_hat = sum_j w_j * s_j`` with ``s_j = (x_j - m_j) / v_j ** 0.5`` (0 when
      ``v_j = 0``), the mean and variance as they stand;
    - learn ``(x, y, w)``: update ``m_j, v_j`` with ``x_j`` first, standardise with the updated
      values, then one SGD step on the absolute loss: ``g = clip(w * sign(y_hat - y), -1, 1)``
      (``sign`` is -1 at a tie, as River's ``Absolute.gradient``) and ``w_j -= lr * (s_j * g)``.

    Inputs in ``optional`` may be absent from an input dict; as River's dict-based models do, an
    absent input is neither used nor learned (its mean, variance and weight stay as they are),
    so a model taught on bars alone and one taught on ticks share one definition.

    Parameters
    ----------
    names : input names, read from the feature dicts in this order (a missing one raises ``KeyError``).
    lr : SGD step (dimensionless, > 0), see :func:`learning_rate`.
    optional : names of inputs used when present (after ``names``, in this order).

    Attributes
    ----------
    n : int
        Examples learned.
    means, variances, weights : list of float
        Per input, in the order of ``names`` (inputs in their own units; weights per standard deviation).
    extra : dict
        Optional input name -> ``[examples, mean, variance, weight]`` (from its first appearance on).
    """

    __slots__ = ("names", "lr", "n", "means", "variances", "weights", "optional", "extra")

    def __init__(self, names: tuple[str, ...], lr: float, optional: tuple[str, ...] = ()) -> None:
        if not lr > 0.0:
            raise ValueError(f"learning rate must be > 0, got {lr!r}")
        self.names = tuple(names)
        self.lr = float(lr)
        self.n = 0
        k = len(self.names)
        self.means = [0.0] * k
        self.variances = [0.0] * k
        self.weights = [0.0] * k
        self.optional = tuple(optional)
        self.extra: dict[str, list] = {}

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def predict_one(self, x: dict[str, float]) -> float:
        """Forecast for the input dict ``x`` (the standardised index ``sum_j w_j s_j``)."""
        y = 0.0
        for name, m, v, w in zip(self.names, self.means, self.variances, self.weights):
            y += w * ((x[name] - m) / v ** 0.5 if v else 0.0)
        extra = self.extra
        for name in self.optional:
            if name in x and name in extra:
                _, m, v, w = extra[name]
                y += w * ((x[name] - m) / v ** 0.5 if v else 0.0)
        return y

    def learn_one(self, x: dict[str, float], y: float, w: float = 1.0) -> None:
        """Learn the target ``y`` for the input dict ``x`` with sample weight ``w`` (one SGD step)."""
        n = self.n = self.n + 1
        means, variances = self.means, self.variances
        scaled = []
        y_hat = 0.0
        for j, (name, wj) in enumerate(zip(self.names, self.weights)):
            xj = x[name]
            old = means[j]
            m = means[j] = old + (xj - old) / n
            v = variances[j] = variances[j] + ((xj - old) * (xj - m) - variances[j]) / n
            s = (xj - m) / v ** 0.5 if v else 0.0
            scaled.append(s)
            y_hat += wj * s
        present = []
        for name in self.optional:
            if name in x:
                xj = x[name]
                state = self.extra.setdefault(name, [0, 0.0, 0.0, 0.0])
                c = state[0] = state[0] + 1
                old = state[1]
                m = state[1] = old + (xj - old) / c
                v = state[2] = state[2] + ((xj - old) * (xj - m) - state[2]) / c
                s = (xj - m) / v ** 0.5 if v else 0.0
                present.append((state, s))
                y_hat += state[3] * s
        g = (1.0 if y_hat > y else -1.0) * w
        g = 1.0 if g > 1.0 else (-1.0 if g < -1.0 else g)
        lr = self.lr
        self.weights = [wj - lr * (s * g) for wj, s in zip(self.weights, scaled)]
        for state, s in present:
            state[3] -= lr * (s * g)


def build(max_abs_z: float | None = None) -> MedianRegression:
    """Return a fresh regressor of this family (unfitted), for inputs :data:`INPUTS`."""
    if max_abs_z is None:
        max_abs_z = MAX_ABS_Z
    return MedianRegression(INPUTS, learning_rate(max_abs_z), FLOW_INPUTS)


def river_pipeline(max_abs_z: float | None = None):
    """The same model as River's pipeline (the ``tree`` family's leaf model, which River clones)."""
    if max_abs_z is None:
        max_abs_z = MAX_ABS_Z
    lr = learning_rate(max_abs_z)
    return compose.Pipeline(
        preprocessing.StandardScaler(),
        linear_model.LinearRegression(
            optimizer=optim.SGD(lr), loss=optim.losses.Absolute(), intercept_lr=0.0, l2=0.0, clip_gradient=1.0
        ),
    )
