"""tickcast ingestor (the Container App): exchange trades -> tick events on Event Hubs / Kafka.

``python -m ingestor live`` streams Binance spot / USD-M, Coinbase and Kraken websockets
(:mod:`ingestor.live`, :mod:`ingestor.sources`, :mod:`ingestor.publishers`);
``python -m ingestor replay`` replays recorded files (:mod:`ingestor.replay`).
Settings: :mod:`ingestor.config`. Image: ``ingestor/Dockerfile`` (built from the repo root).
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata

__all__ = ["OneLineErrorParser", "program_name", "version"]


def version() -> str:
    """The installed ``tickcast`` distribution's version (``pip install -e .``); ``0+unknown`` if not installed.

    >>> version() == metadata.version("tickcast") or version() == "0+unknown"
    True
    """
    try:
        return metadata.version("tickcast")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def program_name(module: str) -> str:
    """How the running command was invoked: the console script's name (e.g. ``tickcast-ingestor``)
    or ``python -m <module>`` when run with ``-m``."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return f"python -m {module}" if name in ("", "__main__.py", "-c", "-m") else name


class OneLineErrorParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose usage errors are one line on stderr, exit status 2:
    ``<prog>: <problem> (see <prog> --help)``, instead of the usage block plus the error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print ``message`` as one line and exit with status 2 (argparse's usage-error status)."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")
