#!/usr/bin/env python3
"""Drive `mailutil copy SRC DST` (uw-mailutils, c-client 2007f) through a pseudo-terminal.

mailutil reads passwords only from the terminal, printing `{host/imap/user=NAME} password:` once per
server connection (the host is the reverse-resolved name, e.g. `localhost`, never the port), so
prompts are answered in order: the first gets the first PASSWORD (source connection), the second the
second (destination), and so on; with a single PASSWORD every prompt gets it. More prompts than
that means a login was refused (c-client re-prompts): the run is stopped and reported as failed.

usage: mailutil-copy.py [--command copy|append|move|appenddelete] [--debug] [--timeout SECONDS]
                        SRC DST PASSWORD [PASSWORD...]
  SRC/DST  c-client names, e.g. {127.0.0.1:13243/imap/notls/user=test}src
           (/notls skips STARTTLS; /tls/novalidate-cert for a test certificate). Loopback only.
  --debug  pass -d: mailutil prints the IMAP protocol trace (passwords included).
The whole transcript goes to stderr; the last line on stdout is machine-readable:
  MAILUTIL copy ok exit=0 prompts=2 messages=50 appenduid="1795613074 1:50"
  MAILUTIL copy failed exit=1 prompts=2 reason="..."
Exit status: 0 when mailutil exited 0 and reported `[Ok N messages(s)]`, 1 otherwise, 2 usage.
"""
import argparse
import os
import pty
import re
import select
import signal
import sys
import time

LOOPBACK = ("127.0.0.1", "localhost", "[127.0.0.1]")
PROMPT = re.compile(rb"\{[^}\r\n]*\} password:$")


def host_of(spec):
    m = re.match(r"^\{([^}/:]+)", spec)
    return m.group(1) if m else None


def quote(s):
    return '"' + s.replace('"', "'") + '"'


def main():
    ap = argparse.ArgumentParser(add_help=True, usage=__doc__)
    ap.add_argument("--command", default="copy", choices=["copy", "append", "move", "appenddelete"])
    ap.add_argument("--debug", action="store_true")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("passwords", nargs="+")
    a = ap.parse_args()
    for spec in (a.src, a.dst):
        if host_of(spec) not in LOOPBACK:
            print("mailutil-copy.py: loopback servers only, got %s" % spec, file=sys.stderr)
            return 2
    argv = ["mailutil", a.command, "-v"] + (["-d"] if a.debug else []) + [a.src, a.dst]
    print("mailutil-copy.py: running " + " ".join(argv), file=sys.stderr)

    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)

    out = b""
    pending = b""  # output since the last answered prompt
    prompts = 0
    reason = ""
    deadline = time.monotonic() + a.timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            reason = "timeout after %.0f s" % a.timeout
            os.kill(pid, signal.SIGKILL)
            break
        r, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not r:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        sys.stderr.buffer.write(chunk)
        sys.stderr.buffer.flush()
        out += chunk
        pending += chunk
        if PROMPT.search(pending.rstrip()):
            prompts += 1
            if len(a.passwords) == 1:
                pw = a.passwords[0]
            elif prompts <= len(a.passwords):
                pw = a.passwords[prompts - 1]
            else:
                reason = "password prompt %d but only %d passwords: login refused?" % (
                    prompts, len(a.passwords))
                os.kill(pid, signal.SIGKILL)
                break
            if prompts > 4:
                reason = "more than 4 password prompts: login refused?"
                os.kill(pid, signal.SIGKILL)
                break
            os.write(fd, pw.encode() + b"\n")
            pending = b""
    _, status = os.waitpid(pid, 0)
    try:
        os.close(fd)
    except OSError:
        pass
    code = os.waitstatus_to_exitcode(status)
    text = out.decode("utf-8", "replace")
    ok = re.search(r"\[Ok (\d+) messages?\(s\)\]", text)
    uid = re.search(r"\[APPENDUID (\d+ [0-9:,]+)\]", text)
    if code == 0 and ok and not reason:
        line = "MAILUTIL %s ok exit=0 prompts=%d messages=%s" % (a.command, prompts, ok.group(1))
        if uid:
            line += " appenduid=" + quote(uid.group(1))
        print(line)
        return 0
    if not reason:
        # c-client prints progress as "[...]" and errors as bare lines ("Mailbox already exists").
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        errors = [ln for ln in lines if not ln.startswith("[") and not ln.startswith("warning:")
                  and not PROMPT.search(ln.encode())]
        reason = (errors or lines or ["no output"])[-1]
    print("MAILUTIL %s failed exit=%d prompts=%d reason=%s" % (a.command, code, prompts, quote(reason)))
    return 1


if __name__ == "__main__":
    sys.exit(main())
