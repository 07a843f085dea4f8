"""The reference policy's end of data in plain python3, against tinydns
(tests/dns/dmarc.data): DMARC (RFC 7489), the MAIL FROM and HELO SPF
checks, RFC 8601 Authentication-Results, incoming Authentication-Results
that claim to be ours, the Public Suffix List reader. The same cases run
through the whole chain in tests/test_checkid_chain.py.

The client is 192.0.2.1; the forger sends as a@example.com (SPF passes for
example.com, aligned with no dmarc-*.test From).
"""
import os
import random

import pytest

from dnsfixture import dns  # noqa: F401  (the session-scoped DNS fixture)
from test_checkid import AUTHSERV_ID, TOP, env, sign, split, b_tag  # noqa: F401  (env: fixture)

import checkid                      # noqa: E402  (test_checkid put python/ on sys.path)
from checkid import authresults, config, dkim_check, dmarc, psl  # noqa: E402

DEBIAN_PSL = config.PSL_FILE


def ar(text):
    return {'label': 'Authentication-Results:', 'text': AUTHSERV_ID + '; ' + text}


def data(S, hdrs, body=b'Hello.\r\n', H='mx.example.com', IP='192.0.2.1', ID=None):
    """checkID at end of data."""
    return checkid.checkID(IP, ID, H, S, ['b@example.org'], hdrs, body)


def ar_of(got):
    """The Authentication-Results text of an answer (without the authserv-id)."""
    texts = [h['text'] for h in got[2] if h['label'] == 'Authentication-Results:']
    assert len(texts) == 1, got
    assert texts[0].startswith(AUTHSERV_ID + '; ')
    return texts[0][len(AUTHSERV_ID) + 2:]


SPF_FORGER = 'spf=pass smtp.mailfrom=a@example.com; spf=none smtp.helo=mx.example.com; dkim=none'
REFUSED = (550, '5.7.1', "Message from 'dmarc-reject.test' refused by its DMARC policy")


# ---- DMARC through checkID ----

def test_pass_by_spf_alignment(env):
    got = data('a@dmarc-reject.test', ['From: A <a@dmarc-reject.test>', 'Subject: x'])
    assert got[0] == 'ACCEPT'
    assert ar_of(got) == ('spf=pass smtp.mailfrom=a@dmarc-reject.test; spf=none '
                          'smtp.helo=mx.example.com; dkim=none; '
                          'dmarc=pass (p=reject dis=none) header.from=dmarc-reject.test')


def test_pass_by_dkim_alignment_only(env):
    message = b'From: a@dmarc-reject.test\r\nTo: b@example.org\r\nSubject: signed\r\n\r\nHello.\r\n'
    hdrs, body = split(sign(message, domain=b'dmarc-reject.test'))
    got = data('a@example.com', hdrs, body)
    assert got[0] == 'ACCEPT'
    assert ar_of(got) == ('spf=pass smtp.mailfrom=a@example.com; spf=none smtp.helo=mx.example.com; '
                          'dkim=pass header.d=dmarc-reject.test header.s=sel1 header.b=%s; '
                          'dmarc=pass (p=reject dis=none) header.from=dmarc-reject.test'
                          % b_tag(hdrs[0]))
    # a signature by another domain does not align
    hdrs, body = split(sign(message, domain=b'dkim.test'))
    assert data('a@example.com', hdrs, body) == ('REJECT', REFUSED, [])
    # the body changed: the aligned signature fails, so does DMARC
    hdrs, body = split(sign(message, domain=b'dmarc-reject.test'))
    assert data('a@example.com', hdrs, body + b'PS\r\n') == ('REJECT', REFUSED, [])


def test_reject_quarantine_none(env):
    assert data('a@example.com', ['From: ceo@dmarc-reject.test']) == ('REJECT', REFUSED, [])
    got = data('a@example.com', ['From: ceo@dmarc-quarantine.test'])
    assert got[0] == 'FILTER'
    assert ar_of(got) == SPF_FORGER + ('; dmarc=fail (p=quarantine dis=quarantine) '
                                       'header.from=dmarc-quarantine.test')
    got = data('a@example.com', ['From: ceo@dmarc-none.test'])
    assert got[0] == 'ACCEPT'
    assert ar_of(got) == SPF_FORGER + '; dmarc=fail (p=none dis=none) header.from=dmarc-none.test'


