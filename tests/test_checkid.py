"""The reference policy (python/checkid) in plain python3, against tinydns
(tests/dnsfixture.py serving tests/dns/data + tests/dns/policy.data): the
seed's doctests, every SPF result, the Registry ratings, the pre-screen,
DKIM, bad input. Outside qmail-idcheck the policy's DNS goes through pydns
to DNSCACHEIP (checkid/dnsio.py); tests/test_checkid_embedded.py runs the
same policy inside qmail-idcheck-python (idcheck.dns).
"""
import doctest
import os
import sys

import pytest

from dnsfixture import dns  # noqa: F401  (the session-scoped DNS fixture)
import dns_cases

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, 'python'))

import checkid                      # noqa: E402
from checkid import checkID         # noqa: E402
from checkid import (authresults, config, dkim_check, dmarc, dnsio, names,  # noqa: E402
                     prescreen, psl, ratings, spf_check)

DKIM_KEY = os.path.join(TOP, 'tests', 'dns', 'dkim-sel1.private')
OK = (250, '', 'Sender OK')
# The rating services of the test DNS data (tests/dns/policy.data); the
# shipped default has none.
TEST_SERVICES = 'S1=s1.registry.test@1,M2=m2.registry.test@1,H1=h1.registry.test@1'
AUTHSERV_ID = 'mx.checkid.test'


@pytest.fixture
def env(dns, monkeypatch):
    """os.environ as the policy sees it outside qmail-idcheck: DNSCACHEIP
    names the fixture, no CHECKID_* or RBLSMTPD_* left over."""
    for k in list(os.environ):
        if k.startswith(('CHECKID_', 'RBLSMTPD')):
            monkeypatch.delenv(k)
    monkeypatch.setenv('DNSCACHEIP', dns.ip)
    monkeypatch.setenv('CHECKID_SERVICES', TEST_SERVICES)
    # the authserv-id: no control/me here (whatever /var/qmail holds), so
    # TCPLOCALHOST, as tcpserver sets it
    monkeypatch.setenv('CHECKID_QMAIL_HOME', os.path.join(TOP, 'tests', 'no-qmail-home'))
    monkeypatch.setenv('TCPLOCALHOST', AUTHSERV_ID)
    checkid._cache.clear()
    yield monkeypatch
    checkid._cache.clear()


def authent(text):
    return [{'text': text, 'label': 'Authent:'}]


def ar(text):
    return {'label': 'Authentication-Results:', 'text': AUTHSERV_ID + '; ' + text}


# ---- the seed's examples, verbatim ----

def test_seed_doctests(env):
    """doctest over every module of the package, the seed's two examples in
    checkID's docstring included. NORMALIZE_WHITESPACE because the seed
    wraps the expected output (the backslash-newlines are string-literal
    continuations in the docstring, so they vanish; the indentation they
    leave and the plain line break are whitespace)."""
    failed = attempted = 0
    seen = []
    for mod in (checkid, config, dnsio, spf_check, ratings, prescreen, dkim_check, names, psl,
                dmarc, authresults):
        r = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False,
                            report=True)
        failed += r.failed
        attempted += r.attempted
        seen.append(mod.__name__)
    assert failed == 0
    assert attempted >= 2
    # and the same two calls, compared exactly
    assert checkID('192.0.2.1', 'example.net') == (
        'REJECT', (550, '5.7.1', "Sending MTA '192.0.2.1' not authorized by 'example.net'"), [])
    assert checkID('192.0.2.1', 'example.com') == (
        'ACCEPT', OK, [{'text': '192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B',
                        'label': 'Authent:'}])
    assert repr(checkID('192.0.2.1', 'example.com')[2]) == (
        "[{'text': '192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B', "
        "'label': 'Authent:'}]")


# ---- SPF: every result ----

