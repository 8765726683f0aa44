"""The web viewer's admin page tests: users, modalities, the audit log and the system status."""
