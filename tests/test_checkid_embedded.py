"""idcheck.dns and the reference policy inside qmail-idcheck-python (plain
and ASan builds), against tinydns (tests/dnsfixture.py). The callee is
driven over its pipes as qmail-idcheck drives it (test_python_callee.Callee).
"""
import ast
import os
import re
import struct

import pytest

from dnsfixture import dns  # noqa: F401  (the session-scoped DNS fixture)
from dnsfixture import PacketServer, record, reply
import dns_cases
import test_python_callee as callee

TOP = callee.TOP
PYTHONPATH = os.path.join(TOP, 'tests', 'policies') + ':' + os.path.join(TOP, 'python')
DKIM_KEY = os.path.join(TOP, 'tests', 'dns', 'dkim-sel1.private')
# the connection's environment for the reference policy: the test rating
# services, the authserv-id from TCPLOCALHOST
ENV = [b'CHECKID_SERVICES=S1=s1.registry.test@1,M2=m2.registry.test@1,H1=h1.registry.test@1',
       b'TCPLOCALHOST=mx.checkid.test',
       b'CHECKID_QMAIL_HOME=' + os.path.join(TOP, 'tests', 'no-qmail-home').encode()]


@pytest.fixture(params=callee.binaries(), ids=lambda p: p.split(os.sep)[-2])
def spawn(request, dns):
    if not os.path.exists(request.param):
        pytest.fail('%s is missing: run make' % request.param)
    started = []

    def start(module='t_dns', server=None, **env):
        c = callee.Callee(request.param, module=module, pythonpath=PYTHONPATH,
                          DNSCACHEIP=server or dns.ip, **env)
        started.append(c)
        return c
    yield start
    for c in started:
        c.kill()


def ask(c, query, h=b'helo.example'):
    """idcheck.dns through t_dns: (reply text, milliseconds). query is
    "NAME TYPE [TIMEOUT]", a str or bytes (any byte in NAME)."""
    if isinstance(query, str):
        query = query.encode('utf-8', 'surrogateescape')
    action, code, xcode, text, headers = c.call(id=query, h=h)
    assert action == b'ACCEPT', (text, c.log())
    return text.decode(), int(headers[0][1])


# ---- idcheck.dns ----

def test_dns_types(spawn):
    c = spawn()
    assert ask(c, 'mail.mx.spf.test A')[0] == "['192.0.2.30']"
    assert ask(c, 'v6.spf.test AAAA')[0] == "['2001:db8::5']"
    assert ask(c, 'mx.spf.test MX')[0] == "[(10, 'mail.mx.spf.test')]"
    assert ask(c, '40.2.0.192.in-addr.arpa PTR')[0] == "['host40.ptr.spf.test']"
    assert ask(c, 'example.com txt')[0] == "[(b'v=spf1 ip4:192.0.2.1 ip4:127.0.0.1 -all',)]"
    assert sorted(ast.literal_eval(ask(c, '5.2.0.192.bl.test A')[0])) == ['127.0.0.2', '127.0.0.4']
    # more than 255 bytes: several character-strings in one record
    long = ask(c, 'long.spf.test TXT')[0]
    assert long.startswith("[(b'v=spf1 ip4:198.51.100.1 ") and "', b'" in long
    assert ask(c, 'nx.spf.test A')[0] == '[]'               # NXDOMAIN
    assert ask(c, 'none.spf.test MX')[0] == '[]'            # no such records
    assert ask(c, 'example.com.', h=b'bytes')[0] == '[]'    # bytes, trailing dot: no A
    assert ask(c, 'mail.mx.spf.test. A', h=b'bytes')[0] == "['192.0.2.30']"
    c.finish()


BAD_NAME = "('ValueError', False, 'idcheck.dns: not a domain name DNS can carry')"


def lookups_wrong(c, table):
    """The lookups of a dns_cases table that idcheck.dns gets wrong."""
    wrong = []
    for name, qtype, records in table:
        got = ask(c, '%s %s' % (name, qtype))[0]
        if got != repr(records):
            wrong.append('%r %s: %s' % (name, qtype, got))
    return '\n'.join(wrong)


@pytest.fixture(params=['tinydns', 'dnscache'])
def resolver(request, dns):
    """tinydns itself, or dnscache in front of it."""
    return dns.ip if request.param == 'tinydns' else dns.cache_ip


def test_dns_names_come_back_as_they_are(spawn, resolver):
    c = spawn(server=resolver)
    wrong = lookups_wrong(c, dns_cases.NAMES_BACK)
    c.finish()
    assert not wrong, wrong


