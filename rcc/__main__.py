"""`python -m rcc ...` is the `rcc` command."""

import sys

from rcc.compiler.cli import main

sys.exit(main())