def test_actions_configurable_and_off(env):
    env.setenv('CHECKID_DMARC_REJECT', 'filter')
    env.setenv('CHECKID_DMARC_QUARANTINE', 'REJECT')
    assert data('a@example.com', ['From: ceo@dmarc-reject.test'])[0] == 'FILTER'
    assert data('a@example.com', ['From: ceo@dmarc-quarantine.test']) == (
        'REJECT', (550, '5.7.1', "Message from 'dmarc-quarantine.test' refused by its DMARC "
                                 "policy"), [])
    env.setenv('CHECKID_DMARC_REJECT', 'TEMPFAIL')
    assert data('a@example.com', ['From: ceo@dmarc-reject.test']) == (
        'TEMPFAIL', (451, '4.7.1', "Message from 'dmarc-reject.test' refused by its DMARC "
                                   "policy"), [])
    env.setenv('CHECKID_DMARC_REJECT', 'CONTINUE')        # recorded only
    assert data('a@example.com', ['From: ceo@dmarc-reject.test'])[0] == 'ACCEPT'
    env.setenv('CHECKID_DMARC_REJECT', 'nonsense')        # ignored: the default stands
    assert data('a@example.com', ['From: ceo@dmarc-reject.test'])[0] == 'REJECT'
    env.setenv('CHECKID_DMARC', '0')
    got = data('a@example.com', ['From: ceo@dmarc-reject.test'])
    assert got[0] == 'ACCEPT'
    assert ar_of(got) == SPF_FORGER


def test_dmarc_never_softens_the_verdict(env):
    """A pass does not lift the identity's FILTER (SPF softfail)."""
    got = data('a@dmarc-reject.test', ['From: a@dmarc-reject.test'], ID='softfail.spf.test')
    assert got[0] == 'FILTER'
    assert ar_of(got).endswith('dmarc=pass (p=reject dis=none) header.from=dmarc-reject.test')


def test_subdomain_policy(env):
    """news.dmarc-sp.test has no record: the org domain's sp=reject
    applies; the org domain itself has p=none; own.dmarc-sp.test has its own
    record (p=quarantine), which applies as p even though it is a
    subdomain."""
    assert data('a@example.com', ['From: a@news.dmarc-sp.test']) == (
        'REJECT', (550, '5.7.1', "Message from 'news.dmarc-sp.test' refused by its DMARC policy"),
        [])
    got = data('a@example.com', ['From: a@dmarc-sp.test'])
    assert got[0] == 'ACCEPT'
    assert ar_of(got).endswith('dmarc=fail (p=none dis=none) header.from=dmarc-sp.test')
    got = data('a@example.com', ['From: a@own.dmarc-sp.test'])
    assert got[0] == 'FILTER'
    assert ar_of(got).endswith('dmarc=fail (p=quarantine dis=quarantine) '
                               'header.from=own.dmarc-sp.test')
    # the SPF pass of news.dmarc-sp.test's org domain aligns (relaxed)
    assert data('a@dmarc-sp.test', ['From: a@news.dmarc-sp.test'])[0] == 'ACCEPT'


def test_pct(env, monkeypatch):
    """pct=0: never subject to p=reject, one step down (quarantine). pct=50:
    the draw decides (draw * 100 < pct: applied)."""
    got = data('a@example.com', ['From: a@dmarc-pct.test'])
    assert got[0] == 'FILTER'
    assert ar_of(got).endswith('dmarc=fail (p=reject dis=quarantine) header.from=dmarc-pct.test')
    draws = []

    def draw():
        draws.append(1)
        return value
    monkeypatch.setattr(config, 'RANDOM', draw)
    value = 0.49
    assert data('a@example.com', ['From: a@half.dmarc-pct.test'])[0] == 'REJECT'
    value = 0.5
    got = data('a@example.com', ['From: a@half.dmarc-pct.test'])
    assert got[0] == 'FILTER'
    assert ar_of(got).endswith('dmarc=fail (p=reject dis=quarantine) '
                               'header.from=half.dmarc-pct.test')
    assert len(draws) == 2
    # a pass draws nothing
    assert data('a@dmarc-reject.test', ['From: a@dmarc-reject.test'])[0] == 'ACCEPT'
    assert len(draws) == 2
    # by default the draw is random.random
    monkeypatch.setattr(config, 'RANDOM', None)
    monkeypatch.setattr(random, 'random', lambda: 0.1)
    assert data('a@example.com', ['From: a@half.dmarc-pct.test'])[0] == 'REJECT'
    monkeypatch.setattr(random, 'random', lambda: 0.9)
    assert data('a@example.com', ['From: a@half.dmarc-pct.test'])[0] == 'FILTER'


