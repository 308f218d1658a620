#!/usr/bin/env python3
"""Raw-socket probes for the peer servers (loopback only, bounded timeouts).

  probe.py banner HOST PORT
      print the greeting: lines up to and including the first "* OK" / "* BYE" line.
  probe.py mupdate-auth HOST PORT USER PASSWORD
      read the banner up to "* OK", AUTHENTICATE "PLAIN" with an initial response, expect "A OK".
  probe.py mupdate HOST PORT USER PASSWORD COMMAND...
      authenticate, then send each COMMAND (without tag) as "C<n> COMMAND", print every reply line,
      fail unless each tagged reply is OK. A written \t in COMMAND is sent as a TAB.
  probe.py mupdate-find HOST PORT USER PASSWORD NAME [WAIT_SECONDS]
      authenticate, then repeat "NOOP" + "FIND NAME" until a MAILBOX line for NAME appears
      (slaves stream lazily), at most WAIT_SECONDS (default 60); print the line.
  probe.py imap-check HOST PORT USER PASSWORD MAILBOX
      LOGIN, CREATE MAILBOX, one MULTIAPPEND of two messages, SELECT (expects 2 EXISTS), DELETE.
  probe.py imap HOST PORT USER PASSWORD COMMAND...
      LOGIN, send each COMMAND (without tag), print replies, fail unless each reply is OK.
      A written \t in COMMAND is sent as a TAB.
  probe.py imap-count HOST PORT USER PASSWORD MAILBOX
      LOGIN, EXAMINE MAILBOX, print the EXISTS count.
  probe.py imap-fill HOST PORT USER PASSWORD MAILBOX N
      LOGIN, CREATE MAILBOX (if missing), APPEND N small messages (one APPEND each).
Exit status 0 on success, 1 with a message on stderr otherwise.
"""
import base64
import socket
import sys
import time

TIMEOUT = 30.0