@pytest.mark.parametrize('ip,identity,expect', [
    ('192.0.2.1', 'pass.spf.test',
     ('ACCEPT', OK, authent('192.0.2.1 pass.spf.test SPF1 PASS ratings=S1:A,M2:B,H1:A'))),
    ('192.0.2.1', 'fail.spf.test',
     ('REJECT', (550, '5.7.1', "Sending MTA '192.0.2.1' not authorized by 'fail.spf.test'"), [])),
    ('192.0.2.1', 'softfail.spf.test',
     ('FILTER', OK, authent('192.0.2.1 softfail.spf.test SPF1 SOFTFAIL'))),
    ('192.0.2.1', 'neutral.spf.test',
     ('CONTINUE', OK, authent('192.0.2.1 neutral.spf.test SPF1 NEUTRAL'))),
    ('192.0.2.1', 'none.spf.test',
     ('CONTINUE', OK, authent('192.0.2.1 none.spf.test SPF1 NONE'))),
    ('192.0.2.1', 'nx.spf.test',
     ('CONTINUE', OK, authent('192.0.2.1 nx.spf.test SPF1 NONE'))),
    ('192.0.2.1', 'permerror.spf.test',
     ('FILTER', OK, authent('192.0.2.1 permerror.spf.test SPF1 PERMERROR'))),
    ('192.0.2.1', 'twice.spf.test',
     ('FILTER', OK, authent('192.0.2.1 twice.spf.test SPF1 PERMERROR'))),
    ('192.0.2.30', 'mx.spf.test',
     ('ACCEPT', OK, authent('192.0.2.30 mx.spf.test SPF1 PASS ratings=S1:-,M2:-,H1:-'))),
    ('192.0.2.31', 'mx.spf.test',
     ('REJECT', (550, '5.7.1', "Sending MTA '192.0.2.31' not authorized by 'mx.spf.test'"), [])),
    ('192.0.2.40', 'ptr.spf.test',
     ('ACCEPT', OK, authent('192.0.2.40 ptr.spf.test SPF1 PASS ratings=S1:-,M2:-,H1:-'))),
    ('2001:db8::5', 'v6.spf.test',
     ('ACCEPT', OK, authent('2001:db8::5 v6.spf.test SPF1 PASS ratings=S1:-,M2:-,H1:-'))),
    ('2001:db8::6', 'v6.spf.test',
     ('REJECT', (550, '5.7.1', "Sending MTA '2001:db8::6' not authorized by 'v6.spf.test'"), [])),
    ('192.0.2.1', 'long.spf.test',
     ('ACCEPT', OK, authent('192.0.2.1 long.spf.test SPF1 PASS ratings=S1:-,M2:-,H1:-'))),
])
def test_spf_results(env, ip, identity, expect):
    assert checkID(ip, identity) == expect


@pytest.fixture(params=['tinydns', 'dnscache'])
def resolver(request, dns, env):
    """DNSCACHEIP: tinydns itself, or dnscache in front of it."""
    env.setenv('DNSCACHEIP', dns.ip if request.param == 'tinydns' else dns.cache_ip)
    return request.param


# dnscache gives up on the alias loop later than a test should wait
@pytest.mark.parametrize('server,ip,identity,result,why', [
    (server,) + case for server in ('tinydns', 'dnscache') for case in dns_cases.SPF
    if not (server == 'dnscache' and case[2] == 'temperror')])
def test_spf_names_and_aliases(env, dns, server, ip, identity, result, why):
    env.setenv('DNSCACHEIP', dns.ip if server == 'tinydns' else dns.cache_ip)
    assert checkID(ip, identity) == dns_cases.expected(ip, identity, result)


def test_spf_temperror_slow_answer(env, dns):
    """The include's answer comes after the per-lookup deadline: TEMPFAIL."""
    env.setenv('DNSCACHEIP', dns.slow_ip)
    env.setenv('CHECKID_DNS_TIMEOUT', '0.1')
    assert checkID('192.0.2.1', 'temperror.spf.test') == (
        'TEMPFAIL', (451, '4.4.3', "Temporary DNS failure checking 'temperror.spf.test', "
                                   "try again later"), [])
    # not cached: in time, the include is found missing (permerror)
    env.setenv('CHECKID_DNS_TIMEOUT', '2')
    assert checkID('192.0.2.1', 'temperror.spf.test')[0] == 'FILTER'


