#!/usr/bin/env bash
# Our servers against the real ones, on loopback (run install.sh first; root).
#
#   interop-ours.sh [--mupdated PATH] [--imapd PATH]     (default: target/debug/{mupdated,imapd})
#
#  A. our mupdated master <- Cyrus mupdate slave: ACTIVATE on ours, FIND on the Cyrus slave.
#  B. Cyrus imapd as a Murder backend of our mupdated: CREATE / DELETE show up in our FIND.
#  C. Cyrus mupdate master -> our mupdated slave: ACTIVATE on Cyrus, FIND on ours.
#  D. mailutil copy of 50 messages from Dovecot to our imapd (one MULTIAPPEND), count = 50.
# Then everything is stopped by pid and checked gone. Last line "INTEROP ok" or the first failure.
# Ports: ours 13935 (master), 13936 (Cyrus slave), 13937 (our slave), 13943 (our imapd), and the
# peer defaults 13905, 13143, 13243.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export PEER_DIR=${PEER_DIR:-$(mktemp -d /tmp/murder-peers-interop.XXXXXX)}
source "$here/lib.sh"
mupdated=$root/target/debug/mupdated imapd=$root/target/debug/imapd
while [ $# -gt 0 ]; do
    case $1 in
        --mupdated) mupdated=$2; shift 2 ;;
        --imapd) imapd=$2; shift 2 ;;
        *) sed -n '2,13p' "$0" >&2; exit 2 ;;
    esac
done
[ -x "$mupdated" ] || die "$mupdated missing (cargo build -p murder-server --bin mupdated)"
[ -x "$imapd" ] || die "$imapd missing (cargo build -p murder-server --bin imapd)"
P=peer-secret
step() { echo "== $(date +%T) $*"; }
o=$PEER_DIR/ours
mkdir -p "$o"
chmod a+x "$PEER_DIR"
printf 'admin:{PLAIN}%s\ntest:{PLAIN}%s\n' "$P" "$P" >"$o/users"

step "A. our mupdated master <- Cyrus slave"
start_ours "$o" mupdated-master 13935 "$mupdated" --listen 127.0.0.1:13935 --data "$o/master-data" \
    --users "$o/users" --admin admin
"$here/cyrus-mupdate.sh" start slave 13936 --master 127.0.0.1:13935 | tail -n 1
python3 "$here/probe.py" mupdate 127.0.0.1 13935 admin "$P" \
    'ACTIVATE "ours.a-b" "peer!default" "admin\tlrswipkxtecda\t"' \
    'ACTIVATE "ours.a.b" "peer!default" "admin\tlrswipkxtecda\t"' | grep -E '^(C:|S: C[23] )'
python3 "$here/probe.py" mupdate-find 127.0.0.1 13936 admin "$P" ours.a.b 90 | grep -A1 MAILBOX
python3 "$here/probe.py" mupdate-find 127.0.0.1 13936 admin "$P" ours.a-b 90 | grep -A1 MAILBOX

step "B. Cyrus imapd as backend of our mupdated"
"$here/cyrus-imapd.sh" start 13143 --mupdate 127.0.0.1:13935 | tail -n 1
python3 "$here/probe.py" imap 127.0.0.1 13143 test "$P" 'CREATE "via-ours"' | grep -E '^S: C2'
python3 "$here/probe.py" mupdate 127.0.0.1 13935 admin "$P" 'FIND "user.test.via-ours"' \
    | grep -A1 MAILBOX
python3 "$here/probe.py" imap 127.0.0.1 13143 test "$P" 'DELETE "via-ours"' | grep -E '^S: C2'
if python3 "$here/probe.py" mupdate 127.0.0.1 13935 admin "$P" 'FIND "user.test.via-ours"' \
    | grep -q MAILBOX; then
    die "user.test.via-ours still on our master after the Cyrus DELETE"
fi
echo "user.test.via-ours gone from our master after DELETE"

step "C. Cyrus master -> our mupdated slave"
"$here/cyrus-mupdate.sh" start master 13905 | tail -n 1
start_ours "$o" mupdated-slave 13937 "$mupdated" --listen 127.0.0.1:13937 --data "$o/slave-data" \
    --users "$o/users" --admin admin --slave-of 127.0.0.1:13905 --master-user admin \
    --master-password "$P"
python3 "$here/probe.py" mupdate 127.0.0.1 13905 admin "$P" \
    'ACTIVATE "cyrus.to.ours" "peer!default" "admin\tlrs\t"' | grep -E '^(C:|S: C2 )'
python3 "$here/probe.py" mupdate-find 127.0.0.1 13937 admin "$P" cyrus.to.ours 90 | grep -A1 MAILBOX

step "D. mailutil copy 50 messages Dovecot -> our imapd"
"$here/dovecot.sh" start 13243 | tail -n 1
start_ours "$o" imapd 13943 "$imapd" --listen 127.0.0.1:13943 --data "$o/imapd-data" --users "$o/users"
python3 "$here/probe.py" imap-fill 127.0.0.1 13243 test "$P" src50 50 | tail -n 1
python3 "$here/mailutil-copy.py" '{127.0.0.1:13243/imap/notls/user=test}src50' \
    '{127.0.0.1:13943/imap/notls/user=test}dst50' "$P" 2>"$PEER_DIR/mailutil.log"
n=$(python3 "$here/probe.py" imap-count 127.0.0.1 13943 test "$P" dst50 | tail -n 1)
[ "$n" = 50 ] || die "our dst50 has $n messages, expected 50"
echo "our dst50 EXISTS $n"

step "stop everything"
all=""
for f in "$o"/*.pid; do all="$all $(tr -dc '0-9' <"$f")"; stop_pid "$f"; done
"$here/stop-all.sh" | tail -n 1
for p in $all; do kill -0 "$p" 2>/dev/null && die "pid $p still alive"; done
echo "INTEROP ok dir=$PEER_DIR"
