"""Pulumi entry point: read the stack config, declare the resources, export the outputs.

All resources are declared in :mod:`tickcast_infra.stack`, which the tests build under
``pulumi.runtime.set_mocks``; keep this file free of resources.
"""

import pulumi
from tickcast_infra import StackConfig, build

outputs = build(StackConfig.from_pulumi_config())
for name, value in outputs.exports().items():
    pulumi.export(name, value)