def test_dns_names_with_any_byte_are_looked_up(spawn, resolver):
    c = spawn(server=resolver)
    wrong = lookups_wrong(c, dns_cases.ANY_BYTE)
    for name in dns_cases.REFUSED:
        got = ask(c, name + ' A')[0]
        if got != BAD_NAME:
            wrong += '\n%r A: %s' % (name, got)
    c.finish()
    assert not wrong, wrong


def test_dns_follows_aliases(spawn, dns, resolver):
    """tinydns answers with the CNAME alone: idcheck.dns asks again for the
    target; dnscache with the whole chain: followed within the answer."""
    c = spawn(server=resolver)
    wrong = lookups_wrong(c, dns_cases.ALIASES)
    for name in dns_cases.TOO_MANY_ALIASES[:1 if resolver == dns.cache_ip else 2]:
        got = ask(c, name + ' A')[0]
        if got != "('DNSError', True, 'lookup of %s A: more than 10 aliases')" % name:
            wrong += '\n%r A: %s' % (name, got)
    c.finish()
    assert not wrong, wrong


def test_dns_name_as_bytes(spawn):
    c = spawn()
    assert ask(c, b'\xff\xfe.spf.test A', h=b'bytes')[0] == "['192.0.2.62']"
    assert ask(c, b'back\\slash.spf.test A', h=b'bytes')[0] == "['192.0.2.63']"
    assert ask(c, b'a..spf.test A', h=b'bytes')[0] == BAD_NAME
    c.finish()


def test_dns_ignores_records_of_other_names(spawn, dns):
    """Only the asked name's records, and its aliases' targets', count: an
    address for another name in the answer is not the asked name's."""
    other = b'\x05other\x04test\x00' + struct.pack('>HHIH', 1, 1, 60, 4) + bytes([192, 0, 2, 99])
    with PacketServer(dns, lambda q: reply(q, [record('TXT', b'\x02no'), other])) as srv:
        c = spawn(server=srv.ip)
        assert ask(c, 'example.com A')[0] == '[]'
        c.finish()


def test_dns_malformed_answer_is_dnserror(spawn, dns):
    with PacketServer(dns, lambda q: reply(q, [record('A', b'\xc0\x00\x02\x01', rdlength=300)])) as srv:
        c = spawn(server=srv.ip)
        assert ask(c, 'example.com A')[0] == "('DNSError', True, 'malformed answer')"
        c.finish()


def test_dns_deadline(spawn, dns):
    """A silent server: DNSTimeout after the call's own timeout (libowfat
    alone would retry for about a minute)."""
    c = spawn(server=dns.blackhole_ip)
    text, ms = ask(c, 'example.com TXT 0.3')
    assert text == "('DNSTimeout', True, 'no answer for example.com TXT within 300 ms')"
    assert 280 <= ms < 1500, ms
    # a byte that is not UTF-8 in the name: shown escaped
    assert ask(c, b'\xff.spf.test A 0.1')[0] == \
        "('DNSTimeout', True, 'no answer for \\\\xff.spf.test A within 100 ms')"
    c.finish()
    # the slow forwarder: too late for 0.1 s, in time for 2 s
    c = spawn(server=dns.slow_ip)
    assert ask(c, '3.100.51.198.slow.test A 0.1')[0].startswith("('DNSTimeout', True,")
    assert ask(c, '3.100.51.198.slow.test A 2')[0] == "['127.0.0.2']"
    c.finish()


def test_dns_servfail_is_dnserror(spawn, dns):
    with PacketServer(dns, lambda q: reply(q, rcode=2)) as srv:
        c = spawn(server=srv.ip)
        text, ms = ask(c, 'example.com TXT 3')
        assert text == "('DNSError', True, 'lookup of example.com TXT failed')"
        assert ms < 1000, ms
        c.finish()
        # and the policy maps it to temperror
        c = spawn(module='checkid', server=srv.ip)
        assert c.call(id=b'example.com', env=[b'CHECKID_DNS_TIMEOUT=3'])[:4] == (
            b'TEMPFAIL', b'451', b'4.4.3',
            b"Temporary DNS failure checking 'example.com', try again later")
        c.finish()


def test_dns_releases_the_gil(spawn, dns):
    """Another Python thread runs while idcheck.dns waits."""
    c = spawn(module='t_dns_thread', server=dns.blackhole_ip)
    action, code, xcode, text, headers = c.call(id=b'example.com')
    ticks = int(text)
    assert ticks >= 5, (ticks, c.log())
    c.finish()


# ---- the reference policy, embedded ----