def test_no_record_and_broken_records(env):
    got = data('a@example.com', ['From: a@dmarc-norecord.test'])
    assert got[0] == 'ACCEPT'
    assert ar_of(got).endswith('dmarc=none header.from=dmarc-norecord.test')
    # two DMARC records: no policy, and no fallback to the org domain's
    got = data('a@example.com', ['From: a@two.dmarc-broken.test'])
    assert got[0] == 'ACCEPT'
    assert ar_of(got).endswith('dmarc=none header.from=two.dmarc-broken.test')
    # no valid p= and no rua=: permerror
    got = data('a@example.com', ['From: a@nop.dmarc-broken.test'])
    assert got[0] == 'ACCEPT'
    assert ar_of(got).endswith('dmarc=permerror reason="malformed DMARC record" '
                               'header.from=nop.dmarc-broken.test')
    # a name without a record falls back to the org domain's (p=reject)
    assert data('a@example.com', ['From: a@sub.dmarc-broken.test'])[0] == 'REJECT'
    # a TXT record at _dmarc that is not DMARC's is left out
    assert ar_of(data('a@example.com', ['From: a@dmarc-none.test'])).endswith(
        'dmarc=fail (p=none dis=none) header.from=dmarc-none.test')


def test_relaxed_and_strict_alignment(env):
    got = data('bounce@mail.dmarc-relaxed.test', ['From: a@dmarc-relaxed.test'])
    assert got[0] == 'ACCEPT'
    assert ar_of(got).endswith('dmarc=pass (p=reject dis=none) header.from=dmarc-relaxed.test')
    assert data('bounce@mail.dmarc-strict.test', ['From: a@dmarc-strict.test']) == (
        'REJECT', (550, '5.7.1', "Message from 'dmarc-strict.test' refused by its DMARC policy"),
        [])
    # DKIM the same way: d=mail.<domain> aligns only when relaxed
    message = b'From: a@dmarc-strict.test\r\nSubject: s\r\n\r\nHello.\r\n'
    hdrs, body = split(sign(message, domain=b'mail.dmarc-strict.test'))
    assert data('a@example.com', hdrs, body)[0] == 'REJECT'
    message = message.replace(b'strict', b'relaxed')
    hdrs, body = split(sign(message, domain=b'mail.dmarc-relaxed.test'))
    assert data('a@example.com', hdrs, body)[0] == 'ACCEPT'


def test_organizational_domain_under_a_multi_label_suffix(env):
    """co.uk is a public suffix: news.idcheck-dmarc.co.uk falls back to
    idcheck-dmarc.co.uk (p=reject), and mail.idcheck-dmarc.co.uk aligns with
    it (relaxed). Taking the last two labels would ask co.uk."""
    assert data('a@example.com', ['From: x@news.idcheck-dmarc.co.uk']) == (
        'REJECT', (550, '5.7.1',
                   "Message from 'news.idcheck-dmarc.co.uk' refused by its DMARC policy"), [])
    got = data('bounce@mail.idcheck-dmarc.co.uk', ['From: x@news.idcheck-dmarc.co.uk'])
    assert got[0] == 'ACCEPT'
    assert ar_of(got).endswith('dmarc=pass (p=reject dis=none) '
                               'header.from=news.idcheck-dmarc.co.uk')


