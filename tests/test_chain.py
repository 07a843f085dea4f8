"""The whole chain with real clients: byte-identity with the bare stand-in,
swaks and smtplib against qmail-idcheck, and every qmail-queue exit code
still answered with qmail-smtpd's own reply through the queue wrapper."""
import re
import smtplib
import socket
import subprocess
import time

import pytest

import harness

VARIANTS = harness.chain_variants()
# The queue exit codes need no sanitizer run: the stand-in and the real one.
QUEUE_VARIANTS = ['plain', 'real']
RECEIVED_DATE = re.compile(rb'(  by standin\.example with SMTP; ).*\n')


def deliver(chain, message, sender='noreply@example.com'):
    c = chain.connect()
    c.helo_opening()
    c.send('MAIL FROM:<%s>' % sender)
    c.read_line()
    c.send('RCPT TO:<one@example.org>')
    c.read_line()
    c.send('DATA')
    c.expect('354 go ahead')
    c.sendraw(message + b'.\r\n')
    final = c.read_line()
    c.send('QUIT')
    c.expect('221 standin.example')
    chain.wait_sessions()
    return final


@pytest.mark.parametrize('variant', VARIANTS)
def test_message_byte_identical_to_bare_chain(variant):
    """Every byte qmail-smtpd accepts arrives unchanged through the proxy:
    8-bit text, NUL, a 5000-byte line, dot-stuffed lines, a message larger
    than the proxy's buffers."""
    body = (b'Subject: noreply\r\nX-8bit: \xe9t\xe9 \xff\r\n\r\n'
            + b'nul \0 byte\r\n' + b'x' * 5000 + b'\r\n'
            + b'..stuffed\r\n...two\r\n.\tdot-tab\r\n'
            + b''.join(b'line %06d of a longer message\r\n' % i for i in range(6000)))
    stored = {}
    for kind in ('bare', 'idcheck'):
        with harness.Chain(kind, variant, env={'IDCHECK_MODULE': 't_basic'}) as chain:
            final = deliver(chain, body)
            assert final.startswith(b'250 '), final
            msgs = chain.stored()
            assert len(msgs) == 1
            stored[kind] = msgs[0]
    bare_msg, bare_env = stored['bare']
    msg, env = stored['idcheck']
    assert env == bare_env == b'Fnoreply@example.com\0Tone@example.org\0\0'
    assert RECEIVED_DATE.sub(rb'\1DATE\n', msg) == RECEIVED_DATE.sub(rb'\1DATE\n', bare_msg)
    assert b'\nx' + b'x' * 4999 + b'\n' in msg and b'\n.stuffed\n..two\n\tdot-tab\n' in msg


@pytest.mark.parametrize('variant', VARIANTS)
def test_swaks_sees_id_and_delivers_with_authent(variant):
    with harness.Chain('idcheck', variant, env={'IDCHECK_MODULE': 't_headers'}) as chain:
        r = subprocess.run(['swaks', '--server', '127.0.0.1:%d' % chain.port,
                            '--ehlo', 'client.example', '--from', 'seed@example.com',
                            '--to', 'one@example.org', '--header', 'Subject: swaks',
                            '--body', 'hello from swaks'],
                           capture_output=True, timeout=30)
        out = r.stdout.decode('latin1')
        assert r.returncode == 0, out
        assert '<-  250-ID\n' in out
        assert '<-  250 Sender OK\n' in out
        assert re.search(r'<-  250 ok \d+ qp \d+\n', out)
        chain.wait_sessions()
        (msg, env), = chain.stored()
        assert msg.startswith(b'Authent: 192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B\n'
                              b'Received: from unknown (HELO client.example) (127.0.0.1)\n')
        assert env == b'Fseed@example.com\0Tone@example.org\0\0'


@pytest.mark.parametrize('variant', VARIANTS)
def test_smtplib_speaks_id(variant):
    with harness.Chain('idcheck', variant, env={'IDCHECK_MODULE': 't_basic'}) as chain:
        s = smtplib.SMTP('127.0.0.1', chain.port, local_hostname='client.example', timeout=10)
        try:
            assert s.ehlo()[0] == 250
            assert s.has_extn('id')
            assert s.docmd('ID', 'example.com') == (250, b'2.1.0 ID example.com accepted')
            assert s.docmd('ID', 'example.com') == (503, b'5.5.1 ID already given')
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                s.sendmail('reject@example.com', ['one@example.org'], b'Subject: x\r\n\r\nx\r\n')
            assert refused.value.smtp_code == 550
            assert refused.value.smtp_error == b"5.7.1 Sending MTA '127.0.0.1' not authorized by 'example.com'"
            s.rset()
            refused_rcpts = s.sendmail('someone@example.com', ['one@example.org', 'reject@example.org'],
                                       b'Subject: accept\r\n\r\nhello\r\n')
            assert refused_rcpts == {'reject@example.org': (550, b"5.7.1 Sending MTA '127.0.0.1' not authorized by 'example.com'")}
        finally:
            s.quit()
        chain.wait_sessions()
        (msg, env), = chain.stored()
        assert msg.startswith(b'X-Data-Seen: hdrs=1 body=7 bodysize=7\n'
                              b'Authent: 127.0.0.1 example.com TEST DATA\nReceived: ')
        assert env == b'Fsomeone@example.com\0Tone@example.org\0\0'


