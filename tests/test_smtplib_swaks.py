"""Real clients against the chains: Python's smtplib and swaks.

Each test runs on the bare chain (tcpserver → qmail-smtpd) and on the
idcheck chain (tcpserver → qmail-idcheck → qmail-smtpd), in each chain
variant: plain and asan against the stand-in, real against notqmail's.
"""
import calendar
import re
import smtplib
import subprocess
import time

import pytest

import harness

CHAINS = ['bare', 'idcheck']
# The idcheck chain with a policy that lets everything through: the clients
# must not notice the proxy.
POLICY = {'IDCHECK_MODULE': 'callee_trivial'}


@pytest.fixture(params=[(c, v) for c in CHAINS for v in harness.chain_variants()],
                ids=lambda p: '%s-%s' % p)
def chain(request):
    name, variant = request.param
    c = harness.Chain(name, variant, env=POLICY if name == 'idcheck' else {})
    error = None
    try:
        c.start()
    except harness.HarnessError as e:
        c.stop(check=False)
        error = str(e)
    if error:                   # outside the except: no chained traceback
        pytest.fail(error, pytrace=False)
    yield c
    error = None
    try:
        c.wait_sessions()
        c.stop()
    except harness.HarnessError as e:
        error = str(e)
    finally:
        c.stop(check=False)
    if error:
        pytest.fail(error, pytrace=False)


RECEIVED = re.compile(
    rb'Received: from unknown \(HELO client\.example\) \(127\.0\.0\.1\)\n'
    rb'  by standin\.example with SMTP; (\d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d) -0000\n')


def test_smtplib_message(chain):
    """smtplib with EHLO and PIPELINING-free sendmail: 250 ok <time> qp <pid>,
    the message stored with a well-formed Received line and exact body."""
    body = (b'From: a@example.com\r\nTo: b@example.org\r\nSubject: smtplib\r\n\r\n'
            b'line\r\n.starts with a dot\r\n\xe9t\xe9 8-bit\r\n')
    before = time.time()
    with smtplib.SMTP('127.0.0.1', chain.port, local_hostname='client.example',
                      timeout=harness.READ_TIMEOUT) as s:
        code, ehlo = s.ehlo()
        assert code == 250
        assert s.has_extn('pipelining') and s.has_extn('8bitmime')
        s.mail('a@example.com')
        s.rcpt('b@example.org')
        s.rcpt('c@example.org')
        code, reply = s.data(body)
        assert code == 250, reply
        m = re.fullmatch(rb'ok (\d+) qp (\d+)', reply)
        assert m, reply
        assert before - 2 <= int(m.group(1)) <= time.time() + 2
    chain.wait_sessions()
    stored = chain.stored()
    assert len(stored) == 1
    msg, env = stored[0]
    assert env == b'Fa@example.com\0Tb@example.org\0Tc@example.org\0\0'
    m = RECEIVED.match(msg)
    assert m, msg
    when = calendar.timegm(time.strptime(m.group(1).decode(), '%d %b %Y %H:%M:%S'))
    assert before - 2 <= when <= time.time() + 2
    # smtplib dot-stuffs, the server undoes it: the body arrives as written
    assert msg[m.end():] == body.replace(b'\r\n', b'\n')


def test_smtplib_refusals(chain):
    """503 replies reach smtplib as SMTP errors; the session goes on."""
    with smtplib.SMTP('127.0.0.1', chain.port, local_hostname='client.example',
                      timeout=harness.READ_TIMEOUT) as s:
        s.ehlo()
        assert s.rcpt('b@example.org') == (503, b'MAIL first (#5.5.1)')
        assert s.docmd('DATA') == (503, b'MAIL first (#5.5.1)')
        assert s.noop() == (250, b'ok')
    chain.wait_sessions()
    assert chain.stored() == []


def swaks(chain, *args):
    argv = ['swaks', '--server', '127.0.0.1', '--port', str(chain.port),
            '--helo', 'client.example', '--from', 'a@example.com',
            '--timeout', '%d' % harness.READ_TIMEOUT] + list(args)
    return subprocess.run(argv, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize('pipeline', [False, True], ids=['plain', 'pipeline'])
def test_swaks_message(chain, pipeline):
    """swaks sends a message (in one pipelined batch too); stored exactly."""
    args = ['--to', 'b@example.org,c@example.org', '--header', 'Subject: swaks',
            '--body', 'hello from swaks']
    if pipeline:
        args.append('--pipeline')
    r = swaks(chain, *args)
    assert r.returncode == 0, r.stdout.decode(errors='replace') + r.stderr.decode(errors='replace')
    if pipeline:
        assert b'250-PIPELINING' in r.stdout
    chain.wait_sessions()
    stored = chain.stored()
    assert len(stored) == 1
    msg, env = stored[0]
    assert env == b'Fa@example.com\0Tb@example.org\0Tc@example.org\0\0'
    assert RECEIVED.match(msg), msg
    assert b'\nSubject: swaks\n' in msg
    assert b'\n\nhello from swaks\n' in msg, msg
    assert b'\r' not in msg


def test_swaks_quit_after_rcpt(chain):
    """A session that stops after RCPT stores nothing."""
    r = swaks(chain, '--to', 'b@example.org', '--quit-after', 'RCPT')
    assert r.returncode == 0, r.stdout
    chain.wait_sessions()
    assert chain.stored() == []


@pytest.mark.parametrize('variant', ['plain', 'real'])
def test_swaks_databytes(variant):
    """qmail-smtpd's DATABYTES refusal as swaks sees it (exit 26: DATA
    refused after the dot)."""
    c = harness.Chain('bare', variant, env={'DATABYTES': '50'})
    try:
        c.start()
        r = swaks(c, '--to', 'b@example.org', '--body', 'x' * 200)
        assert r.returncode != 0
        assert b'552 sorry, that message size exceeds my databytes limit (#5.3.4)' in r.stdout
        c.wait_sessions()
        assert c.stored() == []
    finally:
        c.stop()