def test_several_from_addresses(env):
    """RFC 7489 6.6.1: each author domain is checked, the strictest failing
    policy applies; two From fields count the same way."""
    two = 'From: a@dmarc-none.test, b@dmarc-reject.test'
    assert data('a@example.com', [two]) == ('REJECT', REFUSED, [])
    assert data('a@example.com', ['From: a@dmarc-none.test', 'From: b@dmarc-reject.test']) == (
        'REJECT', REFUSED, [])
    assert data('a@example.com', ['From: a@dmarc-quarantine.test, b@dmarc-none.test'])[0] == \
        'FILTER'
    got = data('a@dmarc-reject.test', [two])
    assert got[0] == 'ACCEPT'
    assert ar_of(got).endswith('dmarc=fail (p=none dis=none) header.from=dmarc-none.test; '
                               'dmarc=pass (p=reject dis=none) header.from=dmarc-reject.test')
    # a From the strict parser refuses is read as a mail reader may read it
    assert data('a@example.com', ['From: a@dmarc-none.test)<b@dmarc-reject.test>'])[0] == \
        'REJECT'
    # a display name that looks like an address is not an address
    got = data('a@example.com', ['From: "ceo@dmarc-reject.test" <a@dmarc-none.test>'])
    assert got[0] == 'ACCEPT'


def test_authors_that_cannot_be_checked_fail(env):
    """A From the address parser gives up on (comments nested too deep for
    it) or more than 5 author domains: fail, with the reject disposition,
    never a fault or a pass."""
    unchecked = (550, '5.7.1', "The message's author (From) cannot be checked")
    assert data('a@dmarc-none.test', ['From: ' + '(' * 5000 + 'ceo@dmarc-none.test']) == (
        'REJECT', unchecked, [])
    many = ', '.join('a@d%d.dmarc-none.test' % i for i in range(6))
    assert data('a@dmarc-none.test', ['From: ' + many]) == ('REJECT', unchecked, [])
    env.setenv('CHECKID_DMARC_REJECT', 'FILTER')
    got = data('a@dmarc-none.test', ['From: ' + many])
    assert got[0] == 'FILTER'
    assert ar_of(got).endswith('dmarc=fail reason="more than 5 author domains"')
    # five are checked, each by its own policy
    five = ', '.join('a@d%d.dmarc-none.test' % i for i in range(5))
    got = data('a@dmarc-none.test', ['From: ' + five])
    assert ar_of(got).count('dmarc=pass (p=none dis=none)') == 5


@pytest.mark.parametrize('fields,reason', [
    (['Subject: no From'], 'no From field'),
    (['From: undisclosed-recipients:;'], 'From without an address'),
    (['From: a@[192.0.2.9]'], 'From address without a domain'),
    (['From: root'], 'From address without a domain'),
])
def test_from_without_a_domain_is_permerror(env, fields, reason):
    got = data('a@example.com', fields)
    assert got[0] == 'ACCEPT'
    assert ar_of(got) == SPF_FORGER + '; dmarc=permerror reason="%s"' % reason


def test_folded_and_idn_from(env):
    assert data('a@example.com', ['From: "A long\r\n name"\r\n <ceo@dmarc-reject.test>']) == (
        'REJECT', REFUSED, [])
    assert data('a@example.com', ['From: ceo@DMARC-Reject.Test']) == ('REJECT', REFUSED, [])
    got = data('a@example.com', ['From: a@b\u00fccher.dmarc-none.test'])
    assert ar_of(got).endswith('dmarc=fail (p=none dis=none) '
                               'header.from=xn--bcher-kva.dmarc-none.test')


class FakeIdcheck:
    """What qmail-idcheck's built-in module tells the policy at end of data."""

    def __init__(self, hdrscut=0, bodysize=None):
        self.hdrscut = hdrscut
        self.bodysize = bodysize
        self.stage = 'data'
        self.environ = os.environ
        self.lines = []

    def log(self, text):
        self.lines.append(text)


