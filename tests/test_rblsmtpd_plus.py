"""rblsmtpd-plus against tinydns (tests/dnsfixture.py, tests/dns/data).

Each case runs build/rblsmtpd-plus, and build-asan/rblsmtpd-plus when it
exists (unless IDCHECK_NO_ASAN is set), with TCPREMOTEIP and DNSCACHEIP in
the environment and the client on pipes. Debian's /usr/bin/rblsmtpd is the
reference for the blocking dialogue. Under the real tcpserver, in front of
qmail-idcheck: tests/dialogues/rbl-*.dlg.

Run: make build/rblsmtpd-plus && /usr/bin/python3 -m pytest -q tests/test_rblsmtpd_plus.py
"""
import os
import re
import select
import subprocess
import time

import pytest

import harness

from dnsfixture import dns  # noqa: F401  (the session-scoped DNS fixture)
from dnsfixture import PacketServer, question_type, record, reply

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RBLSMTPD = '/usr/bin/rblsmtpd'

# prog for the pass cases: says it ran, then the RBLSMTPD_* variables it got
PRINTENV = ['/bin/sh', '-c',
            'echo PROG RAN; env | grep "^RBLSMTPD_" | LC_ALL=C sort; exit 0']

GREET = b'220 rblsmtpd.local\r\n'
OK = b'250 rblsmtpd.local\r\n'
BYE = b'221 rblsmtpd.local\r\n'
TEXT_2 = b'192.0.2.2 is listed in bl.test, see https://bl.test/q?192.0.2.2'
PID = re.compile(rb' pid \d+: ')


def binaries():
    return harness.variant_binaries('rblsmtpd-plus')


@pytest.fixture(params=binaries(), ids=lambda p: p.split(os.sep)[-2])
def plus(request):
    if not os.path.exists(request.param):
        pytest.fail('%s is missing: run make' % request.param)
    return request.param


class Run:
    def __init__(self, rc, out, err, elapsed):
        self.rc, self.out, self.err, self.elapsed = rc, out, err, elapsed

    def env_of_prog(self):
        """RBLSMTPD_* as prog printed them (PRINTENV), or None if it did not run."""
        lines = self.out.split(b'\n')
        if lines[0] != b'PROG RAN':
            return None
        return dict(l.decode().split('=', 1) for l in lines[1:] if l)


def make_env(ip, dnsip, extra=None):
    env = {'PATH': '/usr/bin:/bin', 'DNSCACHEIP': dnsip, **harness.SANITIZER_ENV}
    if ip is not None:
        env['TCPREMOTEIP'] = ip
    env.update(extra or {})
    return env


def run(binary, args, ip, dns, stdin=b'', server=None, env=None, prog=PRINTENV, timeout=15):
    start = time.monotonic()
    p = subprocess.run([binary] + args + prog, input=stdin, capture_output=True,
                       env=make_env(ip, server or dns.ip, env), timeout=timeout)
    r = Run(p.returncode, p.stdout, p.stderr, time.monotonic() - start)
    harness.no_sanitizer_report(r.err)
    return r


def block_line(ip, code_text):
    return re.compile(rb'^rblsmtpd: ' + re.escape(ip.encode()) + rb' pid \d+: '
                      + re.escape(code_text) + rb'\n$')


def plus_line(ip, rest):
    return re.compile(rb'^rblsmtpd-plus: ' + re.escape(ip.encode()) + rb' pid \d+: '
                      + rest + rb'\n$')


DIALOGUE = b'HELO client.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nQUIT\r\n'


def blocked_reply(text, code=b'451'):
    msg = code + b' ' + text + b'\r\n'
    return GREET + OK + OK + msg + msg + BYE


# ------------------------------------------------------------ the fixture

def test_fixture_serves_the_zone_data(dns):
    r = dns.query('2.2.0.192.bl.test', 'A')
    assert r['answers'] == [('2.2.0.192.bl.test', 1, '127.0.0.2')]
    r = dns.query('2.2.0.192.bl.test', 'TXT')
    assert r['answers'][0][2] == TEXT_2
    assert dns.query('1.2.0.192.bl.test', 'A')['rcode'] == 3   # NXDOMAIN
    assert dns.query('2.2.0.192.bl.test', 'A', server=dns.blackhole_ip, timeout=0.3) is None
    t = time.monotonic()
    assert dns.query('3.100.51.198.slow.test', 'A', server=dns.slow_ip)['answers']
    assert time.monotonic() - t >= dns.slow_ms / 1000.0 * 0.9


