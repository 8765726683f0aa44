#!/usr/bin/env bash
# Entry point of the mini-PACS container image (see Dockerfile and docs/INSTALL.md).
#
#   serve         (the default) on the first start, when the data volume holds no pacs.toml,
#                 create the archive with `pacs init` (its output, with the first admin's
#                 one-time password, goes to `docker logs`); then run `pacs serve`.
#   healthcheck   exit 0 when the web viewer answers over HTTPS with the certificate issued
#                 by the archive's own CA (used by the image's HEALTHCHECK).
#   anything else is run as a command, e.g. `docker exec pacs pacs user list`.
#
# Settings: PACS_DATA (default /var/lib/pacs), PACS_STORAGE_KEY_DIR (default /etc/pacs/keys)
# and PACS_SERVER_HOSTNAME (default localhost; the name in the server certificate). They are
# pacs's own variables, so they mean the same to every later `pacs` command in the container.
set -euo pipefail

DATA="${PACS_DATA:-/var/lib/pacs}"
KEYS="${PACS_STORAGE_KEY_DIR:-/etc/pacs/keys}"
HOSTNAME_FOR_CERT="${PACS_SERVER_HOSTNAME:-localhost}"

die() {
    echo "docker-entrypoint: error: $*" >&2
    exit 1
}

check_writable() {
    if [ ! -d "$1" ] || [ ! -w "$1" ] || [ ! -x "$1" ]; then
        die "$1 ($2) is not a directory writable by uid $(id -u): give the volume to that user (chown $(id -u):$(id -g))"
    fi
}

first_start() {
    check_writable "$DATA" "the data volume"
    check_writable "$KEYS" "the key volume"
    echo "docker-entrypoint: no archive in $DATA yet: creating one (keys in $KEYS)"
    pacs init --data "$DATA" --key-dir "$KEYS" --hostname "$HOSTNAME_FOR_CERT"
}

serve() {
    if [ ! -f "$DATA/pacs.toml" ]; then
        first_start
    elif [ -z "$(ls -A -- "$KEYS" 2>/dev/null)" ]; then
        die "$DATA holds an archive but the key volume $KEYS is empty: mount the key volume of its first start"
    fi
    exec pacs serve --data "$DATA"
}

# Connects to the web port (through loopback unless [web] bind names one address), checks
# the server certificate against the archive's CA (it always names localhost), and asks for a
# static file: no session, no audit record, no patient data.
healthcheck() {
    exec python3 - "$DATA" <<'EOF'
import os
import socket
import ssl
import sys
from pathlib import Path

from pacs.core.config import load_settings

settings = load_settings(Path(sys.argv[1]), os.environ)
host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.web.bind, settings.web.bind)
context = ssl.create_default_context(cafile=str(settings.tls_dir / "ca.crt"))
with socket.create_connection((host, settings.web.port), timeout=5) as raw:
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"HEAD /static/app.css HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        status = tls.recv(1024).split(b"\r\n", 1)[0].split()
sys.exit(0 if len(status) >= 2 and status[0].startswith(b"HTTP/") and int(status[1]) < 500 else 1)
EOF
}

main() {
    case "${1:-serve}" in
        serve)
            [ "$#" -le 1 ] || die "serve takes no arguments (settings come from pacs.toml and PACS_* variables)"
            serve
            ;;
        healthcheck) healthcheck ;;
        *) exec "$@" ;;
    esac
}

main "$@"