class Conn:
    def __init__(self, host, port):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("probe.py: loopback only, refusing " + host)
        self.s = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        self.buf = b""
        self.n = 0

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("connection closed; pending %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        # A line ending in a {n} or {n+} literal: append the literal and the rest of the line.
        while line.endswith(b"}") and b"{" in line:
            size = line[line.rindex(b"{") + 1 : -1].rstrip(b"+")
            if not size.isdigit():
                break
            want = int(size)
            while len(self.buf) < want:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise EOFError("connection closed inside a literal")
                self.buf += chunk
            lit, self.buf = self.buf[:want], self.buf[want:]
            rest = self.line_raw()
            line = line + b"\r\n" + lit + rest
        return line.decode("utf-8", "replace")

    def line_raw(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.s.sendall(data)

    def tagged(self, cmd, tag=None, echo=True):
        """Send 'TAG cmd', return (status, untagged lines)."""
        self.n += 1
        tag = tag or "C%d" % self.n
        self.send("%s %s\r\n" % (tag, cmd))
        return self.until(tag, echo)

    def until(self, tag, echo=True):
        lines = []
        while True:
            ln = self.line()
            if echo:
                print("S: " + ln)
            # MUPDATE tags its data lines too ("C2 MAILBOX ..."): only a status ends the command.
            if ln.startswith(tag + " "):
                word = ln[len(tag) + 1 :].split(" ", 1)[0]
                if word in ("OK", "NO", "BAD", "BYE"):
                    return word, lines
                ln = "* " + ln[len(tag) + 1 :]
            lines.append(ln)


def fail(msg):
    print("probe.py: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def mupdate_login(host, port, user, password):
    c = Conn(host, port)
    while True:
        ln = c.line()
        print("S: " + ln)
        if ln.startswith("* OK"):
            break
        if not ln.startswith("* "):
            fail("unexpected banner line " + ln)
    b64 = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
    st, _ = c.tagged('AUTHENTICATE "PLAIN" "%s"' % b64, tag="A")
    if st != "OK":
        fail("AUTHENTICATE PLAIN as %s: %s" % (user, st))
    return c


def imap_login(host, port, user, password):
    c = Conn(host, port)
    ln = c.line()
    print("S: " + ln)
    if not ln.startswith("* OK"):
        fail("banner " + ln)
    st, _ = c.tagged('LOGIN "%s" "%s"' % (user, password))
    if st != "OK":
        fail("LOGIN as %s: %s" % (user, st))
    return c


def run_all_ok(c, cmds):
    """Send each command (a written \\t becomes a TAB), fail unless each is OK, then LOGOUT."""
    for cmd in cmds:
        cmd = cmd.replace("\\t", "\t")
        print("C: " + cmd)
        st, _ = c.tagged(cmd)
        if st != "OK":
            fail("%s -> %s" % (cmd, st))
    c.tagged("LOGOUT")


def message(i, box):
    return (
        "From: peer-probe <probe@example.invalid>\r\n"
        "To: test@example.invalid\r\n"
        "Subject: probe message %d for %s\r\n"
        "Message-ID: <probe-%d-%d@example.invalid>\r\n"
        "\r\n"
        "body of message %d\r\n" % (i, box, i, int(time.time() * 1000), i)
    ).encode()


def main(argv):
    if len(argv) < 3:
        fail(__doc__)
    op, host, port = argv[0], argv[1], argv[2]
    rest = argv[3:]
    if op == "banner":
        # IMAP greets with one "* OK" line; MUPDATE with "* AUTH", ... and a final "* OK MUPDATE".
        c = Conn(host, port)
        c.s.settimeout(5.0)
        while True:
            ln = c.line()
            print(ln)
            if not ln.startswith("* ") or ln.startswith("* OK") or ln.startswith("* BYE"):
                return
    if op == "mupdate-auth":
        c = mupdate_login(host, port, rest[0], rest[1])
        c.tagged("LOGOUT")
        print("AUTH OK")
        return
    if op == "mupdate":
        run_all_ok(mupdate_login(host, port, rest[0], rest[1]), rest[2:])
        return
    if op == "mupdate-find":
        c = mupdate_login(host, port, rest[0], rest[1])
        name = rest[2]
        wait = float(rest[3]) if len(rest) > 3 else 60.0
        deadline = time.time() + wait
        while time.time() < deadline:
            c.tagged("NOOP", echo=False)
            st, lines = c.tagged('FIND "%s"' % name, echo=False)
            hits = [ln for ln in lines if ln.startswith("* MAILBOX")]
            if hits:
                for h in hits:
                    print(h)
                c.tagged("LOGOUT", echo=False)
                return
            time.sleep(0.5)
        fail("FIND %s: no MAILBOX line within %.0f s" % (name, wait))
    if op == "imap-check":
        box = rest[2]
        c = imap_login(host, port, rest[0], rest[1])
        st, _ = c.tagged('CREATE "%s"' % box)
        if st != "OK":
            fail("CREATE %s: %s" % (box, st))
        m1, m2 = message(1, box), message(2, box)
        c.n += 1
        tag = "C%d" % c.n
        c.send('%s APPEND "%s" (\\Seen) {%d}\r\n' % (tag, box, len(m1)))
        ln = c.line()
        print("S: " + ln)
        if not ln.startswith("+"):
            fail("no continuation for the first literal: " + ln)
        c.send(m1 + b" {%d}\r\n" % len(m2))
        ln = c.line()
        print("S: " + ln)
        if not ln.startswith("+"):
            fail("no continuation for the second literal (MULTIAPPEND?): " + ln)
        c.send(m2 + b"\r\n")
        st, _ = c.until(tag)
        if st != "OK":
            fail("MULTIAPPEND: " + st)
        st, lines = c.tagged('SELECT "%s"' % box)
        if st != "OK" or not any(ln.endswith(" 2 EXISTS") for ln in lines):
            fail("SELECT %s: %s, expected 2 EXISTS" % (box, st))
        c.tagged("CLOSE")
        st, _ = c.tagged('DELETE "%s"' % box)
        if st != "OK":
            fail("DELETE %s: %s" % (box, st))
        c.tagged("LOGOUT")
        print("IMAP OK")
        return
    if op == "imap":
        run_all_ok(imap_login(host, port, rest[0], rest[1]), rest[2:])
        return
    if op == "imap-count":
        c = imap_login(host, port, rest[0], rest[1])
        st, lines = c.tagged('EXAMINE "%s"' % rest[2], echo=False)
        if st != "OK":
            fail("EXAMINE %s: %s" % (rest[2], st))
        n = [ln.split()[1] for ln in lines if ln.endswith(" EXISTS")]
        c.tagged("LOGOUT", echo=False)
        print(n[0] if n else "0")
        return
    if op == "imap-fill":
        box, count = rest[2], int(rest[3])
        c = imap_login(host, port, rest[0], rest[1])
        c.tagged('CREATE "%s"' % box, echo=False)
        for i in range(1, count + 1):
            m = message(i, box)
            c.n += 1
            tag = "C%d" % c.n
            c.send('%s APPEND "%s" {%d+}\r\n' % (tag, box, len(m)))
            c.send(m + b"\r\n")
            st, _ = c.until(tag, echo=False)
            if st != "OK":
                fail("APPEND %d (LITERAL+): %s" % (i, st))
        c.tagged("LOGOUT", echo=False)
        print("FILLED %d" % count)
        return
    fail("unknown operation " + op)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (OSError, EOFError, IndexError, ValueError) as e:
        fail("%s: %s" % (type(e).__name__, e))
