#!/usr/bin/env bash
# The admin's `pacs` command, installed by install.sh as /usr/local/bin/pacs.
#
# It runs the real mini-PACS command line as the service user with PACS_DATA set, so that
# `sudo pacs user add drsmith --role physician` works without --data and leaves every file
# of the archive owned by pacs. The audit trail still names the person who typed it (the
# sudo caller, recorded as NAME@cli). With `modality add ... --issue-cert OUTDIR` the
# certificate files are made in a private staging directory and then handed to the caller
# in OUTDIR, so OUTDIR need not be writable by the pacs user.
set -euo pipefail

# Set by install.sh (in its --root test mode they name the test tree and numeric ids).
PACS_RUN_AS=pacs
PACS_RUN_GROUP=pacs
PACS_BIN=/opt/pacs/venv/bin/pacs
PACS_DATA_DIR=/var/lib/pacs

die() {
    echo "pacs: error: $*" >&2
    exit 2
}

# The person behind sudo, for the audit trail; root when run without sudo.
caller_name() {
    local name="${SUDO_USER:-}"
    if [[ ! "$name" =~ ^[A-Za-z0-9._-]{1,64}$ ]]; then
        name="$(id -un)"
    fi
    echo "$name"
}

# The command that runs the real command line as the service user with a clean environment.
as_pacs() {
    AS_PACS=(setpriv --reuid="$PACS_RUN_AS" --regid="$PACS_RUN_GROUP" --clear-groups --no-new-privs
        env -i PATH=/usr/bin:/bin LANG="${LANG:-C.UTF-8}" TERM="${TERM:-dumb}"
        LOGNAME="$CALLER" USER="$CALLER" PACS_DATA="$PACS_DATA_DIR" "$PACS_BIN")
}

# `modality add --issue-cert OUTDIR`: issue into a staging directory owned by pacs, show
# the output with OUTDIR in place of the staging path, then copy the files to OUTDIR as
# the caller's (client.key 0600).
issue_cert_for_caller() {
    local outdir="$1" at="$2" stage status line owner name created=0
    shift 2
    for name in client.crt client.key; do
        if [ -e "$outdir/$name" ] || [ -L "$outdir/$name" ]; then
            die "$outdir/$name already exists; not overwriting it"
        fi
    done
    # Root writes the files there: never through a link, nor into a directory others may change.
    [ ! -L "$outdir" ] || die "$outdir is a symbolic link: give the directory itself"
    if [ -d "$outdir" ] && [ -n "$(find "$outdir" -maxdepth 0 \( -perm -0002 -o -perm -0020 \))" ]; then
        die "$outdir is writable by other users: give --issue-cert a private directory"
    fi
    stage="$(mktemp -d /tmp/pacs-cert.XXXXXXXX)"
    # shellcheck disable=SC2064  # expand $stage now: it is local to this function
    trap "rm -rf -- '$stage'" EXIT
    chown "$PACS_RUN_AS:$PACS_RUN_GROUP" "$stage"
    local args=("$@")
    args[at]="${args[at]/@OUTDIR@/$stage}"
    set +e
    "${AS_PACS[@]}" "${args[@]}" | while IFS= read -r line || [ -n "$line" ]; do
        printf '%s\n' "${line//"$stage"/"$outdir"}"
    done
    status="${PIPESTATUS[0]}"
    set -e
    [ "$status" -eq 0 ] || exit "$status"

    # From here root reads the staged files: take the directory from pacs first, so that
    # nothing running as pacs can swap a file for a link to a root-only one.
    chown root:root "$stage"
    chmod 0700 "$stage"
    for name in client.crt client.key ca.crt; do
        if [ -L "$stage/$name" ] || [ ! -f "$stage/$name" ] || [ "$(stat -c %h -- "$stage/$name")" != 1 ]; then
            die "the issued $name is not a plain file of its own"
        fi
    done

    owner="${SUDO_UID:-0}:${SUDO_GID:-0}"
    [[ "$owner" =~ ^[0-9]+:[0-9]+$ ]] || owner="0:0"
    if [ ! -d "$outdir" ]; then
        mkdir -p -- "$(dirname -- "$outdir")"
        mkdir -m 0700 -- "$outdir"
        created=1
    fi
    install -m 0600 -o "${owner%:*}" -g "${owner#*:}" "$stage/client.key" "$outdir/client.key"
    install -m 0644 -o "${owner%:*}" -g "${owner#*:}" "$stage/client.crt" "$outdir/client.crt"
    install -m 0644 -o "${owner%:*}" -g "${owner#*:}" "$stage/ca.crt" "$outdir/ca.crt"
    if [ "$created" -eq 1 ]; then
        chown "$owner" "$outdir"
    fi
}

main() {
    [ "$(id -u)" -eq 0 ] || die "run it as root: sudo pacs ..."
    [ -x "$PACS_BIN" ] || die "$PACS_BIN is missing: mini-PACS is not installed (run install.sh)"
    CALLER="$(caller_name)"
    as_pacs

    # Find --issue-cert OUTDIR (or --issue-cert=OUTDIR); a staging directory stands in for it.
    local args=() outdir="" at=-1 arg
    for arg in "$@"; do
        if [ "$at" -eq -2 ]; then
            outdir="$arg"
            at="${#args[@]}"
            args+=("@OUTDIR@")
        elif [ "$arg" = "--issue-cert" ] && [ -z "$outdir" ]; then
            at=-2
            args+=("$arg")
        elif [[ "$arg" == --issue-cert=* ]] && [ -z "$outdir" ]; then
            outdir="${arg#--issue-cert=}"
            at="${#args[@]}"
            args+=("--issue-cert=@OUTDIR@")
        else
            args+=("$arg")
        fi
    done
    if [ -z "$outdir" ]; then
        exec "${AS_PACS[@]}" "$@"
    fi
    issue_cert_for_caller "$outdir" "$at" "${args[@]}"
}

main "$@"
