"""Deployment tests: install.sh, the systemd unit, the Dockerfile and the supervised service."""
