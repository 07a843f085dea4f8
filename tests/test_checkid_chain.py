"""End to end: tcpserver -> qmail-idcheck -> qmail-smtpd stand-in, with the
reference policy (python/checkid) and tinydns (tests/dnsfixture.py) named by
DNSCACHEIP in the tcprules environment. The client is 127.0.0.1, which
example.com's, dkim.test's and the dmarc-*.test domains' SPF records allow
and example.net's do not. The authserv-id is TCPLOCALHOST, standin.example
(there is no control/me under /var/qmail here; with QMAIL_SMTPD set it is
standin.example too).

DMARC (tests/dns/dmarc.data): each case is a whole session, the stored
message checked field by field (folding undone) and byte for byte below
qmail-smtpd's Received line. The forger sends as a@example.com.
"""
import os
import re

import pytest

import harness
from dnsfixture import dns  # noqa: F401  (the session-scoped DNS fixture)
from test_checkid import TEST_SERVICES, b_tag, sign
from test_checkid_embedded import signed_message

VARIANTS = harness.variants()
PLAIN = VARIANTS[:1]          # policy-only variations: the C paths are the same


def chain(variant, dns, **env):
    e = {'IDCHECK_MODULE': 'checkid', 'DNSCACHEIP': dns.ip, 'CHECKID_SERVICES': TEST_SERVICES,
         'CHECKID_QMAIL_HOME': os.path.join(harness.TESTS, 'no-qmail-home')}
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


def fields(msg):
    """The stored message's header fields, unfolded (the wrapper folds ours),
    and its body."""
    head, _, body = msg.partition(b'\n\n')
    return head.replace(b'\n ', b' ').replace(b'\n\t', b'\t').split(b'\n'), body


RECEIVED = b'Received: from unknown (HELO client.example) (127.0.0.1)  by standin.example with SMTP; '


def check_stored(msg, ours, message):
    """msg is: our fields (top first), qmail-smtpd's Received line, then
    message as the client sent it (CRLF stored as LF)."""
    got, _ = fields(msg)
    assert got[:len(ours)] == ours, msg
    assert got[len(ours)].startswith(RECEIVED), msg
    end = msg.index(b'\n', msg.index(b'\nReceived: ') + 1)
    while msg[end + 1:end + 2] in (b' ', b'\t'):
        end = msg.index(b'\n', end + 1)
    assert msg[end + 1:] == message.replace(b'\r\n', b'\n'), msg


@pytest.mark.parametrize('variant', VARIANTS)
def test_authorized_ip_arrives_with_authent_above_received(variant, dns):
    message = b'Subject: hello\r\n\r\nhello\r\n'
    with chain(variant, dns) as ch:
        c = ch.connect()
        greet(c, id='example.com')
        c.send('MAIL FROM:<a@example.com>')
        c.expect('250 Sender OK')
        send_message(c, message)
        ch.wait_sessions()
        (msg, env), = ch.stored()
        check_stored(msg, [
            b'Authentication-Results: standin.example; spf=pass smtp.mailfrom=a@example.com; '
            b'spf=none smtp.helo=client.example; dkim=none; dmarc=permerror '
            b'reason="no From field"',
            b'DKIM-Check: dkim=none',
            b'Authent: 127.0.0.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B'], message)
        assert env == b'Fa@example.com\0Tone@example.org\0\0'
        # the seed's ACCEPT waited for the data (CONTINUE), the MTA's replies stood
        assert re.search(r'a@example\.com mail CONTINUE 250 Sender OK\n', ch.log())
        assert re.search(r'a@example\.com data ACCEPT\n', ch.log()), ch.log()


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
    """CONTINUE until the data, where DKIM is verified and its header goes
    above Authent, Authentication-Results above both."""
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
        check_stored(msg, [
            b'Authentication-Results: standin.example; spf=pass smtp.mailfrom=a@dkim.test; '
            b'spf=none smtp.helo=client.example; dkim=pass header.d=dkim.test header.s=sel1 '
            b'header.b=' + b_tag(hdrs[0].decode()).encode() + b'; dmarc=none header.from=dkim.test',
            b'DKIM-Check: dkim=pass header.d=dkim.test header.s=sel1',
            b'Authent: 127.0.0.1 dkim.test SPF1 PASS ratings=S1:-,M2:-,H1:-'], message)


