"""tickcast's Pulumi stack, importable apart from ``infra/__main__.py`` so tests can build it under mocks."""

from .stack import StackConfig, StackOutputs, build

__all__ = ["StackConfig", "StackOutputs", "build"]
