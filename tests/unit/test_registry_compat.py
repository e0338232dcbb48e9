"""Model blobs pickled before the layered layout still load: ``loads_model`` and ``RENAMED_MODULES``.

A real forecaster is pickled as an earlier version wrote it (its classes and functions under the
module paths of before the layout, e.g. ``shared.forecaster``), then loaded with
:func:`shared.lifecycle.registry.loads_model`; no server is needed.
"""

from __future__ import annotations

import importlib
import pickle
import random
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from shared.forecast.forecaster import ReturnForecaster, make_forecaster
from shared.lifecycle.registry import RENAMED_MODULES, loads_model
from shared.stream.features import FEATURE_NAMES


def features(rng: random.Random) -> dict[str, float]:
    """One synthetic feature dict in :data:`FEATURE_NAMES` order (returns ~1e-3, volatilities ~1e-3)."""
    x = {name: rng.gauss(0.0, 1e-3) for name in FEATURE_NAMES}
    x.update(vol_15=abs(rng.gauss(1e-3, 2e-4)), vol_60=abs(rng.gauss(1e-3, 2e-4)), window_fill=1.0)
    return x


def trained_forecaster(seed: int = 7, steps: int = 300) -> ReturnForecaster:
    """A default forecaster after ``steps`` predict-then-learn steps on synthetic features."""
    rng = random.Random(seed)
    model = make_forecaster()
    for _ in range(steps):
        x = features(rng)
        model.predict(x)
        model.learn(x, rng.gauss(0.0, 1e-3))
    return model


@contextmanager
def at_old_paths(renamed: dict[str, str]) -> Iterator[None]:
    """Make every class and function defined in each new module pickle under its old module path.

    A fake module named as the old path, exposing those objects, is put in ``sys.modules`` and
    their ``__module__`` is set to the old path; both are undone on exit, whatever happens.
    """
    moved: list[tuple[object, str]] = []
    added: list[str] = []
    try:
        for old, new in renamed.items():
            assert old not in sys.modules, f"{old} exists today: nothing would be renamed"
            fake = types.ModuleType(old)
            for name, obj in vars(importlib.import_module(new)).items():
                if isinstance(obj, (type, types.FunctionType)) and getattr(obj, "__module__", None) == new:
                    setattr(fake, name, obj)
                    moved.append((obj, new))
                    obj.__module__ = old
            sys.modules[old] = fake
            added.append(old)
        yield
    finally:
        for obj, new in moved:
            obj.__module__ = new
        for old in added:
            del sys.modules[old]


def test_a_forecaster_pickled_at_the_old_paths_loads_and_forecasts_the_same() -> None:
    original = trained_forecaster()
    with at_old_paths(RENAMED_MODULES):
        data = pickle.dumps(original, protocol=5)
    assert ReturnForecaster.__module__ == "shared.forecast.forecaster"  # restored
    assert "shared.forecaster" not in sys.modules
    assert b"shared.forecaster" in data and b"shared.forecast.forecaster" not in data
    assert b"shared.models.guard" in data and b"shared.models.conformal" in data
    with pytest.raises(ModuleNotFoundError, match="shared.forecaster"):
        pickle.loads(data)  # without the map the old blob is unreadable

    loaded = loads_model(data)

    assert type(loaded) is ReturnForecaster
    assert loaded.steps == original.steps == 300
    rng = random.Random(11)
    for _ in range(50):  # identical forecasts, and identical after learning the same labels
        x = features(rng)
        assert loaded.predict(x) == original.predict(x)
        assert loaded.predict_price(x, 61_837.63) == original.predict_price(x, 61_837.63)
        r = rng.gauss(0.0, 1e-3)
        loaded.learn(x, r)
        original.learn(x, r)
    assert loaded.guard_weight == original.guard_weight
    assert loaded.drift_alarms == original.drift_alarms


def test_a_blob_of_today_loads_unchanged() -> None:
    original = trained_forecaster(seed=3, steps=50)
    x = features(random.Random(5))
    assert loads_model(pickle.dumps(original, protocol=5)).predict(x) == original.predict(x)


class _Gone:
    """Stands for a class whose module no longer exists and is not in RENAMED_MODULES."""


def test_an_unknown_module_still_fails() -> None:
    old = "shared.no_such_module_ever"
    assert old not in RENAMED_MODULES
    with at_old_paths({old: __name__}):
        data = pickle.dumps(_Gone(), protocol=5)
    assert old.encode() in data
    with pytest.raises(ModuleNotFoundError, match=old):
        loads_model(data)


def test_a_renamed_module_does_not_invent_classes() -> None:
    with at_old_paths(RENAMED_MODULES):
        data = pickle.dumps(make_forecaster(), protocol=5)
    data = data.replace(b"ReturnForecaster", b"ReturnForecastXX")  # same length: the framing stays valid
    with pytest.raises(AttributeError, match="ReturnForecastXX"):
        loads_model(data)