# ------------------------------------------------------------ listed or not

def test_not_listed_runs_prog(plus, dns):
    r = run(plus, ['-r', 'bl.test'], '192.0.2.1', dns, stdin=DIALOGUE)
    assert r.rc == 0
    assert r.out == (b'PROG RAN\nRBLSMTPD_ALLOW=\nRBLSMTPD_ERRORS=\n'
                     b'RBLSMTPD_HITS=\nRBLSMTPD_SCORE=0\n')
    assert plus_line('192.0.2.1', rb'pass score=0/1 ms=\d+').match(r.err), r.err


def test_listed_is_blocked(plus, dns):
    r = run(plus, ['-r', 'bl.test'], '192.0.2.2', dns, stdin=DIALOGUE)
    assert r.rc == 0
    assert r.out == blocked_reply(TEXT_2)
    assert block_line('192.0.2.2', b'451 ' + TEXT_2).match(r.err), r.err


def test_rfc5782_test_entry(plus, dns):
    r = run(plus, ['-b', '-r', 'bl.test'], '127.0.0.2', dns, stdin=b'QUIT\r\n')
    assert r.out == GREET + BYE
    assert block_line('127.0.0.2', b'553 127.0.0.2 is the test entry of bl.test').match(r.err)


def test_allowlisted_client_passes(plus, dns):
    for args in (['-a', 'allow.test', '-r', 'bl.test'], ['-r', 'bl.test', '-a', 'allow.test']):
        r = run(plus, args, '192.0.2.20', dns, stdin=DIALOGUE)
        env = r.env_of_prog()
        assert env is not None, (args, r.out, r.err)
        assert env['RBLSMTPD_ALLOW'] == 'allow.test=127.0.0.2'
        assert plus_line('192.0.2.20', rb'allow .*allow=allow\.test=127\.0\.0\.2 ms=\d+').match(r.err)


def test_allowlist_error_answer_does_not_allow(plus, dns):
    r = run(plus, ['-a', 'allow.test', '-r', 'bl.test'], '192.0.2.21', dns, stdin=b'QUIT\r\n')
    assert r.out == GREET + BYE
    assert block_line('192.0.2.21', b'451 192.0.2.21 is listed in bl.test').match(r.err)


def test_a_record_without_txt_gets_a_fallback_text(plus, dns):
    r = run(plus, ['-r', 'bl.test'], '192.0.2.15', dns, stdin=b'DATA\r\n')
    assert r.out == GREET + b'451 listed in bl.test (127.0.0.2)\r\n'


def test_txt_alone_is_not_a_listing(plus, dns):
    # rblsmtpd decides on TXT and blocks; rblsmtpd-plus decides on A records
    r = run(plus, ['-r', 'bl.test'], '192.0.2.14', dns)
    assert r.env_of_prog() is not None
    d = run(RBLSMTPD, ['-r', 'bl.test'], '192.0.2.14', dns, stdin=b'QUIT\r\n')
    assert d.out == GREET + BYE


# ------------------------------------------------------------ return codes

@pytest.mark.parametrize('ip,code', [('192.0.2.10', '127.255.255.254'),
                                     ('192.0.2.11', '127.255.255.255'),
                                     ('192.0.2.12', '127.255.255.252'),
                                     ('192.0.2.13', '192.0.2.99')])
def test_error_answers_never_block(plus, dns, ip, code):
    r = run(plus, ['-b', '-r', 'bl.test'], ip, dns, stdin=DIALOGUE)
    env = r.env_of_prog()
    assert env == {'RBLSMTPD_ALLOW': '', 'RBLSMTPD_HITS': '', 'RBLSMTPD_SCORE': '0',
                   'RBLSMTPD_ERRORS': 'bl.test=' + code}, (r.out, r.err)
    assert plus_line(ip, rb'pass score=0/1 errors=bl\.test=' + re.escape(code.encode())
                     + rb' ms=\d+').match(r.err), r.err


def test_error_answer_blocks_debian_rblsmtpd(dns):
    # the outage rblsmtpd-plus prevents: the reference blocks on an error answer
    d = run(RBLSMTPD, ['-r', 'bl.test'], '192.0.2.10', dns, stdin=b'QUIT\r\n')
    assert d.out == GREET + BYE
    assert b'451 Error: open resolver' in d.err


