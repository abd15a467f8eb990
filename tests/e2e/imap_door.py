#!/usr/bin/env python3
"""Drives inlookup's IMAP front door with Python's imaplib (a real client nobody here
wrote). Usage: imap_door.py PORT USER PASSWORD MODE [ARG]; prints what it checked and
exits non-zero (with the reason) on the first surprise.

Modes:
  full        LOGIN, SELECT, SEARCH, FETCH, a 5 MB 8-bit APPEND fetched back identical,
              STORE, EXPUNGE, LOGOUT.
  loop N      N sessions of LOGIN, SELECT, FETCH 1:20 (FLAGS ENVELOPE) (fewer when the
              INBOX holds fewer), LOGOUT.
  wrong       LOGIN with a wrong password (must fail with AUTHENTICATIONFAILED), then the
              right one on the same connection; LOGOUT.
  refused     LOGIN must fail with AUTHENTICATIONFAILED; LOGOUT.
  starttls    STARTTLS (certificate not verified: the test's own), LOGIN, SELECT, LOGOUT.
  imaps       TLS from the first byte (certificate not verified), LOGIN, SELECT, LOGOUT.
  capability  print the capabilities before and after login.
"""
import imaplib
import random
import ssl
import sys


def fail(why):
    print("FAIL: " + why)
    sys.exit(1)


def connect(port):
    return imaplib.IMAP4("127.0.0.1", int(port), timeout=60)


def select_inbox(m):
    typ, data = m.select("INBOX")
    if typ != "OK":
        fail("SELECT: %r" % (data,))
    return int(data[0])


def big_message(size):
    rnd = random.Random(12)
    lines = [b"From: door@example.com", b"To: alice@example.com",
             b"Subject: door 8-bit test", b"Content-Transfer-Encoding: 8bit", b""]
    body = bytearray()
    while len(body) < size:
        chunk = bytes(rnd.choice(range(1, 256)) for _ in range(76))
        chunk = chunk.replace(b"\r", b"R").replace(b"\n", b"N")
        body += chunk + b"\r\n"
    return b"\r\n".join(lines) + b"\r\n" + bytes(body)


def full(port, user, password):
    m = connect(port)
    m.login(user, password)
    n = select_inbox(m)
    typ, data = m.search(None, "ALL")
    if typ != "OK" or len(data[0].split()) != n:
        fail("SEARCH: %r (EXISTS %d)" % (data, n))
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    if typ != "OK" or b"this is the seeded test message" not in data[0][1]:
        fail("FETCH 1: %r" % (data[:1],))
    msg = big_message(5 * 1024 * 1024)
    typ, data = m.append("INBOX", None, None, msg)
    if typ != "OK":
        fail("APPEND: %r" % (data,))
    n2 = select_inbox(m)
    if n2 != n + 1:
        fail("EXISTS after APPEND: %d, was %d" % (n2, n))
    typ, data = m.fetch(str(n2), "(BODY.PEEK[])")
    if typ != "OK" or data[0][1] != msg:
        got = data[0][1] if typ == "OK" else b""
        fail("the APPENDed message came back different (%d bytes sent, %d back)" % (len(msg), len(got)))
    print("append: %d bytes back identical" % len(msg))
    typ, data = m.store(str(n2), "+FLAGS", "(\\Deleted)")
    if typ != "OK" or b"\\Deleted" not in data[0]:
        fail("STORE: %r" % (data,))
    typ, data = m.expunge()
    if typ != "OK" or data[0] != str(n2).encode():
        fail("EXPUNGE: %r" % (data,))
    if select_inbox(m) != n:
        fail("EXISTS after EXPUNGE")
    typ, data = m.logout()
    if typ != "BYE":
        fail("LOGOUT: %r %r" % (typ, data))
    print("full: ok")


def loop(port, user, password, count):
    for i in range(count):
        m = connect(port)
        m.login(user, password)
        n = select_inbox(m)
        if n > 0:
            typ, data = m.fetch("1:%d" % min(n, 20), "(FLAGS ENVELOPE)")
            if typ != "OK" or not data or b"ENVELOPE" not in data[0]:
                fail("round %d: FETCH %r" % (i, data))
        m.logout()
    print("loop: %d sessions ok" % count)


def wrong(port, user, password):
    m = connect(port)
    try:
        m.login(user, password + "-wrong")
        fail("a wrong password logged in")
    except imaplib.IMAP4.error as e:
        if "AUTHENTICATIONFAILED" not in str(e):
            fail("wrong password: %s" % e)
        print("wrong: %s" % e)
    m.login(user, password)
    select_inbox(m)
    m.logout()
    print("wrong: retry ok")


def refused(port, user, password):
    m = connect(port)
    try:
        m.login(user, password)
        fail("logged in")
    except imaplib.IMAP4.error as e:
        if "AUTHENTICATIONFAILED" not in str(e):
            fail("refused: %s" % e)
        print("refused: %s" % e)
    m.logout()


def starttls(port, user, password):
    m = connect(port)
    if "STARTTLS" not in m.capabilities:
        fail("no STARTTLS in %r" % (m.capabilities,))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m.starttls(ssl_context=ctx)
    m.login(user, password)
    select_inbox(m)
    m.logout()
    print("starttls: ok")


def imaps(port, user, password):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=ctx, timeout=60)
    if "STARTTLS" in m.capabilities:
        fail("STARTTLS offered on TLS: %r" % (m.capabilities,))
    m.login(user, password)
    select_inbox(m)
    m.logout()
    print("imaps: ok")


def capability(port, user, password):
    m = connect(port)
    print("before: " + " ".join(m.capabilities))
    m.login(user, password)
    typ, data = m.capability()
    print("after: " + data[0].decode())
    m.logout()


def main():
    port, user, password, mode = sys.argv[1:5]
    if mode == "full":
        full(port, user, password)
    elif mode == "loop":
        loop(port, user, password, int(sys.argv[5]))
    elif mode == "wrong":
        wrong(port, user, password)
    elif mode == "refused":
        refused(port, user, password)
    elif mode == "starttls":
        starttls(port, user, password)
    elif mode == "imaps":
        imaps(port, user, password)
    elif mode == "capability":
        capability(port, user, password)
    else:
        fail("unknown mode " + mode)


if __name__ == "__main__":
    try:
        main()
    except (imaplib.IMAP4.error, OSError) as e:
        fail("%s: %s" % (type(e).__name__, e))
