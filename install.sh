#!/usr/bin/env bash
# install.sh: installs (or upgrades, or removes) mini-PACS as a hardened systemd service on
# Debian 12 or Ubuntu 22.04 and newer. Run it as root from the source tree; see --help and
# docs/INSTALL.md. It never re-initialises an archive and never touches the keys.
set -euo pipefail
umask 022

readonly PROG="install.sh"
SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SOURCE_DIR
readonly DEFAULT_DICOM_PORT=2762 DEFAULT_WEB_PORT=8443
readonly SERVICE=pacs.service SERVICE_USER=pacs
readonly CHECK_SERVICE=pacs-selfcheck.service CHECK_TIMER=pacs-selfcheck.timer

# Options.
ROOT=""
HOST_ARG=""
DICOM_PORT_ARG=""
WEB_PORT_ARG=""
PYTHON_ARG=""
PYTHON=""
OS_RELEASE=/etc/os-release
UNINSTALL=0
RESTORE_FILE=""
PASSPHRASE_FILE=""

# State for the exit handler.
WORK=""
RESTART_ON_EXIT=0
ASIDE_DATA=""
ASIDE_KEYS=""

usage() {
    cat <<EOF
Usage: sudo ./install.sh [OPTIONS]

Installs mini-PACS from this source tree as the systemd service $SERVICE on Debian 12 or
Ubuntu 22.04 and newer, or upgrades an existing installation. Run it again to upgrade: the
archive and its keys are always kept, and the new version's index migrations are applied
(pacs migrate) before the service starts again.

  code      /opt/pacs/venv               (root, 0755)
  archive   /var/lib/pacs                (user pacs, 0700)
  keys      /etc/pacs/keys               (user pacs, 0700; /etc/pacs is root:pacs 0750)
  backups   /var/backups/pacs            (user pacs, 0700): where "sudo pacs backup" may write
  service   /etc/systemd/system/$SERVICE (0644), runs as the system user pacs
  selfcheck /etc/systemd/system/$CHECK_TIMER and $CHECK_SERVICE (0644): the daily
            selfcheck, whose findings, expiring certificates and checkpoint go out as alerts
  command   /usr/local/bin/pacs          (0755): "sudo pacs ..." runs pacs as user pacs

Options:
  --hostname NAME     name or IP address that doctors and modalities use to reach this
                      machine; goes into the server certificate of a new archive
                      (default: the output of 'hostname -f'; ignored for an existing archive)
  --dicom-port PORT   DICOM TLS port, written to pacs.toml [dicom] port
                      (default: $DEFAULT_DICOM_PORT, or the port already configured)
  --web-port PORT     HTTPS port of the web viewer, written to pacs.toml [web] port
                      (default: $DEFAULT_WEB_PORT, or the port already configured)
  --python PATH       Python 3.11 or newer to build the virtualenv with (default: the first
                      of python3, python3.13, python3.12, python3.11 in /usr/bin, then in
                      /usr/local/bin, that is 3.11 or newer); every user must be able to run it
  --uninstall         stop and remove the service, the code and the pacs command; keep the
                      archive, the keys and the pacs user
  --restore FILE      replace the installed archive with the backup FILE (made by
                      "sudo pacs backup"; user pacs must be able to read it): stops the
                      service, sets the current archive and keys aside (renamed with a
                      .replaced-DATE suffix, never deleted), restores and verifies the
                      backup into /var/lib/pacs and /etc/pacs/keys, and starts the service;
                      if restoring fails or is interrupted, the archive that was there is
                      put back (an archive whose index is in PostgreSQL is not supported)
  --passphrase-file F with --restore: read the backup passphrase from F's first line
                      (default: ask on the terminal)
  --root DIR          test mode: install everything under DIR (DIR/opt/pacs/venv,
                      DIR/var/lib/pacs, DIR/etc/pacs/keys, DIR/etc/systemd/system/$SERVICE,
                      DIR/usr/local/bin/pacs) and create the pacs user in DIR/etc/passwd;
                      pacs init runs as root and its files are then given to that user;
                      pacs.toml and the pacs command name the paths under DIR; no systemctl,
                      no packages installed
  --os-release FILE   read the system's identity from FILE instead of /etc/os-release
  -h, --help          show this help and exit

It stops with a one-line reason, before changing anything, when it is not run as root, on an
unsupported system, without Python 3.11 or newer, or when the DICOM or HTTPS port is used by
another program than a running $SERVICE.
EOF
}

die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

usage_error() {
    echo "$PROG: error: $* (see $PROG --help)" >&2
    exit 2
}

say() {
    echo "$PROG: $*"
}

# --- arguments -------------------------------------------------------------------------

