"""``python -m lpm.bench``: the NDlib comparison without the ``lpm`` command."""

from lpm.bench.cli import main

raise SystemExit(main())
