"""Every function indexes wherever it runs: ``func start`` with ``local.settings.json.example``, and Azure
with the Pulumi Function App's app settings; the Event Hubs emulator declares every hub and consumer group.

What the host needs, per binding of ``function_app.app.get_functions()`` (read as
``local_stack/functions_host.py`` reads them, ``get_bindings()`` -> ``get_dict_repr()``):

* every ``%NAME%`` app-setting binding expression ("Azure Functions binding expression patterns",
  *Binding expressions - app settings*: "When a function is running locally, app setting values come
  from the local.settings.json file"); a missing one fails the function's indexing;
* every connection (``connection``, ``connectionStringSetting``: "automatically resolves values as app
  settings, without percent signs", same section): the setting itself (a connection string), or the
  identity-based settings each extension documents under *Identity-based connections*:
  Event Hubs ``<NAME>__fullyQualifiedNamespace``; Blob Storage ``<NAME>__serviceUri``, or
  ``<NAME>__blobServiceUri`` **and** ``<NAME>__queueServiceUri`` ("required for blob triggers": the
  trigger writes poison blobs to a queue); SignalR Service ``<NAME>__serviceUri``;
* the host's own storage, ``AzureWebJobsStorage`` (Event Hubs checkpoints, the timer's schedule monitor,
  the Event Grid blob trigger's queue), by the same rule as a blob trigger's connection.

A binding that adds a ``%NAME%`` or a connection missing from either place fails here
(``test_a_new_setting_missing_from_either_place_fails`` shows it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

import function_app
from local_stack.functions_host import app_functions, resolve
from tests.unit.test_infra import CONFIG, Deployed, deploy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "local.settings.json.example"
EMULATOR_CONFIG = ROOT / "local_stack" / "eventhubs-emulator-config.json"
EXPRESSION = re.compile(r"%([^%]+)%")
CONNECTION_KEYS = ("connection", "connectionStringSetting")
HOST_STORAGE = "AzureWebJobsStorage"
IDENTITY_FORMS: dict[str, tuple[tuple[str, ...], ...]] = {
    "eventHubTrigger": (("fullyQualifiedNamespace",),),
    "eventHub": (("fullyQualifiedNamespace",),),
    "blobTrigger": (("serviceUri",), ("blobServiceUri", "queueServiceUri")),
    "signalR": (("serviceUri",),),
    "signalRConnectionInfo": (("serviceUri",),),
}
"""Binding type -> alternative sets of ``<NAME>__<suffix>`` settings, each an identity-based connection."""
DEFAULT_CONSUMER_GROUP = "$Default"  # the Event Hubs trigger's default; the emulator creates it on every hub


def example_settings() -> dict[str, str]:
    """The ``Values`` of ``local.settings.json.example``: the app settings ``func start`` reads."""
    return json.loads(EXAMPLE.read_text(encoding="utf-8"))["Values"]


def binding_specs(functions: Iterable[Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    """``(function name, binding declaration)`` for every binding, trigger included, of ``functions``."""
    for function in functions:
        for binding in function.get_bindings():
            yield function.get_function_name(), binding.get_dict_repr()


def is_set(settings: Mapping[str, Any], name: str) -> bool:
    """``name`` is an app setting with a value (an empty value resolves to nothing)."""
    return settings.get(name) not in (None, "")


def connection_is_configured(settings: Mapping[str, Any], name: str, binding_type: str) -> bool:
    """``name`` is set (a connection string), or every setting of one documented identity-based form is.

    Raises
    ------
    KeyError
        ``binding_type`` has no documented identity-based form here yet: add it to ``IDENTITY_FORMS``.
    """
    if is_set(settings, name):
        return True
    if binding_type not in IDENTITY_FORMS:
        raise KeyError(f"{binding_type}: add its documented identity-based settings to IDENTITY_FORMS")
    forms = IDENTITY_FORMS[binding_type]
    return any(all(is_set(settings, f"{name}__{suffix}") for suffix in form) for form in forms)


def unmet(functions: Iterable[Any], settings: Mapping[str, Any]) -> dict[str, list[str]]:
    """Function name -> what its bindings need that ``settings`` lacks (``%NAME%``, or ``connection NAME``);
    the host's own storage is reported under ``"(host)"``."""
    missing: dict[str, list[str]] = {}
    for name, spec in binding_specs(functions):
        needs = [f"%{n}%" for n in sorted(set(EXPRESSION.findall(json.dumps(spec, default=str))))
                 if not is_set(settings, n)]
        needs += [f"connection {spec[key]}" for key in CONNECTION_KEYS
                  if spec.get(key) and not connection_is_configured(settings, spec[key], spec["type"])]
        if needs:
            missing.setdefault(name, []).extend(needs)
    if not connection_is_configured(settings, HOST_STORAGE, "blobTrigger"):
        missing["(host)"] = [f"connection {HOST_STORAGE}"]
    return missing


@pytest.fixture(scope="module")
def functions() -> list[Any]:
    return app_functions(function_app.app)


