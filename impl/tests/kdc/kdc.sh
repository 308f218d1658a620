#!/usr/bin/env bash
# A throw-away MIT Kerberos KDC for the GSSAPI tests (needs krb5-kdc, krb5-admin-server,
# krb5-user).
#
#   kdc.sh start DIR   create realm MURDER.TEST in DIR (created if missing), start krb5kdc on
#                      127.0.0.1 (a free port, UDP and TCP), write DIR/env (source it)
#   kdc.sh stop DIR    stop that KDC (by the pid in DIR/kdc.pid)
#
# What `start` leaves in DIR:
#   krb5.conf, kdc.conf     the realm's configuration (use via KRB5_CONFIG / KRB5_KDC_PROFILE)
#   mupdate.keytab          key of mupdate/localhost (mupdated's --keytab)
#   imap.keytab             key of imap/localhost (imapd's --keytab)
#   clients.keytab          keys of admin, alice
#   ccache/                 a DIR: credential-cache collection with TGTs of admin and alice
#   env                     KRB5_CONFIG, KRB5_KDC_PROFILE, KRB5CCNAME, KRB5_KTNAME (the
#                           server keytab, for in-process acceptors), MURDER_KDC_DIR,
#                           MURDER_KDC_REALM to export
# Principals: mupdate/localhost, imap/localhost, mupdate/otherhost and imap/otherhost (in no
# keytab: a ticket for the wrong service), admin, alice, bob (no ticket in the cache).
set -euo pipefail

REALM=MURDER.TEST
cmd=${1:-}
dir=${2:-}
if [[ -z "$cmd" || -z "$dir" ]]; then
    echo "usage: $0 start|stop DIR" >&2
    exit 2
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

case "$cmd" in
start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ -f "$dir/kdc.pid" ]] && kill -0 "$(cat "$dir/kdc.pid")" 2>/dev/null; then
        echo "a KDC already runs for $dir (pid $(cat "$dir/kdc.pid"))" >&2
        exit 1
    fi
    rm -rf "$dir/principal"* "$dir/stash" "$dir"/*.keytab "$dir/ccache" "$dir/env"
    port=$(free_port)
    cat >"$dir/krb5.conf" <<CONF
[libdefaults]
    default_realm = $REALM
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    udp_preference_limit = 1
    forwardable = false
[realms]
    $REALM = {
        kdc = 127.0.0.1:$port
    }
[domain_realm]
    localhost = $REALM
    otherhost = $REALM
CONF
    cat >"$dir/kdc.conf" <<CONF
[kdcdefaults]
    kdc_listen = 127.0.0.1:$port
    kdc_tcp_listen = 127.0.0.1:$port
[realms]
    $REALM = {
        database_name = $dir/principal
        key_stash_file = $dir/stash
        acl_file = $dir/kadm5.acl
        max_life = 1h
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    }
[logging]
    kdc = FILE:$dir/kdc.log
CONF
    : >"$dir/kadm5.acl"
    export KRB5_CONFIG="$dir/krb5.conf" KRB5_KDC_PROFILE="$dir/kdc.conf"
    kdb5_util create -s -r "$REALM" -P "kdc-master-$$-$RANDOM" >/dev/null
    for p in mupdate/localhost mupdate/otherhost imap/localhost imap/otherhost admin alice bob; do
        kadmin.local -r "$REALM" -q "addprinc -clearpolicy -randkey $p" >/dev/null
    done
    kadmin.local -r "$REALM" -q "ktadd -k $dir/mupdate.keytab mupdate/localhost" >/dev/null
    kadmin.local -r "$REALM" -q "ktadd -k $dir/imap.keytab imap/localhost" >/dev/null
    kadmin.local -r "$REALM" -q "ktadd -k $dir/clients.keytab admin alice" >/dev/null
    # krb5kdc daemonizes and writes its pid.
    krb5kdc -r "$REALM" -P "$dir/kdc.pid"
    export KRB5CCNAME="DIR:$dir/ccache"
    mkdir -p "$dir/ccache"
    ok=""
    for _ in $(seq 1 100); do
        if kinit -k -t "$dir/clients.keytab" "admin@$REALM" 2>/dev/null; then
            ok=1
            break
        fi
        sleep 0.1
    done
    if [[ -z "$ok" ]]; then
        echo "the KDC did not answer on 127.0.0.1:$port; see $dir/kdc.log" >&2
        exit 1
    fi
    kinit -k -t "$dir/clients.keytab" "alice@$REALM"
    cat >"$dir/env" <<ENV
export KRB5_CONFIG=$dir/krb5.conf
export KRB5_KDC_PROFILE=$dir/kdc.conf
export KRB5CCNAME=DIR:$dir/ccache
export KRB5_KTNAME=FILE:$dir/mupdate.keytab
export MURDER_KDC_DIR=$dir
export MURDER_KDC_REALM=$REALM
ENV
    echo "KDC for $REALM on 127.0.0.1:$port (pid $(cat "$dir/kdc.pid")); source $dir/env"
    ;;
stop)
    pidfile="$dir/kdc.pid"
    if [[ ! -f "$pidfile" ]]; then
        echo "no KDC pid file in $dir" >&2
        exit 0
    fi
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile"
    echo "KDC (pid $pid) stopped"
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