set_option() {
    local name="$1" value="$2"
    case "$name" in
        --hostname) HOST_ARG="$value" ;;
        --dicom-port) DICOM_PORT_ARG="$value" ;;
        --web-port) WEB_PORT_ARG="$value" ;;
        --python) PYTHON_ARG="$value" ;;
        --restore) RESTORE_FILE="$value" ;;
        --passphrase-file) PASSPHRASE_FILE="$value" ;;
        --root) ROOT="$value" ;;
        --os-release) OS_RELEASE="$value" ;;
        *) usage_error "unknown option $name" ;;
    esac
    [ -n "$value" ] || usage_error "$name needs a value"
}

parse_args() {
    while [ "$#" -gt 0 ]; do
        case "$1" in
            -h | --help)
                usage
                exit 0
                ;;
            --uninstall) UNINSTALL=1 ;;
            --hostname | --dicom-port | --web-port | --python | --root | --os-release | --restore | --passphrase-file)
                [ "$#" -ge 2 ] || usage_error "$1 needs a value"
                set_option "$1" "$2"
                shift
                ;;
            --*=*) set_option "${1%%=*}" "${1#*=}" ;;
            *) usage_error "unknown option $1" ;;
        esac
        shift
    done
}

check_port_value() {
    local flag="$1" value="$2"
    if ! [[ "$value" =~ ^[0-9]{1,5}$ ]] || [ "$((10#$value))" -gt 65535 ]; then
        usage_error "$flag $value: not a port number"
    fi
    [ "$((10#$value))" -ge 1024 ] \
        || usage_error "$flag $value: the service runs without privileges and cannot listen below 1024"
}

validate_args() {
    if [ "$UNINSTALL" -eq 1 ]; then
        [ -z "$HOST_ARG$DICOM_PORT_ARG$WEB_PORT_ARG$PYTHON_ARG" ] \
            || usage_error "--uninstall takes no other option than --root"
    fi
    if [ -n "$RESTORE_FILE" ]; then
        if [ "$UNINSTALL" -eq 1 ] || [ -n "$HOST_ARG$DICOM_PORT_ARG$WEB_PORT_ARG$PYTHON_ARG" ]; then
            usage_error "--restore takes no other option than --passphrase-file and --root"
        fi
    fi
    [ -z "$PASSPHRASE_FILE" ] || [ -n "$RESTORE_FILE" ] || usage_error "--passphrase-file goes with --restore"
    [ -z "$DICOM_PORT_ARG" ] || check_port_value --dicom-port "$DICOM_PORT_ARG"
    [ -z "$WEB_PORT_ARG" ] || check_port_value --web-port "$WEB_PORT_ARG"
    if [ -n "$HOST_ARG" ]; then
        [[ "$HOST_ARG" =~ ^[A-Za-z0-9]([A-Za-z0-9.:-]{0,251}[A-Za-z0-9])?$ ]] \
            || usage_error "--hostname $HOST_ARG: not a host name or IP address"
    fi
    if [ -n "$ROOT" ]; then
        ROOT="$(realpath -m -- "$ROOT")"
        [ "$ROOT" != "/" ] || usage_error "--root /: leave --root out to install on this machine"
        [[ "$ROOT" =~ ^/[A-Za-z0-9._/+-]+$ ]] \
            || usage_error "--root $ROOT: use a path of letters, digits and . _ / + - only"
    fi
}

# --- layout ----------------------------------------------------------------------------

set_paths() {
    OPT="$ROOT/opt/pacs"
    VENV="$OPT/venv"
    DATA="$ROOT/var/lib/pacs"
    ETC="$ROOT/etc/pacs"
    KEYS="$ETC/keys"
    BACKUPS="$ROOT/var/backups/pacs"
    UNIT="$ROOT/etc/systemd/system/$SERVICE"
    CHECK_UNITS=("$ROOT/etc/systemd/system/$CHECK_SERVICE" "$ROOT/etc/systemd/system/$CHECK_TIMER")
    WRAPPER="$ROOT/usr/local/bin/pacs"
    CONFIG="$DATA/pacs.toml"
}

# The person running this, for the audit record of `pacs init`.
caller_name() {
    local name="${SUDO_USER:-}"
    [[ "$name" =~ ^[A-Za-z0-9._-]{1,64}$ ]] || name="$(id -un)"
    echo "$name"
}

is_our_wrapper() {
    grep -q '^PACS_BIN=' "$WRAPPER" 2>/dev/null
}

# --- checks (nothing is changed before they all pass) ----------------------------------

require_root() {
    [ "$(id -u)" -eq 0 ] || die "run it as root (sudo ./install.sh)"
}

take_lock() {
    exec 9<"${BASH_SOURCE[0]}"
    flock -n 9 || die "another install.sh is running"
}

