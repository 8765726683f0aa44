"""Storage tests: the archive, its crypto, C-FIND matching, and ingest under crashes, full disks and scans."""
