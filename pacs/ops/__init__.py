"""Use cases shared by the command line and the services (see docs/ARCHITECTURE.md)."""
