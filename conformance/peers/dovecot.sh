#!/usr/bin/env bash
# A real Dovecot 2.3 imapd (IMAP4rev1 + MULTIAPPEND + LITERAL+ + UIDPLUS) on 127.0.0.1, packaged
# binaries with a private configuration (dovecot -c), nothing from /etc/dovecot.
#
#   dovecot.sh start [PORT] [--user U] [--password P]
#   dovecot.sh stop
#   dovecot.sh status
#
# Default port 13243, user `test`, password peer-secret (passwd-file, PLAIN/LOGIN, no TLS).
# Storage: mdbox under $PEER_DIR/dovecot/mail/<user>, owned by nobody; mail_fsync = always so an
# acknowledged APPEND is on disk. One inbox namespace with separator "/" and no prefix: the user may
# CREATE any top-level name except INBOX ("." is an ordinary character, "/" makes a child).
# State: $PEER_DIR/dovecot/ (dovecot.conf, passwd, run/, dovecot.log, dovecot.pid).
# Last line on start:
#   PEER dovecot 127.0.0.1:13243 user=test password=peer-secret separator=/ log=...
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() { sed -n '2,8p' "$0" >&2; exit 2; }
[ $# -ge 1 ] || usage
action=$1
shift
port=13243
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then port=$1; shift; fi
user=test password=peer-secret
while [ $# -gt 0 ]; do
    case $1 in
        --user) user=$2; shift 2 ;;
        --password) password=$2; shift 2 ;;
        *) usage ;;
    esac
done
d=$PEER_DIR/dovecot

stop_or_status "$action" "$d/dovecot.pid" "dovecot"

need_root
[ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/imap ] || die "dovecot-imapd missing: run install.sh"
getent passwd dovecot >/dev/null && getent passwd dovenull >/dev/null \
    || die "users dovecot/dovenull missing (dovecot-core postinst creates them)"
restart_if_running "$d/dovecot.pid"
port_free "$port" || die "127.0.0.1:$port is already in use"

rm -rf "$d"
mkdir -p "$d/run" "$d/state" "$d/mail"
chmod a+x "$PEER_DIR"
chmod 755 "$d"
chown nobody:nogroup "$d/mail"
printf '%s:{PLAIN}%s::::::\n' "$user" "$password" >"$d/passwd"
chmod 644 "$d/passwd"
cat >"$d/dovecot.conf" <<CONF
# written by murder conformance/peers/dovecot.sh
protocols = imap
listen = $PEER_HOST
base_dir = $d/run
state_dir = $d/state
log_path = $d/dovecot.log
info_log_path = $d/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = mdbox:$d/mail/%u
mail_fsync = always
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 0
default_internal_user = dovecot
default_login_user = dovenull
namespace inbox {
  inbox = yes
  separator = /
  prefix =
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $d/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$d/mail/%u
}
service imap-login {
  chroot =
  inet_listener imap {
    address = $PEER_HOST
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
protocol imap {
  mail_max_userip_connections = 100
}
CONF
/usr/sbin/dovecot -c "$d/dovecot.conf" -n >"$d/config-check.log" 2>&1 \
    || { cat "$d/config-check.log" >&2; die "dovecot rejected $d/dovecot.conf"; }
setsid /usr/sbin/dovecot -c "$d/dovecot.conf" -F </dev/null >"$d/stdout.log" 2>&1 &
echo $! >"$d/dovecot.pid"
sleep 0.1
pid_alive "$d/dovecot.pid" || { cat "$d/stdout.log" "$d/dovecot.log" >&2 2>/dev/null; die "dovecot exited at start"; }
wait_banner "$port" '^\* OK' "$d/dovecot.log"
note "dovecot up on $PEER_HOST:$port (pid $(cat "$d/dovecot.pid")), log $d/dovecot.log"
echo "PEER dovecot $PEER_HOST:$port user=$user password=$password separator=/ dir=$d log=$d/dovecot.log"
