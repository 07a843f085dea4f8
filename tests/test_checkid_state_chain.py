"""Greylisting and rate limits through the whole chain: tcpserver ->
qmail-idcheck -> qmail-smtpd stand-in, the reference policy embedded (a
process per session) or warm (qmail-idcheckd, whose workers fork after the
policy's import), with the real stores: a SQLite file shared by two chains
on this host, a real redis-server (tests/redisfixture.py: started by the
test on a loopback port, persistence off, stopped after) shared by two
chains standing for two MX hosts.

DNS is the suite's tinydns (tests/dnsfixture.py). The client helos as
client.example (SPF none: not trusted, so greylisted) unless a test
declares ID example.com (SPF pass from 127.0.0.1, rated A, A, B).
Greylisting waits CHECKID_GREY_DELAY=1 second here, never the default 300.
"""
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time

import pytest

import harness
from dnsfixture import dns  # noqa: F401  (the session-scoped DNS fixture)
from redisfixture import redis_server  # noqa: F401  (fixture)
from test_checkid import TEST_SERVICES
from test_checkid_chain import check_stored
from test_idcheckd import WarmChain

MODES = ['embedded', 'warm']
GREYLISTED = '451 4.7.1 Greylisted, please try again later (in 1 seconds)'
TEMP = '451 4.3.0 Temporary local problem checking the sender, try again later'
MESSAGE = b'Subject: greylisted\r\n\r\nhello\r\n'
STORED_HEADERS = [
    b'Authentication-Results: standin.example; spf=pass smtp.mailfrom=a@example.com; '
    b'spf=none smtp.helo=client.example; dkim=none; dmarc=permerror reason="no From field"',
    b'DKIM-Check: dkim=none',
    b'Authent: 127.0.0.1 client.example SPF1 NONE']
STORE_FAILED = re.compile(r'^qmail-idcheck: pid (\d+) policy: checkid: state store failed '
                          r'\(redis://127\.0\.0\.1:\d+/0: .*\) at rcpt: (greylisting and rate '
                          r'limits skipped|TEMPFAIL) for this session$', re.M)


class DnsWarmChain(WarmChain):
    """WarmChain, its server's idcheck.dns asking the fixture: the workers'
    own DNSCACHEIP, not the connection's, names the resolver."""

    def server_start(self):
        from test_idcheckd import Server
        env = {k: v for k, v in self.env.items()
               if k in ('IDCHECK_MODULE', 'IDCHECK_FUNCTION', 'DNSCACHEIP')}
        self.server = Server(self.variant, self.logfile, env, self.server_args, self.sockdir)
        self.server.start()
        return self.server


def chain(mode, dns, **settings):
    env = {'IDCHECK_MODULE': 'checkid', 'DNSCACHEIP': dns.ip, 'CHECKID_SERVICES': TEST_SERVICES,
           'CHECKID_QMAIL_HOME': os.path.join(harness.TESTS, 'no-qmail-home')}
    env.update({'CHECKID_' + k: str(v) for k, v in settings.items()})
    return (DnsWarmChain if mode == 'warm' else harness.Chain)('idcheck', 'plain', env=env)


@pytest.fixture
def sqlite_url():
    """A SQLite store in a directory of its own (the file does not exist
    yet: the policy makes it), removed after."""
    base = os.path.join(harness.TESTS, 'tmp')
    os.makedirs(base, exist_ok=True)
    d = tempfile.mkdtemp(prefix='state-', dir=base)
    yield 'sqlite:' + os.path.join(d, 'state.sqlite')
    shutil.rmtree(d, ignore_errors=True)


def greet(c, id=None):
    c.expect('220 standin.example ESMTP', timeout=30)
    c.send('EHLO client.example')
    while c.read_line(timeout=30).startswith(b'250-'):
        pass
    if id:
        c.send('ID %s' % id)
        c.expect('250 2.1.0 ID %s accepted' % id)


def mail(c, sender='a@example.com', reply='250 Sender OK', id=None):
    greet(c, id)
    c.send('MAIL FROM:<%s>' % sender)
    c.expect(reply, timeout=30)


