"""`python -m felix_client`: the `felix-agent` command, for where the console
script is not on PATH.  An entry point is a composition root in place: it is
the one module of this package allowed to import `commands`."""

import sys

from commands.felix_agent import main

sys.exit(main())