def test_spf_temperror_silent_server(env, dns):
    env.setenv('DNSCACHEIP', dns.blackhole_ip)
    env.setenv('CHECKID_DNS_TIMEOUT', '0.1')
    assert checkID('192.0.2.1', 'example.com')[0] == 'TEMPFAIL'
    assert spf_check.check('192.0.2.1', 'example.com', 0.1, 1)[0] == 'temperror'


def test_spf_actions_overridden_from_the_environment(env):
    env.setenv('CHECKID_SPF_SOFTFAIL', 'reject')
    env.setenv('CHECKID_SPF_NONE', 'TEMPFAIL')
    env.setenv('CHECKID_SPF_NEUTRAL', 'bogus')          # ignored: the default stands
    assert checkID('192.0.2.1', 'softfail.spf.test') == (
        'REJECT', (550, '5.7.1', "Sending MTA '192.0.2.1' not authorized by 'softfail.spf.test'"), [])
    assert checkID('192.0.2.1', 'none.spf.test') == (
        'TEMPFAIL', (451, '4.7.1', "No sender authentication for 'none.spf.test'"), [])
    assert checkID('192.0.2.1', 'neutral.spf.test')[0] == 'CONTINUE'
    env.setenv('CHECKID_SPF_PASS', 'ACCEPT')            # no ratings looked up
    assert checkID('192.0.2.1', 'example.com') == (
        'ACCEPT', OK, authent('192.0.2.1 example.com SPF1 PASS'))


def test_defer_continues_until_the_data(env):
    env.setenv('CHECKID_DEFER', '1')
    assert checkID('192.0.2.1', 'example.com')[0] == 'CONTINUE'
    assert checkID('192.0.2.1', 'example.com', None, None, [], ['Subject: x'], b'x\r\n')[0] == 'ACCEPT'


def test_defer_auto_holds_back_accept_and_filter_of_a_transaction(env):
    """The default: a call with a MAIL FROM (as qmail-idcheck always makes)
    holds ACCEPT and FILTER back as CONTINUE, with the seed's reply at MAIL;
    the seed's own calls (IP and ID only) still get ACCEPT."""
    assert checkID('192.0.2.1', 'example.com')[0] == 'ACCEPT'
    assert checkID('192.0.2.1', 'example.com', 'mx.example.com', 'a@example.com') == (
        'CONTINUE', OK, authent('192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B'))
    assert checkID('192.0.2.1', 'softfail.spf.test', 'mx.example.com', '')[0] == 'CONTINUE'
    assert checkID('192.0.2.1', 'example.com', 'mx.example.com', 'a@example.com',
                   ['b@example.org'])[:2] == ('CONTINUE', None)
    # refusals are never held back
    assert checkID('192.0.2.1', 'fail.spf.test', 'mx.example.com', 'a@example.com')[0] == 'REJECT'
    # at end of data the verdict held back is given
    assert checkID('192.0.2.1', 'softfail.spf.test', 'mx.example.com', 'a@example.com',
                   ['b@example.org'], ['From: a@example.com'], b'x\r\n')[0] == 'FILTER'


def test_defer_off_accepts_at_mail_with_the_spf_results_so_far(env):
    """CHECKID_DEFER=0: the seed's ACCEPT at MAIL is final; its headers carry
    what is known: Authent, and Authentication-Results with the MAIL FROM
    and HELO identities' SPF."""
    env.setenv('CHECKID_DEFER', '0')
    assert checkID('192.0.2.1', 'example.com', 'pass.spf.test', 'a@example.com') == (
        'ACCEPT', OK, authent('192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B') + [
            ar('spf=pass smtp.mailfrom=a@example.com; spf=pass smtp.helo=pass.spf.test')])
    assert checkID('192.0.2.1', 'softfail.spf.test', 'mx.example.com', '') == (
        'FILTER', OK, authent('192.0.2.1 softfail.spf.test SPF1 SOFTFAIL') + [
            ar('spf=none smtp.mailfrom=postmaster@mx.example.com; spf=none smtp.helo=mx.example.com')])
    # without a MAIL FROM (the seed's calls): the seed's header alone
    assert checkID('192.0.2.1', 'example.com')[2] == \
        authent('192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B')


# ---- the identity ----