def test_seed_examples_embedded_without_dnspython(spawn):
    c = spawn(module='t_checkid_probe')
    assert c.call(ip=b'192.0.2.1', id=b'example.net', h=None, s=None, env=ENV) == (
        b'REJECT', b'550', b'5.7.1', b"Sending MTA '192.0.2.1' not authorized by 'example.net'",
        [(b'X-Modules:', b'spf')])
    assert c.call(ip=b'192.0.2.1', id=b'example.com', h=None, s=None, env=ENV) == (
        b'ACCEPT', b'250', b'', b'Sender OK',
        [(b'Authent:', b'192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B'),
         (b'X-Modules:', b'spf')])
    c.finish()


def wire_answer(answer):
    """checkID's answer as the callee frames it (bytes)."""
    action, reply, headers = answer
    return (action.encode(), str(reply[0]).encode(), reply[1].encode(), reply[2].encode(),
            [(h['label'].encode(), h['text'].encode()) for h in headers])


def test_spf_names_and_aliases_embedded(spawn, dns, resolver):
    """pyspf -> idcheck.dns -> tinydns (or dnscache in front of it): names
    with any byte and aliases (tests/dns_cases.py)."""
    c = spawn(module='checkid', server=resolver)
    wrong = []
    for ip, identity, result, why in dns_cases.SPF:
        if result == 'temperror' and resolver == dns.cache_ip:
            continue       # dnscache gives up on the loop later than any test should wait
        # the seed's call: IP and ID only (with a MAIL FROM the verdict
        # would wait for the data)
        got = c.call(ip=ip.encode(), id=identity.encode(), s=None, env=ENV)
        want = wire_answer(dns_cases.expected(ip, identity, result))
        if got != want:
            wrong.append('%s %s (%s): %r' % (ip, identity, why, got))
    c.finish()
    assert not wrong, '\n'.join(wrong)


def test_environment_overrides_embedded(spawn):
    """CHECKID_* come from the connection's environment (idcheck.environ)."""
    c = spawn(module='checkid')
    env = [b'CHECKID_PRESCREEN_ZONE=bl.test']
    assert c.call(ip=b'192.0.2.2', id=b'example.com', env=env)[:4] == (
        b'REJECT', b'554', b'5.7.1', b"Sending MTA '192.0.2.2' is listed in bl.test")
    assert c.call(ip=b'192.0.2.10', id=b'pass.spf.test', s=None, env=env)[0] == b'ACCEPT'
    # tagged by rblsmtpd-plus: its hits decide, nothing looked up
    assert c.call(ip=b'192.0.2.1', id=b'pass.spf.test',
                  env=env + [b'RBLSMTPD_HITS=bl.test=127.0.0.2', b'RBLSMTPD_SCORE=1'])[0] == b'REJECT'
    assert c.call(ip=b'192.0.2.2', id=b'pass.spf.test', s=None,
                  env=env + [b'RBLSMTPD_HITS=', b'RBLSMTPD_SCORE=0'])[0] == b'ACCEPT'
    # with a MAIL FROM (a transaction) the ACCEPT waits for the data
    assert c.call(ip=b'192.0.2.2', id=b'pass.spf.test',
                  env=env + [b'RBLSMTPD_HITS=', b'RBLSMTPD_SCORE=0'])[0] == b'CONTINUE'
    assert c.call(ip=b'192.0.2.1', id=b'softfail.spf.test',
                  env=[b'CHECKID_SPF_SOFTFAIL=REJECT'])[:2] == (b'REJECT', b'550')
    c.finish()


def signed_message():
    import dkim
    msg = b'From: a@dkim.test\r\nTo: b@example.org\r\nSubject: signed\r\n\r\nHello.\r\n'
    with open(DKIM_KEY, 'rb') as f:
        sig = dkim.sign(msg, b'sel1', b'dkim.test', f.read(), include_headers=[b'from', b'subject'])
    head, _, body = (sig + msg).partition(b'\r\n\r\n')
    hdrs = []
    for line in head.split(b'\r\n'):
        if line[:1] in (b' ', b'\t'):
            hdrs[-1] += b'\r\n' + line
        else:
            hdrs.append(line)
    return hdrs, body


