# Shared helpers for the peer scripts in conformance/peers/ (sourced, not executed).
# Every process is started in the background, its pid recorded in a pid file under $PEER_DIR,
# and stopped by that pid only. Loopback (127.0.0.1) only.

PEER_DIR=${PEER_DIR:-/tmp/murder-peers}
PEER_PREFIX=${PEER_PREFIX:-/opt/murder-peers}
PEER_HOST=127.0.0.1
CYRUS_BIN=$PEER_PREFIX/cyrus/usr/lib/cyrus/bin
PEER_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# How long start waits for a banner (seconds) and stop waits for an exit (tenths of a second).
PEER_WAIT_SECONDS=${PEER_WAIT_SECONDS:-30}
PEER_WAIT_TENTHS=$((PEER_WAIT_SECONDS * 10))

die() { echo "$(basename "$0"): ERROR: $*" >&2; exit 1; }
note() { echo "$(basename "$0"): $*" >&2; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (Cyrus master drops to user cyrus)"; }

# pid_alive FILE: true if FILE names a live process.
pid_alive() {
    local pid
    [ -f "$1" ] || return 1
    pid=$(tr -dc '0-9' <"$1")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# stop_pid FILE: TERM the process named in FILE and the children it had, wait, KILL leftovers.
stop_pid() {
    local f=$1 pid kids k
    if ! pid_alive "$f"; then rm -f "$f"; return 0; fi
    pid=$(tr -dc '0-9' <"$f")
    kids=$(ps -o pid= --ppid "$pid" 2>/dev/null | tr -s ' \n' ' ' || true)
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq "$PEER_WAIT_TENTHS"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        note "pid $pid ignored TERM; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    for k in $kids; do
        for _ in $(seq 20); do kill -0 "$k" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$k" 2>/dev/null; then kill -KILL "$k" 2>/dev/null || true; fi
    done
    rm -f "$f"
}

# port_free PORT: true if nothing listens on 127.0.0.1:PORT.
port_free() {
    ! (exec 3<>"/dev/tcp/$PEER_HOST/$1") 2>/dev/null
}

# wait_banner PORT PATTERN LOGFILE: wait until the server on PORT greets with a line matching
# PATTERN (extended regex), failing with the log tail.
wait_banner() {
    local port=$1 pat=$2 log=$3 end=$((SECONDS + PEER_WAIT_SECONDS))
    while [ "$SECONDS" -lt "$end" ]; do
        if python3 "$PEER_SCRIPTS/probe.py" banner "$PEER_HOST" "$port" 2>/dev/null | grep -Eq "$pat"; then
            return 0
        fi
        sleep 0.1
    done
    echo "---- last lines of $log" >&2
    tail -n 30 "$log" >&2 2>/dev/null || true
    die "no banner matching /$pat/ on $PEER_HOST:$port"
}

# start_ours DIR NAME PORT CMD...: run one of our binaries (mupdated, imapd) in the background,
# log in DIR/NAME.log, pid in DIR/NAME.pid, and wait for its greeting on PORT.
start_ours() {
    local dir=$1 name=$2 port=$3
    shift 3
    port_free "$port" || die "$PEER_HOST:$port is already in use"
    setsid "$@" </dev/null >"$dir/$name.log" 2>&1 &
    echo $! >"$dir/$name.pid"
    wait_banner "$port" '^\* OK' "$dir/$name.log"
    echo "started $name pid $(cat "$dir/$name.pid") on $PEER_HOST:$port"
}

# ensure_syslog: Cyrus reports crashes ("terminated abnormally") only to syslog. Reuse a running
# syslog daemon (the system one or ours), else start a private rsyslogd that owns /dev/log and writes
# everything to $PEER_DIR/syslog/all.log. Sets SYSLOG_FILE.
ensure_syslog() {
    local d=$PEER_DIR/syslog
    mkdir -p "$d"
    if pid_alive "$d/rsyslogd.pid"; then
        SYSLOG_FILE=$d/all.log
        return 0
    fi
    if pid_alive /run/rsyslogd.pid && [ -S /dev/log ]; then
        SYSLOG_FILE="/var/log/syslog (system rsyslogd)"
        return 0
    fi
    command -v rsyslogd >/dev/null || die "rsyslogd missing: run install.sh"
    cat >"$d/rsyslog.conf" <<CONF
# written by murder conformance/peers/lib.sh
module(load="imuxsock" SysSock.Name="/dev/log")
\$WorkDirectory $d
*.* action(type="omfile" file="$d/all.log" fileCreateMode="0644")
CONF
    rsyslogd -f "$d/rsyslog.conf" -i "$d/rsyslogd.pid" >"$d/rsyslogd.out" 2>&1 \
        || { cat "$d/rsyslogd.out" >&2; die "rsyslogd failed to start"; }
    for _ in $(seq "$PEER_WAIT_TENTHS"); do
        if pid_alive "$d/rsyslogd.pid" && [ -S /dev/log ]; then break; fi
        sleep 0.1
    done
    pid_alive "$d/rsyslogd.pid" || { cat "$d/rsyslogd.out" >&2; die "rsyslogd did not stay up"; }
    SYSLOG_FILE=$d/all.log
    note "started rsyslogd pid $(cat "$d/rsyslogd.pid"), log $SYSLOG_FILE"
}

# stop_syslog: stop our private rsyslogd (never the system one).
stop_syslog() { stop_pid "$PEER_DIR/syslog/rsyslogd.pid"; }

# cyrus_dirs DIR: the directory tree a Cyrus instance needs, owned by cyrus. DIR and $PEER_DIR must
# be traversable by cyrus (mktemp -d makes mode 700 directories).
cyrus_dirs() {
    local d=$1 s
    chmod a+x "$PEER_DIR" "$d"
    for s in config config/db config/socket config/proc config/log config/msg config/ptclient \
        config/sieve config/user config/quota config/lock spool; do
        mkdir -p "$d/$s"
    done
    chown -R cyrus:mail "$d/config" "$d/spool"
    chmod 750 "$d/config" "$d/spool"
}

# sasl_user DB REALM USER PASSWORD: create or update a sasldb user.
sasl_user() {
    printf '%s' "$4" | saslpasswd2 -p -c -f "$1" -u "$2" "$3" || die "saslpasswd2 for $3 failed"
    chown cyrus:mail "$1"
    chmod 640 "$1"
}

# cyrus_master_start DIR: run Cyrus master(8) on DIR/imapd.conf + DIR/cyrus.conf as root (it drops
# to cyrus), pid in DIR/master.pid, stdout/stderr in DIR/master.log.
cyrus_master_start() {
    local d=$1
    [ -x /usr/lib/cyrus/bin/master ] || die "Cyrus master missing: run install.sh"
    rm -f "$d/master.pid"
    setsid /usr/lib/cyrus/bin/master -C "$d/imapd.conf" -M "$d/cyrus.conf" -p "$d/master.pid" -D \
        </dev/null >"$d/master.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$d/master.pid.launch"
    for _ in $(seq "$PEER_WAIT_TENTHS"); do
        kill -0 "$pid" 2>/dev/null || { tail -n 30 "$d/master.log" >&2; die "Cyrus master exited at start"; }
        [ -s "$d/master.pid" ] && break
        sleep 0.1
    done
    # master.pid (written by master itself) names the same process, as we used -D (no fork).
    echo "$pid" >"$d/master.pid"
    rm -f "$d/master.pid.launch"
}

# stop_or_status ACTION PIDFILE LABEL: handle the `stop` and `status` actions of a peer script
# (exits); returns for `start`; usage error otherwise.
stop_or_status() {
    case $1 in
    stop)
        stop_pid "$2"
        note "stopped $3"
        exit 0 ;;
    status)
        if pid_alive "$2"; then echo "running pid $(cat "$2")"; exit 0; fi
        echo "stopped"
        exit 1 ;;
    start) return 0 ;;
    *) usage ;;
    esac
}

# restart_if_running PIDFILE: `start` of a running instance stops it first (clean state).
restart_if_running() {
    if pid_alive "$1"; then
        note "already running (pid $(cat "$1")); restarting"
        stop_pid "$1"
    fi
}