def rcpt(c, to, reply):
    c.send('RCPT TO:<%s>' % to)
    c.expect(reply, timeout=30)


def data(c, message=MESSAGE):
    c.send('DATA')
    c.expect('354 go ahead', timeout=30)
    c.sendraw(message + b'.\r\n')
    c.expect('250 ok {*}', timeout=30)


def quit(c):
    c.send('QUIT')
    c.expect('221 standin.example', timeout=30)


def greylisted_session(ch, rcpts=('one@example.org',)):
    c = ch.connect()
    mail(c)
    for r in rcpts:
        rcpt(c, r, GREYLISTED)
    quit(c)


def accepted_session(ch, rcpts=('one@example.org',)):
    c = ch.connect()
    mail(c)
    for r in rcpts:
        rcpt(c, r, '250 ok')
    data(c)
    quit(c)


def after_the_delay():
    time.sleep(1.1)            # CHECKID_GREY_DELAY=1: the retry must come later


# ---- one host: SQLite ----

@pytest.mark.parametrize('mode', MODES)
def test_greylisted_then_accepted(mode, dns, sqlite_url):
    url = sqlite_url
    with chain(mode, dns, STATE=url, GREYLIST=1, GREY_DELAY=1) as ch:
        greylisted_session(ch, ('one@example.org', 'two@example.org'))
        after_the_delay()
        accepted_session(ch, ('one@example.org', 'two@example.org'))
        # a third recipient is a new triplet; the data still goes to the others
        c = ch.connect()
        mail(c)
        rcpt(c, 'one@example.org', '250 ok')
        rcpt(c, 'three@example.org', GREYLISTED)
        data(c)
        quit(c)
        ch.wait_sessions()
        (msg, env), (msg2, env2) = ch.stored()
        check_stored(msg, STORED_HEADERS, MESSAGE)
        assert env == b'Fa@example.com\0Tone@example.org\0Ttwo@example.org\0\0'
        assert env2 == b'Fa@example.com\0Tone@example.org\0\0'
        log = ch.log()
        assert len(re.findall(r'a@example\.com rcpt:one@example\.org TEMPFAIL 451 4\.7\.1 '
                              r'Greylisted, please try again later \(in 1 seconds\)\n', log)) == 1
        assert 'state store failed' not in log


@pytest.mark.parametrize('mode', MODES)
def test_trusted_sender_is_not_greylisted(mode, dns, sqlite_url):
    """ID example.com: SPF pass, rated A, A, B: ACCEPT, trusted; the
    verdict waits for the data all the same (CONTINUE at RCPT)."""
    url = sqlite_url
    with chain(mode, dns, STATE=url, GREYLIST=1, GREY_DELAY=1) as ch:
        c = ch.connect()
        mail(c, id='example.com')
        rcpt(c, 'one@example.org', '250 ok')
        data(c)
        quit(c)
        ch.wait_sessions()
        assert len(ch.stored()) == 1
        assert re.search(r'example\.com client\.example a@example\.com rcpt:one@example\.org '
                         r'CONTINUE\n', ch.log()), ch.log()


def run_concurrently(sessions, fn):
    """fn(i, connection) in a thread per session, started together;
    re-raises the first failure."""
    errors = []
    start = threading.Barrier(len(sessions))

    def run(i, c):
        try:
            start.wait(timeout=60)
            fn(i, c)
        except BaseException as e:        # noqa: B902  (reported below)
            errors.append(e)
    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), 'a session hung'
    if errors:
        raise errors[0]


