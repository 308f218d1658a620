#!/usr/bin/env python3
"""Interop: `mailutil copy` (UW c-client, Debian package uw-mailutils) against imapd.

Starts imapd on a free loopback port with a fresh data directory, APPENDs N messages to
alice's INBOX, runs `mailutil copy {..user=alice}INBOX {..user=bob}copied` through a
pseudo-terminal (mailutil reads passwords from the TTY only), then FETCHes both mailboxes and
compares every message byte for byte. Also checks that mailutil used MULTIAPPEND (one APPEND
command carrying every message).

With --tls, imapd gets a self-signed certificate (made with openssl) and --require-tls, and
mailutil connects with /tls-sslv23/novalidate-cert: STARTTLS, then AUTHENTICATE over TLS.
(c-client 2007f's plain /tls asks OpenSSL for TLSv1_client_method, i.e. TLS 1.0 only, which
rustls rightly refuses: "SSL negotiation failed". /tls-sslv23 lets it negotiate TLS 1.2/1.3.)

Usage: mailutil_copy.py PATH/TO/imapd [N] [--tls]      (exit status 0 = pass)
"""
import os, pty, re, select, shutil, socket, subprocess, sys, tempfile, time

ARGS = [a for a in sys.argv[1:] if a != "--tls"]
TLS = "--tls" in sys.argv[1:]
IMAPD = ARGS[0] if len(ARGS) > 0 else "target/debug/imapd"
N = int(ARGS[1]) if len(ARGS) > 1 else 60
FLAGS = "/tls-sslv23/novalidate-cert" if TLS else "/notls"
DEADLINE = 120  # seconds for each wait; only reached on failure


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


class Client:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.buf = b""
        self.n = 0
        self.line()  # greeting

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                fail("server closed the connection")
            self.buf += d
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l

    def exact(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            if not d:
                fail("server closed the connection")
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def cmd(self, text, literals=()):
        """Send a command (LITERAL+ for literals); return (untagged items, tagged line)."""
        self.n += 1
        tag = b"t%d" % self.n
        data = tag + b" " + text
        for lit in literals:
            data += b" {%d+}\r\n" % len(lit) + lit
        self.s.sendall(data + b"\r\n")
        items = []
        while True:
            l = self.line()
            m = re.search(rb"\{(\d+)\}$", l)
            while m:  # a literal inside an untagged response
                lit = self.exact(int(m.group(1)))
                rest = self.line()
                items.append((l, lit))
                l = rest
                m = re.search(rb"\{(\d+)\}$", l)
            if l.startswith(tag + b" "):
                return items, l
            items.append((l, None))


def tls_client(c):
    """STARTTLS on a connected Client (certificate not verified: it is a test certificate)."""
    import ssl
    _, r = c.cmd(b"STARTTLS")
    if b" OK" not in r:
        fail("STARTTLS: %r" % r)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c.s = ctx.wrap_socket(c.s, server_hostname="localhost")
    return c


def bodies(port, user, pw, mailbox):
    c = Client(port)
    if TLS:
        c = tls_client(c)
    _, r = c.cmd(b"LOGIN %s %s" % (user, pw))
    if b" OK" not in r:
        fail("login: %r" % r)
    _, r = c.cmd(b"EXAMINE " + mailbox)
    if b" OK" not in r:
        fail("examine %r: %r" % (mailbox, r))
    items, r = c.cmd(b"UID FETCH 1:* BODY.PEEK[]")
    if b" OK" not in r:
        fail("fetch: %r" % r)
    return [lit for (_, lit) in items if lit is not None]


def message(i):
    body = ("Line %d of message %d.\r\n" % (0, i)) * (1 + i * 7 % 40)
    return (
        "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n"
        "Subject: interop message %d\r\nMessage-ID: <%d@example.org>\r\n"
        "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\n%s" % (i, i, body)
    ).encode()


def run_mailutil(port, log):
    src = "{127.0.0.1:%d/imap%s/user=alice}INBOX" % (port, FLAGS)
    dst = "{127.0.0.1:%d/imap%s/user=bob}copied" % (port, FLAGS)
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("mailutil", ["mailutil", "copy", "-d", src, dst])
    out = b""
    answered = 0
    end = time.time() + DEADLINE
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 1)
        if not r:
            continue
        try:
            d = os.read(fd, 65536)
        except OSError:
            break
        if not d:
            break
        out += d
        prompts = out.count(b"password:")
        while answered < prompts:
            user_pw = b"secret" if b"user=alice" in out.split(b"password:")[answered][-200:] else b"pw"
            os.write(fd, user_pw + b"\n")
            answered += 1
    _, status = os.waitpid(pid, 0)
    log.write(out)
    return os.waitstatus_to_exitcode(status), out


