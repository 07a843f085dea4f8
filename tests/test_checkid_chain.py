"""End to end: tcpserver -> qmail-idcheck -> qmail-smtpd stand-in, with the
reference policy (python/checkid) and tinydns (tests/dnsfixture.py) named by
DNSCACHEIP in the tcprules environment. The client is 127.0.0.1, which
example.com's and dkim.test's SPF records allow and example.net's do not.
"""
import re

import pytest

import harness
from dnsfixture import dns  # noqa: F401  (the session-scoped DNS fixture)
from test_checkid_embedded import signed_message

VARIANTS = harness.variants()


def chain(variant, dns, **env):
    e = {'IDCHECK_MODULE': 'checkid', 'DNSCACHEIP': dns.ip}
    e.update(env)
    return harness.Chain('idcheck', variant, env=e)


def greet(c, helo='client.example', id=None):
    c.expect('220 standin.example ESMTP')
    c.send('EHLO %s' % helo)
    while c.read_line().startswith(b'250-'):
        pass
    if id:
        c.send('ID %s' % id)
        c.expect('250 2.1.0 ID %s accepted' % id)


def send_message(c, message):
    c.send('RCPT TO:<one@example.org>')
    c.expect('250 ok')
    c.send('DATA')
    c.expect('354 go ahead')
    c.sendraw(message + b'.\r\n')
    final = c.expect('250 ok {*}')
    c.send('QUIT')
    c.expect('221 standin.example')
    return final


@pytest.mark.parametrize('variant', VARIANTS)
def test_authorized_ip_arrives_with_authent_above_received(variant, dns):
    with chain(variant, dns) as ch:
        c = ch.connect()
        greet(c, id='example.com')
        c.send('MAIL FROM:<a@example.com>')
        c.expect('250 Sender OK')
        send_message(c, b'Subject: hello\r\n\r\nhello\r\n')
        ch.wait_sessions()
        (msg, env), = ch.stored()
        assert msg.startswith(b'Authent: 127.0.0.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B\n'
                              b'Received: from unknown (HELO client.example) (127.0.0.1)\n'), msg
        assert env == b'Fa@example.com\0Tone@example.org\0\0'


@pytest.mark.parametrize('variant', VARIANTS)
def test_unauthorized_ip_is_refused_at_mail(variant, dns):
    with chain(variant, dns) as ch:
        c = ch.connect()
        greet(c, id='example.net')
        c.send('MAIL FROM:<a@example.net>')
        c.expect("550 5.7.1 Sending MTA '127.0.0.1' not authorized by 'example.net'")
        # the HELO name is the identity when no ID is declared
        c.send('QUIT')
        c.expect('221 standin.example')
        c = ch.connect()
        greet(c, helo='fail.spf.test')
        c.send('MAIL FROM:<a@example.com>')
        c.expect("550 5.7.1 Sending MTA '127.0.0.1' not authorized by 'fail.spf.test'")
        c.send('QUIT')
        c.expect('221 standin.example')
        ch.wait_sessions()
        assert ch.stored() == []
        assert re.search(r"qmail-idcheck: pid \d+ 127\.0\.0\.1 example\.net client\.example "
                         r"a@example\.net mail REJECT 550 5\.7\.1 Sending MTA", ch.log())


@pytest.mark.parametrize('variant', VARIANTS)
def test_dkim_checked_at_end_of_data(variant, dns):
    """CHECKID_DEFER=1: CONTINUE until the data, where DKIM is verified and
    its header goes above Authent."""
    hdrs, body = signed_message()
    message = b''.join(h + b'\r\n' for h in hdrs) + b'\r\n' + body
    with chain(variant, dns, CHECKID_DEFER='1') as ch:
        c = ch.connect()
        greet(c, id='dkim.test')
        c.send('MAIL FROM:<a@dkim.test>')
        c.expect('250 Sender OK')
        send_message(c, message)
        ch.wait_sessions()
        (msg, env), = ch.stored()
        assert msg.startswith(b'DKIM-Check: dkim=pass header.d=dkim.test header.s=sel1\n'
                              b'Authent: 127.0.0.1 dkim.test SPF1 PASS ratings=S1:-,M2:-,H1:-\n'
                              b'Received: '), msg


@pytest.mark.parametrize('variant', VARIANTS)
def test_prescreen_in_the_chain(variant, dns):
    """127.0.0.2 is the RFC 5782 test entry of bl.test; tcpserver's client is
    127.0.0.1, never listed: the pre-screen passes it."""
    with chain(variant, dns, CHECKID_PRESCREEN_ZONE='bl.test') as ch:
        c = ch.connect()
        greet(c, id='example.com')
        c.send('MAIL FROM:<a@example.com>')
        c.expect('250 Sender OK')
        c.send('QUIT')
        c.expect('221 standin.example')
        ch.wait_sessions()