@pytest.mark.parametrize('variant', VARIANTS)
def test_defer_off_accepts_at_mail(variant, dns):
    """CHECKID_DEFER=0: the seed's ACCEPT at MAIL is final; no DKIM or DMARC,
    Authentication-Results with the envelope's SPF only."""
    message = b'From: ceo@dmarc-reject.test\r\nSubject: x\r\n\r\nhello\r\n'
    with chain(variant, dns, CHECKID_DEFER='0') as ch:
        c = ch.connect()
        greet(c, id='example.com')
        c.send('MAIL FROM:<a@example.com>')
        c.expect('250 Sender OK')
        send_message(c, message)
        ch.wait_sessions()
        (msg, env), = ch.stored()
        check_stored(msg, [
            b'Authentication-Results: standin.example; spf=pass smtp.mailfrom=a@example.com; '
            b'spf=none smtp.helo=client.example',
            b'Authent: 127.0.0.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B'], message)


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


# ---- DMARC (RFC 7489) at end of data ----

REFUSED = "550 5.7.1 Message from '%s' refused by its DMARC policy"


def session(ch, mail_from, message, final='250 ok {*}', helo='client.example', id=None):
    """One message; final is the reply expected at end of data."""
    c = ch.connect()
    greet(c, helo=helo, id=id)
    c.send('MAIL FROM:<%s>' % mail_from)
    c.expect('250 Sender OK')
    c.send('RCPT TO:<one@example.org>')
    c.expect('250 ok')
    c.send('DATA')
    c.expect('354 go ahead')
    c.sendraw(message + b'.\r\n')
    c.expect(final)
    c.send('QUIT')
    c.expect('221 standin.example')


def ar_field(*parts):
    return b'Authentication-Results: standin.example; ' + b'; '.join(parts)


SPF_FORGER = (b'spf=pass smtp.mailfrom=a@example.com', b'spf=none smtp.helo=client.example')
AUTHENT_FORGER = b'Authent: 127.0.0.1 client.example SPF1 NONE'


def msg_from(author, subject=b'dmarc'):
    return b'From: ' + author + b'\r\nTo: one@example.org\r\nSubject: ' + subject + \
        b'\r\n\r\nHello.\r\n'


@pytest.mark.parametrize('variant', VARIANTS)
def test_dmarc_pass_by_spf_alignment(variant, dns):
    message = msg_from(b'A <a@dmarc-reject.test>')
    with chain(variant, dns) as ch:
        session(ch, 'bounce@dmarc-reject.test', message)
        ch.wait_sessions()
        (msg, env), = ch.stored()
        check_stored(msg, [
            ar_field(b'spf=pass smtp.mailfrom=bounce@dmarc-reject.test',
                     b'spf=none smtp.helo=client.example', b'dkim=none',
                     b'dmarc=pass (p=reject dis=none) header.from=dmarc-reject.test'),
            b'DKIM-Check: dkim=none', AUTHENT_FORGER], message)
        assert env == b'Fbounce@dmarc-reject.test\0Tone@example.org\0\0'


@pytest.mark.parametrize('variant', VARIANTS)
def test_dmarc_pass_by_dkim_alignment_only(variant, dns):
    """Signed now with the key published for dmarc-reject.test; the MAIL
    FROM (example.com) passes SPF but does not align."""
    message = sign(msg_from(b'a@dmarc-reject.test'), domain=b'dmarc-reject.test')
    sig = message[:message.index(b'\r\nFrom: ')].decode()
    with chain(variant, dns) as ch:
        session(ch, 'a@example.com', message)
        ch.wait_sessions()
        (msg, env), = ch.stored()
        check_stored(msg, [
            ar_field(*SPF_FORGER, b'dkim=pass header.d=dmarc-reject.test header.s=sel1 '
                     b'header.b=' + b_tag(sig).encode(),
                     b'dmarc=pass (p=reject dis=none) header.from=dmarc-reject.test'),
            b'DKIM-Check: dkim=pass header.d=dmarc-reject.test header.s=sel1',
            AUTHENT_FORGER], message)


@pytest.mark.parametrize('variant', VARIANTS)
def test_dmarc_reject_at_end_of_data(variant, dns):
    """A spoofed From of a p=reject domain: 550 at end of data, nothing
    stored; the next message of the session is not affected."""
    with chain(variant, dns) as ch:
        c = ch.connect()
        greet(c)
        c.send('MAIL FROM:<a@example.com>')
        c.expect('250 Sender OK')
        c.send('RCPT TO:<one@example.org>')
        c.expect('250 ok')
        c.send('DATA')
        c.expect('354 go ahead')
        c.sendraw(msg_from(b'"The CEO" <ceo@dmarc-reject.test>') + b'.\r\n')
        c.expect(REFUSED % 'dmarc-reject.test')
        message = msg_from(b'a@dmarc-reject.test', b'second')
        c.send('MAIL FROM:<a@dmarc-reject.test>')
        c.expect('250 Sender OK')
        send_message(c, message)
        ch.wait_sessions()
        (msg, env), = ch.stored()
        assert b'\nSubject: second\n' in msg
        assert re.search(r"a@example\.com data REJECT 550 5\.7\.1 Message from "
                         r"'dmarc-reject\.test' refused by its DMARC policy", ch.log())


