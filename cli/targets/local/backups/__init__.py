"""Continuous backup of a local stack: base backups, the WAL archive, point-in-time restore."""