@pytest.mark.parametrize('spec,blocked', [
    ('bl.test', True),                              # default: 127/8 minus errors
    ('bl.test:127.0.0.2-127.0.0.3', False),
    ('bl.test:127.0.0.10', True),
    ('bl.test:127.0.0.2,127.0.0.9-127.0.0.11', True),
    ('bl.test:127.0.0.0/24', True),
    ('bl.test:127.0.1.0/24', False),
])
def test_accepted_codes(plus, dns, spec, blocked):
    r = run(plus, ['-r', spec], '192.0.2.4', dns, stdin=b'QUIT\r\n')   # answers 127.0.0.10
    assert (r.out == GREET + BYE) is blocked, (r.out, r.err)
    assert (r.env_of_prog() is not None) is (not blocked)


def test_explicit_codes_may_include_error_answers(plus, dns):
    r = run(plus, ['-r', 'bl.test:127.255.255.254'], '192.0.2.10', dns, stdin=b'QUIT\r\n')
    assert r.out == GREET + BYE


def test_two_codes_are_both_reported(plus, dns):
    r = run(plus, ['-e', '-r', 'bl.test'], '192.0.2.5', dns)
    assert r.env_of_prog()['RBLSMTPD_HITS'] == 'bl.test=127.0.0.2,bl.test=127.0.0.4'


# ------------------------------------------------------------ IPv6

@pytest.mark.parametrize('ip,blocked,text', [
    ('2001:db8::2', True, b'2001:db8::2 is listed in bl.test'),
    ('2001:DB8:0:0:0:0:0:2', True, b'2001:db8::2 is listed in bl.test'),
    ('2001:db8::1', False, None),
    ('::ffff:192.0.2.2', True, TEXT_2),
    ('::ffff:192.0.2.1', False, None),
])
def test_ipv6_and_mapped_clients(plus, dns, ip, blocked, text):
    r = run(plus, ['-r', 'bl.test'], ip, dns, stdin=b'NOOP\r\nRCPT TO:<x@example.com>\r\n')
    if blocked:
        assert r.out == GREET + OK + b'451 ' + text + b'\r\n'
        assert block_line(ip, b'451 ' + text).match(r.err), r.err   # the IP as tcpserver gave it
    else:
        assert r.env_of_prog()['RBLSMTPD_HITS'] == ''


def test_no_address_is_a_lookup_failure(plus, dns):
    r = run(plus, ['-r', 'bl.test'], 'not-an-address', dns)
    assert r.env_of_prog()['RBLSMTPD_ERRORS'] == 'bl.test=noaddress'
    r = run(plus, ['-c', '-r', 'bl.test'], None, dns, stdin=b'DATA\r\n')
    assert r.out == GREET + b'451 temporary RBL lookup error\r\n'


# ------------------------------------------------------------ a server that never answers

def test_unanswering_server_fail_open(plus, dns):
    r = run(plus, ['-w', '0.8', '-r', 'bl.test'], '192.0.2.2', dns, server=dns.blackhole_ip)
    assert r.env_of_prog() == {'RBLSMTPD_ALLOW': '', 'RBLSMTPD_HITS': '', 'RBLSMTPD_SCORE': '0',
                               'RBLSMTPD_ERRORS': 'bl.test=timeout'}
    assert 0.75 <= r.elapsed < 1.8, r.elapsed
    assert plus_line('192.0.2.2', rb'pass score=0/1 errors=bl\.test=timeout ms=\d+').match(r.err)


def test_unanswering_server_fail_closed(plus, dns):
    r = run(plus, ['-b', '-c', '-w', '0.8', '-r', 'bl.test', '-r', 'bl2.test'], '192.0.2.2', dns,
            server=dns.blackhole_ip, stdin=DIALOGUE)
    # -c: 451 even with -b, as rblsmtpd
    assert r.out == blocked_reply(b'temporary RBL lookup error')
    assert block_line('192.0.2.2', b'451 temporary RBL lookup error').match(r.err)
    assert 0.75 <= r.elapsed < 1.8, r.elapsed


