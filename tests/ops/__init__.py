"""Use-case tests: the importer, backup and restore, key rotation and selfcheck."""
