"""qmail-idcheckd, the warm checkID server, under the real chain.

Each test starts build/qmail-idcheckd (or build-asan/'s) on a Unix socket in a
temporary directory and a real tcpserver chain whose qmail-idcheck has
IDCHECK_SERVER pointing at it (WarmChain). The server logs into the chain's
log, so dialogue files written for the embedded mode run unchanged: results
identical to embedded mode means every idcheck-*/queue-* dialogue passes
both ways, and scripted sessions give the same bytes both ways.

Run: /usr/bin/python3 -m pytest -p no:cacheprovider -q tests/test_idcheckd.py
"""
import glob
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time

import pytest

import harness

VARIANTS = harness.variants()
RECEIVED_DATE = re.compile(rb'(  by standin\.example with SMTP; ).*\n')
QUEUE_OK = re.compile(rb'^250 ok \d+ qp \d+')
TEMPFAIL = '451 4.3.0 temporary failure in the sender policy check, try again later'


class Server:
    """qmail-idcheckd on DIR/sock; stderr appended to LOGFILE."""

    def __init__(self, variant, logfile, env=None, args=(), sockdir=None):
        self.variant = variant
        self.dir = sockdir or tempfile.mkdtemp(prefix='idcheckd-', dir=_tmpbase())
        self.own_dir = sockdir is None
        self.sock = os.path.join(self.dir, 'sock')
        self.logfile = logfile
        self.env = dict(env or {})
        self.args = list(args)
        self.proc = None

    def start(self, wait_ready=True):
        env = {
            'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
            'IDCHECK_PYTHONPATH': os.path.join(harness.TESTS, 'policies') + ':'
                                  + os.path.join(harness.TOP, 'python'),
            **harness.SANITIZER_ENV,
        }
        env.update(self.env)
        self.logfd = open(self.logfile, 'ab')
        self.log_from = self.logfd.tell()
        self.proc = subprocess.Popen([harness.binary(self.variant, 'qmail-idcheckd')]
                                     + self.args + [self.sock],
                                     env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.logfd,
                                     start_new_session=True,
                                     preexec_fn=harness._die_with_parent)
        if wait_ready:
            self.wait_ready()
        return self

    def log(self):
        """This server's part of the log (from its start on)."""
        with open(self.logfile, 'rb') as f:
            f.seek(self.log_from)
            return f.read().decode('utf-8', 'replace')

    def wait_ready(self, count=None, timeout=30):
        """Until COUNT 'ready' lines (default: the pool size) are in the log."""
        n = count or self.pool_size()
        if not harness._wait_until(lambda: len(re.findall(r'worker \d+ pid \d+ ready in',
                                                          self.log())) >= n, timeout):
            raise harness.HarnessError('qmail-idcheckd: %d workers not ready in %ds:\n%s'
                                       % (n, timeout, self.log()[-4000:]))

    def pool_size(self):
        if '-n' in self.args:
            return int(self.args[self.args.index('-n') + 1])
        return 2

    def workers(self):
        return [p for p in harness._descendants(self.proc.pid) if harness._alive(p)]

    def stop(self, timeout=10):
        """SIGTERM; the server must exit 0 by itself and remove its socket."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
            code = 'hung'
        # workers left behind would be a bug; kill them (only ours: same group)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc = None
        self.logfd.close()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        return code


def _tmpbase():
    base = os.path.join(harness.TESTS, 'tmp')
    os.makedirs(base, exist_ok=True)
    return base


class WarmChain(harness.Chain):
    """A Chain whose qmail-idcheck calls checkID through qmail-idcheckd.
    The server gets the policy (IDCHECK_MODULE/IDCHECK_FUNCTION) from env;
    its log lines go to the chain's log. server_args: qmail-idcheckd options."""

    def __init__(self, chain='idcheck', variant='plain', env=None, server_env=None,
                 control=None, prefix=None, server_args=(), start_server=True):
        super().__init__(chain, variant, env, server_env, control, prefix)
        self.server_args = list(server_args)
        self.start_server = start_server
        self.server = None
        self.sockdir = tempfile.mkdtemp(prefix='idcheckd-', dir=_tmpbase())
        self.server_env.setdefault('IDCHECK_SERVER', os.path.join(self.sockdir, 'sock'))

    def _start(self):
        super()._start()
        if self.start_server:
            self.server_start()
        return self

    def server_start(self):
        env = {k: v for k, v in self.env.items() if k in ('IDCHECK_MODULE', 'IDCHECK_FUNCTION')}
        self.server = Server(self.variant, self.logfile, env, self.server_args, self.sockdir)
        self.server.start()
        return self.server

    def stop(self, check=True):
        code = None
        if self.server is not None:
            code = self.server.stop()
        shutil.rmtree(self.sockdir, ignore_errors=True)
        super().stop(check)
        if check and code not in (None, 0):
            raise harness.HarnessError('qmail-idcheckd exited %r on SIGTERM' % code)


