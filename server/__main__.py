"""``python -m server`` runs the ``switchboard`` CLI."""

from server.cli import main

raise SystemExit(main())