os_field() {
    sed -n "s/^$1=//p" "$OS_RELEASE" | head -n 1 | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\\(.*\\)'\$/\\1/"
}

# version_ge HAVE WANT: dotted version HAVE is at least WANT.
version_ge() {
    [[ "$1" =~ ^[0-9]+(\.[0-9]+)*$ ]] || return 1
    [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}

check_os() {
    local id version name want
    [ -r "$OS_RELEASE" ] || die "cannot read $OS_RELEASE: supported systems are Debian 12+ and Ubuntu 22.04+"
    id="$(os_field ID)"
    version="$(os_field VERSION_ID)"
    name="$(os_field PRETTY_NAME)"
    case "$id" in
        debian) want=12 ;;
        ubuntu) want=22.04 ;;
        *) want="" ;;
    esac
    if [ -z "$want" ] || ! version_ge "$version" "$want"; then
        die "unsupported system ${name:-${id:-unknown}} (ID=${id:-none} VERSION_ID=${version:-none}):" \
            "mini-PACS needs Debian 12 or newer, or Ubuntu 22.04 or newer"
    fi
}

python_version() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null
}

# The interpreter must be the system's (or one every user can run): the service user runs it.
find_python() {
    local candidate version found=""
    local hint="apt-get install python3.11 python3.11-venv (on Ubuntu 22.04 from the universe component)"
    if [ -n "$PYTHON_ARG" ]; then
        PYTHON="$(command -v -- "$PYTHON_ARG")" || die "Python $PYTHON_ARG not found: $hint"
        version="$(python_version "$PYTHON")" || die "$PYTHON_ARG does not run: $hint"
        version_ge "$version" 3.11 || die "$PYTHON_ARG is Python $version, mini-PACS needs 3.11 or newer: $hint"
        PY_VERSION="$version"
    else
        for candidate in /usr/bin/python3 /usr/bin/python3.13 /usr/bin/python3.12 /usr/bin/python3.11 \
            /usr/local/bin/python3 /usr/local/bin/python3.13 /usr/local/bin/python3.12 /usr/local/bin/python3.11; do
            [ -x "$candidate" ] || continue
            version="$(python_version "$candidate")" || continue
            if version_ge "$version" 3.11; then
                PYTHON="$candidate"
                PY_VERSION="$version"
                break
            fi
            found="${found:+$found, }$candidate is $version"
        done
        [ -n "${PYTHON:-}" ] || die "mini-PACS needs Python 3.11 or newer (${found:-no python3 in /usr/bin}): $hint"
    fi
    (cd / && setpriv --reuid=65534 --regid=65534 --clear-groups env -i "$PYTHON" -c pass 2>/dev/null) \
        || die "$PYTHON cannot be run by other users (the service user must run it): use --python /usr/bin/python3.11"
}

need_tool() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found: apt-get install $2"
}

check_tools() {
    need_tool ss iproute2
    need_tool setpriv util-linux
    need_tool flock util-linux
    need_tool useradd passwd
    need_tool groupadd passwd
    need_tool tar tar
    if [ -z "$ROOT" ]; then
        need_tool systemctl systemd
        [ -d /run/systemd/system ] \
            || die "systemd is not running here (a container?): use the Docker image, see docs/INSTALL.md"
        if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
            need_tool apt-get apt
        fi
    elif ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        die "$PYTHON cannot make virtualenvs: apt-get install python$PY_VERSION-venv"
    fi
}

dir_has_entries() {
    [ -d "$1" ] && [ -n "$(ls -A -- "$1")" ]
}

# Reads one value of pacs.toml (with Python's own TOML parser), or prints the default.
config_get() {
    "$PYTHON" - "$CONFIG" "$1" "$2" "$3" <<'EOF' || die "cannot read $CONFIG: fix it or restore it from a backup"
import sys, tomllib
path, section, key, default = sys.argv[1:5]
with open(path, "rb") as handle:
    print(tomllib.load(handle).get(section, {}).get(key, default))
EOF
}

