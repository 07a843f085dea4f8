"""qmail-smtpd's I/O rhythm: which reply bytes leave in which write().

A client cannot see write boundaries over TCP, but a proxy in front of
qmail-smtpd reads whatever each write() gives it, so the stand-in must cut
its replies where notqmail does: a 512-byte output buffer (a piece that does
not fit flushes it; a piece larger than 512 bytes is then written alone),
flushed after DATA, QUIT, HELO, EHLO, HELP, NOOP, VRFY and unknown commands,
and before every read; reads take at most 1024 bytes.

qmail-smtpd runs directly (no tcpserver) with its input a regular file, so
every read returns min(1024, what is left), and its output a SOCK_SEQPACKET
socket, which keeps each write() a record of its own. The records are exact
and the same for the stand-in (plain, asan) and the real one (real).
"""
import os
import shutil
import socket
import subprocess
import tempfile

import pytest

import harness

RCPT_REFUSED = b"553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)\r\n"
GREETING = b'mx' + b'.g' * 299                   # 600 bytes: larger than the buffer

# Offsets: the input is read in 1024-byte pieces; the replies to the lines a
# piece completes go out (at the latest) before the next read.
SESSION = (
    b'EHLO client.example\r\n'                  # 0..20
    b'MAIL FROM:<someone@example.com>\r\n'      # 21..53
    + b'RCPT TO:<ab@c>\r\n' * 70                # 54..1173: 60 complete in piece 1, 10 in piece 2
    + b'RCPT TO:<one@example.org>\r\n'          # 1174..1200
    b'DATA\r\n'                                 # 1201..1206
    + b'Subject: io\r\n\r\n'                    # 1207..1221
    + b'x' * 998 + b'\r\n'                      # 1222..2221
    + b'.\r\n'                                  # 2222..2224
    b'QUIT\r\n'                                 # 2225..2230
)

EXPECTED = [
    # The greeting: "220 " flushed because the 600-byte name does not fit,
    # the name written alone, " ESMTP\r\n" flushed before the first read.
    b'220 ', GREETING, b' ESMTP\r\n',
    # EHLO: the same cut, flushed after the command.
    b'250-', GREETING, b'\r\n250-PIPELINING\r\n250 8BITMIME\r\n',
    # Piece 1 (bytes 0..1023): MAIL, then 60 refused RCPTs of 71 bytes: the
    # buffer takes "250 ok" and 7 refusals (505 bytes), then 7 at a time
    # (497 bytes); the 4 left go before the second read.
    b'250 ok\r\n' + RCPT_REFUSED * 7,
] + [RCPT_REFUSED * 7] * 7 + [
    RCPT_REFUSED * 4,
    # Piece 2 (1024..2047): 10 refusals, the accepted RCPT, DATA's 354 (DATA
    # flushes only after the message), all before the third read.
    RCPT_REFUSED * 7, RCPT_REFUSED * 3 + b'250 ok\r\n354 go ahead\r\n',
    # Piece 3 (2048..2230): the end of the message; DATA's reply, then QUIT.
    b'250 ok {*} qp {*}\r\n',
    b'221 ', GREETING, b'\r\n',
]


def records(variant):
    """qmail-smtpd of the chain variant fed SESSION: [each write()], its exit
    code, and the messages stored."""
    smtpd = harness.Chain('bare', variant).smtpd()
    base = os.path.join(harness.TESTS, 'tmp')
    os.makedirs(base, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='io-', dir=base)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        home, queue = os.path.join(tmp, 'home'), os.path.join(tmp, 'queue')
        os.makedirs(os.path.join(home, 'control'))
        os.makedirs(queue)
        for name, text in (('me', b'standin.example\n'), ('smtpgreeting', GREETING + b'\n'),
                           ('rcpthosts', b'example.org\n')):
            with open(os.path.join(home, 'control', name), 'wb') as f:
                f.write(text)
        with open(os.path.join(tmp, 'input'), 'wb') as f:
            f.write(SESSION)
        env = {'PATH': '/usr/bin:/bin', 'TCPREMOTEIP': '127.0.0.1',
               'TCPLOCALHOST': 'standin.example', 'STANDIN_HOME': home, 'STANDIN_QUEUE': queue,
               'QMAILQUEUE': harness.binary(variant, 'qmail-queue-standin'),
               **harness.SANITIZER_ENV}
        with open(os.path.join(tmp, 'input'), 'rb') as stdin, \
                open(os.path.join(tmp, 'log'), 'wb') as log:
            proc = subprocess.Popen([smtpd], cwd=home, env=env, stdin=stdin, stdout=theirs,
                                    stderr=log, preexec_fn=harness._die_with_parent)
        theirs.close()
        got = []
        ours.settimeout(harness.READ_TIMEOUT)
        try:
            while True:
                record = ours.recv(65536)
                if not record:
                    break
                got.append(record)
        except socket.timeout:
            proc.kill()
        code = proc.wait(timeout=harness.END_TIMEOUT)
        with open(os.path.join(tmp, 'log'), 'rb') as f:
            log = f.read().decode('utf-8', 'replace')
        harness.no_sanitizer_report(log)
        return got, code, sorted(n for n in os.listdir(queue) if n.endswith('.env'))
    finally:
        ours.close()
        theirs.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize('variant', harness.chain_variants())
def test_reply_writes(variant):
    got, code, stored = records(variant)
    shown = '\n'.join('  %r' % r for r in got)
    assert len(got) == len(EXPECTED), 'got %d writes:\n%s' % (len(got), shown)
    for n, (want, record) in enumerate(zip(EXPECTED, got)):
        assert harness.pattern(want).fullmatch(record), \
            'write #%d:\n  expected %r\n  got      %r\nall writes:\n%s' % (n + 1, want, record, shown)
    assert code == 0
    assert len(stored) == 1