def test_unanswering_allowlist_fail_open_allows(plus, dns):
    # rblsmtpd -C: "if an anti-RBL lookup fails temporarily, assume anti-listed"
    r = run(plus, ['-w', '0.5', '-a', 'allow.test', '-r', 'bl.test'], '192.0.2.2', dns,
            server=dns.blackhole_ip)
    assert r.env_of_prog()['RBLSMTPD_ERRORS'] == 'allow.test=timeout,bl.test=timeout'
    assert plus_line('192.0.2.2', rb'allow score=0/1 errors=.* ms=\d+').match(r.err)


# ------------------------------------------------------------ a malformed answer
# A hostile or broken server (PacketServer: tinydns cannot send these).
# libowfat's parsers take each of these answers for "no addresses" or cut a
# text short; they are lookup failures.

A_2 = record('A', bytes([127, 0, 0, 2]))
MALFORMED_A = {
    'A record past the end': [record('A', bytes([127, 0, 0, 2]), rdlength=300)],
    'other record past the end': [record('CNAME', b'\x01x\x00', rdlength=300)],
    'listing, then a record past the end': [A_2, record('CNAME', b'\x01x\x00', rdlength=300)],
    'A record of 3 bytes': [record('A', bytes([127, 0, 0]))],
}


@pytest.mark.parametrize('case', sorted(MALFORMED_A))
def test_malformed_answer_is_a_lookup_failure(plus, dns, case):
    with PacketServer(dns, lambda q: reply(q, MALFORMED_A[case])) as srv:
        r = run(plus, ['-c', '-r', 'bl.test'], '192.0.2.1', dns, server=srv.ip, stdin=DIALOGUE)
        assert r.out == blocked_reply(b'temporary RBL lookup error'), (r.out, r.err)
        assert block_line('192.0.2.1', b'451 temporary RBL lookup error').match(r.err)
        r = run(plus, ['-r', 'bl.test'], '192.0.2.1', dns, server=srv.ip)
        assert r.env_of_prog() == {'RBLSMTPD_ALLOW': '', 'RBLSMTPD_HITS': '',
                                   'RBLSMTPD_SCORE': '0', 'RBLSMTPD_ERRORS': 'bl.test=fail'}


MALFORMED_TXT = {
    'string longer than its record': [record('TXT', b'\x50half a text')],
    'text, then a record past the end': [record('TXT', b'\x06a text'),
                                         record('CNAME', b'\x01x\x00', rdlength=300)],
}


@pytest.mark.parametrize('case', sorted(MALFORMED_TXT))
def test_malformed_text_answer_gets_the_fallback_text(plus, dns, case):
    """The A answer lists the client; the TXT answer is broken: the reply
    says what the A record said, never words from a broken packet."""
    def respond(q):
        return reply(q, [A_2] if question_type(q) == 'A' else MALFORMED_TXT[case])
    with PacketServer(dns, respond) as srv:
        r = run(plus, ['-r', 'bl.test'], '192.0.2.1', dns, server=srv.ip, stdin=DIALOGUE)
    assert r.out == blocked_reply(b'listed in bl.test (127.0.0.2)'), (r.out, r.err)


def test_no_text_query_after_the_deadline(plus, dns):
    """The list before bl.test never answers (fail open), so bl.test's hit
    blocks only at the deadline: a TXT answer could no longer be used, the
    TXT query is not sent, and the reply has the fallback text."""
    asked = []

    def respond(q):
        asked.append(question_type(q))
        if b'\x05never\x04test' in q:
            return None
        return reply(q, [A_2] if question_type(q) == 'A' else [record('TXT', b'\x06a text')])
    with PacketServer(dns, respond) as srv:
        r = run(plus, ['-w', '0.3', '-r', 'never.test', '-r', 'bl.test'], '192.0.2.1', dns,
                server=srv.ip, stdin=b'DATA\r\n')
        # answered after every packet rblsmtpd-plus sent was read (one socket, in order)
        assert dns.query('marker.test', 'MX', server=srv.ip) is not None
    assert r.out == GREET + b'451 listed in bl.test (127.0.0.2)\r\n', (r.out, r.err)
    assert asked == ['A', 'A', 'MX'], asked   # no TXT