@pytest.mark.parametrize('variant', PLAIN)
def test_dmarc_quarantine_is_filter(variant, dns):
    message = msg_from(b'ceo@dmarc-quarantine.test')
    with chain(variant, dns, IDCHECK_FILTER=os.path.join(harness.TESTS, 'filters',
                                                         'add-header')) as ch:
        session(ch, 'a@example.com', message)
        ch.wait_sessions()
        (msg, env), = ch.stored()
        check_stored(msg, [
            b'X-Filtered: yes',
            ar_field(*SPF_FORGER, b'dkim=none', b'dmarc=fail (p=quarantine dis=quarantine) '
                     b'header.from=dmarc-quarantine.test'),
            b'DKIM-Check: dkim=none', AUTHENT_FORGER], message)


@pytest.mark.parametrize('variant', PLAIN)
def test_dmarc_none_is_recorded_only(variant, dns):
    message = msg_from(b'ceo@dmarc-none.test')
    with chain(variant, dns, IDCHECK_FILTER=os.path.join(harness.TESTS, 'filters',
                                                         'add-header')) as ch:
        session(ch, 'a@example.com', message)
        ch.wait_sessions()
        (msg, env), = ch.stored()
        check_stored(msg, [
            ar_field(*SPF_FORGER, b'dkim=none',
                     b'dmarc=fail (p=none dis=none) header.from=dmarc-none.test'),
            b'DKIM-Check: dkim=none', AUTHENT_FORGER], message)


@pytest.mark.parametrize('variant', PLAIN)
def test_dmarc_subdomain_policy(variant, dns):
    """news.dmarc-sp.test has no record: the org domain's sp=reject applies;
    the org domain's own mail gets its p=none."""
    org = msg_from(b'a@dmarc-sp.test')
    with chain(variant, dns) as ch:
        session(ch, 'a@example.com', msg_from(b'a@news.dmarc-sp.test'),
                final=REFUSED % 'news.dmarc-sp.test')
        session(ch, 'a@example.com', org)
        ch.wait_sessions()
        (msg, env), = ch.stored()
        check_stored(msg, [
            ar_field(*SPF_FORGER, b'dkim=none',
                     b'dmarc=fail (p=none dis=none) header.from=dmarc-sp.test'),
            b'DKIM-Check: dkim=none', AUTHENT_FORGER], org)


@pytest.mark.parametrize('variant', PLAIN)
def test_dmarc_pct(variant, dns):
    """p=reject; pct=0: no failing message is subject to reject; each gets
    the next policy down, quarantine (FILTER)."""
    message = msg_from(b'a@dmarc-pct.test')
    with chain(variant, dns, IDCHECK_FILTER=os.path.join(harness.TESTS, 'filters',
                                                         'add-header')) as ch:
        session(ch, 'a@example.com', message)
        ch.wait_sessions()
        (msg, env), = ch.stored()
        check_stored(msg, [
            b'X-Filtered: yes',
            ar_field(*SPF_FORGER, b'dkim=none',
                     b'dmarc=fail (p=reject dis=quarantine) header.from=dmarc-pct.test'),
            b'DKIM-Check: dkim=none', AUTHENT_FORGER], message)


@pytest.mark.parametrize('variant', PLAIN)
def test_dmarc_no_record(variant, dns):
    message = msg_from(b'a@dmarc-norecord.test')
    with chain(variant, dns) as ch:
        session(ch, 'a@example.com', message)
        ch.wait_sessions()
        (msg, env), = ch.stored()
        check_stored(msg, [
            ar_field(*SPF_FORGER, b'dkim=none', b'dmarc=none header.from=dmarc-norecord.test'),
            b'DKIM-Check: dkim=none', AUTHENT_FORGER], message)


@pytest.mark.parametrize('variant', PLAIN)
def test_dmarc_relaxed_and_strict_alignment(variant, dns):
    """Bounces from mail.<domain> (SPF pass), From <domain>: aligned when
    relaxed (the default), not when aspf=s."""
    relaxed = msg_from(b'a@dmarc-relaxed.test')
    with chain(variant, dns) as ch:
        session(ch, 'bounce@mail.dmarc-relaxed.test', relaxed)
        session(ch, 'bounce@mail.dmarc-strict.test', msg_from(b'a@dmarc-strict.test'),
                final=REFUSED % 'dmarc-strict.test')
        ch.wait_sessions()
        (msg, env), = ch.stored()
        check_stored(msg, [
            ar_field(b'spf=pass smtp.mailfrom=bounce@mail.dmarc-relaxed.test',
                     b'spf=none smtp.helo=client.example', b'dkim=none',
                     b'dmarc=pass (p=reject dis=none) header.from=dmarc-relaxed.test'),
            b'DKIM-Check: dkim=none', AUTHENT_FORGER], relaxed)