# ---- helpers ----

def transcript(chain, lines):
    """One session: every reply line (whole multi-line replies) per command."""
    c = chain.connect()
    got = [c.read_line()]
    for line in lines:
        if isinstance(line, bytes):
            c.sendraw(line)
        else:
            c.send(line)
        while True:
            r = c.read_line(timeout=30)
            got.append(QUEUE_OK.sub(b'250 ok TIME qp PID', r) if r else r)
            if r is None or r[3:4] != b'-':
                break
    c.close()
    return got


def mail_session(sender, rcpts=('one@example.org',), subject='hello', body=b'body\r\n'):
    return (['EHLO client.example', 'ID example.com', 'MAIL FROM:<%s>' % sender]
            + ['RCPT TO:<%s>' % r for r in rcpts]
            + ['DATA', b'Subject: ' + subject.encode() + b'\r\n\r\n' + body + b'.\r\n', 'QUIT'])


def normalized(stored):
    return [(RECEIVED_DATE.sub(rb'\1DATE\n', m), e) for m, e in stored]


CASES = {
    't_basic': [mail_session(s, r) for s, r in [
        ('someone@example.com', ('one@example.org', 'accept@example.org')),
        ('reject@example.com', ('one@example.org',)),
        ('tempfail@example.com', ('one@example.org',)),
        ('accept@example.com', ('x@example.org',)),
        ('discard@example.com', ('x@example.org',)),
        ('noreply@example.com', ('one@example.org', 'reject@example.org', 'two@example.org')),
    ]] + [mail_session('someone@example.com', subject='reject'),
          mail_session('someone@example.com', subject='accept')],
    't_faults': [mail_session(s) for s in
                 ['raise@example.com', 'garbage@example.com', 'reject250@example.com',
                  'tempfail550@example.com', 'unknown@example.com', 'badxcode@example.com',
                  'crlfheader@example.com', 'badlabel@example.com', 'crlftext@example.com',
                  'fine@example.com', 'exit@example.com']],
    't_headers': [mail_session(s) for s in
                  ['seed@example.com', 'three@example.com', 'long@example.com',
                   'longword@example.com', 'inject@example.com', 'someone@example.com']],
}


def run_cases(chain_class, variant, policy, extra=None):
    kw = dict(env={'IDCHECK_MODULE': policy})
    kw['env'].update(extra or {})
    with chain_class('idcheck', variant, **kw) as chain:
        replies = [transcript(chain, lines) for lines in CASES[policy]]
        chain.wait_sessions()
        return replies, normalized(chain.stored())


# ---- results identical to embedded mode ----

@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('policy', sorted(CASES))
def test_same_replies_and_messages_as_embedded(variant, policy):
    embedded = run_cases(harness.Chain, variant, policy)
    warm = run_cases(WarmChain, variant, policy)
    assert warm[0] == embedded[0]
    assert warm[1] == embedded[1]
    assert embedded[1], 'the cases store some messages'


WARM_DIALOGUES = sorted(p for p in glob.glob(os.path.join(harness.TESTS, 'dialogues', '*.dlg'))
                        if os.path.basename(p).startswith(('idcheck-', 'queue-')))


@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('path', WARM_DIALOGUES, ids=lambda p: os.path.basename(p)[:-4])
def test_dialogue_warm(path, variant, monkeypatch):
    """Every proxy dialogue, written for embedded mode, passes in warm mode."""
    d = harness.Dialogue(path)
    if d.chain != 'idcheck':
        pytest.skip('not a proxy dialogue')
    monkeypatch.setattr(harness, 'Chain', WarmChain)
    harness.run_dialogue(path, variant)


# ---- faults ----

def mail_reply(chain, sender='someone@example.com'):
    c = chain.connect()
    c.helo_opening()
    c.send('MAIL FROM:<%s>' % sender)
    line = c.read_line(timeout=30)
    c.send('QUIT')
    c.expect('221 standin.example')
    return line


FALLBACK_LINE = re.compile(r'qmail-idcheck: pid \d+ policy server unreachable \(cannot connect to '
                           r'the policy server \S+: (No such file or directory|Connection refused)\); '
                           r'checkID runs embedded for this session\n')