def test_well_formed_packet_server_answer_blocks(plus, dns):
    """The same server with a sound answer: the malformed cases above fail
    for their packets, not for the server."""
    def respond(q):
        return reply(q, [A_2] if question_type(q) == 'A' else [record('TXT', b'\x06a text')])
    with PacketServer(dns, respond) as srv:
        r = run(plus, ['-c', '-r', 'bl.test'], '192.0.2.1', dns, server=srv.ip, stdin=DIALOGUE)
    assert r.out == blocked_reply(b'a text'), (r.out, r.err)


# ------------------------------------------------------------ lists in parallel

@pytest.fixture(scope='module')
def slowish(dns):
    """A resolver where each list costs 200 ms and slow.test 600 ms."""
    return dns.forwarder('slow.test=600,*=200')


FIVE = ['-r', 'bl.test', '-r', 'bl2.test', '-r', 'slow.test', '-r', 'bl3.test', '-a', 'allow.test']


def test_lists_are_queried_in_parallel(plus, dns, slowish):
    r = run(plus, FIVE, '192.0.2.1', dns, server=slowish)
    assert r.env_of_prog() is not None, r.err
    # the slowest list is 0.6 s, the sum of all five 1.4 s
    assert 0.55 <= r.elapsed < 1.0, r.elapsed


def test_slow_list_answer_is_waited_for(plus, dns, slowish):
    r = run(plus, FIVE, '198.51.100.3', dns, server=slowish, stdin=b'QUIT\r\n')
    assert r.out == GREET + BYE
    assert block_line('198.51.100.3', b'451 198.51.100.3 is listed in slow.test').match(r.err)
    assert r.elapsed >= 0.55


def test_one_deadline_for_all(plus, dns, slowish):
    r = run(plus, ['-w', '0.4'] + FIVE, '198.51.100.3', dns, server=slowish)
    assert r.env_of_prog()['RBLSMTPD_ERRORS'] == 'slow.test=timeout'
    assert 0.35 <= r.elapsed < 0.9, r.elapsed


def test_debian_rblsmtpd_queries_one_after_another(dns, slowish):
    r = run(RBLSMTPD, FIVE, '192.0.2.1', dns, server=slowish)
    assert r.out.startswith(b'PROG RAN')
    assert r.elapsed >= 1.3, r.elapsed


# ------------------------------------------------------------ weights

@pytest.mark.parametrize('args,ip,blocked,score', [
    (['-s', '2', '-r', 'bl2.test', '-r', 'bl3.test'], '198.51.100.1', False, '1'),
    (['-s', '2', '-r', 'bl2.test', '-r', 'bl3.test'], '198.51.100.2', True, None),
    (['-s', '2', '-r', 'bl2.test@2', '-r', 'bl3.test'], '198.51.100.1', True, None),
    (['-r', 'bl2.test@0', '-r', 'bl3.test'], '198.51.100.1', False, '0'),
    (['-s', '5', '-r', 'bl2.test@2', '-r', 'bl3.test@2'], '198.51.100.2', False, '4'),
])
def test_weights_and_threshold(plus, dns, args, ip, blocked, score):
    r = run(plus, args, ip, dns, stdin=b'QUIT\r\n')
    if blocked:
        assert r.out == GREET + BYE
        # the text is the first list that hit
        assert block_line(ip, b'451 ' + ip.encode() + b' is listed in bl2.test').match(r.err)
    else:
        env = r.env_of_prog()
        assert env is not None and env['RBLSMTPD_SCORE'] == score, (r.out, r.err)


# ------------------------------------------------------------ tag mode

def test_tag_mode_sets_the_variable_for_prog(plus, dns):
    r = run(plus, ['-e', '-r', 'bl2.test', '-r', 'bl3.test@3', '-r', 'bl.test'], '198.51.100.2', dns)
    assert r.out == (b'PROG RAN\nRBLSMTPD_ALLOW=\nRBLSMTPD_ERRORS=\n'
                     b'RBLSMTPD_HITS=bl2.test=127.0.0.2,bl3.test=127.0.0.3\nRBLSMTPD_SCORE=4\n')
    assert plus_line('198.51.100.2',
                     rb'tag score=4/1 hits=bl2\.test=127\.0\.0\.2,bl3\.test=127\.0\.0\.3 ms=\d+').match(r.err)


def test_tag_mode_with_no_hits_and_with_failures(plus, dns):
    r = run(plus, ['-e', '-r', 'bl.test'], '192.0.2.1', dns)
    assert r.env_of_prog()['RBLSMTPD_HITS'] == ''
    r = run(plus, ['-e', '-c', '-w', '0.3', '-r', 'bl.test'], '192.0.2.2', dns, server=dns.blackhole_ip)
    assert r.env_of_prog()['RBLSMTPD_ERRORS'] == 'bl.test=timeout'


