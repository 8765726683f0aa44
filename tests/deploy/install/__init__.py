"""install.sh in its test mode (``--root DIR``): these tests need root."""
