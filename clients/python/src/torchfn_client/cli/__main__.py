"""``python -m torchfn_client.cli``, the same as ``torchfn``."""

import sys

from torchfn_client.cli.main import main

sys.exit(main())