def test_header_fields_not_seen_fail_dmarc(env, monkeypatch):
    """idcheck.hdrscut > 0: a From may be among the fields qmail-idcheck left
    out of Hdrs (its 256 KB cap); DMARC fails, never passes, whatever the
    fields seen say. And an Authentication-Results field claiming our
    results may be among them, which no edit can reach (RFC 8601 section
    5): the message is refused whatever DMARC's settings."""
    fake = FakeIdcheck(hdrscut=1)
    monkeypatch.setattr(checkid.dnsio, 'idcheck', fake)
    assert data('a@dmarc-none.test', ['From: a@dmarc-none.test']) == (
        'REJECT', (550, '5.7.1', "Header section too large to check the message's author"), [])
    assert fake.lines == ['checkid: 1 header field(s) not passed to checkID (Hdrs is capped): '
                          'an Authentication-Results field among them could not be renamed; '
                          'refused']
    assert data('a@example.com', ['Subject: x'])[0] == 'REJECT'
    # DMARC's reject action milder, or DMARC off: still refused
    too_large = ('REJECT', (552, '5.3.4', 'Header section too large to check'), [])
    env.setenv('CHECKID_DMARC_REJECT', 'FILTER')
    fake.hdrscut = 3
    assert data('a@dmarc-none.test', ['From: a@dmarc-none.test']) == too_large
    env.setenv('CHECKID_DMARC', '0')
    assert data('a@example.com', ['Subject: x']) == too_large
    # without the attribute (a qmail-idcheck before it): nothing cut
    del fake.hdrscut
    env.delenv('CHECKID_DMARC')
    assert data('a@dmarc-none.test', ['From: a@dmarc-none.test'])[0] == 'ACCEPT'


def test_body_cut_cannot_pass_by_dkim(env, monkeypatch):
    message = b'From: a@dmarc-reject.test\r\nSubject: signed\r\n\r\n' + b'x' * 100 + b'\r\n'
    hdrs, body = split(sign(message, domain=b'dmarc-reject.test'))
    monkeypatch.setattr(checkid.dnsio, 'idcheck', FakeIdcheck(bodysize=len(body)))
    assert data('a@example.com', hdrs, body)[0] == 'ACCEPT'
    monkeypatch.setattr(checkid.dnsio, 'idcheck', FakeIdcheck(bodysize=len(body)))
    assert data('a@example.com', hdrs, body[:10]) == ('REJECT', REFUSED, [])
    got = data('a@dmarc-reject.test', hdrs, body[:10])
    assert ar_of(got) == ('spf=pass smtp.mailfrom=a@dmarc-reject.test; spf=none '
                          'smtp.helo=mx.example.com; dkim=neutral reason="body too large to '
                          'verify (%d bytes)"; dmarc=pass (p=reject dis=none) '
                          'header.from=dmarc-reject.test' % len(body))


def test_dns_failures(env, dns):
    """The record's lookup fails: temperror, nothing enforced. The aligned
    DKIM key's lookup fails (p=reject, no other aligned pass): the sender is
    told to try again (451), not refused."""
    env.setenv('CHECKID_DNS_TIMEOUT', '0.2')
    slow_record = dns.forwarder('_dmarc.dmarc-reject.test=1000')
    env.setenv('DNSCACHEIP', slow_record)
    got = data('a@example.com', ['From: a@dmarc-reject.test'])
    assert got[0] == 'ACCEPT'
    assert ar_of(got).endswith('dmarc=temperror reason="DMARC record lookup failed" '
                               'header.from=dmarc-reject.test')
    message = b'From: a@dmarc-reject.test\r\nSubject: signed\r\n\r\nHello.\r\n'
    hdrs, body = split(sign(message, domain=b'dmarc-reject.test'))
    slow_key = dns.forwarder('sel1._domainkey.dmarc-reject.test=1000')
    env.setenv('DNSCACHEIP', slow_key)
    assert data('a@example.com', hdrs, body) == (
        'TEMPFAIL', (451, '4.7.1', "Temporary failure checking the DMARC policy of "
                                   "'dmarc-reject.test', try again later"), [])
    # neither is remembered: in time, the record is there, the key too
    env.setenv('DNSCACHEIP', dns.ip)
    assert data('a@example.com', hdrs, body)[0] == 'ACCEPT'


def test_one_dkim_verification_per_message(env, monkeypatch):
    calls = []
    real = dkim_check.check

    def counting(*args, **kw):
        calls.append(1)
        return real(*args, **kw)
    monkeypatch.setattr(dkim_check, 'check', counting)
    message = b'From: a@dmarc-reject.test\r\nSubject: signed\r\n\r\nHello.\r\n'
    hdrs, body = split(sign(message, domain=b'dmarc-reject.test'))
    got = data('a@example.com', hdrs, body)
    assert got[0] == 'ACCEPT'
    assert got[2][1] == {'label': 'DKIM-Check:',
                         'text': 'dkim=pass header.d=dmarc-reject.test header.s=sel1'}
    assert calls == [1]


