#!/usr/bin/env bash
# Install the real peer servers used by the murder conformance suite (Debian 12, root).
#
# Packaged (apt-get): cyrus-common sasl2-bin rsyslog uw-mailutils dovecot-core dovecot-imapd
#                     + the libraries those need.
# Private (apt-get download + dpkg -x into $PEER_PREFIX/cyrus): cyrus-imapd cyrus-murder cyrus-clients
#   cyrus-imapd and dovecot-imapd both "Provide/Conflict: imap-server", and cyrus-murder depends on
#   cyrus-imapd, so one side must be unpacked privately. Cyrus is the easy side: its service binaries
#   (imapd, mupdate, mupdatetest) take every path from imapd.conf and the cyrus.conf `cmd=` accepts an
#   absolute path, while they link against libcyrus*.so from the packaged cyrus-common. Dovecot would
#   need its compiled-in module and libexec directories redirected.
#
# No daemon is left running: service starts are refused through policy-rc.d during the install, and
# anything a postinst started anyway is stopped by its pid file.
#
# Environment: PEER_PREFIX (default /opt/murder-peers). Idempotent. Last line:
#   PEER install prefix=<dir> cyrus=<version> dovecot=<version>
set -euo pipefail

PEER_PREFIX=${PEER_PREFIX:-/opt/murder-peers}
export DEBIAN_FRONTEND=noninteractive
APT_PKGS=(cyrus-common sasl2-bin rsyslog uw-mailutils dovecot-core dovecot-imapd)
PRIVATE_PKGS=(cyrus-imapd cyrus-murder cyrus-clients)

die() { echo "install.sh: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, dpkg)"
command -v apt-get >/dev/null || die "apt-get not found: Debian 12 expected"

# 1. Refuse service starts during the install (only if no policy-rc.d exists already).
POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=0
dl=""
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# temporary, written by murder conformance/peers/install.sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    OWN_POLICY=1
fi
cleanup() {
    if [ "$OWN_POLICY" = 1 ]; then rm -f "$POLICY"; fi
    if [ -n "$dl" ]; then rm -rf "$dl"; fi
}
trap cleanup EXIT

# 2. Packaged part.
missing=()
for p in "${APT_PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done
command -v python3 >/dev/null || missing+=(python3)   # probe.py, mailutil-copy.py
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install.sh: installing ${missing[*]}" >&2
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
fi
for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' \
        || die "package $p is not installed after apt-get install"
done
for c in python3 mailutil saslpasswd2 rsyslogd /usr/lib/cyrus/bin/master /usr/sbin/dovecot; do
    command -v "$c" >/dev/null || die "$c missing after install"
done
getent passwd cyrus >/dev/null || die "user cyrus missing (cyrus-common postinst should create it)"

# 3. Private Cyrus service binaries, same version as the packaged cyrus-common (libcyrus ABI).
CYRUS_VERSION=$(dpkg-query -W -f='${Version}' cyrus-common)
CYRUS_ROOT=$PEER_PREFIX/cyrus
STAMP=$CYRUS_ROOT/.installed
WANT="$CYRUS_VERSION ${PRIVATE_PKGS[*]}"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "install.sh: unpacking ${PRIVATE_PKGS[*]} $CYRUS_VERSION into $CYRUS_ROOT" >&2
    dl=$(mktemp -d)
    specs=()
    for p in "${PRIVATE_PKGS[@]}"; do specs+=("$p=$CYRUS_VERSION"); done
    if ! (cd "$dl" && apt-get download -qq -o APT::Sandbox::User=root "${specs[@]}" >&2); then
        apt-get update -qq || die "apt-get update failed"
        (cd "$dl" && apt-get download -qq -o APT::Sandbox::User=root "${specs[@]}" >&2) \
            || die "apt-get download ${specs[*]} failed"
    fi
    rm -rf "$CYRUS_ROOT"
    mkdir -p "$CYRUS_ROOT"
    for deb in "$dl"/*.deb; do dpkg -x "$deb" "$CYRUS_ROOT" || die "dpkg -x $deb failed"; done
    rm -rf "$dl"
    dl=""
    echo "$WANT" >"$STAMP"
fi
for b in imapd mupdate mupdatetest; do
    [ -x "$CYRUS_ROOT/usr/lib/cyrus/bin/$b" ] || die "$CYRUS_ROOT/usr/lib/cyrus/bin/$b missing"
    if ldd "$CYRUS_ROOT/usr/lib/cyrus/bin/$b" | grep -q 'not found'; then
        ldd "$CYRUS_ROOT/usr/lib/cyrus/bin/$b" | grep 'not found' >&2
        die "$b has unresolved libraries"
    fi
done

# 4. Stop whatever a postinst started despite policy-rc.d (by pid file, never by name).
stop_pidfile() {
    local f=$1 pid
    [ -f "$f" ] || return 0
    pid=$(tr -dc '0-9' <"$f")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "install.sh: stopping pid $pid from $f" >&2
        kill "$pid" || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
}
stop_pidfile /run/cyrus-master.pid
stop_pidfile /run/dovecot/master.pid
stop_pidfile /run/exim4/exim.pid
stop_pidfile /run/saslauthd/saslauthd.pid

DOVECOT_VERSION=$(dpkg-query -W -f='${Version}' dovecot-imapd)
echo "PEER install prefix=$PEER_PREFIX cyrus=$CYRUS_VERSION dovecot=$DOVECOT_VERSION"