def test_identity_is_id_then_helo_then_mail_from(env):
    assert checkID('192.0.2.1', None, 'example.com', 'a@example.net')[2] == \
        authent('192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B')
    assert checkID('192.0.2.1', None, '[192.0.2.1]', 'a@example.com')[2] == \
        authent('192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B')
    assert checkID('192.0.2.1', None, 'localhost', 'a@EXAMPLE.com.')[2] == \
        authent('192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B')
    assert checkID('192.0.2.1', 'example.net', 'example.com', 'a@example.com')[0] == 'REJECT'
    # no identity at all (null sender, address-literal HELO): SPF none
    assert checkID('192.0.2.1', None, '[192.0.2.1]', '') == (
        'CONTINUE', OK, authent('192.0.2.1 - SPF1 NONE'))


# ---- ratings ----

@pytest.mark.parametrize('identity,action,marks', [
    ('good.rate.test', 'ACCEPT', 'S1:A,M2:A,H1:A'),
    ('mixed.rate.test', 'FILTER', 'S1:C,M2:C,H1:C'),
    ('bad.rate.test', 'REJECT', 'S1:D,M2:D,H1:D'),
    ('partial.rate.test', 'ACCEPT', 'S1:B,M2:-,H1:-'),
    ('unrated.rate.test', 'ACCEPT', 'S1:-,M2:-,H1:-'),
    ('odd.rate.test', 'FILTER', 'S1:?,M2:B,H1:D'),       # (7 + 0) / 2 = 3.5
    ('split.rate.test', 'ACCEPT', 'S1:D,M2:A,H1:A'),     # 18 / 3 = 6
])
def test_ratings(env, identity, action, marks):
    got = checkID('192.0.2.1', identity)
    assert got[0] == action
    if action == 'REJECT':
        assert got[1:] == ((550, '5.7.1', "Sender '%s' is not accepted here (ratings=%s)"
                            % (identity, marks)), [])
    else:
        assert got[2] == authent('192.0.2.1 %s SPF1 PASS ratings=%s' % (identity, marks))


def test_ratings_weights_and_thresholds_from_the_environment(env):
    # S1 weighs 4: (0*4 + 9 + 9) / 6 = 3, exactly the FILTER threshold
    env.setenv('CHECKID_SERVICES', 'S1=s1.registry.test@4,M2=m2.registry.test,H1=h1.registry.test@1')
    assert checkID('192.0.2.1', 'split.rate.test')[0] == 'FILTER'
    env.setenv('CHECKID_FILTER_AT', '3.01')
    assert checkID('192.0.2.1', 'split.rate.test')[0] == 'REJECT'
    # weight 0: shown, never counted
    env.setenv('CHECKID_SERVICES', 'S1=s1.registry.test@0,M2=m2.registry.test')
    env.delenv('CHECKID_FILTER_AT')
    assert checkID('192.0.2.1', 'split.rate.test') == (
        'ACCEPT', OK, authent('192.0.2.1 split.rate.test SPF1 PASS ratings=S1:D,M2:A'))
    # unrated: the configured action
    env.setenv('CHECKID_UNRATED', 'FILTER')
    assert checkID('192.0.2.1', 'unrated.rate.test')[0] == 'FILTER'
    # no services at all (the shipped default): nothing looked up, UNRATED
    env.setenv('CHECKID_SERVICES', '')
    assert checkID('192.0.2.1', 'example.com') == (
        'FILTER', OK, authent('192.0.2.1 example.com SPF1 PASS'))
    env.delenv('CHECKID_SERVICES')
    env.delenv('CHECKID_UNRATED')
    assert config.Config({}).services == []
    assert checkID('192.0.2.1', 'example.com') == (
        'ACCEPT', OK, authent('192.0.2.1 example.com SPF1 PASS'))
    env.setenv('CHECKID_ACCEPT_AT', 'x')                 # ignored
    assert config.Config(os.environ).accept_at == config.ACCEPT_AT


def test_ratings_slow_service_is_unknown_not_fatal(env, dns):
    env.setenv('DNSCACHEIP', dns.slow_ip)
    env.setenv('CHECKID_DNS_TIMEOUT', '0.1')
    env.setenv('CHECKID_SERVICES', 'S1=s1.registry.test,H1=h1.slow.test')
    assert checkID('192.0.2.1', 'slow.rate.test') == (
        'ACCEPT', OK, authent('192.0.2.1 slow.rate.test SPF1 PASS ratings=S1:-,H1:?'))


