#!/usr/bin/env bash
# End-to-end check of every peer script, on loopback, as root. Runs install.sh, then:
#  1. Cyrus mupdate master: AUTHENTICATE PLAIN; slave replicating from it: ACTIVATE on the master,
#     FIND on the slave (polling with NOOP, slaves apply streamed changes lazily).
#  2. Cyrus imapd and Dovecot: LOGIN, CREATE, one MULTIAPPEND of two messages, SELECT, DELETE.
#  3. mailutil copy of 50 messages Dovecot -> Cyrus imapd (one MULTIAPPEND), checked byte for
#     byte (and flags, internal dates) by `conformance verify-copy` (CONFORMANCE: the runner
#     binary, default target/debug/conformance; build it first).
#  4. Cyrus imapd as a Murder backend of the Cyrus master: CREATE shows up in the master's FIND.
#  5. stop-all.sh, then every recorded pid (masters and their children) must be gone, ports free.
# Prints "SELFTEST ok" as its last line, or stops at the first failure with a message.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CONFORMANCE=${CONFORMANCE:-$(cd "$here/../.." && pwd)/target/debug/conformance}
export PEER_DIR=${PEER_DIR:-$(mktemp -d /tmp/murder-peers-selftest.XXXXXX)}
source "$here/lib.sh"
P=peer-secret
off=${SELFTEST_PORT_OFFSET:-0}   # added to every port below (13905, 13906, 13143, 13243)
pm=$((13905 + off)) ps=$((13906 + off)) pc=$((13143 + off)) pd=$((13243 + off))
step() { echo "== $(date +%T) $*"; }
pids_of() { local m; m=$(tr -dc '0-9' <"$1"); echo "$m $(ps -o pid= --ppid "$m" | tr -s ' \n' ' ')"; }

[ -x "$CONFORMANCE" ] || die "$CONFORMANCE missing (cargo build -p conformance)"

step "install"
t0=$SECONDS
"$here/install.sh" | tail -n 1
echo "install took $((SECONDS - t0)) s"

step "cyrus mupdate master + slave"
"$here/cyrus-mupdate.sh" start master $pm | tail -n 1
python3 "$here/probe.py" mupdate-auth 127.0.0.1 $pm admin "$P" | tail -n 2
"$here/cyrus-mupdate.sh" start slave $ps --master 127.0.0.1:$pm | tail -n 1
name="selftest.$$.$RANDOM"
python3 "$here/probe.py" mupdate 127.0.0.1 $pm admin "$P" \
    "ACTIVATE \"$name\" \"peer!default\" \"admin\\tlrswipkxtecda\\t\"" | grep -E '^(C:|S: C2)'
t0=$SECONDS
python3 "$here/probe.py" mupdate-find 127.0.0.1 $ps admin "$P" "$name" 90 | grep -A1 MAILBOX
echo "slave had $name after $((SECONDS - t0)) s"

step "cyrus imapd + dovecot: CREATE, MULTIAPPEND(2), SELECT"
"$here/cyrus-imapd.sh" start $pc | tail -n 1
python3 "$here/probe.py" imap-check 127.0.0.1 $pc test "$P" "box-$$.x" | grep -E 'APPENDUID|IMAP OK'
"$here/dovecot.sh" start $pd | tail -n 1
python3 "$here/probe.py" imap-check 127.0.0.1 $pd test "$P" "box-$$.x" | grep -E 'APPENDUID|IMAP OK'

step "mailutil copy 50 messages dovecot -> cyrus"
python3 "$here/probe.py" imap-fill 127.0.0.1 $pd test "$P" src50 50 | tail -n 1
t0=$SECONDS
python3 "$here/mailutil-copy.py" "{127.0.0.1:$pd/imap/notls/user=test}src50" \
    "{127.0.0.1:$pc/imap/notls/user=test}dst50" "$P" "$P" 2>"$PEER_DIR/mailutil.log"
echo "mailutil took $((SECONDS - t0)) s"
"$CONFORMANCE" verify-copy --source 127.0.0.1:$pd --source-user test --source-password "$P" \
    --source-mailbox src50 --target 127.0.0.1:$pc --user test --password "$P" \
    --target-mailbox dst50 --min-messages 50 --timeout 30 \
    || die "the Cyrus copy dst50 differs from the Dovecot mailbox src50"

step "cyrus imapd as Murder backend of the cyrus master"
"$here/cyrus-imapd.sh" start $pc --mupdate 127.0.0.1:$pm | tail -n 1
python3 "$here/probe.py" imap 127.0.0.1 $pc test "$P" 'CREATE "murder-box"' | grep -E '^S: C2'
python3 "$here/probe.py" mupdate 127.0.0.1 $pm admin "$P" 'FIND "user.test.murder-box"' \
    | grep -A1 MAILBOX

step "stop everything"
all=""
for f in "$PEER_DIR"/cyrus-mupdate-master/master.pid "$PEER_DIR"/cyrus-mupdate-slave/master.pid \
    "$PEER_DIR"/cyrus-imapd/master.pid "$PEER_DIR"/dovecot/dovecot.pid; do
    all="$all $(pids_of "$f")"
done
[ -f "$PEER_DIR/syslog/rsyslogd.pid" ] && all="$all $(tr -dc '0-9' <"$PEER_DIR/syslog/rsyslogd.pid")"
"$here/stop-all.sh" | tail -n 1
for p in $all; do
    if kill -0 "$p" 2>/dev/null; then die "pid $p still alive after stop-all.sh"; fi
done
for port in $pm $ps $pc $pd; do port_free "$port" || die "port $port still in use"; done
echo "pids gone:$all"
echo "SELFTEST ok dir=$PEER_DIR"
