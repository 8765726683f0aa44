"""Use-case tests: the importer."""