def test_grade_parsing():
    assert ratings.grade_of([]) == '-'
    assert ratings.grade_of([(b'A',)]) == 'A'
    assert ratings.grade_of([(b'b rated today',)]) == 'B'
    assert ratings.grade_of([(b'AB',)]) == '?'
    assert ratings.grade_of([(b'',)]) == '?'
    assert ratings.grade_of([(b'\xff',)]) == '?'
    assert ratings.grade_of([(b'A',), (b'C',), (b'Z',)]) == 'C'
    assert ratings.score([('S1', 'A', 1), ('M2', '-', 1)]) == 9
    assert ratings.score([('S1', '?', 1)]) is None


# ---- the pre-screen ----

@pytest.mark.parametrize('ip,listed', [
    ('192.0.2.2', True),             # 127.0.0.2
    ('192.0.2.4', True),             # 127.0.0.10: inside 127/8
    ('192.0.2.10', False),           # 127.255.255.254: error answer
    ('192.0.2.11', False),           # 127.255.255.255
    ('192.0.2.12', False),           # 127.255.255.252
    ('192.0.2.13', False),           # outside 127/8
    ('192.0.2.14', False),           # TXT only
    ('2001:db8::2', True),           # IPv6, nibbles
    ('::ffff:192.0.2.2', True),      # v4-mapped
    ('192.0.2.1', False),
])
def test_prescreen(env, ip, listed):
    env.setenv('CHECKID_PRESCREEN_ZONE', 'bl.test')
    got = checkID(ip, 'pass.spf.test')
    if listed:
        assert got == ('REJECT', (554, '5.7.1', "Sending MTA '%s' is listed in bl.test" % ip), [])
    else:
        assert got[0] != 'REJECT' or 'listed' not in got[1][2]


def test_prescreen_codes(env):
    env.setenv('CHECKID_PRESCREEN_ZONE', 'bl.test')
    env.setenv('CHECKID_PRESCREEN_CODES', '127.0.0.2-127.0.0.3')
    assert checkID('192.0.2.4', 'pass.spf.test')[0] == 'ACCEPT'        # 127.0.0.10
    assert checkID('192.0.2.2', 'pass.spf.test')[0] == 'REJECT'
    # an explicit set naming the error answers still never counts them
    env.setenv('CHECKID_PRESCREEN_CODES', '127.255.255.0/24')
    assert checkID('192.0.2.10', 'pass.spf.test')[0] == 'ACCEPT'


def test_prescreen_dns_failure_never_blocks(env, dns):
    env.setenv('CHECKID_PRESCREEN_ZONE', 'bl.test')
    env.setenv('CHECKID_DNS_TIMEOUT', '0.1')
    env.setenv('DNSCACHEIP', dns.blackhole_ip)
    cfg = config.Config(os.environ)
    assert prescreen.check('192.0.2.2', cfg, os.environ, 0.1)[0] == 'error'


def test_prescreen_reuses_rblsmtpd_plus_tags(env, dns):
    """rblsmtpd-plus -e ran: RBLSMTPD_HITS is set, nothing is looked up
    (the DNS server here is a black hole: a lookup would time out)."""
    env.setenv('CHECKID_PRESCREEN_ZONE', 'bl.test')
    env.setenv('CHECKID_SPF_PASS', 'ACCEPT')
    env.setenv('RBLSMTPD_HITS', 'bl2.test=127.0.0.2,bl.test=127.0.0.4')
    env.setenv('RBLSMTPD_SCORE', '2')
    cfg = config.Config(os.environ)
    env.setenv('DNSCACHEIP', dns.blackhole_ip)
    assert prescreen.check('192.0.2.1', cfg, os.environ, 5) == ('listed', '127.0.0.4')
    env.setenv('RBLSMTPD_HITS', '')                    # tagged: not listed
    assert prescreen.check('192.0.2.2', cfg, os.environ, 5) == ('tagged', '')
    env.setenv('RBLSMTPD_HITS', 'bl.test=127.255.255.254')
    assert prescreen.check('192.0.2.10', cfg, os.environ, 5) == ('tagged', '')
    env.setenv('RBLSMTPD_HITS', 'bl.test=127.0.0.2')
    env.setenv('RBLSMTPD_ALLOW', 'allow.test=127.0.0.2')
    assert prescreen.check('192.0.2.20', cfg, os.environ, 5)[0] == 'allowed'
    env.delenv('RBLSMTPD_ALLOW')
    env.setenv('DNSCACHEIP', dns.ip)
    assert checkID('192.0.2.1', 'pass.spf.test') == (
        'REJECT', (554, '5.7.1', "Sending MTA '192.0.2.1' is listed in bl.test"), [])


