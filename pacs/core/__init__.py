"""The core: context, config, PKI, TLS policy, accounts, audit, nodes (moving here one at a time)."""
