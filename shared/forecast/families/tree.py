"""Model family ``tree``: a Hoeffding tree regressor with adaptive leaves.

River's ``tree.HoeffdingTreeRegressor`` (the FIMT-DD line of E. Ikonomovska, J. Gama,
S. Džeroski, "Learning model trees from evolving data streams", Data Mining and Knowledge
Discovery 23, 2011), taught the volatility-scaled return ``z = r / sigma`` winsorised to
``±Z_CLIP`` (so a split's variance reduction cannot be dominated by one extreme minute).
Splits need the Hoeffding bound at confidence ``1 - 1e-7`` (River's default) after each
``grace_period`` = 1,000 minutes, i.e. a split is considered at most every ~17 hours,
matching the conformal window: smaller leaves could not estimate a conditional median
of a signal this faint. Leaves predict with the better (by running error) of the leaf mean
and a leaf linear model trained with the absolute loss at the ``linear`` family's rate.
Non-linear, slower than ``linear`` (see ``bench/forecast_throughput.py``).

Examples
--------
>>> x = dict.fromkeys(INPUTS, 0.001)
>>> model = build()
>>> model.learn_one(x, 0.5)
>>> isinstance(model.predict_one(x), float)
True
"""

from __future__ import annotations

from river import compose, tree

from shared.forecast.families import linear
from shared.forecast.families.linear import INPUTS  # noqa: F401  (the inputs this family sees)

NAME = "tree"
DESCRIPTION = "Hoeffding tree regressor with adaptive leaves (mean or absolute-loss linear model)"
GRACE_PERIOD = 1_000
"""Minutes between split attempts of a leaf."""


def build(max_abs_z: float | None = None):
    """Return a fresh River regressor of this family (unfitted), for inputs :data:`INPUTS`."""
    leaf = linear.river_pipeline(max_abs_z)  # the ``linear`` family's model as a River estimator (cloned per leaf)
    return compose.Pipeline(
        tree.HoeffdingTreeRegressor(grace_period=GRACE_PERIOD, leaf_prediction="adaptive", leaf_model=leaf),
    )