def test_prescreen_query_names():
    assert prescreen.query_name('192.0.2.2', 'bl.test') == '2.2.0.192.bl.test'
    assert prescreen.query_name('2001:db8::2', 'bl.test') == \
        '2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test'
    assert prescreen.query_name('nonsense', 'bl.test') is None


# ---- DKIM ----

def sign(message, selector=b'sel1', domain=b'dkim.test'):
    import dkim
    with open(DKIM_KEY, 'rb') as f:
        key = f.read()
    sig = dkim.sign(message, selector, domain, key, include_headers=[b'from', b'subject', b'to'])
    return sig + message


def split(message):
    """(Hdrs, Body) as qmail-idcheck passes them."""
    head, _, body = message.partition(b'\r\n\r\n')
    fields = []
    for line in head.split(b'\r\n'):
        if line[:1] in (b' ', b'\t') and fields:
            fields[-1] += b'\r\n' + line
        else:
            fields.append(line)
    return [f.decode('utf-8', 'surrogateescape') for f in fields], body


MESSAGE = (b'From: a@dkim.test\r\nTo: b@example.org\r\nSubject: signed\r\n\r\n'
           b'Hello.\r\n\xe9t\xe9 8-bit.\r\n')


def b_tag(field):
    """The first 8 characters of a DKIM-Signature's b= (RFC 6008 header.b),
    as a pvalue: quoted when they hold a tspecial of RFC 2045 (/ or =)."""
    import re
    value = ''.join(field.split(':', 1)[1].split())
    tags = dict(tag.split('=', 1) for tag in value.split(';') if tag)
    b = tags['b'][:8]
    return b if re.fullmatch(r"[A-Za-z0-9+]+", b) else '"%s"' % b


def test_dkim_pass_and_fail(env):
    hdrs, body = split(sign(MESSAGE))
    assert hdrs[0].startswith('DKIM-Signature:') and '\r\n' in hdrs[0]
    got = checkID('192.0.2.1', 'dkim.test', None, 'a@dkim.test', ['b@example.org'], hdrs, body)
    assert got == ('ACCEPT', None, [
        {'text': '192.0.2.1 dkim.test SPF1 PASS ratings=S1:-,M2:-,H1:-', 'label': 'Authent:'},
        {'text': 'dkim=pass header.d=dkim.test header.s=sel1', 'label': 'DKIM-Check:'},
        ar('spf=pass smtp.mailfrom=a@dkim.test; dkim=pass header.d=dkim.test header.s=sel1 '
           'header.b=%s; dmarc=none header.from=dkim.test' % b_tag(hdrs[0]))])
    # the body changed on the way
    got = checkID('192.0.2.1', 'dkim.test', None, 'a@dkim.test', ['b@example.org'],
                  hdrs, body.replace(b'Hello', b'Hullo'))
    assert got[2][1] == {'text': 'dkim=fail header.d=dkim.test header.s=sel1', 'label': 'DKIM-Check:'}
    # a signed header changed
    hdrs2 = [h.replace('Subject: signed', 'Subject: changed') for h in hdrs]
    assert dkim_check.verify(hdrs2, body)[0] == 'fail'