def test_stale_variables_are_not_passed_on(plus, dns):
    r = run(plus, [], '192.0.2.2', dns, env={'RBLSMTPD_HITS': 'forged.test=127.0.0.2'})
    assert r.out == b'PROG RAN\n'


# ------------------------------------------------------------ $RBLSMTPD

def test_rblsmtpd_variable(plus, dns):
    # set: no lookup at all (the black hole would cost the whole deadline)
    r = run(plus, ['-r', 'bl.test'], '192.0.2.1', dns, server=dns.blackhole_ip,
            env={'RBLSMTPD': 'go away'}, stdin=b'DATA\r\n')
    assert r.out == GREET + b'451 go away\r\n'
    assert block_line('192.0.2.1', b'451 go away').match(r.err)
    assert r.elapsed < 0.5
    r = run(plus, ['-r', 'bl.test'], '192.0.2.1', dns, server=dns.blackhole_ip,
            env={'RBLSMTPD': '-go away'}, stdin=b'DATA\r\n')
    assert r.out == GREET + b'553 go away\r\n'
    # empty: never block, no lookup, nothing to report
    r = run(plus, ['-r', 'bl.test'], '192.0.2.2', dns, server=dns.blackhole_ip,
            env={'RBLSMTPD': ''})
    assert r.out == b'PROG RAN\n' and r.err == b''
    assert r.elapsed < 0.5


# ------------------------------------------------------------ the dialogue, against Debian's rblsmtpd

INPUTS = [
    DIALOGUE,
    b'ehlo x\r\nmail from:<>\r\nrset\r\nnoop\r\nhelp\r\nvrfy x\r\nquit\r\n',
    b'QUIT \r\n',
    b'quit\r\r\nqUiT\0abc\r\nNOOP\x00\r\nQuit\r\n',
    b'data\nrset\n\nnoop x\n\r\nehlo\nQUIT',             # bare LF, empty lines, no last LF
    b'HELO ' + b'x' * 5000 + b'\r\n' + b'Y' * 3000 + b'\r\nQUIT\r\nNOOP\r\n',
    b'\xff\xfe\r\n\tQUIT\r\nQUIT\tx\r\n',
    b'',
]

CASES = [
    ('192.0.2.2', ['-r', 'bl.test'], {}),
    ('192.0.2.2', ['-b', '-r', 'bl.test'], {}),
    ('192.0.2.2', ['-r', 'bl.test', '-b'], {}),            # -b after the list: still 451
    ('192.0.2.2', ['-B', '-t', '0', '-r', 'bl.test'], {}),
    ('192.0.2.3', ['-r', 'bl.test'], {}),                  # sanitized, cut at 200
    ('192.0.2.5', ['-b', '-r', 'bl2.test', '-r', 'bl.test'], {}),
    ('192.0.2.20', ['-a', 'allow.test', '-r', 'bl.test'], {}),
    ('192.0.2.1', ['-r', 'bl.test'], {'RBLSMTPD': '-Go away \x01\x7f\x80 ' + 'z' * 250}),
    ('192.0.2.1', ['-r', 'bl.test'], {'RBLSMTPD': 'Try later'}),
    ('192.0.2.1', ['-b'], {'RBLSMTPD': ''}),
]


@pytest.mark.parametrize('case', range(len(CASES)))
def test_dialogue_is_rblsmtpd_byte_for_byte(plus, dns, case):
    ip, args, env = CASES[case]
    prog = ['/bin/echo', 'PROG RAN']
    for data in INPUTS:
        ref = run(RBLSMTPD, args, ip, dns, stdin=data, env=env, prog=prog)
        got = run(plus, args, ip, dns, stdin=data, env=env, prog=prog)
        assert got.out == ref.out, (data, ref.out, got.out)
        assert got.rc == ref.rc
        if not ref.out.startswith(b'PROG RAN'):   # a block: the same log line
            assert PID.sub(b' pid N: ', got.err) == PID.sub(b' pid N: ', ref.err), (ref.err, got.err)


