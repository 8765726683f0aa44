"""Core tests: the certificate authority and the configuration."""
