"""``python -m samplegrad``: the ``samplegrad`` command."""

from samplegrad.cli import main

raise SystemExit(main())