def read_to_eof(f, timeout):
    out, end = b'', time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([f], [], [], end - time.monotonic())
        if not ready:
            break
        chunk = os.read(f.fileno(), 4096)
        if not chunk:
            return out
        out += chunk
    raise AssertionError('no EOF within %s s; got %r' % (timeout, out))


def test_dialogue_timeout_drops_silently(plus, dns):
    p = subprocess.Popen([plus, '-t', '1', '-r', 'bl.test'] + PRINTENV, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=make_env('192.0.2.2', dns.ip))
    start = time.monotonic()
    try:
        p.stdin.write(b'HELO x\r\n')
        p.stdin.flush()
        out = read_to_eof(p.stdout, 5)   # stdin stays open: the drop is the timeout's
        elapsed = time.monotonic() - start
        p.stdin.close()
        err = p.stderr.read()
        p.wait(5)
    finally:
        p.kill()
    assert 0.9 <= elapsed < 2.5
    assert out == GREET + OK and p.returncode == 0
    harness.no_sanitizer_report(err)


# ------------------------------------------------------------ greeting delay

def test_early_talker_is_refused(plus, dns):
    r = run(plus, ['-g', '1', '-r', 'bl.test'], '192.0.2.1', dns, stdin=b'EHLO early.example\r\n')
    assert r.out == b'554 rblsmtpd.local client talked before the greeting (#5.5.1)\r\n'
    lines = r.err.split(b'\n')
    assert plus_line('192.0.2.1', rb'pass score=0/1 ms=\d+').match(lines[0] + b'\n')
    assert plus_line('192.0.2.1', rb'554 rblsmtpd\.local client talked before the greeting '
                     rb'\(#5\.5\.1\)').match(lines[1] + b'\n'), r.err
    assert r.elapsed < 0.9   # refused as soon as seen, not at the end of the delay


def test_patient_client_gets_prog_after_the_delay(plus, dns):
    p = subprocess.Popen([plus, '-g', '0.6', '-r', 'bl.test'] + PRINTENV, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=make_env('192.0.2.1', dns.ip))
    start = time.monotonic()
    try:
        ready, _, _ = select.select([p.stdout], [], [], 5)
        first = p.stdout.readline() if ready else b''
        elapsed = time.monotonic() - start
        p.stdin.close()
        err = p.stderr.read()
        p.wait(5)
    finally:
        p.kill()
    assert first == b'PROG RAN\n'
    assert 0.55 <= elapsed < 2.0, elapsed
    harness.no_sanitizer_report(err)


def test_allowlisted_client_is_not_delayed(plus, dns):
    r = run(plus, ['-g', '2', '-a', 'allow.test', '-r', 'bl.test'], '192.0.2.20', dns,
            stdin=b'EHLO x\r\n')
    assert r.out.startswith(b'PROG RAN') and r.elapsed < 1.0


# ------------------------------------------------------------ command line

@pytest.mark.parametrize('args', [
    [], ['-z', 'prog'], ['-t', 'x', 'prog'], ['-r', 'bl.test:127.0.0'], ['-r', 'bl.test:10.0.0.1', 'p'],
    ['-r', 'bl.test:127.0.0.5-127.0.0.2', 'p'], ['-r', 'bl.test@x', 'p'], ['-a', 'allow.test@2', 'p'],
    ['-r', ':127.0.0.2', 'p'], ['-s', '0', 'p'], ['-w', '1.', 'p'], ['-g', 'x', 'p'],
    ['-r', 'bl.test:127.0.0.1/8', 'p'],
])
def test_usage_errors_exit_100(plus, dns, args):
    r = run(plus, args, '192.0.2.1', dns, prog=[])
    assert r.rc == 100 and r.out == b''
    assert r.err.startswith(b'rblsmtpd-plus: usage: rblsmtpd-plus '), r.err


def test_prog_that_cannot_run_exits_111(plus, dns):
    r = run(plus, ['-r', 'bl.test'], '192.0.2.1', dns, prog=['/nonexistent/prog'])
    assert r.rc == 111
    assert r.err.endswith(b'rblsmtpd-plus: fatal: unable to run /nonexistent/prog: '
                          b'No such file or directory\n'), r.err


def test_options_after_prog_belong_to_prog(plus, dns):
    r = run(plus, ['-r', 'bl.test'], '192.0.2.1', dns, prog=['/bin/echo', '-t', '5'])
    assert r.out == b'-t 5\n'
