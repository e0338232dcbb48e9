"""``python -m local_stack``: the main job of tickcast, run locally (see :mod:`local_stack.run`)."""

import sys

from local_stack.run import main

sys.exit(main())