class DownChain(WarmChain):
    """IDCHECK_SERVER names a socket nobody serves: 'missing' (no file, as a
    stopped server leaves it) or 'refused' (a socket file nobody listens on,
    as a killed server leaves it)."""

    def __init__(self, *args, down='missing', **kw):
        kw['start_server'] = False
        super().__init__(*args, **kw)
        if down == 'refused':
            s = socket.socket(socket.AF_UNIX)
            s.bind(self.server_env['IDCHECK_SERVER'])
            s.close()


@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('down', ['missing', 'refused'])
@pytest.mark.parametrize('policy', ['t_basic', 't_headers'])
def test_server_down_falls_back_to_embedded(variant, down, policy):
    """IDCHECK_FALLBACK's default: a server that cannot be reached is
    replaced by the session's own qmail-idcheck-python, with the same
    replies and the same stored bytes (the policy's headers) as embedded."""
    embedded = run_cases(harness.Chain, variant, policy)
    logs = []

    class Down(DownChain):
        def __init__(self, *args, **kw):
            super().__init__(*args, down=down, **kw)

        def stop(self, check=True):
            logs.append(self.log())
            super().stop(check)

    fallback = run_cases(Down, variant, policy)
    assert fallback[0] == embedded[0]
    assert fallback[1] == embedded[1]
    assert embedded[1], 'the cases store some messages'
    # one line per session that called checkID, none of them a fault
    assert len(FALLBACK_LINE.findall(logs[0])) == len(CASES[policy])
    assert ('Connection refused' if down == 'refused' else 'No such file') in logs[0]
    assert 'FAULT 451 4.3.0 cannot connect' not in logs[0]


@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('value', ['none', 'off'])
def test_server_down_is_tempfail(variant, value):
    """IDCHECK_FALLBACK=none: the old behaviour, a fault. A value it does
    not know counts as none, and says so."""
    with DownChain('idcheck', variant, env={'IDCHECK_MODULE': 't_basic',
                                            'IDCHECK_FALLBACK': value}) as chain:
        t0 = time.monotonic()
        assert mail_reply(chain) == (TEMPFAIL + '\r\n').encode()
        assert time.monotonic() - t0 < 3
        chain.wait_sessions()
        log = chain.log()
        assert 'mail FAULT 451 4.3.0 cannot connect to the policy server' in log
        assert 'embedded' not in log
        assert ('IDCHECK_FALLBACK=off unknown, taken as none' in log) == (value == 'off')


@pytest.mark.parametrize('variant', VARIANTS)
def test_server_down_onerror_accept(variant):
    with DownChain('idcheck', variant, env={'IDCHECK_MODULE': 't_basic',
                                            'IDCHECK_FALLBACK': 'none',
                                            'IDCHECK_ONERROR': 'accept'}) as chain:
        line = mail_reply(chain)
        assert line.startswith(b'250 '), line
        chain.wait_sessions()
        assert 'mail FAULT-ACCEPT cannot connect to the policy server' in chain.log()


@pytest.mark.parametrize('variant', VARIANTS)
def test_server_stopped_mid_session_falls_back(variant):
    """The session's kept connection dies with the server and no new one
    comes up: the next call runs embedded, and so does the rest of the
    session, even after the server is back."""
    with WarmChain('idcheck', variant, env={'IDCHECK_MODULE': 't_basic'}) as chain:
        c = chain.connect()
        c.helo_opening()
        c.send('MAIL FROM:<a@example.com>')
        c.expect('250 2.1.0 mail ok: IP=127.0.0.1 ID=None H=client.example S=a@example.com')
        assert chain.server.stop() == 0
        c.send('RCPT TO:<b@example.org>')
        c.expect('250 2.1.0 rcpt ok: R=b@example.org')
        # a server with another policy (t_faults answers "250 fine") is back
        chain.server = Server(variant, chain.logfile, {'IDCHECK_MODULE': 't_faults'},
                              sockdir=chain.sockdir).start()
        c.send('RCPT TO:<c@example.org>')
        c.expect('250 2.1.0 rcpt ok: R=b@example.org,c@example.org')
        c.send('QUIT')
        c.expect('221 standin.example')
        assert mail_reply(chain) == b'250 fine\r\n'   # a new session: the server
        chain.wait_sessions()
        log = chain.log()
        assert len(FALLBACK_LINE.findall(log)) == 1
        assert ' FAULT' not in log


