"""tickcast's Pulumi stack, importable apart from ``infra/__main__.py`` so tests can build it under mocks.

Modules by concern: :mod:`.config` (stack config and fixed names), :mod:`.monitoring`,
:mod:`.storage`, :mod:`.messaging`, :mod:`.database`, :mod:`.vault`, :mod:`.signalr`,
:mod:`.identity` (identities, role ids), :mod:`.settings_contract` (app settings vs
``shared/settings.py``), :mod:`.functionapp`, :mod:`.events`, :mod:`.ingestor`; :mod:`.stack` wires them.
"""

from .config import StackConfig
from .stack import StackOutputs, build

__all__ = ["StackConfig", "StackOutputs", "build"]