@pytest.mark.parametrize('variant', VARIANTS)
def test_control_files_are_per_chain(variant):
    """Two chains running at once each read their own control files (the
    real qmail-smtpd's home is its working directory, each chain's home/)."""
    one = harness.Chain('bare', variant, control={'smtpgreeting': 'one.example\n',
                                                  'rcpthosts': 'one.example\n'})
    two = harness.Chain('bare', variant, control={'smtpgreeting': 'two.example\n',
                                                  'rcpthosts': 'two.example\n'})
    with one, two:
        c1, c2 = one.connect(), two.connect()
        c1.expect('220 one.example ESMTP')
        c2.expect('220 two.example ESMTP')
        for c, mine, other in ((c1, 'one', 'two'), (c2, 'two', 'one')):
            c.send('MAIL FROM:<a@example.com>')
            c.expect('250 ok')
            c.send('RCPT TO:<b@%s.example>' % mine)
            c.expect('250 ok')
            c.send('RCPT TO:<b@%s.example>' % other)
            c.expect("553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)")
        c1.send('QUIT')
        c1.expect('221 one.example')
        c2.send('QUIT')
        c2.expect('221 two.example')
        one.wait_sessions()
        two.wait_sessions()


# qmail-queue's exit code -> qmail-smtpd's reply (tests/QMAIL-PROTOCOL), unchanged by
# the wrapper between them.
QUEUE_EXITS = [
    (0, None),
    (11, '554 envelope address too long for qq (#5.1.3)'),
    (115, '554 envelope address too long for qq (#5.1.3)'),
    (31, '554 mail server permanently rejected message (#5.3.0)'),
    (20, '554 qq permanent problem (#5.3.0)'),
    (51, '451 qq out of memory (#4.3.0)'),
    (52, '451 qq timeout (#4.3.0)'),
    (53, '451 qq write error or disk full (#4.3.0)'),
    (54, '451 qq read error (#4.3.0)'),
    (55, '451 qq unable to read configuration (#4.3.0)'),
    (56, '451 qq trouble making network connection (#4.3.0)'),
    (61, '451 qq trouble in home directory (#4.3.0)'),
    (64, '451 qq trouble creating files in queue (#4.3.0)'),
    (71, '451 mail server temporarily rejected message (#4.3.0)'),
    (72, '451 connection to mail server timed out (#4.4.1)'),
    (73, '451 connection to mail server rejected (#4.4.1)'),
    (74, '451 communication with mail server failed (#4.4.2)'),
    (81, '451 qq internal bug (#4.3.0)'),
    (91, '451 qq internal bug (#4.3.0)'),
    (120, '451 unable to exec qq (#4.3.0)'),
    (99, '451 qq temporary problem (#4.3.0)'),
]


@pytest.mark.parametrize('variant', QUEUE_VARIANTS)
@pytest.mark.parametrize('code,reply', QUEUE_EXITS, ids=[str(c) for c, _ in QUEUE_EXITS])
def test_queue_exit_code_through_wrapper(code, reply, variant):
    env = {'IDCHECK_MODULE': 't_headers'}
    if code:
        env['STANDIN_QUEUE_EXIT'] = str(code)
    with harness.Chain('idcheck', variant, env=env) as chain:
        final = deliver(chain, b'Subject: exit\r\n\r\nbody\r\n', sender='accept@example.com')
        if reply is None:
            assert re.match(rb'^250 ok \d+ qp \d+\r\n$', final), final
            assert len(chain.stored()) == 1
        else:
            assert final == reply.encode() + b'\r\n'
            assert chain.stored() == []


@pytest.mark.parametrize('variant', QUEUE_VARIANTS)
@pytest.mark.parametrize('text,reply', [('Dno such mailbox here', '554 no such mailbox here'),
                                        ('Zcome back later', '451 come back later')])
def test_queue_exit_82_text_through_wrapper(text, reply, variant):
    env = {'IDCHECK_MODULE': 't_headers', 'STANDIN_QUEUE_EXIT': '82', 'STANDIN_QUEUE_TEXT': text}
    with harness.Chain('idcheck', variant, env=env) as chain:
        final = deliver(chain, b'Subject: exit\r\n\r\nbody\r\n', sender='accept@example.com')
        assert final == reply.encode() + b'\r\n'
        assert chain.stored() == []


@pytest.mark.parametrize('variant', VARIANTS)
def test_client_that_reads_nothing_is_gone_within_the_timeout(variant):
    """A client that pipelines commands and reads none of the replies: once
    they fill every buffer the proxy's write waits, IDCHECK_TIMEOUT (2 s)
    at most, then the session ends, logged."""
    with harness.Chain('idcheck', variant, env={'IDCHECK_TIMEOUT': '2'}) as chain:
        c = chain.connect()
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sock.setblocking(False)
        started = time.monotonic()
        ended = None
        while ended is None and time.monotonic() - started < 20:
            try:
                c.sock.send(b'HELP\r\n' * 1000)
            except OSError:             # full (BlockingIOError), or closed
                time.sleep(0.05)
            ended = chain.session_ended(c.pid)
        assert ended is not None, chain.log()
        assert ('qmail-idcheck: pid %d the client read no reply within IDCHECK_TIMEOUT: '
                'session ended' % c.pid) in chain.log(), chain.log()
