"""``python -m harmono.cli`` (and ``torchrun -m harmono.cli``): the ``harmono`` command."""

import sys

from harmono.cli.main import main

sys.exit(main())
