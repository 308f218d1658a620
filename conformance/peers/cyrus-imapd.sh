#!/usr/bin/env bash
# A real Cyrus 3.6 imapd (IMAP4rev1 + MULTIAPPEND + LITERAL+ + UIDPLUS) on 127.0.0.1.
#
#   cyrus-imapd.sh start [PORT] [--user U] [--password P] [--admin-password P]
#                        [--mupdate HOST:PORT --mupdate-user U --mupdate-password P]
#   cyrus-imapd.sh stop
#   cyrus-imapd.sh status
#
# Default port 13143, test user `test`, admin `admin`, both with password peer-secret.
# Namespace: altnamespace: yes + unixhierarchysep: yes, so the test user sees its own mailboxes at
# the top level with "/" as separator: it may CREATE/APPEND/SELECT/DELETE any name that does not
# start with "INBOX", "Other Users", "Shared Folders" or "user/" ("." is an ordinary character, "/"
# makes a child). Its INBOX (internally user.test) is created by the admin at start.
# With --mupdate the imapd is a Murder backend (proxyservers: admin, mupdate_server ...): every
# CREATE/DELETE/RENAME/SETACL is published to that MUPDATE master (Cyrus or ours).
# State: $PEER_DIR/cyrus-imapd/. Cyrus logs go to syslog (a private rsyslogd is started if needed).
# Last line on start:
#   PEER cyrus-imapd 127.0.0.1:13143 user=test password=peer-secret admin=admin admin_password=...
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() { sed -n '2,9p' "$0" >&2; exit 2; }
[ $# -ge 1 ] || usage
action=$1
shift
port=13143
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then port=$1; shift; fi
user=test password=peer-secret admin_password=peer-secret
mupdate="" mupdate_user=admin mupdate_password=peer-secret
while [ $# -gt 0 ]; do
    case $1 in
        --user) user=$2; shift 2 ;;
        --password) password=$2; shift 2 ;;
        --admin-password) admin_password=$2; shift 2 ;;
        --mupdate) mupdate=$2; shift 2 ;;
        --mupdate-user) mupdate_user=$2; shift 2 ;;
        --mupdate-password) mupdate_password=$2; shift 2 ;;
        *) usage ;;
    esac
done
d=$PEER_DIR/cyrus-imapd
servername=imap.peer.test

stop_or_status "$action" "$d/master.pid" "cyrus imapd"

need_root
[ -x "$CYRUS_BIN/imapd" ] || die "$CYRUS_BIN/imapd missing: run install.sh"
[ "$user" != admin ] || die "the test user must not be the admin"
restart_if_running "$d/master.pid"
port_free "$port" || die "127.0.0.1:$port is already in use"
if [ -n "$mupdate" ]; then
    case $mupdate in 127.0.0.1:*|localhost:*) ;; *) die "loopback MUPDATE only, got $mupdate" ;; esac
fi

ensure_syslog
rm -rf "$d"
mkdir -p "$d"
cyrus_dirs "$d"
conf=$d/imapd.conf
{
    echo "# written by murder conformance/peers/cyrus-imapd.sh"
    echo "configdirectory: $d/config"
    echo "partition-default: $d/spool"
    echo "servername: $servername"
    echo "syslog_prefix: peer-imapd"
    echo "admins: admin"
    echo "allowplaintext: yes"
    echo "sasl_pwcheck_method: auxprop"
    echo "sasl_auxprop_plugin: sasldb"
    echo "sasl_sasldb_path: $d/sasldb2"
    echo "sasl_mech_list: PLAIN LOGIN"
    echo "altnamespace: yes"
    echo "unixhierarchysep: yes"
    echo "virtdomains: off"
    if [ -n "$mupdate" ]; then
        echo "proxyservers: admin"
        echo "mupdate_server: $mupdate"
        echo "mupdate_username: $mupdate_user"
        echo "mupdate_authname: $mupdate_user"
        echo "mupdate_password: $mupdate_password"
    fi
} >"$conf"
cat >"$d/cyrus.conf" <<CONF
# written by murder conformance/peers/cyrus-imapd.sh; -C must be inside cmd
SERVICES {
  imap cmd="$CYRUS_BIN/imapd -C $conf" listen="$PEER_HOST:$port" prefork=1
}
EVENTS {
}
CONF
chown cyrus:mail "$conf" "$d/cyrus.conf"
sasl_user "$d/sasldb2" "$servername" admin "$admin_password"
sasl_user "$d/sasldb2" "$servername" "$user" "$password"

cyrus_master_start "$d"
wait_banner "$port" '^\* OK' "$SYSLOG_FILE"
python3 "$PEER_SCRIPTS/probe.py" imap "$PEER_HOST" "$port" admin "$admin_password" \
    "CREATE \"user/$user\"" >"$d/create-inbox.log" 2>&1 \
    || { cat "$d/create-inbox.log" >&2; tail -n 20 "$SYSLOG_FILE" >&2; die "admin could not create user/$user"; }
note "cyrus imapd up on $PEER_HOST:$port (master pid $(cat "$d/master.pid")); logs: $SYSLOG_FILE (prefix peer-imapd)"
extra=""
[ -n "$mupdate" ] && extra=" mupdate=$mupdate"
echo "PEER cyrus-imapd $PEER_HOST:$port user=$user password=$password admin=admin admin_password=$admin_password separator=/ dir=$d$extra syslog=${SYSLOG_FILE%% *}"
