"""The function app's declarations, read from ``app.get_functions()`` with no server: which functions
it indexes, their triggers and bindings; and a predict service whose model storage is unreachable."""

from __future__ import annotations

import json
import re

from azure.functions.decorators.core import BindingDirection, Cardinality

import function_app
from local_stack.functions_host import app_functions
from shared.contracts.batches import RawEvent
from shared.contracts.events import encode
from ingestor.parsers.recorded import read_recorded
from shared.settings import SETTINGS
from tests.data_files import KRAKEN_CSV, data_file


def bindings(name: str) -> dict[str, dict]:
    fn = next(f for f in app_functions(function_app.app) if f.get_function_name() == name)
    return {b.get_dict_repr()["name"]: b.get_dict_repr() for b in fn.get_bindings()}


HTTP = {"req": ("httpTrigger", "IN"), "$return": ("http", "OUT")}
EXPECTED_FUNCTIONS = {  # name: (trigger type, {binding name: (binding type, direction)})
    # no SignalR output on predict or promote_model: its errors would fail them (see test_broadcast_*)
    "predict": ("eventHubTrigger", {"events": ("eventHubTrigger", "IN"), "predictions": ("eventHub", "OUT"),
                                    "deadletters": ("eventHub", "OUT")}),
    "archive": ("eventHubTrigger", {"events": ("eventHubTrigger", "IN"), "deadletters": ("eventHub", "OUT")}),
    "broadcast": ("eventHubTrigger", {"events": ("eventHubTrigger", "IN"), "signalr": ("signalR", "OUT")}),
    "retrain": ("timerTrigger", {"timer": ("timerTrigger", "IN")}),
    "promote_model": ("blobTrigger", {"blob": ("blobTrigger", "IN"), "changes": ("eventHub", "OUT")}),
    "get_predictions": ("httpTrigger", HTTP),
    "get_bars": ("httpTrigger", HTTP),
    "get_accuracy": ("httpTrigger", HTTP),
    "get_symbols": ("httpTrigger", HTTP),
    "health": ("httpTrigger", HTTP),
    "get_model_changes": ("httpTrigger", HTTP),
    "openapi": ("httpTrigger", HTTP),
    "zz_not_found": ("httpTrigger", HTTP),
    "negotiate": ("httpTrigger", {**HTTP, "connectionInfo": ("signalRConnectionInfo", "IN")}),
    "dashboard": ("httpTrigger", HTTP),
}


def test_app_registers_exactly_the_blueprint_functions():
    """Exactly these functions, each with its trigger type and its bindings' names, types and
    directions: adding, losing or rewiring a function fails here."""
    functions = app_functions(function_app.app)  # function_app.app.get_functions(), indexed once
    names = [f.get_function_name() for f in functions]
    assert len(names) == len(set(names))
    declared = {
        f.get_function_name(): (
            f.get_trigger().get_dict_repr()["type"],
            {b.get_dict_repr()["name"]: (b.get_dict_repr()["type"], b.get_dict_repr()["direction"].name)
             for b in f.get_bindings()},
        )
        for f in functions
    }
    assert declared == EXPECTED_FUNCTIONS


def test_retrain_is_a_timer_on_the_configured_schedule():
    trigger = bindings("retrain")["timer"]
    assert trigger["type"] == "timerTrigger"
    assert trigger["schedule"] == "%RETRAIN_SCHEDULE%"
    assert not trigger["runOnStartup"]
    fields = SETTINGS["RETRAIN_SCHEDULE"].default.split()
    assert len(fields) == 6, "NCRONTAB has six fields: second minute hour day month day-of-week"


def test_promote_model_is_an_event_grid_blob_trigger_on_candidate_metadata():
    b = bindings("promote_model")
    trigger = b["blob"]
    assert trigger["type"] == "blobTrigger"
    assert trigger["source"] == "EventGrid"  # the only blob trigger source on Flex Consumption
    assert trigger["path"] == "%MODELS_CONTAINER%/{key}/candidates/{version}/metadata.json"
    assert trigger["connection"] == "MODEL_STORAGE"
    assert b["changes"]["type"] == "eventHub" and b["changes"]["eventHubName"] == "%PREDICTIONS_HUB_NAME%"


