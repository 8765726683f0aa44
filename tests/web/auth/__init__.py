"""The web viewer's login tests: password then TOTP, sessions, CSRF, lockout, headers and the audit trail."""
