# mini-PACS container image: DICOM over mutual TLS on 2762, the HTTPS web viewer on 8443.
#
#   docker build -t mini-pacs .
#   docker run -d --name pacs --restart unless-stopped --stop-timeout 60 \
#       -p 2762:2762 -p 8443:8443 -e PACS_SERVER_HOSTNAME=pacs.clinic.example \
#       -v pacs-data:/var/lib/pacs -v pacs-keys:/etc/pacs/keys mini-pacs
#   docker logs pacs        # the first start prints the first admin's one-time password
#
# The archive and its keys live in two separate volumes; nothing secret is in the image.
# See docs/INSTALL.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: compiles what has no wheel, installs the project into a virtualenv ---------
FROM ${PYTHON_IMAGE} AS builder

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY pyproject.toml README.md ./
COPY pacs ./pacs
COPY storage ./storage
COPY webviewer ./webviewer
RUN python -m venv /opt/pacs/venv \
    && /opt/pacs/venv/bin/pip install /src \
    && /opt/pacs/venv/bin/pacs --help >/dev/null

COPY deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh

# --- runtime: slim, no compilers, runs as the unprivileged user pacs (uid 10001) ---------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="mini-PACS" \
      org.opencontainers.image.description="Hardened mini-PACS: DICOM over mutual TLS, encrypted storage, a 2FA web viewer"

RUN groupadd --system --gid 10001 pacs \
    && useradd --system --uid 10001 --gid pacs --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin pacs \
    && install -d -m 0755 -o root -g root /etc/pacs \
    && install -d -m 0700 -o pacs -g pacs /var/lib/pacs /etc/pacs/keys

COPY --from=builder /opt/pacs/venv /opt/pacs/venv
COPY --from=builder /usr/local/bin/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh

ENV PATH=/opt/pacs/venv/bin:$PATH \
    PACS_DATA=/var/lib/pacs \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The archive (encrypted blobs, index, audit trail, certificates) and its keys, kept apart.
VOLUME ["/var/lib/pacs", "/etc/pacs/keys"]

# DICOM over TLS (IANA dicom-tls) and HTTPS.
EXPOSE 2762 8443

USER 10001:10001
WORKDIR /

# A TLS handshake with the web viewer, verified against the archive's own CA.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/docker-entrypoint.sh", "healthcheck"]

# pacs serve stops cleanly on SIGTERM; give it time to finish associations (docker run --stop-timeout 60).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["serve"]
