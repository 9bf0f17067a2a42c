"""`python -m services.cli …`: the same as `edfi-im …`."""

import sys

from services.cli.main import main

sys.exit(main())
