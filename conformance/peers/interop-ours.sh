#!/usr/bin/env bash
# Our servers against the real ones, on loopback (run install.sh first; root).
#
#   interop-ours.sh [--mupdated PATH] [--imapd PATH] [--conformance PATH]
#                   (default: target/debug/{mupdated,imapd,conformance})
#
#  A. our mupdated master <- Cyrus mupdate slave: ACTIVATE on ours, FIND on the Cyrus slave.
#  B. Cyrus imapd as a Murder backend of our mupdated: CREATE / DELETE show up in our FIND.
#  C. Cyrus mupdate master -> our mupdated slave, through a crash (kill -SEGV of the Cyrus mupdate
#     process by pid, Cyrus master(8) respawns it) and a full restart of Cyrus master(8); writes
#     on Cyrus after each while our slave is still away (it reconnects after 3 s); our slave
#     converges (LIST and FIND equal after a NOOP barrier).
#  D. mailutil copy (one MULTIAPPEND each) Dovecot -> our imapd -> Cyrus imapd -> Dovecot of 60
#     messages; `conformance verify-copy` checks every copy byte for byte (flags, dates too).
#  E. ctl_mboxlist -m (Cyrus's mupdate push tool) of a Cyrus imapd into our mupdated master: our
#     LIST then holds exactly the Cyrus server's mailboxes for its location, other servers' kept.
# Then everything is stopped by pid and checked gone. Last line "INTEROP ok" or the first failure.
# Ports: INTEROP_PORT_BASE (default 13900) + 5 Cyrus mupdate master, +35 our master, +36 Cyrus
# slave, +37 our slave, +43 our imapd, +44 Cyrus imapd, +45 Dovecot.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export PEER_DIR=${PEER_DIR:-$(mktemp -d /tmp/murder-peers-interop.XXXXXX)}
source "$here/lib.sh"
mupdated=$root/target/debug/mupdated imapd=$root/target/debug/imapd
conformance=$root/target/debug/conformance
while [ $# -gt 0 ]; do
    case $1 in
        --mupdated) mupdated=$2; shift 2 ;;
        --imapd) imapd=$2; shift 2 ;;
        --conformance) conformance=$2; shift 2 ;;
        *) sed -n '2,20p' "$0" >&2; exit 2 ;;
    esac
