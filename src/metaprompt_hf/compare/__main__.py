"""`python -m metaprompt_hf.compare` (or `accelerate launch -m metaprompt_hf.compare`)."""

import sys

from .command import main

sys.exit(main())