@pytest.mark.parametrize('variant', VARIANTS)
def test_worker_killed_mid_call(variant):
    with WarmChain('idcheck', variant, env={'IDCHECK_MODULE': 't_faults',
                                            'IDCHECK_CALLTIMEOUT': '60'}) as chain:
        c = chain.connect()
        c.helo_opening()
        c.send('MAIL FROM:<hang@example.com>')
        # the call is in a worker, asleep in the policy
        assert harness._wait_until(lambda: 'policy: hanging' in chain.log(), 10), chain.log()
        victims = chain.server.workers()
        assert victims
        for pid in victims:     # the busy one among them
            os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        c.expect(TEMPFAIL)
        assert time.monotonic() - t0 < 5
        # Every worker was killed, the idle one too: a call handed to it in
        # the instant it dies would be a fault as well. Wait for the
        # replacements (2 started + 2 new), then the same session's next call
        # reconnects to a fresh worker.
        assert harness._wait_until(lambda: len(re.findall(r'ended \(signal 9\)', chain.log())) >= 2, 10)
        chain.server.wait_ready(2 * chain.server.pool_size())
        c.send('MAIL FROM:<fine@example.com>')
        c.expect('250 fine', timeout=30)
        c.send('QUIT')
        c.expect('221 standin.example')
        chain.wait_sessions()
        assert mail_reply(chain, 'fine@example.com') == b'250 fine\r\n'
        log = chain.log()
        assert 'mail FAULT 451 4.3.0 the policy process died (qmail-idcheckd worker)' in log
        assert re.search(r'worker \d pid \d+ died mid-call \(session pid \d+\)', log)
        assert re.search(r'worker \d pid \d+ ended \(signal 9\)', log)


@pytest.mark.parametrize('variant', VARIANTS)
def test_slow_worker_times_out_and_is_replaced(variant):
    with WarmChain('idcheck', variant, env={'IDCHECK_MODULE': 't_faults',
                                            'IDCHECK_CALLTIMEOUT': '2'}) as chain:
        t0 = time.monotonic()
        assert mail_reply(chain, 'hang@example.com') == (TEMPFAIL + '\r\n').encode()
        assert 1.5 < time.monotonic() - t0 < 6
        assert harness._wait_until(lambda: 'killed: its session hung up mid-call' in chain.log(), 5)
        chain.server.wait_ready(3)      # the replacement
        assert mail_reply(chain, 'fine@example.com') == b'250 fine\r\n'
        chain.wait_sessions()
        assert 'mail FAULT 451 4.3.0 checkID call timed out' in chain.log()
        assert 'embedded' not in chain.log()      # a live server: no fallback


@pytest.mark.parametrize('variant', VARIANTS)
def test_call_limit_kills_worker(variant):
    """-t: a call running past the server's own limit ends its worker even
    if the session would wait longer."""
    with WarmChain('idcheck', variant, env={'IDCHECK_MODULE': 't_faults',
                                            'IDCHECK_CALLTIMEOUT': '60'},
                   server_args=['-t', '1']) as chain:
        t0 = time.monotonic()
        assert mail_reply(chain, 'hang@example.com') == (TEMPFAIL + '\r\n').encode()
        assert time.monotonic() - t0 < 6
        assert 'killed: a call ran past the call limit' in chain.log()


@pytest.mark.parametrize('variant', VARIANTS)
def test_many_concurrent_sessions(variant):
    n = 30
    with WarmChain('idcheck', variant, env={'IDCHECK_MODULE': 't_basic'}) as chain:
        results = [None] * n
        errors = []

        def one(i):
            try:
                sock = socket.create_connection(('127.0.0.1', chain.port), timeout=60)
                f = sock.makefile('rwb')

                def reply():
                    lines = []
                    while True:
                        line = f.readline()
                        lines.append(line)
                        if not line or line[3:4] != b'-':
                            return lines

                out = [reply()]
                for cmd in mail_session('s%d@example.com' % i, ('r%d@example.org' % i,)):
                    f.write(cmd if isinstance(cmd, bytes) else cmd.encode() + b'\r\n')
                    f.flush()
                    out.append(reply())
                sock.close()
                results[i] = out
            except Exception as e:      # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors
        for i, out in enumerate(results):
            assert out is not None
            assert out[3] == [b'250 2.1.0 mail ok: IP=127.0.0.1 ID=example.com H=client.example '
                              b'S=s%d@example.com\r\n' % i]
            assert out[4] == [b'250 2.1.0 rcpt ok: R=r%d@example.org\r\n' % i]
            assert out[6] == [b'250 2.0.0 data ok: hdrs=1 body=6 bodysize=6\r\n']
        chain.connections = []
        stored = chain.stored()
        assert len(stored) == n
        assert sorted(e for _, e in stored) == sorted(
            b'Fs%d@example.com\0Tr%d@example.org\0\0' % (i, i) for i in range(n))


