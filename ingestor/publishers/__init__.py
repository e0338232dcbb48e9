"""Publishers of the live ingestor, behind one interface (:class:`~ingestor.publishers.base.TickPublisher`).

``INGESTOR_PUBLISHER=eventhubs`` -> :class:`~ingestor.publishers.eventhubs.EventHubsTickPublisher`;
``kafka`` -> :class:`~ingestor.publishers.kafka.KafkaTickPublisher`. (The synchronous
:class:`ingestor.publisher.KafkaPublisher` serves the ``replay`` command.)
"""

from __future__ import annotations

from typing import Any

from ingestor.config import IngestorConfig
from ingestor.publishers.base import PublishResult, TickPublisher

__all__ = ["PublishResult", "TickPublisher", "make_publisher"]


def make_publisher(config: IngestorConfig, *, kafka_config: dict[str, Any] | None = None) -> TickPublisher:
    """The publisher chosen by ``config.publisher``.

    Raises
    ------
    shared.settings.SettingsError
        The chosen publisher's connection settings are missing (via ``config.check()``).
    """
    config.check()
    if config.publisher == "kafka":
        from ingestor.publishers.kafka import KafkaTickPublisher

        return KafkaTickPublisher(
            config.kafka_bootstrap_servers,
            config.ticks_hub,
            config.deadletter_hub,
            config={**config.kafka_config, **(kafka_config or {})},
        )
    from ingestor.publishers.eventhubs import EventHubsTickPublisher

    return EventHubsTickPublisher(
        config.ticks_hub,
        config.deadletter_hub,
        connection_string=config.eventhub_connection,
        namespace=config.eventhub_namespace,
        client_id=config.azure_client_id,
    )
