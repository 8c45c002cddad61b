"""`python -m chatstack` is the `chatstack` command."""

import sys

from chatstack.cli import main

sys.exit(main())