# ---- the envelope's SPF ----

def test_mail_from_spf_uses_the_real_local_part(env):
    """lp.dmarc-reject.test: v=spf1 exists:%{l}.allowed.dmarc-reject.test -all;
    only bounces@ exists there."""
    got = data('bounces@lp.dmarc-reject.test', ['From: x@lp.dmarc-reject.test'])
    assert got[0] == 'ACCEPT'
    assert ar_of(got).startswith('spf=pass smtp.mailfrom=bounces@lp.dmarc-reject.test; ')
    got = data('other@lp.dmarc-reject.test', ['From: x@lp.dmarc-reject.test'])
    assert got[0] == 'REJECT'
    got = data('other@lp.dmarc-reject.test', ['From: x@dmarc-none.test'])
    assert ar_of(got).startswith('spf=fail smtp.mailfrom=other@lp.dmarc-reject.test; ')


def test_null_sender_is_postmaster_at_helo(env):
    got = data('', ['From: a@dmarc-reject.test'], H='dmarc-reject.test')
    assert ar_of(got) == ('spf=pass smtp.mailfrom=postmaster@dmarc-reject.test; '
                          'spf=pass smtp.helo=dmarc-reject.test; dkim=none; '
                          'dmarc=pass (p=reject dis=none) header.from=dmarc-reject.test')
    # an address-literal HELO: nothing to check for either identity
    got = data('', ['From: a@dmarc-none.test'], H='[192.0.2.1]')
    assert ar_of(got) == 'dkim=none; dmarc=fail (p=none dis=none) header.from=dmarc-none.test'


def test_helo_identity_and_odd_senders(env):
    got = data('a@dmarc-none.test', ['From: a@dmarc-none.test'], H='pass.spf.test')
    assert ar_of(got).startswith('spf=pass smtp.mailfrom=a@dmarc-none.test; '
                                 'spf=pass smtp.helo=pass.spf.test; ')
    got = data('a@dmarc-none.test', ['From: a@dmarc-none.test'], H='fail.spf.test',
               ID='dmarc-none.test')
    assert 'spf=fail smtp.helo=fail.spf.test;' in ar_of(got)
    # a local part that is not a dot-atom: smtp.mailfrom shows the domain
    got = data('"a b"@dmarc-none.test', ['From: a@dmarc-none.test'])
    assert ar_of(got).startswith('spf=pass smtp.mailfrom=dmarc-none.test; ')
    # no domain to check: no smtp.mailfrom result
    got = data('root', ['From: a@dmarc-none.test'])
    assert ar_of(got).startswith('spf=none smtp.helo=mx.example.com; dkim=none; ')
    # 8-bit junk in the local part never faults the call
    got = data('\udcff\udcfe@dmarc-none.test', ['From: a@dmarc-none.test'])
    assert got[0] == 'ACCEPT'


# ---- incoming Authentication-Results ----

@pytest.mark.parametrize('value,claimed', [
    (' mx.checkid.test; spf=pass smtp.mailfrom=a@example.com', 'mx.checkid.test'),
    (' MX.Checkid.Test; none', 'mx.checkid.test'),
    (' (our name) mx.checkid.test (really) 1; dkim=pass header.d=x.example', 'mx.checkid.test'),
    (' (a (nested) comment)\r\n\tmx.checkid.test; none', 'mx.checkid.test'),
    (' "mx.checkid.test"; spf=pass', 'mx.checkid.test'),
    (' mx.checkid.test; spf=pass (' + 'x' * 5000, 'mx.checkid.test'),     # cut, broken
    (' mx.checkid.test; this is not = a result', 'mx.checkid.test'),
    (' other.example; spf=pass smtp.mailfrom=example.com', 'other.example'),
    (' mx.checkid.test.evil.example; none', 'mx.checkid.test.evil.example'),
    (' (unclosed comment mx.checkid.test; none', None),
    ('', None),
    (' @mx.checkid.test; none', None),
    ('(' * 1000 + 'x' + ')' * 1000 + ' mx.checkid.test; none', None),    # too deep for authres
    (' ' + '(a)' * 300 + ' mx.checkid.test; none', None),                # past READ_MAX
])
def test_claimed_authserv_id(value, claimed):
    assert authresults.claimed_id(value) == claimed