def test_dkim_none_broken_key_no_key_and_too_large(env):
    assert dkim_check.verify(['Subject: x'], b'x\r\n') == ('none', 'dkim=none')
    hdrs, body = split(sign(MESSAGE, selector=b'broken'))
    assert dkim_check.verify(hdrs, body) == ('permerror', 'dkim=permerror header.d=dkim.test header.s=broken')
    hdrs, body = split(sign(MESSAGE, selector=b'missing'))
    assert dkim_check.verify(hdrs, body)[0] == 'permerror'
    hdrs, body = split(sign(MESSAGE))
    result, text = dkim_check.verify(hdrs, body[:5], bodysize=len(body))
    assert result == 'toolarge'
    assert text == 'dkim=neutral reason="body too large to verify (%d bytes)"' % len(body)
    # two signatures: the best result is reported first in order
    twice = sign(sign(MESSAGE), selector=b'broken')
    hdrs, body = split(twice)
    assert dkim_check.verify(hdrs, body) == (
        'pass', 'dkim=permerror header.d=dkim.test header.s=broken; '
                'dkim=pass header.d=dkim.test header.s=sel1')


def test_dkim_dns_timeout_is_temperror(env, dns):
    hdrs, body = split(sign(MESSAGE))
    env.setenv('DNSCACHEIP', dns.blackhole_ip)
    assert dkim_check.verify(hdrs, body, timeout=0.1)[0] == 'temperror'


def test_dkim_off_and_malformed_message(env):
    env.setenv('CHECKID_DKIM', '0')
    got = checkID('192.0.2.1', 'example.com', None, None, ['b@example.org'],
                  ['DKIM-Signature: garbage'], b'x\r\n')
    assert got[2][1:] == [ar('dmarc=permerror reason="no From field"')]
    env.setenv('CHECKID_DKIM', '1')
    got = checkID('192.0.2.1', 'example.com', None, None, ['b@example.org'],
                  ['DKIM-Signature: garbage', 'no colon here', '\udcff: \udcfe'], b'x\r\n')
    assert got[2][1] == {'text': 'dkim=permerror', 'label': 'DKIM-Check:'}
    assert got[2][2] == ar('dkim=permerror; dmarc=permerror reason="no From field"')


# ---- bad input ----

@pytest.mark.parametrize('args', [
    (),
    (None, None, None, None, None, None, None),
    ('192.0.2.1',),
    (None, 'example.com'),
    ('not an ip', 'example.com'),
    ('192.0.2.1', '\udcff\udcfe.example'),               # surrogateescaped bytes
    ('192.0.2.1', 'bücher.example'),                    # IDN
    ('192.0.2.1', 'a' * 70 + '.example'),               # label too long
    ('192.0.2.1', 'exa mple.com'),
    ('192.0.2.1', 'example.com\r\nX-Injected: yes'),
    ('192.0.2.1\x00', 'example.com'),
    ('[192.0.2.1]', None, None, 'x@[192.0.2.1]'),
    ('192.0.2.1', None, '\udcc3\udca9.example', '\udcff@\udcff'),
    ('2001:db8::1', None, None, 'a@pass.spf.test', ['b@example.org']),
    ('fe80::1%eth0', 'pass.spf.test'),
])
def test_bad_input_never_raises(env, args):
    # names outside the fixture's zones get no answer from tinydns at all
    env.setenv('CHECKID_DNS_TIMEOUT', '0.2')
    action, reply, headers = checkID(*args)
    assert action in ('ACCEPT', 'REJECT', 'FILTER', 'CONTINUE', 'TEMPFAIL', 'DISCARD')
    for h in headers:
        assert set(h) == {'label', 'text'}
        assert not any(c in h['text'] for c in '\r\n\0')
        h['text'].encode('ascii')             # printable ASCII only
    if reply is not None:
        reply[2].encode('ascii')
        assert not any(c in reply[2] for c in '\r\n\0')


def test_bad_input_shown_sanitized(env):
    assert checkID('192.0.2.1', 'exa\udcffmple.com', '\udcff') == (
        'CONTINUE', OK, authent('192.0.2.1 - SPF1 NONE'))
    assert checkID('2001:db8::1', 'pass.spf.test') == (
        'ACCEPT', OK, authent('2001:db8::1 pass.spf.test SPF1 PASS ratings=S1:A,M2:B,H1:A'))
    assert checkID('bücher', 'fail.spf.test') == (
        'CONTINUE', OK, authent('b?cher fail.spf.test SPF1 NONE'))


