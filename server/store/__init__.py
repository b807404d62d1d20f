"""State backends behind server.core.state: embedded (SQLite + in-process) and distributed."""
