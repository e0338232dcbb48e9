"""``python -m local_stack``: the main job of tickcast, run locally (see :mod:`local_stack.run`).

Subcommands, for running the parts on their own (e.g. the fault-injection suite):

* ``python -m local_stack servers``: start Tansu, Azurite and MariaDB and keep them up (:mod:`local_stack.cmd_servers`);
* ``python -m local_stack functions``: run the function drivers against running servers (:mod:`local_stack.cmd_functions`);
* ``python -m local_stack faults``: the fault-injection suite (:mod:`local_stack.faults`).

Anything else is the main job's command line (:func:`local_stack.run.main`).
"""

import importlib
import sys

SUBCOMMANDS = {
    "servers": "local_stack.cmd_servers",
    "functions": "local_stack.cmd_functions",
    "faults": "local_stack.faults.suite",
}

if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
    sys.exit(importlib.import_module(SUBCOMMANDS[sys.argv[1]]).main(sys.argv[2:]))

from local_stack.run import main  # noqa: E402

sys.exit(main())
