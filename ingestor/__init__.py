"""tickcast ingestor (the Container App): exchange trades -> tick events on Event Hubs / Kafka.

``python -m ingestor live`` streams Binance spot / USD-M, Coinbase and Kraken websockets
(:mod:`ingestor.live`, :mod:`ingestor.sources`, :mod:`ingestor.publishers`);
``python -m ingestor replay`` replays recorded files (:mod:`ingestor.replay`).
Settings: :mod:`ingestor.config`. Image: ``ingestor/Dockerfile`` (built from the repo root).
"""