done
[ -x "$mupdated" ] || die "$mupdated missing (cargo build -p murder-server --bin mupdated)"
[ -x "$imapd" ] || die "$imapd missing (cargo build -p murder-server --bin imapd)"
[ -x "$conformance" ] || die "$conformance missing (cargo build -p conformance)"
command -v mailutil >/dev/null || die "mailutil missing: run install.sh"
[ -x /usr/lib/cyrus/bin/ctl_mboxlist ] || die "/usr/lib/cyrus/bin/ctl_mboxlist missing: run install.sh"
base=${INTEROP_PORT_BASE:-13900}
cyrus_master=$((base + 5)) our_master=$((base + 35)) cyrus_slave=$((base + 36))
our_slave=$((base + 37)) our_imap=$((base + 43)) cyrus_imap=$((base + 44)) dovecot=$((base + 45))
P=peer-secret
step() { echo "== $(date +%T) $*"; }
o=$PEER_DIR/ours
mkdir -p "$o"
chmod a+x "$PEER_DIR"
printf 'admin:{PLAIN}%s\ntest:{PLAIN}%s\n' "$P" "$P" >"$o/users"
probe() { python3 "$here/probe.py" "$@"; }
# on_fail: show what the servers logged, for a failure in the middle of a step.
on_fail() {
    echo "interop-ours.sh: FAILED; logs under $PEER_DIR" >&2
    for f in "$o"/*.log; do [ -f "$f" ] && { echo "---- tail $f" >&2; tail -n 15 "$f" >&2; }; done
    [ -f "$PEER_DIR/syslog/all.log" ] && { echo "---- tail syslog" >&2; tail -n 20 "$PEER_DIR/syslog/all.log" >&2; }
    # Leave nothing running: our servers and the peers of this run, each by its pid file.
    for f in "$o"/*.pid; do [ -e "$f" ] && stop_pid "$f"; done
    "$here/stop-all.sh" >/dev/null 2>&1 || true
    return 0
}
trap 'rc=$?; [ $rc -eq 0 ] || on_fail' EXIT

step "A. our mupdated master <- Cyrus slave"
start_ours "$o" mupdated-master "$our_master" "$mupdated" --listen "127.0.0.1:$our_master" \
    --data "$o/master-data" --users "$o/users" --admin admin
"$here/cyrus-mupdate.sh" start slave "$cyrus_slave" --master "127.0.0.1:$our_master" | tail -n 1
probe mupdate 127.0.0.1 "$our_master" admin "$P" \
    'ACTIVATE "ours.a-b" "peer!default" "admin\tlrswipkxtecda\t"' \
    'ACTIVATE "ours.a.b" "peer!default" "admin\tlrswipkxtecda\t"' | grep -E '^(C:|S: C[23] )'
probe mupdate-find 127.0.0.1 "$cyrus_slave" admin "$P" ours.a.b 90 | grep -A1 MAILBOX
probe mupdate-find 127.0.0.1 "$cyrus_slave" admin "$P" ours.a-b 90 | grep -A1 MAILBOX

step "B. Cyrus imapd as backend of our mupdated"
"$here/cyrus-imapd.sh" start "$cyrus_imap" --mupdate "127.0.0.1:$our_master" | tail -n 1
probe imap 127.0.0.1 "$cyrus_imap" test "$P" 'CREATE "via-ours"' | grep -E '^S: C2'
probe mupdate 127.0.0.1 "$our_master" admin "$P" 'FIND "user.test.via-ours"' | grep -A1 MAILBOX
probe imap 127.0.0.1 "$cyrus_imap" test "$P" 'DELETE "via-ours"' | grep -E '^S: C2'
if probe mupdate 127.0.0.1 "$our_master" admin "$P" 'FIND "user.test.via-ours"' | grep -q MAILBOX; then
    die "user.test.via-ours still on our master after the Cyrus DELETE"
fi
echo "user.test.via-ours gone from our master after DELETE"

step "C. Cyrus master -> our mupdated slave, through a crash and a restart of the Cyrus master"
"$here/cyrus-mupdate.sh" start master "$cyrus_master" | tail -n 1
start_ours "$o" mupdated-slave "$our_slave" "$mupdated" --listen "127.0.0.1:$our_slave" \
    --data "$o/slave-data" --users "$o/users" --admin admin \
    --slave-of "127.0.0.1:$cyrus_master" --master-user admin --master-password "$P" \
    --backoff-initial-ms 3000 --backoff-max-ms 3000
# Our slave reconnects 3 s after losing the master, so the writes below reach it only through
# the resynchronisation (a DELETE it never saw streamed must vanish from it too).
slave_pid=$(cat "$o/mupdated-slave.pid")
probe mupdate 127.0.0.1 "$cyrus_master" admin "$P" \
    'ACTIVATE "cyrus.to.ours" "peer!default" "admin\tlrs\t"' \
    'ACTIVATE "cyrus.c.1" "peer!default" "admin\tlrs\t"' \
    'ACTIVATE "cyrus.c.2" "other!default" "admin\tlrswi\tanyone\tlr\t"' \
    'RESERVE "cyrus.c.reserved" "peer!default"' | grep -E '^(C:|S: C[2-5] )'
probe mupdate-converge 127.0.0.1 "$cyrus_master" 127.0.0.1 "$our_slave" admin "$P" 90

echo "-- C1. kill the Cyrus mupdate process by pid (Cyrus master respawns it), then write on Cyrus"
"$here/cyrus-mupdate.sh" crash master SEGV
probe mupdate 127.0.0.1 "$cyrus_master" admin "$P" \
    'DELETE "cyrus.c.1"' \
    'ACTIVATE "cyrus.after-crash.1" "peer!default" "admin\tlrs\t"' \
    'ACTIVATE "cyrus.after-crash.2" "peer!default" "admin\tlrs\t"' \
    'ACTIVATE "cyrus.c.reserved" "peer!default" "admin\tlrs\t"' | grep -E '^(C:|S: C[2-5] )'
probe mupdate-converge 127.0.0.1 "$cyrus_master" 127.0.0.1 "$our_slave" admin "$P" 90

echo "-- C2. stop Cyrus master(8) by pid and start it again on the same state, then write on Cyrus"
"$here/cyrus-mupdate.sh" restart master
probe mupdate 127.0.0.1 "$cyrus_master" admin "$P" \
    'DELETE "cyrus.to.ours"' \
    'ACTIVATE "cyrus.after-restart.1" "peer!default" "admin\tlrs\t"' \
    'ACTIVATE "cyrus.c.2" "peer!default" "admin\tlrs\t"' | grep -E '^(C:|S: C[2-4] )'
probe mupdate-converge 127.0.0.1 "$cyrus_master" 127.0.0.1 "$our_slave" admin "$P" 90
pid_alive "$o/mupdated-slave.pid" && [ "$(cat "$o/mupdated-slave.pid")" = "$slave_pid" ] \
    || die "our slave (pid $slave_pid) did not survive the Cyrus master's crash and restart"
echo "our slave pid $slave_pid stayed up; its link log:"
grep -E 'resynchronised|master link' "$o/mupdated-slave.log" | sed -e 's/\x1b\[[0-9;]*m//g' \
    -e 's/^\([^ ]*\) .*murder_server::mupdate::slave: /  \1 /'

step "D. mailutil copy Dovecot -> our imapd -> Cyrus imapd -> Dovecot, verified byte for byte"
"$here/dovecot.sh" start "$dovecot" | tail -n 1
start_ours "$o" imapd "$our_imap" "$imapd" --listen "127.0.0.1:$our_imap" --data "$o/imapd-data" \
    --users "$o/users"
probe imap-fill 127.0.0.1 "$dovecot" test "$P" src 60 | tail -n 1
# copy SRC_PORT SRC_BOX DST_PORT DST_BOX: mailutil copy, then verify-copy of the result.
copy() {
    local sp=$1 sb=$2 dp=$3 db=$4 t0=$SECONDS
    python3 "$here/mailutil-copy.py" "{127.0.0.1:$sp/imap/notls/user=test}$sb" \
        "{127.0.0.1:$dp/imap/notls/user=test}$db" "$P" "$P" 2>>"$PEER_DIR/mailutil.log" \
        || die "mailutil copy $sp/$sb -> $dp/$db failed (transcript: $PEER_DIR/mailutil.log)"
    "$conformance" verify-copy --source "127.0.0.1:$sp" --source-user test \
        --source-password "$P" --source-mailbox "$sb" --target "127.0.0.1:$dp" --user test \
        --password "$P" --target-mailbox "$db" --min-messages 50 --timeout 30 \
        || die "verify-copy $sp/$sb -> $dp/$db: the copy differs (above)"
    echo "   ($((SECONDS - t0)) s)"
}
copy "$dovecot" src "$our_imap" from-dovecot
copy "$our_imap" from-dovecot "$cyrus_imap" from-ours
copy "$cyrus_imap" from-ours "$dovecot" from-cyrus
"$conformance" verify-copy --source "127.0.0.1:$dovecot" --source-user test --source-password "$P" \
    --source-mailbox src --target "127.0.0.1:$dovecot" --user test --password "$P" \
    --target-mailbox from-cyrus --min-messages 50 --timeout 30 \
    || die "the round trip Dovecot -> ours -> Cyrus -> Dovecot changed the messages"
# The check is not blind: one flag changed on message 7 of our copy must be reported.
probe imap 127.0.0.1 "$our_imap" test "$P" 'SELECT "from-dovecot"' 'STORE 7 +FLAGS (\Deleted)' \
    | grep -E '^S: C3'
rc=0
out=$("$conformance" verify-copy --source "127.0.0.1:$dovecot" --source-user test \
    --source-password "$P" --source-mailbox src --target "127.0.0.1:$our_imap" --user test \
    --password "$P" --target-mailbox from-dovecot --timeout 30) || rc=$?
echo "$out"
[ "$rc" = 1 ] && grep -q 'message 7: flags' <<<"$out" \
    || die "verify-copy did not report the \\Deleted flag set on message 7 (exit $rc)"

step "E. ctl_mboxlist -m: a Cyrus imapd pushes its mailbox list into our mupdated master"
# A fresh Cyrus imapd that is NOT a backend (its CREATEs are not published), a few mailboxes,
# and on our master one stale entry for the Cyrus server's location and one of another server.
"$here/cyrus-imapd.sh" start "$cyrus_imap" | tail -n 1
cd_=$PEER_DIR/cyrus-imapd
probe imap 127.0.0.1 "$cyrus_imap" test "$P" 'CREATE "pushed-1"' 'CREATE "pushed-2/child"' \
    'CREATE "pushed.3"' | grep -E '^S: C[234]'
probe mupdate 127.0.0.1 "$our_master" admin "$P" \
    'ACTIVATE "user.test.stale" "imap.peer.test!default" "test\tlrs\t"' \
    'ACTIVATE "user.other.elsewhere" "other.peer.test!default" "other\tlrs\t"' \
    | grep -E '^(C:|S: C[23] )'
probe mupdate-list 127.0.0.1 "$our_master" admin "$P" | grep -v 'imap.peer.test!' \
    | grep -v '^MAILBOX user.other.elsewhere ' | sort >"$PEER_DIR/ctl-others-before.txt" || true
{ cat "$cd_/imapd.conf"
  echo "mupdate_server: 127.0.0.1:$our_master"
  echo "mupdate_username: admin"
  echo "mupdate_authname: admin"
  echo "mupdate_password: $P"; } >"$cd_/ctl_mboxlist.conf"
chown cyrus:mail "$cd_/ctl_mboxlist.conf"
t0=$SECONDS
timeout 120 runuser -u cyrus -- /usr/lib/cyrus/bin/ctl_mboxlist -C "$cd_/ctl_mboxlist.conf" -m \
    >"$PEER_DIR/ctl_mboxlist.out" 2>&1 \
    || { cat "$PEER_DIR/ctl_mboxlist.out" >&2; grep ctl_mboxlist "$PEER_DIR/syslog/all.log" >&2 || true; die "ctl_mboxlist -m failed"; }
echo "ctl_mboxlist -m exit 0 in $((SECONDS - t0)) s; it logged:"
grep -h "peer-imapd/ctl_mboxlist" "$PEER_DIR/syslog/all.log" | grep -E 'Activate|Remove|populat' \
    | sed 's/^.*ctl_mboxlist\[[0-9]*\]: /  /' || true
runuser -u cyrus -- /usr/lib/cyrus/bin/ctl_mboxlist -C "$cd_/imapd.conf" -d >"$PEER_DIR/ctl-local.json"
python3 -c 'import json,sys; print("\n".join(sorted(json.load(open(sys.argv[1])))))' \
    "$PEER_DIR/ctl-local.json" >"$PEER_DIR/ctl-local.txt"
probe mupdate-list 127.0.0.1 "$our_master" admin "$P" >"$PEER_DIR/ctl-master.txt"
grep ' imap.peer.test!' "$PEER_DIR/ctl-master.txt" | awk '{print $2}' | sort >"$PEER_DIR/ctl-pushed.txt" || true
diff -u "$PEER_DIR/ctl-local.txt" "$PEER_DIR/ctl-pushed.txt" \
    || die "our master's entries for imap.peer.test (+) differ from the Cyrus mailbox list (-)"
grep -q '^MAILBOX user.other.elsewhere other.peer.test!default ' "$PEER_DIR/ctl-master.txt" \
    || die "ctl_mboxlist -m removed another server's entry from our master"
grep -v 'imap.peer.test!' "$PEER_DIR/ctl-master.txt" | grep -v '^MAILBOX user.other.elsewhere ' \
    | sort | diff -u "$PEER_DIR/ctl-others-before.txt" - \
    || die "ctl_mboxlist -m changed entries of other servers on our master"
grep -q '^user.test.pushed-2.child$' "$PEER_DIR/ctl-pushed.txt" || die "user.test.pushed-2.child not pushed"
grep -q '^user.test.stale$' "$PEER_DIR/ctl-pushed.txt" && die "the stale entry survived ctl_mboxlist -m"
echo "our master holds exactly the $(wc -l <"$PEER_DIR/ctl-local.txt") Cyrus mailboxes for imap.peer.test:"
grep ' imap.peer.test!' "$PEER_DIR/ctl-master.txt" | sed 's/^/  /'

step "stop everything"
all=""
for f in "$o"/*.pid; do all="$all $(tr -dc '0-9' <"$f")"; stop_pid "$f"; done
"$here/stop-all.sh" | tail -n 1
for p in $all; do kill -0 "$p" 2>/dev/null && die "pid $p still alive"; done
echo "INTEROP ok dir=$PEER_DIR"