# ---- isolation: slow clients hold only their own share ----
#
# The slow sessions come through one chain whose IDCHECK_CALLTIMEOUT outlasts
# the test; the sessions under test come through a second chain (a second
# tcpserver, a short call timeout) whose IDCHECK_SERVER is the first one's
# socket. Each session picks its client address in 127/8.

SLOW_TIMEOUT = '120'
FAST_TIMEOUT = 3


def sharing_chain(server_chain, variant):
    """A second chain whose sessions call SERVER_CHAIN's qmail-idcheckd."""
    return WarmChain('idcheck', variant, start_server=False,
                     env={'IDCHECK_MODULE': 't_slow', 'IDCHECK_CALLTIMEOUT': str(FAST_TIMEOUT)},
                     server_env={'IDCHECK_SERVER': server_chain.server.sock})


def mail_from(chain, source, sender):
    """A session from SOURCE up to its MAIL command; its reply not read yet."""
    c = chain.connect(source=source)
    c.helo_opening()
    c.send('MAIL FROM:<%s>' % sender)
    return c


def slow_calls(chain, sources):
    """One slow session per address in SOURCES, each call busy in a worker."""
    conns = [mail_from(chain, src, 'slow@example.com') for src in sources]
    want = {src: sources.count(src) for src in sources}
    assert harness._wait_until(
        lambda: all(chain.log().count('policy: slow call from %s\n' % src) >= n
                    for src, n in want.items()), 30), chain.log()[-3000:]
    return conns


def hang_up(chain, conns):
    """The slow sessions go away (their workers are killed), so the test
    does not wait for the calls to end."""
    for c in conns:
        os.kill(c.pid, signal.SIGKILL)
    assert harness._wait_until(
        lambda: chain.log().count('killed: its session hung up mid-call') >= len(conns), 10)


def answer(ip, sender='someone@example.com'):
    return ('250 2.1.0 mail ok: IP=%s ID=None H=client.example S=%s' % (ip, sender))


@pytest.mark.parametrize('variant', VARIANTS)
def test_slow_clients_do_not_starve_others(variant):
    """-n 2: two clients whose calls are slow hold both workers; a third
    client's call gets its real verdict within its call timeout (the pool
    grows), and the extra worker is retired once idle (-k)."""
    with WarmChain('idcheck', variant, env={'IDCHECK_MODULE': 't_slow',
                                            'IDCHECK_CALLTIMEOUT': SLOW_TIMEOUT},
                   server_args=['-n', '2', '-k', '1']) as slow:
        with sharing_chain(slow, variant) as chain:
            held = slow_calls(slow, ['127.0.0.2', '127.0.0.3'])
            c = mail_from(chain, '127.0.0.4', 'someone@example.com')
            c.expect(answer('127.0.0.4'), timeout=FAST_TIMEOUT + 5)
            c.send('QUIT')
            c.expect('221 standin.example')
            chain.wait_sessions()
            assert 'FAULT' not in chain.log()
            hang_up(slow, held)
            # back to -n: the grown worker retires, the killed ones are replaced
            assert harness._wait_until(lambda: 'retired (idle' in slow.log(), 10), slow.log()
            assert harness._wait_until(lambda: len(slow.server.workers()) == 2, 10)
            log = slow.server.log()
            assert re.search(r'worker 3 pid \d+ started \(calls waiting\)', log), log
            assert re.search(r'worker 3 pid \d+ retired \(idle 1 s\)', log), log


@pytest.mark.parametrize('variant', VARIANTS)
def test_one_client_holds_at_most_its_share(variant):
    """-p 2 (the default): a client with two slow calls in workers has its
    next call wait (it times out: 451) even though the pool could grow,
    while another client's call, made after it, is answered."""
    with WarmChain('idcheck', variant, env={'IDCHECK_MODULE': 't_slow',
                                            'IDCHECK_CALLTIMEOUT': SLOW_TIMEOUT}) as slow:
        with sharing_chain(slow, variant) as chain:
            held = slow_calls(slow, ['127.0.0.2', '127.0.0.2'])
            same = mail_from(chain, '127.0.0.2', 'someone@example.com')
            other = mail_from(chain, '127.0.0.3', 'someone@example.com')
            other.expect(answer('127.0.0.3'), timeout=FAST_TIMEOUT + 5)
            same.expect(TEMPFAIL, timeout=FAST_TIMEOUT + 5)
            chain.wait_sessions()
            assert 'mail FAULT 451 4.3.0 checkID call timed out (policy server)' in chain.log()
            assert re.search(r'client 127\.0\.0\.2 at its limit of 2 \(-p\): session pid \d+ waits',
                             slow.log()), slow.log()
            hang_up(slow, held)


