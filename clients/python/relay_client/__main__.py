"""`python -m relay_client URL "prompt"` (cli.py)."""

import sys

from .cli import main

sys.exit(main())
