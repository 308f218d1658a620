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
      LOGIN, CREATE MAILBOX (if missing), APPEND N messages (one APPEND each, LITERAL+) of
      200 B to 40 KB with 8-bit body bytes, varied flags and internal dates.
  probe.py mupdate-list HOST PORT USER PASSWORD
      authenticate, LIST, print the records sorted, one per line (TAB written as \t).
  probe.py mupdate-converge MHOST MPORT SHOST SPORT USER PASSWORD WAIT [MUSER MPASSWORD]
      on the slave SHOST:SPORT: UPDATE, then repeat NOOP (the barrier) + LIST on the slave and
      on the master MHOST:MPORT until both lists are equal (at most WAIT seconds; prints both
      and fails otherwise), then FIND every name on both (must agree). MUSER/MPASSWORD log in
      to the master (default USER/PASSWORD).
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
        return self.line_bytes().decode("utf-8", "replace")

    def line_bytes(self):
        """One logical line as bytes, literals included ("{n}\r\n" + data)."""
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
        return line

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


def mupdate_login(host, port, user, password, echo=True):
    c = Conn(host, port)
    while True:
        ln = c.line()
        if echo:
            print("S: " + ln)
        if ln.startswith("* OK"):
            break
        if not ln.startswith("* "):
            fail("unexpected banner line " + ln)
    b64 = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
    st, _ = c.tagged('AUTHENTICATE "PLAIN" "%s"' % b64, tag="A", echo=echo)
    if st != "OK":
        fail("AUTHENTICATE PLAIN as %s on %s:%s: %s" % (user, host, port, st))
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


def mupdate_tokens(line):
    """Split a MUPDATE line (bytes, literals inline) into atoms and string values (bytes)."""
    out, i, n = [], 0, len(line)
    while i < n:
        if line[i : i + 1] == b" ":
            i += 1
            continue
        if line[i : i + 1] == b'"':
            j, v = i + 1, b""
            while j < n and line[j : j + 1] != b'"':
                if line[j : j + 1] == b"\\":
                    j += 1
                v += line[j : j + 1]
                j += 1
            out.append(v)
            i = j + 1
            continue
        if line[i : i + 1] == b"{":
            close = line.find(b"}", i)
            size = line[i + 1 : close].rstrip(b"+")
            if close > 0 and size.isdigit() and line[close + 1 : close + 3] == b"\r\n":
                start = close + 3
                out.append(line[start : start + int(size)])
                i = start + int(size)
                continue
        j = line.find(b" ", i)
        j = n if j < 0 else j
        out.append(line[i:j])
        i = j
    return out


def raw_command(c, cmd):
    """Send 'TAG cmd', return (status, data lines as bytes): MUPDATE tags its data lines too."""
    c.n += 1
    tag = ("C%d" % c.n).encode()
    c.send(tag + b" " + cmd.encode() + b"\r\n")
    lines = []
    while True:
        ln = c.line_bytes()
        if ln.startswith(tag + b" "):
            word = ln[len(tag) + 1 :].split(b" ", 1)[0]
            if word in (b"OK", b"NO", b"BAD", b"BYE"):
                return word.decode(), lines
        lines.append(ln)


def mupdate_records(c, cmd="LIST"):
    """The MAILBOX/RESERVE records a LIST or FIND returns, as sorted printable strings."""
    st, lines = raw_command(c, cmd)
    if st != "OK":
        fail("%s: %s" % (cmd, st))
    recs = []
    for ln in lines:
        t = mupdate_tokens(ln)
        if len(t) >= 4 and t[1] in (b"MAILBOX", b"RESERVE"):
            fields = [x.decode("utf-8", "replace").replace("\t", "\\t") for x in t[1:]]
            recs.append(" ".join(fields))
    return sorted(recs)