@pytest.mark.parametrize('variant', VARIANTS)
def test_a_waiting_session_is_logged_once(variant):
    """-p 1: a session whose MAIL and then whose RCPT each wait for its
    client's one worker is logged once, not at every call (a busy sender
    would fill the log)."""
    with WarmChain('idcheck', variant, env={'IDCHECK_MODULE': 't_slow',
                                            'IDCHECK_CALLTIMEOUT': SLOW_TIMEOUT},
                   server_args=['-p', '1']) as slow:
        with sharing_chain(slow, variant) as chain:
            held = slow_calls(slow, ['127.0.0.2'])
            waiting = mail_from(chain, '127.0.0.2', 'someone@example.com')
            said = 'client 127.0.0.2 at its limit of 1 (-p): session pid %d waits' % waiting.pid
            assert harness._wait_until(lambda: said in slow.log(), 10), slow.log()
            hang_up(slow, held)
            waiting.expect(answer('127.0.0.2'), timeout=FAST_TIMEOUT + 5)
            held = [mail_from(slow, '127.0.0.2', 'slow@example.com')]
            assert harness._wait_until(lambda: slow.log().count(
                'policy: slow call from 127.0.0.2\n') == 2, 10), slow.log()
            waiting.send('RCPT TO:<someone@example.org>')
            time.sleep(0.3)                      # its RCPT waits behind the slow call
            hang_up(slow, held)
            waiting.expect('250 2.1.0 rcpt ok: R=someone@example.org', timeout=FAST_TIMEOUT + 5)
            waiting.send('QUIT')
            waiting.expect('221 standin.example')
            chain.wait_sessions()
            assert slow.log().count(said) == 1, slow.log()


@pytest.mark.parametrize('variant', VARIANTS)
def test_pool_grows_at_most_to_its_limit(variant):
    """-x 2: with both workers busy with slow calls of two clients, a third
    client's call waits (and times out) rather than a third worker starting."""
    with WarmChain('idcheck', variant, env={'IDCHECK_MODULE': 't_slow',
                                            'IDCHECK_CALLTIMEOUT': SLOW_TIMEOUT},
                   server_args=['-n', '1', '-x', '2']) as slow:
        with sharing_chain(slow, variant) as chain:
            held = slow_calls(slow, ['127.0.0.2', '127.0.0.3'])
            c = mail_from(chain, '127.0.0.4', 'someone@example.com')
            c.expect(TEMPFAIL, timeout=FAST_TIMEOUT + 5)
            chain.wait_sessions()
            log = slow.server.log()
            assert 'worker 3' not in log
            assert 'pool at its limit of 2 workers (-x): calls wait' in log
            hang_up(slow, held)


# ---- the server's side of the wire, spoken directly ----

def ns(b):
    return b'%d:%s,' % (len(b), b)


def hello_frame(ip):
    return ns(ns(b'hello1') + ns(b'+' + ip))


def request_frame(ip, sender):
    """A checkID call at MAIL (lib/policy_wire.h): 4 arguments."""
    fields = [b'checkID1', b'4', b'+' + ip, b'-', b'+client.example', b'+' + sender,
              b'', b'', b'-', b'0', b'', b'0']
    return ns(b''.join(ns(f) for f in fields))


class RawSession:
    """What qmail-idcheck does on IDCHECK_SERVER: connect, hello, calls."""

    def __init__(self, path, ip):
        self.ip = ip
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.sock.sendall(hello_frame(ip))
        self.buf = b''

    def call(self, sender):
        self.sock.sendall(request_frame(self.ip, sender))

    def pending(self):
        """Whatever of a reply has arrived, without waiting."""
        self.sock.setblocking(False)
        try:
            self.buf += self.sock.recv(65536)
        except BlockingIOError:
            pass
        self.sock.setblocking(True)
        return self.buf

    def reply(self, timeout=30):
        """The reply's fields: magic, action, code, xcode, text, headers."""
        self.sock.settimeout(timeout)
        while True:
            m = re.match(rb'(\d+):', self.buf)
            if m and len(self.buf) > m.end() + int(m.group(1)):
                payload = self.buf[m.end():m.end() + int(m.group(1))]
                self.buf = self.buf[m.end() + int(m.group(1)) + 1:]
                break
            data = self.sock.recv(65536)
            assert data, 'the server closed the connection'
            self.buf += data
        fields = []
        while payload:
            m = re.match(rb'(\d+):', payload)
            n = int(m.group(1))
            fields.append(payload[m.end():m.end() + n])
            payload = payload[m.end() + n + 1:]
        return fields

    def close(self):
        self.sock.close()


