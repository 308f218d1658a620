#!/usr/bin/env bash
# A real Cyrus 3.6 mupdate master or slave on 127.0.0.1, run by Cyrus master(8).
#
#   cyrus-mupdate.sh start master [PORT] [--user U] [--password P]
#   cyrus-mupdate.sh start slave  [PORT] --master HOST:PORT [--master-user U] [--master-password P]
#                                        [--user U] [--password P] [--retry-delay SECONDS]
#   cyrus-mupdate.sh stop  master|slave
#   cyrus-mupdate.sh status master|slave
#   cyrus-mupdate.sh crash master|slave [SIGNAL]   (default SEGV: kill the mupdate service
#                                                   process by pid; Cyrus master respawns it)
#   cyrus-mupdate.sh restart master|slave          (stop Cyrus master(8) by pid, start it again
#                                                   on the same state: mailboxes are kept)
#
# Defaults: master port 13905, slave port 13906, user admin, password peer-secret, and for a slave
# --master-user/--master-password default to --user/--password. The master may be OUR mupdated.
# --retry-delay sets mupdate_retry_delay (Cyrus default 20): the slave NOOPs an idle master link
# after it, drops the link after twice it, and reconnects after it + random(0..it/2) seconds.
# State: $PEER_DIR/cyrus-mupdate-<role>/ (imapd.conf, cyrus.conf, sasldb2, master.pid, master.log).
# Crashes are logged only to syslog: a private rsyslogd is started if none runs (see lib.sh).
# Last line on start:
#   PEER mupdate-master 127.0.0.1:13905 user=admin password=peer-secret servername=... syslog=...
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() { sed -n '2,23p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
action=$1 role=$2
shift 2
case $role in master) port=13905 ;; slave) port=13906 ;; *) usage ;; esac
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then port=$1; shift; fi
user=admin password=peer-secret master_addr="" master_user="" master_password="" retry_delay=""
signal=SEGV
if [ "$action" = crash ] && [ $# -gt 0 ]; then signal=$1; shift; fi
while [ $# -gt 0 ]; do
    case $1 in
        --user) user=$2; shift 2 ;;
        --password) password=$2; shift 2 ;;
        --master) master_addr=$2; shift 2 ;;
        --master-user) master_user=$2; shift 2 ;;
        --master-password) master_password=$2; shift 2 ;;
        --retry-delay) retry_delay=$2; shift 2 ;;
        *) usage ;;
    esac
done
master_user=${master_user:-$user}
master_password=${master_password:-$password}
d=$PEER_DIR/cyrus-mupdate-$role
servername=mup$role.peer.test

if [ "$action" = crash ]; then
    pid_alive "$d/master.pid" || die "cyrus mupdate $role is not running"
    mpid=$(tr -dc '0-9' <"$d/master.pid")
    child=$(ps -o pid= --ppid "$mpid" | tr -d ' ' | head -n 1)
    [ -n "$child" ] || die "no mupdate process under master pid $mpid"
    kill -s "$signal" "$child"
    for _ in $(seq "$PEER_WAIT_TENTHS"); do
        new=$(ps -o pid= --ppid "$mpid" | tr -d ' ' | grep -vx "$child" | head -n 1 || true)
        [ -n "$new" ] && break
        sleep 0.1
    done
    [ -n "${new:-}" ] || die "Cyrus master did not respawn mupdate after SIG$signal"
    echo "PEER crashed mupdate-$role old_pid=$child signal=$signal new_pid=$new"
    exit 0
fi
if [ "$action" = restart ]; then
    need_root
    [ -f "$d/cyrus.conf" ] || die "no cyrus mupdate $role state in $d: start it first"
    port=$(grep -o 'listen="[^"]*"' "$d/cyrus.conf" | grep -o '[0-9]*"$' | tr -d '"')
    old=$(tr -dc '0-9' <"$d/master.pid" 2>/dev/null || true)
    stop_pid "$d/master.pid"
    for _ in $(seq "$PEER_WAIT_TENTHS"); do port_free "$port" && break; sleep 0.1; done
    port_free "$port" || die "127.0.0.1:$port still in use after stopping master pid $old"
    ensure_syslog
    cyrus_master_start "$d"
    wait_banner "$port" '^\* OK MUPDATE' "$SYSLOG_FILE"
    echo "PEER restarted mupdate-$role $PEER_HOST:$port old_master_pid=${old:-none} new_master_pid=$(cat "$d/master.pid")"
    exit 0
fi
stop_or_status "$action" "$d/master.pid" "cyrus mupdate $role"

need_root
[ -x "$CYRUS_BIN/mupdate" ] || die "$CYRUS_BIN/mupdate missing: run install.sh"
restart_if_running "$d/master.pid"
port_free "$port" || die "127.0.0.1:$port is already in use"
if [ "$role" = slave ]; then
    [ -n "$master_addr" ] || die "a slave needs --master HOST:PORT"
    case $master_addr in 127.0.0.1:*|localhost:*) ;; *) die "loopback masters only, got $master_addr" ;; esac
fi

ensure_syslog
rm -rf "$d"
mkdir -p "$d"
cyrus_dirs "$d"
conf=$d/imapd.conf
{
    echo "# written by murder conformance/peers/cyrus-mupdate.sh ($role)"
    echo "configdirectory: $d/config"
    echo "partition-default: $d/spool"
    echo "servername: $servername"
    echo "syslog_prefix: peer-mupdate-$role"
    echo "admins: $user"
    echo "allowplaintext: yes"
    echo "sasl_pwcheck_method: auxprop"
    echo "sasl_auxprop_plugin: sasldb"
    echo "sasl_sasldb_path: $d/sasldb2"
    echo "sasl_mech_list: PLAIN LOGIN"
    if [ "$role" = slave ]; then
        echo "mupdate_server: $master_addr"
        echo "mupdate_username: $master_user"
        echo "mupdate_authname: $master_user"
        echo "mupdate_password: $master_password"
        if [ -n "$retry_delay" ]; then echo "mupdate_retry_delay: $retry_delay"; fi
    fi
} >"$conf"
flag=""
[ "$role" = master ] && flag=" -m"
cat >"$d/cyrus.conf" <<CONF
# written by murder conformance/peers/cyrus-mupdate.sh ($role); -C must be inside cmd
SERVICES {
  mupdate cmd="$CYRUS_BIN/mupdate -C $conf$flag" listen="$PEER_HOST:$port" prefork=1
}
EVENTS {
}
CONF
chown cyrus:mail "$conf" "$d/cyrus.conf"
sasl_user "$d/sasldb2" "$servername" "$user" "$password"

cyrus_master_start "$d"
wait_banner "$port" '^\* OK MUPDATE' "$SYSLOG_FILE"
note "cyrus mupdate $role up on $PEER_HOST:$port (master pid $(cat "$d/master.pid")); Cyrus logs: $SYSLOG_FILE (prefix peer-mupdate-$role), master stdout: $d/master.log"
extra=""
[ "$role" = slave ] && extra=" master=$master_addr master_user=$master_user"
echo "PEER mupdate-$role $PEER_HOST:$port user=$user password=$password servername=$servername$extra dir=$d syslog=${SYSLOG_FILE%% *}"