def converge(master, slave, user, password, muser, mpassword, wait):
    """Wait until the slave's LIST (read after a NOOP barrier on its UPDATE stream) equals the
    master's LIST, then check FIND of every name on both. Fails with the difference."""
    stream = mupdate_login(slave[0], slave[1], user, password, echo=False)
    stream.send(b"U1 UPDATE\r\n")
    while True:  # the initial dump, up to "U1 OK"
        ln = stream.line_bytes()
        if ln.startswith(b"U1 ") and ln[3:5] in (b"OK", b"NO", b"BA"):
            if not ln.startswith(b"U1 OK"):
                fail("UPDATE on the slave: %r" % ln)
            break
    s_list = mupdate_login(slave[0], slave[1], user, password, echo=False)
    m_list = mupdate_login(master[0], master[1], muser, mpassword, echo=False)
    t0 = time.time()
    deadline = t0 + wait
    k = 0
    while True:
        k += 1
        tag = b"N%d" % k
        stream.send(tag + b" NOOP\r\n")
        while True:  # streamed changes, then the barrier's OK
            ln = stream.line_bytes()
            if ln.startswith(tag + b" "):
                if not ln.startswith(tag + b" OK"):
                    fail("NOOP on the slave's UPDATE stream: %r" % ln)
                break
        want = mupdate_records(m_list)
        got = mupdate_records(s_list)
        if want == got:
            break
        if time.time() > deadline:
            print("master LIST (%d records):" % len(want))
            for r in want:
                print("  " + r)
            print("slave LIST (%d records):" % len(got))
            for r in got:
                print("  " + r)
            fail("slave did not converge within %.0f s: only on the master %s, only on the slave %s"
                 % (wait, sorted(set(want) - set(got)), sorted(set(got) - set(want))))
        time.sleep(0.25)
    for r in want:
        name = r.split(" ", 2)[1]
        q = 'FIND "%s"' % name.replace("\\", "\\\\").replace('"', '\\"')
        a, b = mupdate_records(m_list, q), mupdate_records(s_list, q)
        if a != b or not a:
            fail("%s: master %s, slave %s" % (q, a, b))
    for c in (stream, s_list, m_list):
        c.s.close()
    print("CONVERGED records=%d after %.1f s (%d NOOP barriers); FIND agrees on every name"
          % (len(want), time.time() - t0, k))
    for r in want:
        print("  " + r)


def varied_message(i, box):
    """Message i of a copy test: sizes from ~200 bytes to ~40 KB, 8-bit body bytes, a TAB."""
    head = (
        "From: peer-probe <probe@example.invalid>\r\n"
        "To: test@example.invalid\r\n"
        "Subject: copy test %d for %s\r\n"
        "Message-ID: <copy-%d-%d@example.invalid>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n" % (i, box, i, int(time.time() * 1000))
    ).encode()
    lines = (i * 37) % 500 if i % 10 == 0 else (i * 7) % 40
    body = b"".join(b"line %d of %d:\t\xc3\xa9t\xc3\xa9 caf\xc3\xa9 %s\r\n" % (n, i, b"x" * (n % 60))
                    for n in range(lines))
    return head + body + b"end of message %d\r\n" % i


FLAGS = ["", "\\Seen", "\\Seen \\Flagged", "\\Answered", "\\Draft", "\\Seen \\Answered \\Flagged"]


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
    if op == "mupdate-list":
        c = mupdate_login(host, port, rest[0], rest[1], echo=False)
        for r in mupdate_records(c):
            print(r)
        return
    if op == "mupdate-converge":
        slave = (rest[0], rest[1])
        user, password, wait = rest[2], rest[3], float(rest[4])
        muser, mpassword = (rest[5], rest[6]) if len(rest) > 6 else (user, password)
        converge((host, port), slave, user, password, muser, mpassword, wait)
        return
    if op == "imap-fill":
        box, count = rest[2], int(rest[3])
        c = imap_login(host, port, rest[0], rest[1])
        c.tagged('CREATE "%s"' % box, echo=False)
        for i in range(1, count + 1):
            m = varied_message(i, box)
            flags = FLAGS[i % len(FLAGS)]
            # Internal dates one hour and a few minutes apart, in a non-UTC zone.
            t = time.gmtime(1_700_000_000 + i * 3_723)
            date = time.strftime("%d-%b-%Y %H:%M:%S", t) + " -0500"
            c.n += 1
            tag = "C%d" % c.n
            c.send('%s APPEND "%s" (%s) "%s" {%d+}\r\n' % (tag, box, flags, date, len(m)))
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