def mail_ok(ip, sender):
    return [b'checkID1', b'CONTINUE', b'250', b'2.1.0',
            b'mail ok: IP=%s ID=None H=client.example S=%s' % (ip, sender), b'']


@pytest.mark.parametrize('variant', VARIANTS)
def test_ipv6_client_is_its_64(variant, tmp_path):
    """-p 1: an IPv6 client is its /64 (another address in it is the same
    client; another /64 is not), and the hello names it. The policy's log
    lines carry the session's pid, which the master passes with the call."""
    s = Server(variant, str(tmp_path / 'log'), {'IDCHECK_MODULE': 't_slow'}, args=['-p', '1']).start()
    try:
        a = RawSession(s.sock, b'2001:db8:1:2::5')
        a.call(b'slow@example.com')
        assert harness._wait_until(lambda: 'qmail-idcheck: pid %d policy: slow call from '
                                   '2001:db8:1:2::5\n' % os.getpid() in s.log(), 30), s.log()
        b = RawSession(s.sock, b'2001:db8:1:2:ffff::6')
        b.call(b'b@example.com')
        c = RawSession(s.sock, b'2001:db8:1:3::6')
        c.call(b'c@example.com')
        assert c.reply() == mail_ok(b'2001:db8:1:3::6', b'c@example.com')
        assert harness._wait_until(lambda: 'client 2001:db8:1:2::/64 at its limit of 1 (-p): '
                                   'session pid %d waits' % os.getpid() in s.log(), 10), s.log()
        assert b.pending() == b''       # its client's one worker is a's
        a.close()                       # a gives up: its worker is killed, b's call goes on
        assert b.reply() == mail_ok(b'2001:db8:1:2:ffff::6', b'b@example.com')
        # the same connection serves the session's next call
        c.call(b'c2@example.com')
        assert c.reply() == mail_ok(b'2001:db8:1:3::6', b'c2@example.com')
    finally:
        assert s.stop() == 0


@pytest.mark.parametrize('variant', VARIANTS)
def test_connection_without_hello_is_closed(variant, tmp_path):
    """A request where the hello belongs: closed, logged, the server goes on."""
    s = Server(variant, str(tmp_path / 'log'), {'IDCHECK_MODULE': 't_basic'}).start()
    try:
        raw = socket.socket(socket.AF_UNIX)
        raw.connect(s.sock)
        raw.sendall(request_frame(b'192.0.2.1', b'a@example.com'))
        raw.settimeout(10)
        try:
            assert raw.recv(100) == b''
        except ConnectionResetError:
            pass
        raw.close()
        assert re.search(r'session pid %d sent no valid hello: connection closed' % os.getpid(), s.log())
        good = RawSession(s.sock, b'192.0.2.1')
        good.call(b'a@example.com')
        assert good.reply() == mail_ok(b'192.0.2.1', b'a@example.com')
    finally:
        assert s.stop() == 0


def test_silent_connection_closed_at_hello_deadline(tmp_path):
    """A connection that never says hello is closed after 10 s."""
    s = Server('plain', str(tmp_path / 'log'), {'IDCHECK_MODULE': 't_basic'}).start()
    try:
        raw = socket.socket(socket.AF_UNIX)
        raw.connect(s.sock)
        raw.settimeout(20)
        assert raw.recv(100) == b''
        raw.close()
        assert 'session pid %d sent no hello: connection closed' % os.getpid() in s.log()
    finally:
        assert s.stop() == 0


@pytest.mark.parametrize('variant', VARIANTS)
def test_idle_connection_closed(variant, tmp_path):
    """-i 1: a connection without a call for a second is closed (no tick:
    the master wakes for it); the session reconnects at its next call."""
    s = Server(variant, str(tmp_path / 'log'), {'IDCHECK_MODULE': 't_basic'}, args=['-i', '1']).start()
    try:
        r = RawSession(s.sock, b'192.0.2.1')
        r.call(b'a@example.com')
        assert r.reply() == mail_ok(b'192.0.2.1', b'a@example.com')
        r.sock.settimeout(10)
        assert r.sock.recv(100) == b''
    finally:
        assert s.stop() == 0


