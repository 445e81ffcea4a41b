"""``python -m pinsdk``: the command line, as the ``pinsdk`` script runs it."""

from ._cli import main

raise SystemExit(main())