check_layout() {
    if [ -f "$CONFIG" ]; then
        EXISTING=1
        HOST="$(config_get server hostname localhost)"
        AE_TITLE="$(config_get dicom ae_title PACS)"
        CURRENT_DICOM_PORT="$(config_get dicom port "$DEFAULT_DICOM_PORT")"
        CURRENT_WEB_PORT="$(config_get web port "$DEFAULT_WEB_PORT")"
    else
        EXISTING=0
        ! dir_has_entries "$DATA" \
            || die "$DATA holds files but no archive (no pacs.toml): move them away; install.sh never overwrites data"
        ! dir_has_entries "$KEYS" \
            || die "$KEYS holds keys but $DATA holds no archive: restore the archive or move the keys away; install.sh never overwrites keys"
        HOST="${HOST_ARG:-$(hostname -f 2>/dev/null || hostname)}"
        [[ "$HOST" =~ ^[A-Za-z0-9]([A-Za-z0-9.:-]{0,251}[A-Za-z0-9])?$ ]] \
            || die "cannot use the host name '$HOST' for the certificate: give --hostname NAME"
        AE_TITLE=PACS
        CURRENT_DICOM_PORT="$DEFAULT_DICOM_PORT"
        CURRENT_WEB_PORT="$DEFAULT_WEB_PORT"
    fi
    DICOM_PORT="${DICOM_PORT_ARG:-$CURRENT_DICOM_PORT}"
    WEB_PORT="${WEB_PORT_ARG:-$CURRENT_WEB_PORT}"
    [ "$DICOM_PORT" != "$WEB_PORT" ] || usage_error "the DICOM and web ports must differ (both $DICOM_PORT)"
    if [ -e "$WRAPPER" ] && ! is_our_wrapper; then
        die "$WRAPPER exists and was not installed by install.sh: move it away first"
    fi
}

# True when every process listening in `ss -ltnpH` output $1 belongs to our running service.
listeners_are_ours() {
    local pids pid
    pids="$(grep -o 'pid=[0-9]*' <<<"$1" | cut -d= -f2 | sort -u)"
    [ -n "$pids" ] || return 1
    for pid in $pids; do
        grep -qs "/$SERVICE\$" "/proc/$pid/cgroup" || return 1
    done
}

