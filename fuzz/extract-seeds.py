#!/usr/bin/env python3
"""Extract seed inputs for the fuzz targets from the conformance scenarios.

Usage: fuzz/extract-seeds.py [SCENARIOS_DIR]   (default: scenarios/ of this repository)

Every `<conn> > TEXT`, `<conn> >! TEXT` (followed by CRLF) and `<conn> >> TEXT` (raw) step of a
scenario is expanded (placeholders get fixed values, generators are evaluated, with repeats
capped so the corpus stays small) and the bytes of each connection become one seed. Seeds are
written to fuzz/seeds/<target>/<scenario>-<conn>, prefixed with the control byte the target
expects (see fuzz/common/checks.rs): 0x00 for the codec targets, 0x20 (valid login first) for
the session targets. Existing files are replaced; hand-written seeds (names starting with
`hand-`) are kept.
"""
import base64
import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent
MAX_REPEAT = 2048
MAX_SEED = 64 * 1024

VARS = {"tag": b"T1", "run": b"a1b2c3", "user": b"admin", "pass": b"secret",
        "user2": b"bob", "pass2": b"bobpw",
        "plain": base64.b64encode(b"\0admin\0secret"),
        "plain2": base64.b64encode(b"\0bob\0bobpw")}
for i in range(1, 10):
    suffix = "" if i == 1 else str(i)
    VARS["box" + suffix] = b"user/admin/fz" + bytes([96 + i])
    VARS["host" + suffix] = b"fzhost" + bytes([96 + i])
ESC = {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\"}


def var(name):
    return VARS.get(name, b"x")


def expand(s, i=0, in_brace=False):
    out = bytearray()
    while i < len(s):
        c = s[i]
        if c == "}" and in_brace:
            return bytes(out), i + 1
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n == "x" and re.match(r"[0-9a-fA-F]{2}", s[i + 2:i + 4]):
                out.append(int(s[i + 2:i + 4], 16))
                i += 4
                continue
            if n in ESC:
                out += ESC[n]
                i += 2
                continue
        if c == "$" and s.startswith("${", i):
            m = re.match(r"\$\{([a-z0-9]+)(?::(\d+))?(:|\})", s[i:])
            if m:
                name, num, sep = m.group(1), m.group(2), m.group(3)
                i += m.end()
                if sep == "}":
                    out += var(name)
                    continue
                arg, i = expand(s, i, True)
                n = min(int(num or 0), MAX_REPEAT)
                if name == "lit":
                    out += b"{%d+}\r\n" % len(arg) + arg
                elif name == "len":
                    out += b"%d" % len(arg)
                elif name == "b64":
                    out += base64.b64encode(arg)
                elif name == "repeat":
                    out += arg * n
                elif name == "pad":
                    out += arg + b"x" * max(0, n - len(arg))
                else:
                    out += arg
                continue
        if c == "$":
            m = re.match(r"\$([a-z]+[0-9]?)", s[i:])
            if m:
                out += var(m.group(1))
                i += m.end()
                continue
        out += c.encode()
        i += 1
    return bytes(out), i


def streams(path):
    """(client bytes per connection, expected server lines per connection)."""
    conns, server = {}, {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\s*(\w+) (>>|>!|>) ?(.*)$", line)
        if m:
            conn, op, text = m.groups()
            data, _ = expand(text)
            if op != ">>":
                data += b"\r\n"
            conns.setdefault(conn, bytearray()).extend(data)
            continue
        m = re.match(r"\s*(\w+) (<<|<=|<) (.*)$", line)
        if m:
            conn, _, text = m.groups()
            data, _ = expand(text.replace("...", "done"))
            server.setdefault(conn, bytearray()).extend(data + b"\r\n")
    return conns, server


def main():
    src = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "scenarios"
    targets = {"mupdate": [("mupdate_codec", 0x00), ("mupdate_session", 0x20)],
               "imap": [("imap_codec", 0x00), ("imap_session", 0x20)]}
    for target in [t for outs in targets.values() for t, _ in outs] + [
            "scenario_parser", "wire_tokenizer"]:
        d = HERE / "seeds" / target
        d.mkdir(parents=True, exist_ok=True)
        for f in d.iterdir():
            if not f.name.startswith("hand-"):
                f.unlink()
    for proto, outs in targets.items():
        for scn in sorted((src / proto).glob("*.scn")):
            # scenario_parser: the scenario file itself.
            (HERE / "seeds" / "scenario_parser" / f"{proto}-{scn.name}").write_bytes(
                scn.read_bytes())
            conns, server = streams(scn)
            for conn, data in conns.items():
                if len(data) > MAX_SEED:
                    continue
                name = f"{scn.stem}-{conn}"
                for target, ctl in outs:
                    (HERE / "seeds" / target / name).write_bytes(bytes([ctl]) + bytes(data))
                if proto == "mupdate":
                    # wire_tokenizer: the commands, read back by the runner's command reader.
                    (HERE / "seeds" / "wire_tokenizer" / f"sent-{name}").write_bytes(
                        b"\0" + bytes(data))
            for conn, data in server.items():
                if len(data) <= MAX_SEED:
                    # wire_tokenizer: server-like lines (the expectations, made concrete).
                    (HERE / "seeds" / "wire_tokenizer" / f"recv-{proto}-{scn.stem}-{conn}"
                     ).write_bytes(b"\0" + bytes(data))
    total = sum(f.stat().st_size for f in (HERE / "seeds").rglob("*") if f.is_file())
    print(f"seeds: {total} bytes")


if __name__ == "__main__":
    main()
