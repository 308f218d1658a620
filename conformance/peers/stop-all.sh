#!/usr/bin/env bash
# Stop every peer started under $PEER_DIR (by pid file), then the private rsyslogd if we started one.
#   stop-all.sh [--keep-syslog]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
for f in "$PEER_DIR"/cyrus-mupdate-*/master.pid "$PEER_DIR"/cyrus-imapd/master.pid \
    "$PEER_DIR"/dovecot/dovecot.pid; do
    [ -e "$f" ] || continue
    note "stopping $(dirname "$f") (pid $(tr -dc '0-9' <"$f"))"
    stop_pid "$f"
done
if [ "${1:-}" != --keep-syslog ]; then stop_syslog; fi
echo "PEER stopped dir=$PEER_DIR"
