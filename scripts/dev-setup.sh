#!/usr/bin/env bash
# Installs everything the test suite needs on Debian 12 / Ubuntu 22.04+:
# the system packages (dcmtk, PostgreSQL, openssl, Chromium for the browser tests,
# systemd-analyze for the unit file, shellcheck for the install scripts, ss from iproute2
# for install.sh's port check, losetup, mkfs.ext4 and mount for the raw-disk ingest tests,
# Node.js for the viewer's JavaScript unit tests, and zbarimg from zbar-tools to decode the
# TOTP enrolment QR code in the browser tests),
# a running PostgreSQL,
# a virtualenv in .venv with the project and its test extras,
# and OHIF Viewer's published build (npm) in the test cache for the OHIF browser test.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(dcmtk postgresql openssl python3-venv chromium chromium-driver systemd shellcheck iproute2
    util-linux mount e2fsprogs nodejs zbar-tools dicom3tools libpango-1.0-0 libpangoft2-1.0-0 poppler-utils
    rsyslog rsyslog-gnutls)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Tests use the PostgreSQL server on 127.0.0.1:5432 when it answers; start the
# local cluster if it is installed but stopped (tests start a throwaway one otherwise).
if command -v pg_lsclusters >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    for version in $(ls /etc/postgresql 2>/dev/null); do
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
fi

# The tests' editable install goes into .venv; the archive itself runs from .venv-pacs (README),
# which this script never touches. A regular install in .venv is what an earlier quick start
# served from: reinstalling over it would delete the files of a running pacs serve under it.
if compgen -G ".venv/lib/python3*/site-packages/webviewer/__init__.py" >/dev/null; then
    echo "scripts/dev-setup.sh: .venv holds a regular install of the archive, which a running" \
        "'pacs serve' may use; reinstalling would delete its files under it. Stop that server," \
        "serve from .venv-pacs as the README's quick start does, remove .venv and run this again." >&2
    exit 1
fi
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"

# OHIF Viewer's published build for tests/web/test_ohif.py: the prebuilt static files (dist/) of
# the npm package @ohif/app, fetched once into the test cache, its tarball checked against the
# registry integrity pinned here. Debian's nodejs comes without npm (NodeSource's includes it).
OHIF_VERSION=3.13.2
OHIF_INTEGRITY="sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
OHIF_DIR="${PACS_TEST_CACHE:-$HOME/.cache/pacs-tests}/ohif-$OHIF_VERSION"
if [ ! -f "$OHIF_DIR/index.html" ]; then
    if ! command -v npm >/dev/null; then
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm >/dev/null
    fi
    ohif_work="$(mktemp -d)"
    (cd "$ohif_work" && npm pack --silent "@ohif/app@$OHIF_VERSION" >/dev/null)
    ohif_tarball="$ohif_work/ohif-app-$OHIF_VERSION.tgz"
    if [ "sha512-$(openssl dgst -sha512 -binary "$ohif_tarball" | base64 -w0)" != "$OHIF_INTEGRITY" ]; then
        echo "@ohif/app@$OHIF_VERSION does not match its pinned integrity" >&2
        exit 1
    fi
    rm -rf "$OHIF_DIR.part" && mkdir -p "$OHIF_DIR.part"
    tar -xzf "$ohif_tarball" -C "$OHIF_DIR.part" --strip-components=2 package/dist
    mv "$OHIF_DIR.part" "$OHIF_DIR"
    rm -rf "$ohif_work"
fi