@pytest.mark.parametrize('mode', MODES)
def test_sqlite_shared_by_two_chains_under_concurrent_sessions(mode, dns, sqlite_url):
    """Twenty sessions at once, ten through each of two chains (two
    tcpservers, as two services on one host) sharing one SQLite file that
    none of them created before: a limit of 10 messages per identity lets
    exactly 10 through; each of those is greylisted, retries its RCPT in
    the same session after the delay and passes, so ten sessions update
    the same auto-allow counter at once. No update is lost (the counts in
    the file are exactly 10), no store failure reaches a client or the
    log."""
    url = sqlite_url
    settings = dict(STATE=url, GREYLIST=1, GREY_DELAY=1, GREY_SKIP_TRUSTED=0,
                    GREY_AUTO_ALLOW=1000, RATE_ID_MESSAGES=10, RATE_WINDOW=10 ** 9,
                    STATE_TIMEOUT=5)
    with chain(mode, dns, **settings) as a, chain(mode, dns, **settings) as b:
        sessions = [(a if i % 2 else b).connect() for i in range(20)]
        outcome = [None] * 20

        def session(i, c):
            greet(c, id='example.com')
            c.send('MAIL FROM:<s%d@example.com>' % i)
            reply = c.read_line(timeout=60)
            if reply == b'250 Sender OK\r\n':
                rcpt(c, 'r%d@example.org' % i, GREYLISTED)
                after_the_delay()
                rcpt(c, 'r%d@example.org' % i, '250 ok')
                data(c, b'Subject: %d\r\n\r\nhello\r\n' % i)
                outcome[i] = 'stored'
            else:
                assert re.fullmatch(rb"451 4\.7\.1 Too many messages from 'example\.com', try "
                                    rb"again in \d+ seconds\r\n", reply), reply
                outcome[i] = 'limited'
            quit(c)
        run_concurrently(sessions, session)
        a.wait_sessions(timeout=60)
        b.wait_sessions(timeout=60)
        assert outcome.count('stored') == 10 and outcome.count('limited') == 10
        stored = a.stored() + b.stored()
        senders = sorted(int(e.split(b'\0')[0][2:].split(b'@')[0]) for _, e in stored)
        assert senders == sorted(i for i in range(20) if outcome[i] == 'stored')
        for log in (a.log(), b.log()):
            assert 'state store failed' not in log and 'locked' not in log
            assert 'Traceback' not in log
    with sqlite3.connect(url[7:]) as db:
        assert db.execute('SELECT n FROM rate').fetchall() == [(10,)]
        assert db.execute('SELECT n FROM client').fetchall() == [(10,)]
        assert db.execute('SELECT count(*), sum(passed) FROM grey').fetchone() == (10, 10)


@pytest.mark.parametrize('mode', ['embedded'])
def test_rate_limit_per_client_at_mail_and_rcpt(mode, dns, sqlite_url):
    url = sqlite_url
    with chain(mode, dns, STATE=url, RATE_MESSAGES=2, RATE_RECIPIENTS=3, RATE_WINDOW=10 ** 9) as ch:
        c = ch.connect()
        mail(c)
        for r in ('r1', 'r2', 'r3'):
            rcpt(c, r + '@example.org', '250 ok')
        rcpt(c, 'r4@example.org', "451 4.7.1 Too many recipients from '127.0.0.1', try again in "
                                  "{*} seconds")
        data(c)
        c.send('MAIL FROM:<b@example.com>')
        c.expect('250 Sender OK')
        c.send('RSET')
        c.expect('250 flushed')
        c.send('MAIL FROM:<c@example.com>')
        c.expect("451 4.7.1 Too many messages from '127.0.0.1', try again in {*} seconds")
        quit(c)
        # another client address is another client
        c = ch.connect(source='127.0.0.2')
        mail(c)
        quit(c)
        ch.wait_sessions()
        (msg, env), = ch.stored()
        assert env == b'Fa@example.com\0Tr1@example.org\0Tr2@example.org\0Tr3@example.org\0\0'


# ---- several hosts: Redis ----

