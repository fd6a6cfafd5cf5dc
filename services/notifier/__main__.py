"""``python -m services.notifier``: the same as ``seatledger run notifier``."""

import sys

from services.notifier.entrypoint import main

sys.exit(main())