def test_incoming_fields_claiming_to_be_ours_are_renamed(env):
    hdrs = ['Received: from x', 'Authentication-Results: other.example; spf=pass',
            'authentication-results : (forged)\r\n MX.CHECKID.TEST; dmarc=pass header.from=x',
            'From: a@dmarc-none.test', 'Authentication-Results: (((']
    got = data('a@dmarc-none.test', hdrs)
    assert len(got) == 4
    assert got[3] == [{'field': 2, 'rename': 'Original-Authentication-Results:'},
                      {'field': 4, 'rename': 'Original-Authentication-Results:'}]
    assert got[0] == 'ACCEPT' and ar_of(got).endswith('header.from=dmarc-none.test')
    # nothing to rename: the seed's 3-tuple
    assert len(data('a@dmarc-none.test', hdrs[:2] + hdrs[3:4])) == 3
    # the authserv-id is the configured one
    env.setenv('CHECKID_AUTHSERV_ID', 'other.example')
    got = data('a@dmarc-none.test', hdrs)
    assert [e['field'] for e in got[3]] == [1, 4]
    assert got[2][-1]['text'].startswith('other.example; spf=pass')


def test_more_forged_fields_than_checkid_may_edit_are_refused(env):
    """Up to 500 fields claiming our results are renamed, one edit each
    (what one checkID answer may ask for); past that none could be left
    unrenamed, and no answer can carry the edits: the message is refused."""
    forged = 'Authentication-Results: mx.checkid.test; dmarc=pass header.from=bank.example'
    got = data('a@dmarc-none.test', ['From: a@dmarc-none.test'] + [forged] * 500)
    assert got[0] == 'ACCEPT' and [e['field'] for e in got[3]] == list(range(1, 501))
    assert data('a@dmarc-none.test', ['From: a@dmarc-none.test'] + [forged] * 501) == (
        'REJECT', (550, '5.7.1', 'Too many Authentication-Results fields claiming to be ours'),
        [])


def test_authserv_id_sources(env, tmp_path):
    home = tmp_path / 'qmail'
    (home / 'control').mkdir(parents=True)
    (home / 'control' / 'me').write_text('MX.Example.Org\nignored\n')
    env.setenv('CHECKID_QMAIL_HOME', str(home))
    cfg = config.Config(os.environ)
    assert authresults.authserv_id(cfg, os.environ) == 'mx.example.org'
    env.setenv('CHECKID_AUTHSERV_ID', 'auth.example.org')
    assert authresults.authserv_id(config.Config(os.environ), os.environ) == 'auth.example.org'
    env.setenv('CHECKID_AUTHSERV_ID', 'not a token;')       # unusable: the next source
    assert authresults.authserv_id(config.Config(os.environ), os.environ) == 'mx.example.org'
    (home / 'control' / 'me').write_text('')
    assert authresults.authserv_id(config.Config(os.environ), os.environ) == AUTHSERV_ID
    env.delenv('TCPLOCALHOST')
    import socket
    assert authresults.authserv_id(config.Config(os.environ), os.environ) == \
        socket.gethostname().lower()


# ---- pieces ----

@pytest.mark.parametrize('name,org', [
    ('example.com', 'example.com'),
    ('a.b.example.com', 'example.com'),
    ('mail.example.co.uk', 'example.co.uk'),
    ('co.uk', 'co.uk'),
    ('a.b.dmarc.test', 'dmarc.test'),                # not on the list: rule "*"
    ('foo.city.kawasaki.jp', 'city.kawasaki.jp'),    # !city.kawasaki.jp
    ('x.y.kawasaki.jp', 'x.y.kawasaki.jp'),          # *.kawasaki.jp
    ('a.b.xn--55qx5d.cn', 'b.xn--55qx5d.cn'),        # an IDN suffix (公司.cn)
    ('www.ck', 'www.ck'),                            # !www.ck
])
def test_public_suffix_list(name, org):
    assert os.path.exists(DEBIAN_PSL), 'apt-get install publicsuffix'
    assert psl.organizational(name, DEBIAN_PSL) == org