def test_dkim_at_end_of_data_embedded(spawn):
    from test_checkid import b_tag
    hdrs, body = signed_message()
    b_tag = b_tag(hdrs[0].decode()).encode()
    c = spawn(module='t_checkid_probe')
    got = c.call(7, ip=b'192.0.2.1', id=b'dkim.test', r=[b'b@example.org'], hdrs=hdrs, body=body,
                 bodysize=len(body), env=ENV)
    # no resolver module but the stand-in's (idcheck.dns does the lookups)
    assert got == (b'ACCEPT', b'', b'', b'', [
        (b'Authent:', b'192.0.2.1 dkim.test SPF1 PASS ratings=S1:-,M2:-,H1:-'),
        (b'DKIM-Check:', b'dkim=pass header.d=dkim.test header.s=sel1'),
        (b'Authentication-Results:', b'mx.checkid.test; spf=pass smtp.mailfrom=sender@example.com; '
         b'spf=none smtp.helo=helo.example; dkim=pass header.d=dkim.test header.s=sel1 '
         b'header.b=' + b_tag + b'; dmarc=none header.from=dkim.test'),
        (b'X-Modules:', b'spf,dkim')])
    # Body cut at IDCHECK_BODYMAX: idcheck.bodysize tells
    got = c.call(7, ip=b'192.0.2.1', id=b'dkim.test', r=[b'b@example.org'], hdrs=hdrs,
                 body=body[:3], bodysize=len(body), env=ENV)
    assert got[4][1] == (b'DKIM-Check:', b'dkim=neutral reason="body too large to verify (%d bytes)"'
                         % len(body))
    # a changed body
    got = c.call(7, ip=b'192.0.2.1', id=b'dkim.test', r=[b'b@example.org'], hdrs=hdrs,
                 body=body.replace(b'Hello', b'Hullo'), bodysize=len(body), env=ENV)
    assert got[4][1] == (b'DKIM-Check:', b'dkim=fail header.d=dkim.test header.s=sel1')
    # DMARC at end of data, its DNS through idcheck.dns: a spoofed p=reject From
    got = c.call(7, ip=b'192.0.2.1', id=b'dkim.test', r=[b'b@example.org'],
                 hdrs=[b'From: ceo@news.idcheck-dmarc.co.uk'], body=b'x\r\n', bodysize=3, env=ENV)
    assert got == (b'REJECT', b'550', b'5.7.1',
                   b"Message from 'news.idcheck-dmarc.co.uk' refused by its DMARC policy",
                   [(b'X-Modules:', b'spf,dkim')])
    c.finish()


def test_bad_input_embedded(spawn):
    c = spawn(module='checkid')
    assert c.call(ip=None, id=None, h=None, s=None) == (
        b'CONTINUE', b'250', b'', b'Sender OK', [(b'Authent:', b'- - SPF1 NONE')])
    assert c.call(ip=b'192.0.2.1', id=b'\xff\xfe.example', h=b'\xc3\xa9', s=b'\xff@\xff')[4] == [
        (b'Authent:', b'192.0.2.1 - SPF1 NONE')]
    assert c.call(ip=b'2001:db8::1', id=b'pass.spf.test', env=ENV)[4] == [
        (b'Authent:', b'2001:db8::1 pass.spf.test SPF1 PASS ratings=S1:A,M2:B,H1:A')]
    assert c.call(5, ip=b'192.0.2.1', id=None, h=b'[192.0.2.1]', s=b'a@example.com',
                  r=[b'b@example.org'])[:2] == (b'CONTINUE', b'')
    assert c.call(7, ip=b'192.0.2.1', id=None, h=b'[192.0.2.1]', s=b'\xff@\xff',
                  r=[b'b@example.org'], hdrs=[b'From: \xff@\xfe.example', b'\xff: \xfe'],
                  body=b'x', bodysize=1)[:2] == (b'ACCEPT', b'')
    log = c.finish()
    assert 'Traceback' not in log, log


def test_trace_line(spawn):
    c = spawn(module='checkid')
    c.call(ip=b'192.0.2.1', id=b'example.com', s=None, env=ENV + [b'CHECKID_TRACE=1'])
    c.call(7, ip=b'192.0.2.1', id=b'example.com', r=[b'b@example.org'],
           hdrs=[b'From: a@example.com'], body=b'x', bodysize=1, env=ENV + [b'CHECKID_TRACE=1'])
    log = c.finish()
    assert re.search(r'policy: checkid: trace ACCEPT total=[\d.]+ms import_spf=[\d.]+ms '
                     r'spf=[\d.]+ms ratings=[\d.]+ms', log), log
    # at end of data: the ratings and the identity's SPF are remembered
    assert re.search(r'policy: checkid: trace ACCEPT total=[\d.]+ms (ratings=[\d.]+ms )?dkim=[\d.]+ms '
                     r'([a-z_]+=[\d.]+ms )*dmarc=[\d.]+ms authres=[\d.]+ms rest=', log), log
