"""STARTTLS and SMTPS through the whole chain, with real clients:

    tcpserver ... build/qmail-idcheck-tls [-i] build/qmail-idcheck SMTPD

SMTPD is the stand-in (plain and asan builds of ours) or notqmail's real
qmail-smtpd (the 'real' variant), and once notqmail's own TLS-patched one, to
show that its STARTTLS stays hidden and ours is offered. Clients: smtplib,
swaks --tls / --tlsc, openssl s_client, and raw sockets for what a client
must not be able to do. Certificates are made at test time (test_tls.certs).
"""
import base64
import re
import shutil
import smtplib
import socket
import ssl
import subprocess

import pytest

import harness
import notqmail
from test_tls import SNI, certs, client_context  # noqa: F401 (certs is a fixture)

MESSAGE = b'Subject: over TLS\r\n\r\nbody\r\n'
TRACE = rb'Received-TLS: TLSv1\.3 cipher=TLS_[A-Z0-9_]+ sni=mail\.example\.test\n'
RECEIVED = (rb'Received: from unknown \(HELO client\.example\) \(127\.0\.0\.1\)\n'
            rb'  by standin\.example with SMTP; [^\n]+\n')


def tls_chain(variant, certs, implicit=False, env=None, chain='idcheck'):
    env = dict({'IDCHECK_MODULE': 't_basic'}, **(env or {}))
    words = ['build/qmail-idcheck-tls'] + (['-i'] if implicit else [])
    return harness.Chain(chain, variant, env=env, prefix=words,
                         server_env={'IDCHECK_TLS_CERT': certs['path']('server.pem')})


class SMTP(smtplib.SMTP):
    """smtplib that connects to 127.0.0.1 but names (and verifies) SNI."""
    def _get_socket(self, host, port, timeout):
        self._host = SNI
        return socket.create_connection(('127.0.0.1', port), timeout)


class SMTP_SSL(smtplib.SMTP_SSL):
    def _get_socket(self, host, port, timeout):
        raw = socket.create_connection(('127.0.0.1', port), timeout)
        return self.context.wrap_socket(raw, server_hostname=SNI)


def ehlo(c):
    """EHLO, and its reply's lines (read to the last, "250 ...")."""
    c.send('EHLO client.example')
    lines = []
    while not lines or not lines[-1].startswith(b'250 '):
        lines.append(c.read_line())
    return lines


def stored_one(chain):
    chain.wait_sessions()
    stored = chain.stored()
    assert len(stored) == 1, stored
    return stored[0]


@pytest.mark.parametrize('variant', harness.chain_variants())
def test_smtplib_starttls_stores_the_tls_record(variant, certs):
    """EHLO offers STARTTLS (and ID); after it, EHLO again offers ID but no
    STARTTLS; the message is stored with Received-TLS right above
    qmail-smtpd's Received line and the policy's header above that; the
    decision log says TLS."""
    with tls_chain(variant, certs) as chain:
        with SMTP(SNI, chain.port, local_hostname='client.example',
                  timeout=harness.READ_TIMEOUT) as s:
            s.ehlo()
            assert s.has_extn('starttls') and s.has_extn('id')
            assert s.starttls(context=client_context(certs)) == (220, b'2.0.0 Ready to start TLS')
            s.ehlo()
            assert not s.has_extn('starttls') and s.has_extn('id')
            assert s.sendmail('accept@example.com', ['one@example.org'], MESSAGE) == {}
        msg, env = stored_one(chain)
        assert env == b'Faccept@example.com\0Tone@example.org\0\0'
        assert re.fullmatch(rb'Authent: 127\.0\.0\.1 None TEST MAIL\n' + TRACE + RECEIVED
                            + rb'Subject: over TLS\n\nbody\n', msg), msg
        log = chain.log()
        assert re.search(r'qmail-idcheck: pid \d+ TLS started: TLSv1\.3 cipher=TLS_', log), log
        assert ' accept@example.com mail/tls ACCEPT 250 Sender OK' in log, log


