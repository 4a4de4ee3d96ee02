import sys

from typha.cli import main

sys.exit(main())