def test_dnsio_fallback_formats(env):
    assert dnsio.EMBEDDED is False
    assert dnsio.lookup('v6.spf.test', 'AAAA') == ['2001:db8::5']
    assert dnsio.lookup('mx.spf.test', 'MX') == [(10, 'mail.mx.spf.test')]
    assert dnsio.lookup('40.2.0.192.in-addr.arpa', 'PTR') == ['host40.ptr.spf.test']
    assert dnsio.lookup('example.com', 'TXT') == [(b'v=spf1 ip4:192.0.2.1 ip4:127.0.0.1 -all',)]
    assert dnsio.lookup('nx.spf.test', 'A') == []
    assert dnsio.lookup('example.com', 'SRV') == []


def test_dnsio_fallback_names_and_aliases(env, resolver):
    """dnsio over pydns as idcheck.dns (tests/dns_cases.py)."""
    wrong = ['%r %s: %r' % (name, qtype, dnsio.lookup(name, qtype))
             for name, qtype, records in dns_cases.NAMES_BACK + dns_cases.ANY_BYTE
             + dns_cases.ALIASES if dnsio.lookup(name, qtype) != records]
    wrong += ['%r: %r' % (name, dnsio.lookup(name, 'A'))
              for name in dns_cases.REFUSED if dnsio.lookup(name, 'A') != []]
    for name in dns_cases.TOO_MANY_ALIASES[:1 if resolver == 'dnscache' else 2]:
        with pytest.raises(dnsio.DNSError, match='more than 10 aliases'):
            dnsio.lookup(name, 'A')
    assert not wrong, '\n'.join(wrong)


def test_plain_python_never_imports_dnspython(env):
    """pyspf and dkimpy would pick dnspython; checkid hides it from them.
    authres, the Public Suffix List reader and DMARC import nothing of it
    either, nor authheaders (which would)."""
    import subprocess
    code = ("import sys; sys.path.insert(0, %r); import checkid; "
            "print(checkid.checkID('192.0.2.1', 'example.com')[0], "
            "checkid.checkID('192.0.2.1', None, 'mx.example.com', 'a@dmarc-relaxed.test', ['b@x'], "
            "['From: a@news.idcheck-dmarc.co.uk'], b'x')[0], "
            "checkid.checkID('192.0.2.1', None, 'mx.example.com', 'b@mail.dmarc-relaxed.test', "
            "['b@x'], ['From: a@dmarc-relaxed.test', 'Authentication-Results: x; none'], b'x')[0], "
            "'dns' in sys.modules, 'authheaders' in sys.modules, 'publicsuffix2' in sys.modules, "
            "'spf' in sys.modules, 'authres' in sys.modules)" % os.path.join(TOP, 'python'))
    r = subprocess.run(['/usr/bin/python3', '-c', code], capture_output=True, text=True,
                       env={'DNSCACHEIP': os.environ['DNSCACHEIP'], 'PATH': '/usr/bin:/bin',
                            'CHECKID_SERVICES': TEST_SERVICES},
                       timeout=30)
    assert r.stdout == 'ACCEPT REJECT ACCEPT False False False True True\n', r.stderr


def test_settings_parsed_once_and_cache_entries_expire(env, monkeypatch):
    a = config.for_environ(os.environ)
    assert config.for_environ(os.environ) is a
    env.setenv('CHECKID_DMARC_REJECT', 'filter')
    b = config.for_environ(os.environ)
    assert b is not a and b.dmarc_actions['reject'] == 'FILTER'
    env.setenv('CHECKID_DMARC_QUARANTINE', 'bogus')
    assert config.for_environ(os.environ).warnings == ["CHECKID_DMARC_QUARANTINE='bogus' ignored"]
    # the per-process cache: kept, then recomputed once older than _CACHE_TTL
    calls = []

    def compute():
        calls.append(1)
        return len(calls)
    assert checkid._cached(('test',), compute) == 1
    assert checkid._cached(('test',), compute) == 1
    monkeypatch.setattr(checkid, '_CACHE_TTL', 0.0)
    assert checkid._cached(('test',), compute) == 2