@pytest.mark.parametrize('variant', harness.variants())
def test_policy_sees_the_tls_details_and_forgets_helo_and_id(variant, certs):
    """RFC 3207 4.2: after the handshake HELO and ID are forgotten (MAIL
    waits for a new HELO, and checkID sees that one); checkID sees
    SSL_PROTOCOL, SSL_CIPHER and the SNI in idcheck.environ."""
    with tls_chain(variant, certs) as chain:
        c = chain.connect()
        c.expect('220 standin.example ESMTP')
        c.send('EHLO client.example')
        for line in ('250-standin.example', '250-PIPELINING', '250-ID', '250-STARTTLS',
                     '250 8BITMIME'):
            c.expect(line)
        c.send('ID example.com')
        c.expect('250 2.1.0 ID example.com accepted')
        c.send('STARTTLS')
        c.expect('220 2.0.0 Ready to start TLS')
        c.sock = client_context(certs).wrap_socket(c.sock, server_hostname=SNI)
        c.send('MAIL FROM:<someone@example.com>')
        c.expect('503 5.5.1 EHLO or HELO first: STARTTLS started the session over')
        c.send('HELO again.example')
        c.expect('250 standin.example')
        c.send('MAIL FROM:<someone@example.com>')
        c.expect('250 2.1.0 mail ok: IP=127.0.0.1 ID=None H=again.example S=someone@example.com')
        c.send('RSET')
        c.expect('250 flushed')
        c.send('MAIL FROM:<tls@example.com>')
        c.expect('250 2.1.0 tls: TLSv1.3 TLS_{*} sni=mail.example.test')
        c.send('STARTTLS')
        c.expect('503 5.5.1 TLS already active')
        c.send('QUIT')
        c.expect('221 standin.example')
        c.close()
        chain.wait_sessions()


@pytest.mark.parametrize('variant', harness.chain_variants())
def test_pipelined_commands_behind_starttls_never_run(variant, certs):
    """A MAIL and RCPT sent in clear in the same write as STARTTLS never
    reach prog or checkID, before or after the handshake (CVE-2011-0411's
    class): after it, RCPT gets prog's 503 MAIL first."""
    with tls_chain(variant, certs) as chain:
        c = chain.connect()
        c.expect('220 standin.example ESMTP')
        assert b'250-STARTTLS\r\n' in ehlo(c)
        c.sendraw(b'STARTTLS\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<one@example.org>\r\n')
        c.expect('220 2.0.0 Ready to start TLS')
        assert c.buf == b''
        c.sock = client_context(certs).wrap_socket(c.sock, server_hostname=SNI)
        assert b'250-STARTTLS\r\n' not in ehlo(c)
        c.send('RCPT TO:<one@example.org>')
        c.expect('503 MAIL first (#5.5.1)')
        c.send('QUIT')
        c.expect('221 standin.example')
        c.close()
        chain.wait_sessions()
        log = chain.log()
        assert re.search(r'dropped 5\d bytes pipelined behind STARTTLS', log), log
        assert 'evil@example.com' not in log
        assert chain.stored() == []


@pytest.mark.parametrize('variant', harness.variants())
def test_starttls_argument_and_without_a_tls_end(variant, certs):
    """STARTTLS with an argument is 501 5.5.4; a chain without a TLS end
    offers no STARTTLS and answers it 502, as qmail-smtpd does."""
    with tls_chain(variant, certs) as chain:
        c = chain.connect()
        c.expect('220 standin.example ESMTP')
        c.send('STARTTLS now')
        c.expect('501 5.5.4 syntax: STARTTLS takes no argument')
        c.send('QUIT')
        c.expect('221 standin.example')
    with harness.Chain('idcheck', variant, env={'IDCHECK_MODULE': 't_basic'}) as chain:
        c = chain.connect()
        c.expect('220 standin.example ESMTP')
        c.send('EHLO client.example')
        for line in ('250-standin.example', '250-PIPELINING', '250-ID', '250 8BITMIME'):
            c.expect(line)
        c.send('STARTTLS')
        c.expect('502 unimplemented (#5.5.1)')
        c.send('QUIT')
        c.expect('221 standin.example')


@pytest.mark.parametrize('variant', harness.variants())
@pytest.mark.parametrize('how', ['garbage', 'silent'])
def test_failed_handshake_ends_the_session(variant, certs, how):
    """A client that says STARTTLS and then sends garbage, or nothing, is
    gone (within IDCHECK_TLS_TIMEOUT); the proxy logs it; nothing queued."""
    with tls_chain(variant, certs, env={'IDCHECK_TLS_TIMEOUT': '2'}) as chain:
        c = chain.connect()
        c.expect('220 standin.example ESMTP')
        c.send('MAIL FROM:<accept@example.com>')
        c.expect('250 Sender OK')
        c.send('STARTTLS')
        c.expect('220 2.0.0 Ready to start TLS')
        if how == 'garbage':
            c.sendraw(b'this is not a TLS record\r\n' * 20)
        try:
            c.expect_eof(timeout=10)
        except (harness.HarnessError, ConnectionResetError):
            pass    # the TLS end may answer garbage with an alert
        chain.wait_sessions()
        assert 'qmail-idcheck: pid' in chain.log()
        assert re.search(r'qmail-idcheck: pid \d+ TLS handshake failed', chain.log()), chain.log()
        assert chain.stored() == []


