"""Unit tests of the Pulumi stack in ``infra/``, run offline under ``pulumi.runtime.set_mocks``.

The stack is built by ``tickcast_infra.stack.build`` (a module apart from
``infra/__main__.py``, as Pulumi's testing guide recommends); the mocks record every resource
registration, and the tests assert on the inputs the program sent. The fixed names are compared
with the defaults in ``shared.settings.SETTINGS``, so application code and infrastructure
cannot drift apart.
"""

from __future__ import annotations

import doctest
import runpy
import sys
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pytest
import yaml  # PyYAML, a dependency of pulumi

from shared.settings import SETTINGS

INFRA = Path(__file__).resolve().parents[1] / "infra"
if str(INFRA) not in sys.path:
    sys.path.insert(0, str(INFRA))

from tickcast_infra import stack  # noqa: E402
from tickcast_infra.stack import StackConfig, StackOutputs, build  # noqa: E402


@dataclass(frozen=True)
class Registered:
    typ: str
    name: str
    inputs: dict


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers every registration with its inputs (plus a ``name``) and records it."""

    def __init__(self) -> None:
        self.resources: list[Registered] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(Registered(args.typ, args.name, dict(args.inputs)))
        # The provider's own name output: the explicit name input where there is one,
        # otherwise what auto-naming would start from (the logical name).
        explicit = {
            "azure-native:eventhub:EventHub": "eventHubName",
            "azure-native:eventhub:ConsumerGroup": "consumerGroupName",
            "azure-native:storage:BlobContainer": "containerName",
        }.get(args.typ)
        name = args.inputs.get(explicit, args.name) if explicit else args.name
        return f"{args.name}_id", {**args.inputs, "name": name}

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}, None

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str) -> Registered:
        (found,) = self.of_type(typ)
        return found


def deploy(config: StackConfig) -> tuple[RecordingMocks, dict[str, str]]:
    """Build the stack for ``config`` under fresh mocks; return the mocks and the resolved exports."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="tickcast", stack="test", preview=False)
    exports: dict[str, str] = {}

    @pulumi.runtime.test
    def run():
        outputs = build(config)
        names = list(outputs.exports())
        return pulumi.Output.all(*outputs.exports().values()).apply(
            lambda values: exports.update(zip(names, values))
        )

    run()
    return mocks, exports


def default(name: str) -> str:
    value = SETTINGS[name][0]
    assert value, f"{name} has no default in shared.settings"
    return value


HUB = "azure-native:eventhub:EventHub"
GROUP = "azure-native:eventhub:ConsumerGroup"
NAMESPACE = "azure-native:eventhub:Namespace"
ACCOUNT = "azure-native:storage:StorageAccount"
CONTAINER = "azure-native:storage:BlobContainer"
RESOURCE_GROUP = "azure-native:resources:ResourceGroup"

CONFIG = StackConfig(
    location="northeurope", name_prefix="tcx", ticks_partitions=8, predictions_partitions=3,
    deadletter_partitions=2,
)


@pytest.fixture(scope="module")
def built() -> tuple[RecordingMocks, dict[str, str]]:
    return deploy(CONFIG)


def hubs_by_name(mocks: RecordingMocks) -> dict[str, dict]:
    return {r.inputs["eventHubName"]: r.inputs for r in mocks.of_type(HUB)}


def test_hub_names_are_the_app_settings_defaults(built):
    mocks, _ = built
    assert set(hubs_by_name(mocks)) == {
        default("TICKS_HUB_NAME"), default("PREDICTIONS_HUB_NAME"), default("DEADLETTER_HUB_NAME"),
    }


def test_partition_counts_follow_config(built):
    mocks, _ = built
    hubs = hubs_by_name(mocks)
    assert hubs[default("TICKS_HUB_NAME")]["partitionCount"] == CONFIG.ticks_partitions
    assert hubs[default("PREDICTIONS_HUB_NAME")]["partitionCount"] == CONFIG.predictions_partitions
    assert hubs[default("DEADLETTER_HUB_NAME")]["partitionCount"] == CONFIG.deadletter_partitions


def test_default_partition_counts():
    mocks, _ = deploy(StackConfig())
    hubs = hubs_by_name(mocks)
    assert [hubs[default(n)]["partitionCount"] for n in ("TICKS_HUB_NAME", "PREDICTIONS_HUB_NAME",
                                                         "DEADLETTER_HUB_NAME")] == [4, 2, 1]


def test_consumer_groups_sit_on_the_right_hubs(built):
    mocks, _ = built
    groups = {r.inputs["consumerGroupName"]: r.inputs["eventHubName"] for r in mocks.of_type(GROUP)}
    assert groups == {
        default("PREDICT_CONSUMER_GROUP"): default("TICKS_HUB_NAME"),
        default("ARCHIVE_CONSUMER_GROUP"): default("PREDICTIONS_HUB_NAME"),
    }


