"""``python -m sonic_bridge.cli``."""

import sys

from sonic_bridge.cli.main import main

sys.exit(main())
