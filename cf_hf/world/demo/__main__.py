"""`python -m cf_hf.world.demo`: the same as `cf-hf demo`."""

import sys

from .cli import main

sys.exit(main())