def test_hubs_and_groups_are_in_the_namespace_and_group(built):
    mocks, _ = built
    namespace = mocks.one(NAMESPACE)
    group = mocks.one(RESOURCE_GROUP)
    for r in mocks.of_type(HUB) + mocks.of_type(GROUP):
        assert r.inputs["namespaceName"] == namespace.name
        assert r.inputs["resourceGroupName"] == group.name


def test_namespace_is_standard_with_tls12(built):
    mocks, _ = built
    namespace = mocks.one(NAMESPACE).inputs
    assert namespace["sku"]["name"] == "Standard"
    assert namespace["sku"]["tier"] == "Standard"
    assert namespace["minimumTlsVersion"] == "1.2"
    assert namespace["location"] == CONFIG.location


def test_storage_account_is_locked_down(built):
    mocks, _ = built
    account = mocks.one(ACCOUNT).inputs
    assert account["kind"] == "StorageV2"
    assert account["sku"] == {"name": "Standard_LRS"}
    assert account["minimumTlsVersion"] == "TLS1_2"
    assert account["enableHttpsTrafficOnly"] is True
    assert account["allowBlobPublicAccess"] is False
    assert account["location"] == CONFIG.location


def test_models_container_is_the_app_settings_default_and_private(built):
    mocks, _ = built
    container = mocks.one(CONTAINER)
    assert container.inputs["containerName"] == default("MODELS_CONTAINER")
    assert container.inputs["accountName"] == mocks.one(ACCOUNT).name
    assert container.inputs["publicAccess"] == "None"


def test_resource_group_location_and_prefix(built):
    mocks, _ = built
    assert mocks.one(RESOURCE_GROUP).inputs["location"] == CONFIG.location
    custom = [r for r in mocks.resources if r.typ.startswith("azure-native:")]
    assert len(custom) == 9  # group, account, container, namespace, 3 hubs, 2 consumer groups
    assert all(r.name.startswith(CONFIG.name_prefix) for r in custom)


def test_exports(built):
    mocks, exports = built
    namespace = mocks.one(NAMESPACE).name
    assert exports == {
        "resource_group_name": mocks.one(RESOURCE_GROUP).name,
        "storage_account_name": mocks.one(ACCOUNT).name,
        "eventhub_namespace_name": namespace,
        "eventhub_fully_qualified_namespace": f"{namespace}.servicebus.windows.net",
    }


@pulumi.runtime.test
def test_fully_qualified_namespace_output():
    """The pattern of Pulumi's testing guide: assert inside ``apply`` on the resources' outputs."""
    pulumi.runtime.set_mocks(RecordingMocks(), project="tickcast", stack="test", preview=False)
    outputs: StackOutputs = build(StackConfig())

    def check(args):
        name, host = args
        assert host == f"{name}.servicebus.windows.net"

    namespace = outputs.eventhub_namespace
    return pulumi.Output.all(namespace.name, outputs.eventhub_fully_qualified_namespace).apply(check)


def test_main_builds_the_stack_from_pulumi_config():
    """``infra/__main__.py`` reads the project config and declares the stack (run, not imported)."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="tickcast", stack="test", preview=False)
    pulumi.runtime.set_all_config({"tickcast:ticksPartitions": "12"})

    @pulumi.runtime.test
    def run_main():
        runpy.run_path(str(INFRA / "__main__.py"), run_name="__main__")

    try:
        run_main()
    finally:
        pulumi.runtime.set_all_config({})
    assert hubs_by_name(mocks)[default("TICKS_HUB_NAME")]["partitionCount"] == 12


def test_config_is_read_from_pulumi_config():
    pulumi.runtime.set_all_config(
        {"tickcast:location": "uksouth", "tickcast:namePrefix": "tick2", "tickcast:ticksPartitions": "16"}
    )
    try:
        config = StackConfig.from_pulumi_config(pulumi.Config("tickcast"))
    finally:
        pulumi.runtime.set_all_config({})
    assert config == StackConfig(location="uksouth", name_prefix="tick2", ticks_partitions=16)


def test_config_defaults_match_pulumi_yaml():
    project = yaml.safe_load((INFRA / "Pulumi.yaml").read_text())
    assert project["name"] == "tickcast"
    assert project["runtime"]["name"] == "python"
    declared = {key: spec["default"] for key, spec in project["config"].items()}
    defaults = StackConfig()
    assert declared == {key: getattr(defaults, field) for field, key in StackConfig.CONFIG_KEYS.items()}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ticks_partitions": 0},
        {"predictions_partitions": 33},
        {"deadletter_partitions": True},
        {"ticks_partitions": 2.0},
        {"name_prefix": "Tick"},
        {"name_prefix": "tick-cast"},
        {"name_prefix": "ab"},
        {"name_prefix": "abcdefghijkl"},
        {"location": " "},
    ],
)
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        StackConfig(**kwargs)


def test_stack_module_doctests():
    result = doctest.testmod(stack, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