def main():
    if shutil.which("mailutil") is None:
        fail("mailutil not installed (apt-get install uw-mailutils)")
    tmp = tempfile.mkdtemp(prefix="imapd-mailutil-")
    users = os.path.join(tmp, "users")
    with open(users, "w") as f:
        f.write("alice:{PLAIN}secret\nbob:{PLAIN}pw\n")
    argv = [IMAPD, "--listen", "127.0.0.1:0", "--data", os.path.join(tmp, "data"), "--users", users]
    if TLS:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        argv += ["--tls-cert", cert, "--tls-key", key]
    server = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "imapd.log"), "w"))
    try:
        first = server.stdout.readline().decode()
        m = re.search(r":(\d+)\s*$", first)
        if not m:
            fail("imapd did not report its address: %r" % first)
        port = int(m.group(1))
        msgs = [message(i) for i in range(N)]
        c = Client(port)
        if TLS:
            c = tls_client(c)
        _, r = c.cmd(b"LOGIN alice secret")
        if b" OK" not in r:
            fail("login: %r" % r)
        # Populate with a few MULTIAPPENDs.
        for chunk in range(0, N, 25):
            part = msgs[chunk:chunk + 25]
            data = b"APPEND INBOX"
            c.n += 1
            tag = b"t%d" % c.n
            payload = tag + b" APPEND INBOX"
            for m_ in part:
                payload += b" (\\Seen) {%d+}\r\n" % len(m_) + m_
            c.s.sendall(payload + b"\r\n")
            while True:
                l = c.line()
                if l.startswith(tag + b" "):
                    if b"OK [APPENDUID" not in l:
                        fail("populate: %r" % l)
                    break
        with open(os.path.join(tmp, "mailutil.log"), "wb") as log:
            code, out = run_mailutil(port, log)
        if code != 0:
            fail("mailutil exited %d; trace in %s" % (code, os.path.join(tmp, "mailutil.log")))
        appends = re.findall(rb"APPEND", out)
        src = bodies(port, b"alice", b"secret", b"INBOX")
        dst = bodies(port, b"bob", b"pw", b"copied")
        if src != msgs:
            fail("source mailbox differs from what was appended")
        if len(dst) != N:
            fail("destination has %d messages, expected %d" % (len(dst), N))
        for i, (a, b) in enumerate(zip(src, dst)):
            if a != b:
                fail("message %d differs after copy:\n%r\n%r" % (i + 1, a[:200], b[:200]))
        multi = re.search(rb"OK \[APPENDUID \d+ 1:%d\]" % N, out)
        if TLS and b"STARTTLS" not in out:
            fail("mailutil did not use STARTTLS")
        print("PASS: mailutil copied %d messages byte for byte%s (%d APPEND lines in trace, %s)"
              % (N, " over STARTTLS" if TLS else "", len(appends),
                 "single MULTIAPPEND 1:%d" % N if multi else "not a single MULTIAPPEND"))
        if not multi:
            fail("mailutil did not get one APPENDUID 1:%d (expected MULTIAPPEND)" % N)
    finally:
        server.kill()
        server.wait()
        if os.environ.get("KEEP_TMP") is None:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept", tmp)


main()