@pytest.mark.parametrize('variant', VARIANTS)
def test_many_connections_come_and_go(variant, tmp_path):
    """300 sessions hold their connections at once (the master's wait set),
    each makes two calls with the others open, half hang up between them:
    every call is answered on its own connection, and once all have hung
    up the master holds exactly the descriptors it held before they came
    (each connection left the wait set and was closed). -x 1: no worker
    joins meanwhile with a descriptor of its own."""
    s = Server(variant, str(tmp_path / 'log'), {'IDCHECK_MODULE': 't_basic'},
               args=['-n', '1', '-x', '1']).start()
    try:
        fds = lambda: len(os.listdir('/proc/%d/fd' % s.proc.pid))
        before = fds()
        sessions = [RawSession(s.sock, b'192.0.2.%d' % (i % 250 + 1)) for i in range(300)]
        for round_ in (1, 2):
            for i, r in enumerate(sessions):
                if r is None:
                    continue
                sender = b'r%d-%d@example.com' % (round_, i)
                r.call(sender)
                assert r.reply() == mail_ok(r.ip, sender)
            for i in range(0, len(sessions), 2):
                if sessions[i] is not None:
                    sessions[i].close()
                    sessions[i] = None
        assert harness._wait_until(lambda: fds() == before + len(sessions) // 2, 10), (fds(), before)
        for r in sessions:
            if r is not None:
                r.close()
        assert harness._wait_until(lambda: fds() == before, 10), (fds(), before)
        late = RawSession(s.sock, b'192.0.2.1')
        late.call(b'late@example.com')
        assert late.reply() == mail_ok(b'192.0.2.1', b'late@example.com')
    finally:
        assert s.stop() == 0


@pytest.mark.parametrize('variant', VARIANTS)
def test_max_requests_replaces_workers(variant):
    with WarmChain('idcheck', variant, env={'IDCHECK_MODULE': 't_basic'},
                   server_args=['-n', '1', '-m', '2']) as chain:
        for i in range(4):
            assert mail_reply(chain, 'p%d@example.com' % i).startswith(b'250 2.1.0 mail ok')
        log = chain.log()
        assert log.count('retired after 2 requests') >= 1
        assert len(re.findall(r'worker 1 pid \d+ ready in', log)) >= 2


@pytest.mark.parametrize('variant', VARIANTS)
def test_reconnects_after_server_restart(variant):
    """A session's kept connection dies with the server; its next call
    connects to the new one."""
    with WarmChain('idcheck', variant, env={'IDCHECK_MODULE': 't_basic'}) as chain:
        c = chain.connect()
        c.helo_opening()
        c.send('MAIL FROM:<a@example.com>')
        c.expect('250 2.1.0 mail ok: {*}')
        assert chain.server.stop() == 0
        chain.server_start()
        c.send('RCPT TO:<b@example.org>')
        c.expect('250 2.1.0 rcpt ok: R=b@example.org')
        c.send('QUIT')
        c.expect('221 standin.example')


# ---- the socket and the process ----

@pytest.mark.parametrize('variant', VARIANTS)
def test_socket_mode_stale_socket_and_sigterm(variant, tmp_path):
    d = tempfile.mkdtemp(prefix='idcheckd-', dir=_tmpbase())
    try:
        path = os.path.join(d, 'sock')
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)
        stale.close()                   # a socket file nobody listens on
        log = str(tmp_path / 'log')
        s = Server(variant, log, {'IDCHECK_MODULE': 't_basic'}, sockdir=d).start()
        st = os.lstat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.geteuid()
        assert 'removed a stale socket' in s.log()
        # a second server refuses to take over a live socket
        r = subprocess.run([harness.binary(variant, 'qmail-idcheckd'), path],
                           capture_output=True, timeout=30,
                           env=harness.SANITIZER_ENV)
        assert r.returncode == 111
        assert b'another server answers' in r.stderr
        workers = s.workers()
        assert len(workers) == 2
        assert s.stop() == 0
        assert not os.path.exists(path)
        assert harness._wait_until(lambda: not any(harness._alive(p) for p in workers), 5)
        text = open(log).read()
        assert 'stopping' in text and 'stopped' in text
        harness.no_sanitizer_report(text)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize('variant', VARIANTS)
def test_sighup_replaces_workers(variant):
    with WarmChain('idcheck', variant, env={'IDCHECK_MODULE': 't_basic'}) as chain:
        before = set(chain.server.workers())
        chain.server.proc.send_signal(signal.SIGHUP)
        chain.server.wait_ready(4)
        assert harness._wait_until(lambda: not (set(chain.server.workers()) & before), 5)
        assert mail_reply(chain).startswith(b'250 2.1.0 mail ok')


def test_usage():
    r = subprocess.run([harness.binary('plain', 'qmail-idcheckd')], capture_output=True, timeout=10)
    assert r.returncode == 100
    assert b'usage: qmail-idcheckd' in r.stderr
    r = subprocess.run([harness.binary('plain', 'qmail-idcheckd'), '-n', '0', '/tmp/x'],
                       capture_output=True, timeout=10)
    assert r.returncode == 100
