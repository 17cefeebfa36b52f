"""`python -m cf_hf.cli` (e.g. under `accelerate launch`): the same as `cf-hf`."""

import sys

from cf_hf.cli import main

sys.exit(main())