@pytest.mark.parametrize('mode', MODES)
def test_two_mx_hosts_share_one_redis(mode, dns, redis_server):
    """Greylisted at one MX, accepted at the other after the delay: the two
    chains see one store."""
    settings = dict(STATE=redis_server.url, GREYLIST=1, GREY_DELAY=1)
    with chain(mode, dns, **settings) as mx1, chain(mode, dns, **settings) as mx2:
        greylisted_session(mx1)
        assert len(redis_server.command('KEYS', 'checkid:grey:*')) == 1
        after_the_delay()
        accepted_session(mx2)
        mx1.wait_sessions()
        mx2.wait_sessions()
        assert mx1.stored() == []
        (msg, env), = mx2.stored()
        check_stored(msg, STORED_HEADERS, MESSAGE)
        assert env == b'Fa@example.com\0Tone@example.org\0\0'
        # and back at the first: the triplet passed, for both
        accepted_session(mx1)
        mx1.wait_sessions()
        assert len(mx1.stored()) == 1
        for log in (mx1.log(), mx2.log()):
            assert 'state store failed' not in log


@pytest.mark.parametrize('mode', MODES)
def test_redis_killed_then_back(mode, dns, redis_server):
    """Redis dies mid-run: with CHECKID_STATE_ONERROR=skip (mx1) the mail
    goes through ungreylisted, one log line per session; with tempfail
    (mx2) the recipient gets 451 4.3.0; no session waits past its reply's
    deadline. Redis comes back (empty: no persistence): both greylist
    again, nothing restarted."""
    common = dict(STATE=redis_server.url, GREYLIST=1, GREY_DELAY=1, STATE_TIMEOUT=0.5,
                  STATE_RETRY=0.5)
    with chain(mode, dns, STATE_ONERROR='skip', **common) as mx1, \
            chain(mode, dns, STATE_ONERROR='tempfail', **common) as mx2:
        greylisted_session(mx1)
        greylisted_session(mx2, ('two@example.org',))
        redis_server.kill()
        accepted_session(mx1, ('one@example.org', 'three@example.org'))
        c = mx2.connect()
        mail(c)
        rcpt(c, 'two@example.org', TEMP)
        rcpt(c, 'four@example.org', TEMP)
        quit(c)
        mx1.wait_sessions()
        mx2.wait_sessions()
        assert len(mx1.stored()) == 1 and mx2.stored() == []
        for ch, what in ((mx1, 'greylisting and rate limits skipped'), (mx2, 'TEMPFAIL')):
            lines = STORE_FAILED.findall(ch.log())
            # one line per session (embedded); warm, a session's calls may go
            # to different workers, each of which says it once
            assert lines and all(w == what for _, w in lines), ch.log()
            pids = [p for p, _ in lines]
            assert len(set(pids)) == 1 and len(pids) <= (1 if mode == 'embedded' else 2), lines
        failures = [len(STORE_FAILED.findall(ch.log())) for ch in (mx1, mx2)]
        redis_server.start()
        time.sleep(0.6)         # CHECKID_STATE_RETRY: a warm worker asks again after it
        greylisted_session(mx1, ('five@example.org',))
        greylisted_session(mx2, ('five@example.org', 'six@example.org'))
        # five: one triplet for both (mx2 retried it early), six
        assert len(redis_server.command('KEYS', 'checkid:grey:*')) == 2
        mx1.wait_sessions()
        mx2.wait_sessions()
        assert [len(STORE_FAILED.findall(ch.log())) for ch in (mx1, mx2)] == failures


@pytest.mark.parametrize('mode', MODES)
def test_redis_paused_no_session_waits(mode, dns, redis_server):
    """A Redis that accepts connections and never answers (SIGSTOP): every
    reply comes within the harness's read deadline (the store's is 0.5 s),
    the mail goes through (skip); after SIGCONT greylisting is back."""
    settings = dict(STATE=redis_server.url, GREYLIST=1, GREY_DELAY=1, STATE_TIMEOUT=0.5,
                    STATE_RETRY=0.5)
    with chain(mode, dns, **settings) as mx1:
        greylisted_session(mx1)
        redis_server.pause()
        try:
            accepted_session(mx1, ('two@example.org', 'three@example.org'))
        finally:
            redis_server.resume()
        time.sleep(0.6)         # CHECKID_STATE_RETRY
        greylisted_session(mx1, ('four@example.org',))
        mx1.wait_sessions()
        assert len(mx1.stored()) == 1