check_port() {
    local port="$1" what="$2" flag="$3" listeners who
    listeners="$(ss -ltnpH "sport = :$port")" || die "cannot list listening ports with ss"
    [ -n "$listeners" ] || return 0
    if [ -z "$ROOT" ] && listeners_are_ours "$listeners"; then
        return 0
    fi
    who="$(grep -o 'users:(("[^"]*",pid=[0-9]*' <<<"$listeners" | head -n 1 \
        | sed 's/^users:(("\([^"]*\)",pid=\([0-9]*\)$/ by \1 (pid \2)/')" || true
    die "the $what port $port is already in use${who}: stop that program or choose another port with $flag"
}

# --- changes -----------------------------------------------------------------------------

ensure_venv_package() {
    local package="python$PY_VERSION-venv"
    "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 && return
    say "installing $package"
    if ! DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
        || ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null; then
        die "could not install $package: apt-get install $package"
    fi
}

seed_root_accounts() {
    mkdir -p "$ROOT/etc"
    [ -f "$ROOT/etc/passwd" ] || printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
    [ -f "$ROOT/etc/group" ] || printf 'root:x:0:\n' >"$ROOT/etc/group"
    if [ ! -f "$ROOT/etc/shadow" ]; then
        (umask 077 && printf 'root:*:19000:0:99999:7:::\n' >"$ROOT/etc/shadow")
    fi
    if [ ! -f "$ROOT/etc/gshadow" ]; then
        (umask 077 && printf 'root:*::\n' >"$ROOT/etc/gshadow")
    fi
    if [ ! -f "$ROOT/etc/login.defs" ] && [ -f /etc/login.defs ]; then
        cp /etc/login.defs "$ROOT/etc/login.defs"
    fi
}

# Field $2 of entry $1 in the account database file $3 (DIR's own files in test mode).
account_field() {
    if [ -n "$ROOT" ]; then
        awk -F: -v name="$1" -v field="$2" '$1 == name { print $field; exit }' "$ROOT/etc/$3"
    else
        getent "$3" "$1" | cut -d: -f"$2"
    fi
}

create_user() {
    local prefix=()
    if [ -n "$ROOT" ]; then
        seed_root_accounts
        prefix=(--prefix "$ROOT")
    fi
    if [ -z "$(account_field "$SERVICE_USER" 1 group)" ]; then
        groupadd "${prefix[@]}" --system "$SERVICE_USER"
    fi
    if [ -z "$(account_field "$SERVICE_USER" 1 passwd)" ]; then
        say "creating the system user $SERVICE_USER"
        useradd "${prefix[@]}" --system --gid "$SERVICE_USER" --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --comment "mini-PACS service" "$SERVICE_USER"
    fi
    read_service_ids
}

# Sets PACS_UID and PACS_GID from the service user's account.
read_service_ids() {
    PACS_UID="$(account_field "$SERVICE_USER" 3 passwd)"
    PACS_GID="$(account_field "$SERVICE_USER" 3 group)"
    [[ "$PACS_UID:$PACS_GID" =~ ^[0-9]+:[0-9]+$ ]] || die "cannot find the uid and gid of user $SERVICE_USER"
}

make_dirs() {
    mkdir -p "$ROOT/opt" "$ROOT/var/lib" "$ROOT/etc"
    install -d -m 0755 -o 0 -g 0 "$OPT"
    install -d -m 0700 -o "$PACS_UID" -g "$PACS_GID" "$DATA"
    install -d -m 0750 -o 0 -g "$PACS_GID" "$ETC"
    install -d -m 0700 -o "$PACS_UID" -g "$PACS_GID" "$KEYS"
    mkdir -p "$ROOT/var/backups"
    install -d -m 0700 -o "$PACS_UID" -g "$PACS_GID" "$BACKUPS"
}

service_active() {
    [ -z "$ROOT" ] && systemctl is-active --quiet "$SERVICE"
}

# Copies the source tree without checkouts, virtualenvs, build leftovers, archives or keys.
copy_source() {
    mkdir "$WORK/src"
    tar -C "$SOURCE_DIR" \
        --exclude=./.git --exclude=./.venv --exclude=./.venv-pacs --exclude=./build --exclude=./dist \
        --exclude='*.egg-info' --exclude='*-certs' --exclude='*.key' \
        --exclude=./pacs-data --exclude=./test-artifacts --exclude=./tests --exclude=./bench \
        --exclude=__pycache__ --exclude=.pytest_cache --exclude=.ruff_cache \
        -cf - . | tar -C "$WORK/src" -xf -
}

quiet_pip() {
    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 "$@"
}

# Builds every wheel first (the service keeps running meanwhile), then replaces the
# virtualenv with a fresh one installed from those wheels only. On failure the old
# virtualenv is put back; on success it stays in $VENV.old until the archive is migrated.
install_code() {
    say "building mini-PACS and its dependencies from $SOURCE_DIR"
    copy_source
    "$PYTHON" -m venv "$WORK/build-venv" || die "$PYTHON -m venv failed"
    quiet_pip "$WORK/build-venv/bin/python" -m pip wheel -q --wheel-dir "$WORK/wheels" "$WORK/src" \
        || die "building the wheels failed (is the network or a package index reachable?)"

    if service_active; then
        say "stopping $SERVICE for the upgrade"
        RESTART_ON_EXIT=1
        systemctl stop "$SERVICE"
    fi
    rm -rf "$VENV.old"
    if [ -d "$VENV" ]; then
        mv "$VENV" "$VENV.old"
    fi
    say "installing the code in $VENV"
    if "$PYTHON" -m venv "$VENV" \
        && quiet_pip "$VENV/bin/python" -m pip install -q --no-index --no-deps "$WORK/wheels"/*.whl \
        && "$VENV/bin/pacs" --help >/dev/null; then
        return
    fi
    put_back_old_code "installing the code in $VENV failed"
}

# Puts the previous virtualenv back (if there was one) and stops with reason $1.
put_back_old_code() {
    rm -rf "$VENV"
    if [ -d "$VENV.old" ]; then
        mv "$VENV.old" "$VENV"
        die "$1; the previous version was put back"
    fi
    die "$1"
}

# Applies the new code's index migrations before the service starts (pacs migrate is
# audited); if they fail, the previous code is put back, with the schema it knows.
migrate_archive() {
    local output
    if ! output="$(pacs_as_service_user migrate --data "$DATA" 2>"$WORK/migrate.err")"; then
        cat -- "$WORK/migrate.err" >&2
        put_back_old_code "migrating the archive in $DATA failed"
    fi
    if [ -n "$ROOT" ]; then
        chown -R "$PACS_UID:$PACS_GID" "$DATA" "$KEYS"
    fi
    MIGRATION="${output##*$'\n'}"
    say "$MIGRATION"
}

pacs_as_service_user() {
    local command=(env -i PATH=/usr/bin:/bin LANG=C.UTF-8 LOGNAME="$(caller_name)" "$VENV/bin/pacs" "$@")
    if [ -z "$ROOT" ]; then
        command=(setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_USER" --clear-groups --no-new-privs "${command[@]}")
    fi
    (cd / && "${command[@]}")
}

init_archive() {
    local output
    say "creating the archive in $DATA (keys in $KEYS) for $HOST"
    if ! output="$(pacs_as_service_user init --data "$DATA" --key-dir "$KEYS" --hostname "$HOST" 2>&1)"; then
        echo "$output" >&2
        die "pacs init failed"
    fi
    if [ -n "$ROOT" ]; then
        # Test mode ran it as root: hand everything to DIR's pacs user.
        chown -R "$PACS_UID:$PACS_GID" "$DATA" "$KEYS"
    fi
    ADMIN_NAME="$(sed -n 's/^ *first admin *\([^,]*\), one-time password: .*/\1/p' <<<"$output" | head -n 1)"
    ADMIN_PASSWORD="$(sed -n 's/.*one-time password: \([^[:space:]]*\).*/\1/p' <<<"$output" | head -n 1)"
    [ -n "$ADMIN_PASSWORD" ] || die "pacs init printed no one-time password for the first admin"
}

# Sets `key = value` in [section] of pacs.toml, keeping its owner and mode.
config_set() {
    local section="$1" key="$2" value="$3" tmp
    tmp="$(mktemp "$DATA/.pacs.toml.XXXXXX")"
    awk -v section="$section" -v key="$key" -v value="$value" '
        /^[[:space:]]*\[/ {
            if (inside && !done) { print key " = " value; done = 1 }
            inside = ($0 ~ "^[[:space:]]*\\[" section "\\][[:space:]]*(#.*)?$")
            print
            next
        }
        inside && !done && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" { print key " = " value; done = 1; next }
        { print }
        END {
            if (!done) {
                if (!inside) print "\n[" section "]"
                print key " = " value
            }
        }' "$CONFIG" >"$tmp"
    chown --reference="$CONFIG" "$tmp"
    chmod --reference="$CONFIG" "$tmp"
    mv -f "$tmp" "$CONFIG"
}

set_ports() {
    local configured
    configured="$(config_get dicom port "$DEFAULT_DICOM_PORT")"
    if [ "$configured" != "$DICOM_PORT" ]; then
        say "setting [dicom] port = $DICOM_PORT in $CONFIG"
        config_set dicom port "$DICOM_PORT"
    fi
    configured="$(config_get web port "$DEFAULT_WEB_PORT")"
    if [ "$configured" != "$WEB_PORT" ]; then
        say "setting [web] port = $WEB_PORT in $CONFIG"
        config_set web port "$WEB_PORT"
    fi
}

install_unit() {
    install -D -m 0644 -o 0 -g 0 "$SOURCE_DIR/deploy/pacs.service" "$UNIT"
    install -D -m 0644 -o 0 -g 0 "$SOURCE_DIR/deploy/$CHECK_SERVICE" "${CHECK_UNITS[0]}"
    install -D -m 0644 -o 0 -g 0 "$SOURCE_DIR/deploy/$CHECK_TIMER" "${CHECK_UNITS[1]}"
}

install_wrapper() {
    local run_as="$SERVICE_USER" run_group="$SERVICE_USER"
    if [ -n "$ROOT" ]; then
        run_as="$PACS_UID"
        run_group="$PACS_GID"
    fi
    sed -e "s|^PACS_RUN_AS=.*|PACS_RUN_AS=$run_as|" \
        -e "s|^PACS_RUN_GROUP=.*|PACS_RUN_GROUP=$run_group|" \
        -e "s|^PACS_BIN=.*|PACS_BIN=$VENV/bin/pacs|" \
        -e "s|^PACS_DATA_DIR=.*|PACS_DATA_DIR=$DATA|" \
        "$SOURCE_DIR/deploy/pacs-wrapper.sh" >"$WORK/pacs"
    install -D -m 0755 -o 0 -g 0 "$WORK/pacs" "$WRAPPER"
}

port_is_ours() {
    local listeners
    listeners="$(ss -ltnpH "sport = :$1")"
    [ -n "$listeners" ] && listeners_are_ours "$listeners"
}

start_service() {
    local waited
    systemctl daemon-reload
    systemctl enable --quiet "$SERVICE"
    systemctl enable --now --quiet "$CHECK_TIMER"
    say "(re)starting $SERVICE"
    RESTART_ON_EXIT=0
    systemctl restart "$SERVICE"
    for waited in $(seq 1 60); do
        if systemctl is-active --quiet "$SERVICE" && port_is_ours "$DICOM_PORT" && port_is_ours "$WEB_PORT"; then
            return
        fi
        if systemctl is-failed --quiet "$SERVICE"; then
            break
        fi
        sleep 1
    done
    die "$SERVICE is not listening on ports $DICOM_PORT and $WEB_PORT after ${waited}s: see journalctl -u $SERVICE"
}

installed_version() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mini-pacs"))'
}

print_summary() {
    local version where
    version="$(installed_version)"
    where="installed and running"
    [ -z "$ROOT" ] || where="installed in $ROOT (test mode: no service started)"
    echo
    if [ "$EXISTING" -eq 1 ]; then
        echo "mini-PACS $version is upgraded: $where."
        echo "  kept           the archive in $DATA and the keys in $KEYS"
        echo "  migrations     $MIGRATION"
        echo "  admin password no new one: 'sudo pacs user reset NAME' issues a new one-time password"
        echo "  web            https://$HOST:$WEB_PORT/    DICOM TLS port $DICOM_PORT, AE title $AE_TITLE"
        return
    fi
    cat <<EOF
mini-PACS $version is $where.

  archive        $DATA (user pacs, 0700)
  keys           $KEYS (user pacs, 0700): keep an offline copy; without it nothing can be read
  code           $VENV
  service        $SERVICE (systemctl status $SERVICE; journalctl -u $SERVICE)
  selfcheck      daily by $CHECK_TIMER (systemctl list-timers $CHECK_TIMER)
  admin command  $WRAPPER (runs as user pacs: sudo pacs ...)

  first admin    ${ADMIN_NAME:-admin}
  one-time password: $ADMIN_PASSWORD
                 (shown only now: at the first login it must be changed and TOTP enrolled)

Next steps:
  1. Log in as ${ADMIN_NAME:-admin} at https://$HOST:$WEB_PORT/
     (the certificate is from the archive's own CA, $DATA/tls/ca.crt: install it on the doctors' computers)
  2. Enrol a modality: its AE title, the address it connects from, and a certificate for it:
       sudo pacs modality add CT1 --host 192.168.1.50 --issue-cert ./ct1-certs
  3. Check it with dcmtk from that address (copy ct1-certs there first):
       cd ct1-certs && echoscu +tls client.key client.crt +cf ca.crt -aet CT1 -aec $AE_TITLE $HOST $DICOM_PORT
  4. Add a doctor (prints a one-time password for the first login):
       sudo pacs user add drsmith --role physician
  5. Back up daily, and copy the file off this machine (keep the passphrase apart from it):
       sudo pacs backup $BACKUPS/pacs-\$(date +%F).pacsbak
  6. Check the security posture after every change:
       sudo pacs selfcheck
EOF
}

# Removes the scratch directory; after a failure that left the service stopped for an
# upgrade, starts it again with whatever code is in place (the old one, when it was put back).
on_exit() {
    [ -z "$WORK" ] || rm -rf -- "$WORK"
    if [ -n "$ASIDE_DATA" ]; then
        put_archive_back
        echo "$PROG: the restore did not finish; the archive that was there is back in place" >&2
    fi
    if [ "$RESTART_ON_EXIT" -eq 1 ]; then
        if systemctl start "$SERVICE"; then
            echo "$PROG: $SERVICE was started again" >&2
        else
            echo "$PROG: $SERVICE could not be started again: see journalctl -u $SERVICE" >&2
        fi
    fi
}

do_install() {
    check_os
    find_python
    check_tools
    check_layout
    check_port "$DICOM_PORT" DICOM --dicom-port
    check_port "$WEB_PORT" HTTPS --web-port

    [ -n "$ROOT" ] || ensure_venv_package
    trap on_exit EXIT
    WORK="$(mktemp -d)"
    create_user
    make_dirs
    install_code
    if [ "$EXISTING" -eq 0 ]; then
        init_archive
    else
        migrate_archive
        if [ -n "$HOST_ARG" ] && [ "$HOST_ARG" != "$HOST" ]; then
            say "keeping the existing archive's host name $HOST (--hostname applies to a new archive only)"
        fi
    fi
    rm -rf "$VENV.old"
    set_ports
    install_unit
    install_wrapper
    [ -n "$ROOT" ] || start_service
    print_summary
}

do_uninstall() {
    local removed=() check_unit
    if [ -z "$ROOT" ] && [ -f "$UNIT" ]; then
        systemctl disable --now --quiet "$SERVICE" || true
    fi
    if [ -z "$ROOT" ] && [ -f "${CHECK_UNITS[1]}" ]; then
        systemctl disable --now --quiet "$CHECK_TIMER" || true
    fi
    for check_unit in "${CHECK_UNITS[@]}"; do
        if [ -f "$check_unit" ]; then
            rm -f "$check_unit"
            removed+=("$check_unit")
        fi
    done
    if [ -f "$UNIT" ]; then
        rm -f "$UNIT"
        removed+=("$UNIT")
        if [ -z "$ROOT" ]; then
            systemctl daemon-reload || true
            systemctl reset-failed "$SERVICE" 2>/dev/null || true
        fi
    fi
    if is_our_wrapper; then
        rm -f "$WRAPPER"
        removed+=("$WRAPPER")
    fi
    if [ -d "$OPT" ]; then
        rm -rf -- "$OPT"
        removed+=("$OPT")
    fi
    if [ "${#removed[@]}" -gt 0 ]; then
        say "removed ${removed[*]}"
    else
        say "nothing to remove: mini-PACS is not installed"
    fi
    if [ -d "$DATA" ] || [ -d "$KEYS" ]; then
        say "kept the archive in $DATA, the keys in $KEYS, the backups in $BACKUPS and the user $SERVICE_USER"
        say "run install.sh again to reinstall the code and go on with the same archive"
        say "to destroy the archive for good: rm -rf $DATA $ETC && userdel ${ROOT:+--prefix $ROOT }$SERVICE_USER"
    fi
}

# True when the service user can read file $1 (root in test mode, which has no such user here).
service_user_reads() {
    [ -n "$ROOT" ] && return 0
    (cd / && setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_USER" --clear-groups test -r "$1")
}

# Runs `pacs restore` as the service user into the empty $DATA and $KEYS, the passphrase
# coming on standard input from root's --passphrase-file (which pacs may not open), or
# from the terminal.
restore_as_service_user() {
    local args=(restore "$RESTORE_FILE" --data "$DATA" --key-dir "$KEYS")
    if [ -n "$PASSPHRASE_FILE" ]; then
        pacs_as_service_user "${args[@]}" --passphrase-file - <"$PASSPHRASE_FILE"
    else
        pacs_as_service_user "${args[@]}"
    fi
}

# Undoes a restore that did not finish: the archive and keys set aside go back in place.
put_archive_back() {
    if [ -e "$ASIDE_DATA" ]; then
        rm -rf -- "$DATA"
        mv "$ASIDE_DATA" "$DATA"
    fi
    if [ -e "$ASIDE_KEYS" ]; then
        rm -rf -- "$KEYS"
        mv "$ASIDE_KEYS" "$KEYS"
    fi
    ASIDE_DATA=""
    ASIDE_KEYS=""
}

do_restore() {
    local stamp aside_data aside_keys
    if [ ! -f "$CONFIG" ] || [ ! -x "$VENV/bin/pacs" ]; then
        die "no installed archive to replace in $DATA: run install.sh first, then --restore"
    fi
    [ -f "$RESTORE_FILE" ] || die "$RESTORE_FILE: no such file"
    RESTORE_FILE="$(realpath -- "$RESTORE_FILE")"
    service_user_reads "$RESTORE_FILE" \
        || die "user $SERVICE_USER cannot read $RESTORE_FILE: move it to $BACKUPS and chown $SERVICE_USER: it"
    if [ -n "$PASSPHRASE_FILE" ]; then
        [ -r "$PASSPHRASE_FILE" ] || die "cannot read the passphrase file $PASSPHRASE_FILE"
    elif [ ! -t 0 ]; then
        die "no passphrase: give --passphrase-file FILE, or run it in a terminal"
    fi
    read_service_ids
    stamp="$(date +%Y%m%d-%H%M%S)"
    aside_data="$DATA.replaced-$stamp"
    aside_keys="$KEYS.replaced-$stamp"
    if [ -e "$aside_data" ] || [ -e "$aside_keys" ]; then
        die "$aside_data exists: wait a second and run it again"
    fi

    trap on_exit EXIT
    trap 'exit 130' HUP INT TERM
    if service_active; then
        say "stopping $SERVICE for the restore"
        RESTART_ON_EXIT=1
        systemctl stop "$SERVICE"
    fi
    # From here until the restore is complete, any exit puts the archive back (on_exit).
    ASIDE_DATA="$aside_data"
    ASIDE_KEYS="$aside_keys"
    mv "$DATA" "$aside_data"
    mv "$KEYS" "$aside_keys"
    install -d -m 0700 -o "$PACS_UID" -g "$PACS_GID" "$DATA" "$KEYS"
    say "restoring $RESTORE_FILE into $DATA (keys in $KEYS)"
    if ! restore_as_service_user; then
        put_archive_back
        die "restoring $RESTORE_FILE failed; the archive that was there is back in place"
    fi
    if [ -n "$ROOT" ]; then
        chown -R "$PACS_UID:$PACS_GID" "$DATA" "$KEYS"
    fi
    ASIDE_DATA=""
    ASIDE_KEYS=""
    PYTHON="$VENV/bin/python"
    DICOM_PORT="$(config_get dicom port "$DEFAULT_DICOM_PORT")"
    WEB_PORT="$(config_get web port "$DEFAULT_WEB_PORT")"
    [ -n "$ROOT" ] || start_service
    echo
    echo "The backup is restored into $DATA${ROOT:+ (test mode: no service started)}."
    echo "  set aside      the archive that was there: $aside_data, its keys: $aside_keys"
    echo "                 (remove both once the restored archive is checked: sudo pacs selfcheck)"
}

main() {
    parse_args "$@"
    validate_args
    require_root
    take_lock
    set_paths
    if [ "$UNINSTALL" -eq 1 ]; then
        do_uninstall
    elif [ -n "$RESTORE_FILE" ]; then
        do_restore
    else
        do_install
    fi
}

main "$@"