def test_public_suffix_list_missing(env, tmp_path):
    missing = str(tmp_path / 'none.dat')
    assert not psl.load(missing)
    assert psl.org_domain('mail.example.co.uk', psl.load(missing)) == 'co.uk'


@pytest.mark.parametrize('text,tags', [
    ('v=DMARC1; p=reject', {'p': 'reject', 'adkim': 'r', 'aspf': 'r', 'pct': 100}),
    ('v=DMARC1;p=quarantine;sp=none;adkim=s;aspf=S;pct=20',
     {'p': 'quarantine', 'sp': 'none', 'adkim': 's', 'aspf': 's', 'pct': 20}),
    ('v = DMARC1 ; p = None ; pct=200', {'p': 'none', 'adkim': 'r', 'aspf': 'r', 'pct': 100}),
    ('v=DMARC1; p=reject; sp=bogus', 'permerror'),
    ('v=DMARC1; sp=reject; rua=mailto:a@example.com', {'p': 'none', 'rua': 'mailto:a@example.com',
                                                       'adkim': 'r', 'aspf': 'r', 'pct': 100}),
    ('v=DMARC1', 'permerror'),
    ('v=dmarc1; p=reject', None),
    ('p=reject; v=DMARC1', None),
    ('v=DMARC10; p=reject', None),
    ('', None),
])
def test_parse_record(text, tags):
    got = dmarc.parse_record(text)
    if isinstance(got, dict):
        got = {k: v for k, v in got.items() if k != 'v'}
    assert got == tags


def test_author_domains():
    assert dmarc.author_domains(['From: A <a@X.example>, b@y.example, c@x.example']) == (
        ['x.example', 'y.example'], None)
    assert dmarc.author_domains(['From: a@x.example', 'from : b@y.example']) == (
        ['x.example', 'y.example'], None)
    assert dmarc.author_domains([b'From: a@x.example']) == (['x.example'], None)
    assert dmarc.author_domains(['From: a@x.example, root']) == (
        ['x.example'], 'From address without a domain')
    assert dmarc.author_domains(['Sender: a@x.example']) == ([], 'no From field')


def test_policy_module_is_light():
    """What a session pays at import: nothing of DMARC, authres or the PSL."""
    import subprocess
    code = ("import sys; sys.path.insert(0, %r); import checkid; "
            "print(sorted(m for m in ('checkid.dmarc', 'checkid.psl', 'checkid.authresults', "
            "'authres', 'email.utils', 'spf', 'dkim') if m in sys.modules))"
            % os.path.join(TOP, 'python'))
    r = subprocess.run(['/usr/bin/python3', '-I', '-S', '-c', code], capture_output=True,
                       text=True, timeout=30)
    assert r.stdout == '[]\n', r.stderr


def test_field_values_are_pvalues():
    """authres quotes what is not an RFC 2045 token (header.b may hold / or
    =); a reason is quoted and its control characters are made '?'."""
    sig = dkim_check.Signature('pass', 'example.com', 'sel1', 'ab/cd=fg')
    v = dmarc.Verdict('permerror', None, None, 'none', 'bad "thing"\x01')
    assert authresults.field('mx.example.org', None, None, [sig], [v]) == (
        'mx.example.org; dkim=pass header.d=example.com header.s=sel1 header.b="ab/cd=fg"; '
        'dmarc=permerror reason="bad \\"thing\\"?"')
    assert authresults.field('mx.example.org') == 'mx.example.org; none'
    assert authresults.mailfrom_value('a.b+c@example.com', 'example.com') == 'a.b+c@example.com'
    assert authresults.mailfrom_value('"a b"@example.com', 'example.com') == 'example.com'
    assert authresults.mailfrom_value('a..b@example.com', 'example.com') == 'example.com'
    assert authresults.mailfrom_value('x' * 64 + '@example.com', 'example.com') == \
        'x' * 64 + '@example.com'
    assert authresults.mailfrom_value('x' * 65 + '@example.com', 'example.com') == 'example.com'