@pytest.fixture(scope="module")
def azure_settings() -> dict[str, Any]:
    """The Function App's app settings as the Pulumi program sends them (under ``test_infra.py``'s mocks)."""
    import asyncio

    loop = asyncio.new_event_loop()  # Pulumi's mocks run on the thread's current event loop
    asyncio.set_event_loop(loop)
    try:
        deployed: Deployed = deploy(CONFIG)
        return deployed.app_settings()
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_the_app_has_bindings_that_need_settings(functions):
    """The checks below have something to check: expressions and connections of several binding types."""
    specs = [spec for _, spec in binding_specs(functions)]
    assert any(EXPRESSION.search(json.dumps(spec, default=str)) for spec in specs)
    assert {spec["type"] for spec in specs if any(spec.get(k) for k in CONNECTION_KEYS)} >= {
        "eventHubTrigger", "eventHub", "blobTrigger", "signalRConnectionInfo"}


def test_the_example_local_settings_index_every_function(functions):
    """``cp local.settings.json.example local.settings.json && func start`` indexes every function."""
    assert unmet(functions, example_settings()) == {}
    assert example_settings()["FUNCTIONS_WORKER_RUNTIME"] == "python"


def test_the_pulumi_app_settings_index_every_function(functions, azure_settings):
    """The deployed Function App indexes every function (identity-based connections, no secrets)."""
    assert unmet(functions, azure_settings) == {}


def test_a_new_setting_missing_from_either_place_fails(azure_settings):
    """A binding that names a new ``%NAME%`` or connection is reported for both places; an identity-based
    connection needs its documented suffixes, not just any ``NAME__*``; a connection on a binding type whose
    identity-based form is not declared here cannot pass unseen."""
    app = func.FunctionApp()

    @app.function_name("probe")
    @app.event_hub_message_trigger(arg_name="events", event_hub_name="%NEW_HUB_NAME%", connection="NEWHUB",
                                   consumer_group="%PREDICT_CONSUMER_GROUP%")
    def probe(events: func.EventHubEvent) -> None:  # pragma: no cover - declared, never invoked
        """Declared to be indexed, never invoked."""

    probes = app.get_functions()  # indexing twice raises: index once
    expected = {"probe": ["%NEW_HUB_NAME%", "connection NEWHUB"]}
    assert unmet(probes, example_settings()) == expected
    assert unmet(probes, azure_settings) == expected
    partial = {"NEW_HUB_NAME": "ticks", "PREDICT_CONSUMER_GROUP": "predict",
               "NEWHUB__credential": "managedidentity",
               "AzureWebJobsStorage__blobServiceUri": "https://x.blob.core.windows.net/"}
    assert unmet(probes, partial) == {"probe": ["connection NEWHUB"],
                                                   "(host)": ["connection AzureWebJobsStorage"]}

    other = func.FunctionApp()

    @other.function_name("probe_blob")
    @other.timer_trigger(arg_name="timer", schedule="%RETRAIN_SCHEDULE%")
    @other.blob_output(arg_name="out", path="%MODELS_CONTAINER%/x", connection="MODEL_STORAGE")
    def probe_blob(timer: func.TimerRequest, out: func.Out[str]) -> None:  # pragma: no cover - never invoked
        """Declared to be indexed, never invoked."""

    blob_probes = other.get_functions()
    assert unmet(blob_probes, example_settings()) == {}  # locally MODEL_STORAGE is a connection string
    with pytest.raises(KeyError, match="IDENTITY_FORMS"):
        unmet(blob_probes, azure_settings)


def emulator_consumer_groups() -> dict[str, set[str]]:
    """Hub name -> its consumer groups, as ``local_stack/eventhubs-emulator-config.json`` declares them
    (the emulator creates ``$Default`` on every hub itself: the installer's README, *Interacting with
    emulator*)."""
    config = json.loads(EMULATOR_CONFIG.read_text(encoding="utf-8"))
    (namespace,) = config["UserConfig"]["NamespaceConfig"]
    return {entity["Name"]: {g["Name"] for g in entity["ConsumerGroups"]} | {DEFAULT_CONSUMER_GROUP}
            for entity in namespace["Entities"]}


def test_the_event_hubs_emulator_declares_every_hub_and_consumer_group(functions):
    """With the example's settings, every Event Hub a binding names exists in the emulator's config, and
    every trigger's consumer group exists on its hub (the emulator creates only what its config declares)."""
    settings, groups = example_settings(), emulator_consumer_groups()
    used = set()
    for name, spec in binding_specs(functions):
        if spec["type"] not in ("eventHubTrigger", "eventHub"):
            continue
        hub = resolve(spec["eventHubName"], settings)
        assert hub in groups, f"{name}: hub {hub!r} is not in {EMULATOR_CONFIG.name}"
        if spec["type"] == "eventHubTrigger":
            group = resolve(spec.get("consumerGroup") or DEFAULT_CONSUMER_GROUP, settings)
            assert group in groups[hub], f"{name}: consumer group {group!r} is not on hub {hub!r}"
            used.add((hub, group))
    assert {("ticks", "predict"), ("predictions", "archive")} <= used