@pytest.mark.parametrize('variant', harness.variants())
def test_tls_required(variant, certs):
    """IDCHECK_TLS_REQUIRED: MAIL before STARTTLS is 530 5.7.0 (RFC 3207);
    after it, mail is taken."""
    with tls_chain(variant, certs, env={'IDCHECK_TLS_REQUIRED': '1'}) as chain:
        with SMTP(SNI, chain.port, local_hostname='client.example',
                  timeout=harness.READ_TIMEOUT) as s:
            s.ehlo()
            assert s.mail('accept@example.com') == (
                530, b'5.7.0 Must issue a STARTTLS command first')
            s.starttls(context=client_context(certs))
            s.ehlo()
            assert s.sendmail('accept@example.com', ['one@example.org'], MESSAGE) == {}
        msg, _ = stored_one(chain)
        assert re.search(TRACE, msg), msg


@pytest.mark.parametrize('variant', harness.chain_variants())
def test_implicit_tls_smtps(variant, certs):
    """qmail-idcheck-tls -i (SMTPS, RFC 8314): TLS from the first byte, no
    STARTTLS offered (503 if asked), the message stored with Received-TLS."""
    with tls_chain(variant, certs, implicit=True) as chain:
        with SMTP_SSL(SNI, chain.port, local_hostname='client.example',
                      context=client_context(certs), timeout=harness.READ_TIMEOUT) as s:
            s.ehlo()
            assert s.has_extn('id') and not s.has_extn('starttls')
            assert s.docmd('STARTTLS') == (503, b'5.5.1 TLS already active')
            assert s.sendmail('accept@example.com', ['one@example.org'], MESSAGE) == {}
        msg, _ = stored_one(chain)
        assert re.fullmatch(rb'Authent: 127\.0\.0\.1 None TEST MAIL\n' + TRACE + RECEIVED
                            + rb'Subject: over TLS\n\nbody\n', msg), msg


def swaks(*args):
    return subprocess.run(['swaks', '--server', '127.0.0.1', '--helo', 'client.example',
                           '--from', 'accept@example.com', '--to', 'one@example.org',
                           '--tls-sni', SNI, '--timeout', '10'] + list(args),
                          capture_output=True, timeout=60)


@pytest.mark.parametrize('variant', harness.chain_variants())
@pytest.mark.parametrize('mode', ['--tls', '--tlsc'])
def test_swaks_tls(variant, certs, mode):
    """swaks --tls (STARTTLS on the submission of port 25) and --tlsc
    (SMTPS) deliver, and the stored copy says it came over TLS."""
    with tls_chain(variant, certs, implicit=mode == '--tlsc') as chain:
        r = swaks('--port', str(chain.port), mode)
        out = r.stdout.decode('utf-8', 'replace')
        assert r.returncode == 0, out + r.stderr.decode('utf-8', 'replace')
        assert re.search(r'<~ +250 ok \d+ qp \d+', out) or '<~  250 ok' in out, out
        msg, _ = stored_one(chain)
        assert re.search(TRACE + RECEIVED, msg), msg


@pytest.mark.parametrize('variant', harness.chain_variants())
def test_openssl_s_client_starttls(variant, certs):
    """openssl s_client -starttls smtp: a whole message over STARTTLS."""
    with tls_chain(variant, certs) as chain:
        dialogue = (b'EHLO client.example\nMAIL FROM:<accept@example.com>\n'
                    b'RCPT TO:<one@example.org>\nDATA\nSubject: s_client\n\nbody\n.\nQUIT\n')
        r = subprocess.run(['openssl', 's_client', '-connect', '127.0.0.1:%d' % chain.port,
                            '-starttls', 'smtp', '-servername', SNI, '-crlf', '-quiet',
                            '-ign_eof'], input=dialogue, capture_output=True, timeout=30)
        out = r.stdout.decode('latin-1')
        assert re.search(r'\r\n250 ok \d+ qp \d+\r\n221 standin.example\r\n', out), (out, r.stderr)
        msg, _ = stored_one(chain)
        assert re.search(TRACE + RECEIVED + rb'Subject: s_client\n', msg), msg