@pytest.mark.parametrize('variant', PLAIN)
def test_dmarc_org_domain_under_a_multi_label_suffix(variant, dns):
    """co.uk is on the Public Suffix List: news.idcheck-dmarc.co.uk's org
    domain is idcheck-dmarc.co.uk (p=reject), not co.uk."""
    aligned = msg_from(b'x@news.idcheck-dmarc.co.uk')
    with chain(variant, dns) as ch:
        session(ch, 'a@example.com', aligned, final=REFUSED % 'news.idcheck-dmarc.co.uk')
        session(ch, 'bounce@mail.idcheck-dmarc.co.uk', aligned)
        ch.wait_sessions()
        (msg, env), = ch.stored()
        check_stored(msg, [
            ar_field(b'spf=pass smtp.mailfrom=bounce@mail.idcheck-dmarc.co.uk',
                     b'spf=none smtp.helo=client.example', b'dkim=none',
                     b'dmarc=pass (p=reject dis=none) header.from=news.idcheck-dmarc.co.uk'),
            b'DKIM-Check: dkim=none', AUTHENT_FORGER], aligned)


@pytest.mark.parametrize('variant', PLAIN)
def test_dmarc_several_from_addresses(variant, dns):
    """Every author domain is checked, the strictest failing policy wins:
    one From field with two addresses, or two From fields."""
    two = msg_from(b'a@dmarc-none.test, b@dmarc-reject.test')
    with chain(variant, dns) as ch:
        session(ch, 'a@example.com', two, final=REFUSED % 'dmarc-reject.test')
        session(ch, 'a@example.com',
                b'From: a@dmarc-none.test\r\nFrom: b@dmarc-reject.test\r\n\r\nx\r\n',
                final=REFUSED % 'dmarc-reject.test')
        session(ch, 'a@dmarc-reject.test', two)
        ch.wait_sessions()
        (msg, env), = ch.stored()
        check_stored(msg, [
            ar_field(b'spf=pass smtp.mailfrom=a@dmarc-reject.test',
                     b'spf=none smtp.helo=client.example', b'dkim=none',
                     b'dmarc=fail (p=none dis=none) header.from=dmarc-none.test',
                     b'dmarc=pass (p=reject dis=none) header.from=dmarc-reject.test'),
            b'DKIM-Check: dkim=none', AUTHENT_FORGER], two)


@pytest.mark.parametrize('variant', VARIANTS)
def test_forged_authentication_results_is_renamed(variant, dns):
    """RFC 8601 section 5: an incoming field with our authserv-id (any case,
    a comment before it) is stored as Original-Authentication-Results, in
    its place; another host's field is left alone."""
    message = (b'Authentication-Results: other.example; spf=pass smtp.mailfrom=x@example.org\r\n'
               b'Authentication-Results: (forged)\r\n STANDIN.EXAMPLE; dmarc=pass\r\n'
               b'  header.from=dmarc-reject.test\r\n') + msg_from(b'a@dmarc-none.test')
    with chain(variant, dns) as ch:
        session(ch, 'a@example.com', message)
        ch.wait_sessions()
        (msg, env), = ch.stored()
        check_stored(msg, [
            ar_field(*SPF_FORGER, b'dkim=none',
                     b'dmarc=fail (p=none dis=none) header.from=dmarc-none.test'),
            b'DKIM-Check: dkim=none', AUTHENT_FORGER],
            message.replace(b'\r\nAuthentication-Results: (forged)',
                            b'\r\nOriginal-Authentication-Results: (forged)'))


@pytest.mark.parametrize('variant', PLAIN)
def test_from_hidden_past_the_hdrs_cap_is_a_dmarc_failure(variant, dns):
    """A From folded past Hdrs' 256 KB cap is left out of Hdrs; idcheck.hdrscut
    tells the policy, and DMARC fails (the reject disposition), never
    passes."""
    name = b'\r\n '.join([b'x' * 70] * 4500)           # about 324 KB folded
    message = b'From: "' + name + b'" <ceo@dmarc-reject.test>\r\nSubject: big\r\n\r\nx\r\n'
    with chain(variant, dns) as ch:
        session(ch, 'a@example.com', message,
                final="550 5.7.1 Header section too large to check the message's author")
        ch.wait_sessions()
        assert ch.stored() == []