def test_predict_bindings():
    b = bindings("predict")
    trigger = b["events"]
    assert trigger["type"] == "eventHubTrigger"
    assert trigger["direction"] == BindingDirection.IN
    assert trigger["cardinality"] == Cardinality.MANY
    assert trigger["eventHubName"] == "%TICKS_HUB_NAME%"
    assert trigger["consumerGroup"] == "%PREDICT_CONSUMER_GROUP%"
    assert trigger["connection"] == "EVENTHUB"
    assert b["predictions"]["type"] == "eventHub" and b["predictions"]["eventHubName"] == "%PREDICTIONS_HUB_NAME%"
    assert b["deadletters"]["type"] == "eventHub" and b["deadletters"]["eventHubName"] == "%DEADLETTER_HUB_NAME%"
    assert {x["direction"] for k, x in b.items() if k != "events"} == {BindingDirection.OUT}


def _function(name: str):
    return next(f for f in app_functions(function_app.app) if f.get_function_name() == name)


def test_predict_retries_a_failed_batch_a_bounded_number_of_times():
    """A fixed-delay retry policy with a small, finite count: the Event Hubs trigger honours
    function-level retry policies and without one checkpoints past a failed batch ("Azure
    Functions error handling and retries", learn.microsoft.com/azure/azure-functions/
    functions-bindings-error-pages, "Retries"; Azure/Azure-Functions#947). ``-1`` would retry forever."""
    policy = _function("predict").get_setting("retry_policy").get_dict_repr()
    assert policy["strategy"] == "fixed_delay"
    assert 1 <= int(policy["max_retry_count"]) <= 5
    assert policy["delay_interval"] == "00:00:01"
    assert _function("broadcast").get_setting("retry_policy") is None  # a stale dashboard message is not retried


def test_broadcast_reads_the_predictions_hub_with_its_own_consumer_group_and_owns_signalr():
    b = bindings("broadcast")
    trigger = b["events"]
    assert trigger["cardinality"] == Cardinality.MANY and trigger["connection"] == "EVENTHUB"
    assert trigger["eventHubName"] == "%PREDICTIONS_HUB_NAME%"
    assert trigger["consumerGroup"] == "%BROADCAST_CONSUMER_GROUP%"
    assert SETTINGS["BROADCAST_CONSUMER_GROUP"].default == "broadcast"
    groups = {bindings(n)["events"]["consumerGroup"] for n in ("predict", "archive", "broadcast")}
    assert len(groups) == 3
    assert b["signalr"]["hubName"] == "%SIGNALR_HUB_NAME%"
    assert b["signalr"]["connectionStringSetting"] == "AzureSignalRConnectionString"
    signalr_users = {f.get_function_name() for f in app_functions(function_app.app)
                     for x in f.get_bindings() if x.get_dict_repr()["type"] == "signalR"}
    assert signalr_users == {"broadcast"}


def test_archive_bindings_use_their_own_consumer_group():
    b = bindings("archive")
    trigger = b["events"]
    assert trigger["type"] == "eventHubTrigger"
    assert trigger["cardinality"] == Cardinality.MANY
    assert trigger["eventHubName"] == "%PREDICTIONS_HUB_NAME%"
    assert trigger["consumerGroup"] == "%ARCHIVE_CONSUMER_GROUP%"
    assert trigger["consumerGroup"] != bindings("predict")["events"]["consumerGroup"]


def test_every_binding_expression_names_a_documented_setting():
    for fn in app_functions(function_app.app):
        for b in fn.get_bindings():
            for value in b.get_dict_repr().values():
                for name in re.findall(r"%([^%]+)%", str(value)):
                    assert name in SETTINGS, f"{fn.get_function_name()} uses undocumented setting {name}"
                conn = b.get_dict_repr().get("connection")
                assert conn is None or any(s == conn or s.startswith(conn + "__") for s in SETTINGS)


def test_unreachable_model_storage_starts_the_symbol_cold(monkeypatch):
    """A registry that cannot be reached is logged; the stream goes on with a cold model."""
    from azure.storage.blob import ContainerClient

    from shared.serving.predicting import build_predict_service
    from shared.lifecycle.registry import ModelRegistry

    dead = ContainerClient.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1",  # port 9 (discard): nothing listens
        "models", retry_total=0,
    )
    service = build_predict_service(ModelRegistry(dead), "default", 0.9, 10.0)
    ticks = [r.tick for r in read_recorded(data_file(KRAKEN_CSV)) if r.tick is not None][:300]
    result = service.handle([RawEvent(encode(t), str(i)) for i, t in enumerate(ticks)])
    versions = {json.loads(x)["model_version"] for x in result.outputs if b'"prediction"' in x}
    assert versions == {"cold-start"}
