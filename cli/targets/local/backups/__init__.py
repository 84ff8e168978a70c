"""Continuous backups of the local target: the WAL archive, base backups and their bucket."""
