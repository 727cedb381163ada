"""`python -m relay_client.conformance URL` (cli.py)."""

import sys

from .cli import main

sys.exit(main())