def test_in_front_of_a_tls_patched_qmail_smtpd(certs):
    """notqmail's own TLS-patched qmail-smtpd behind the chain: its STARTTLS
    (it has control/servercert.pem) stays removed, ours is offered once, and
    a message goes through over our TLS."""
    path, why_not = notqmail.patched_smtpd('tls')
    if not path:
        pytest.skip('no TLS-patched notqmail: ' + why_not)

    class Patched(harness.Chain):
        def smtpd(self):
            return path

    def chain(kind, prefix):
        c = Patched(kind, 'real', env={'IDCHECK_MODULE': 't_basic'}, prefix=prefix,
                    server_env={'IDCHECK_TLS_CERT': certs['path']('server.pem')})
        c.start()
        shutil.copy(certs['path']('server.pem'), c.path('home', 'control', 'servercert.pem'))
        return c

    bare = chain('bare', [])
    try:
        with SMTP(SNI, bare.port, local_hostname='client.example',
                  timeout=harness.READ_TIMEOUT) as s:
            s.ehlo()
            assert s.has_extn('starttls')      # it does offer its own
    finally:
        bare.stop()
    ours = chain('idcheck', ['build/qmail-idcheck-tls'])
    try:
        with SMTP(SNI, ours.port, local_hostname='client.example',
                  timeout=harness.READ_TIMEOUT) as s:
            code, text = s.ehlo()
            assert text.split(b'\n').count(b'STARTTLS') == 1, text
            s.starttls(context=client_context(certs))
            s.ehlo()
            assert s.sendmail('accept@example.com', ['one@example.org'], MESSAGE) == {}
        msg, _ = stored_one(ours)
        assert re.search(TRACE, msg), msg
    finally:
        ours.stop()


@pytest.mark.parametrize('variant', harness.variants())
def test_relay_client_over_tls_keeps_the_tls_record(variant, certs):
    """A RELAYCLIENT session makes no policy calls, but one that can have TLS
    keeps the queue wrapper: its message over TLS is stored with the TLS
    record and nothing of a policy."""
    with tls_chain(variant, certs, env={'RELAYCLIENT': ''}) as chain:
        with SMTP(SNI, chain.port, local_hostname='client.example',
                  timeout=harness.READ_TIMEOUT) as s:
            s.starttls(context=client_context(certs))
            assert s.sendmail('accept@example.com', ['one@example.org'], MESSAGE) == {}
        msg, _ = stored_one(chain)
        assert re.fullmatch(TRACE + RECEIVED + rb'Subject: over TLS\n\nbody\n', msg), msg
        assert ' mail/tls ' not in chain.log()


@pytest.mark.parametrize('variant', harness.chain_variants())
def test_mail_after_starttls_waits_for_a_new_ehlo(variant, certs):
    """RFC 3207 4.2: the HELO given in clear is forgotten, and prog cannot
    forget it: MAIL after STARTTLS without a new EHLO is 503, so that the
    stored Received line never carries the name given outside TLS."""
    with tls_chain(variant, certs) as chain:
        with SMTP(SNI, chain.port, local_hostname='injected.example',
                  timeout=harness.READ_TIMEOUT) as s:
            s.ehlo()
            s.starttls(context=client_context(certs))
            assert s.mail('accept@example.com') == (
                503, b'5.5.1 EHLO or HELO first: STARTTLS started the session over')
            s.rset()
            s.ehlo('client.example')
            assert s.sendmail('accept@example.com', ['one@example.org'], MESSAGE) == {}
        msg, _ = stored_one(chain)
        assert b'(HELO client.example)' in msg and b'injected' not in msg, msg


@pytest.mark.parametrize('variant', [v for v in harness.chain_variants() if v != 'real'])
def test_auth_in_clear_then_starttls_is_refused(variant, certs):
    """A login made in clear cannot be forgotten by prog (RFC 3207 4.2 wants
    it forgotten): STARTTLS after a successful AUTH is 503, so mail inside
    TLS never runs under credentials someone sent outside it. With
    IDCHECK_TLS_REQUIRED, AUTH before STARTTLS is 538 5.7.11 (RFC 4954) and
    never reaches prog; after it, AUTH works. (AUTH is the stand-in's.)"""
    plain = 'PLAIN ' + base64.b64encode(b'\0u\0p').decode()
    with tls_chain(variant, certs, env={'STANDIN_AUTH': 'u:p'}) as chain:
        with SMTP(SNI, chain.port, local_hostname='client.example',
                  timeout=harness.READ_TIMEOUT) as s:
            s.ehlo()
            assert s.docmd('AUTH', plain)[0] == 235
            assert s.docmd('STARTTLS') == (503, b'5.5.1 STARTTLS not allowed after AUTH')
    with tls_chain(variant, certs, env={'STANDIN_AUTH': 'u:p',
                                        'IDCHECK_TLS_REQUIRED': '1'}) as chain:
        with SMTP(SNI, chain.port, local_hostname='client.example',
                  timeout=harness.READ_TIMEOUT) as s:
            s.ehlo()
            assert s.docmd('AUTH', plain) == (
                538, b'5.7.11 Encryption required for requested authentication mechanism')
            s.starttls(context=client_context(certs))
            s.ehlo()
            assert s.docmd('AUTH', plain)[0] == 235
            assert s.sendmail('accept@example.com', ['one@example.org'], MESSAGE) == {}
        chain.wait_sessions()
        assert len(chain.stored()) == 1
