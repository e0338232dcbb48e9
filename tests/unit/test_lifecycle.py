"""Model lifecycle parts that need no server: candidate blob names, the smoke test, and the local
drivers' refusal of functions with other trigger types (the rest is in tests/integration/test_lifecycle.py)."""

from __future__ import annotations

import math

import pytest

import function_app
from local_stack.functions_host import app_functions
from local_stack.lifecycle_host import BlobTriggerPoller, TimerFunctionDriver
from shared.forecast.forecaster import ReturnForecaster
from shared.lifecycle.promotion import parse_candidate_blob, smoke_test


def test_candidate_blob_names_parse_and_smoke_test_accepts_the_default_model():
    assert parse_candidate_blob("models/kraken.BTC_USD/candidates/v1/metadata.json") == ("kraken.BTC_USD", "v1")
    with pytest.raises(ValueError):
        parse_candidate_blob("models/kraken.BTC_USD/candidates/v1/model.pkl")
    assert math.isfinite(smoke_test(ReturnForecaster()))


def test_local_drivers_refuse_functions_of_other_trigger_types():
    from local_stack.functions_host import BindingError

    fns = {f.get_function_name(): f for f in app_functions(function_app.app)}
    with pytest.raises(BindingError):
        TimerFunctionDriver(fns["predict"], {}, {}, 1)
    with pytest.raises(BindingError):
        BlobTriggerPoller(fns["retrain"], {}, None, {})
