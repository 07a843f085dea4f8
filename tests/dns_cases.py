"""Cases for names that need more than letters, digits and '-', and for
aliases (CNAME), on the zone data in tests/dns/policy.data. Each runs in
plain python3 (test_checkid.py: checkid.dnsio over pydns) and embedded
(test_checkid_embedded.py: idcheck.dns; pyspf -> idcheck.dns -> tinydns),
against tinydns and against dnscache in front of it. The SPF cases are
written for this suite in the manner of the RFC 7208 test suite (a record,
a client, the result).
"""

LABEL63 = 'a' * 63
NAME253 = '.'.join([LABEL63] * 3 + ['a' * 52]) + '.spf.test'     # 255 bytes on the wire

# (name, type, the records): what a lookup returns

# names in answers come back as the bytes of their labels joined by '.'
# (not UTF-8: surrogates), capitals kept, and look up again
NAMES_BACK = [
    ('mxname.spf.test', 'MX', [(10, 'Relay:1/x.mxname.spf.test')]),
    ('Relay:1/x.mxname.spf.test', 'A', ['192.0.2.31']),
    ('42.2.0.192.in-addr.arpa', 'PTR', ['host+42.ptr.spf.test']),
    ('host+42.ptr.spf.test', 'A', ['192.0.2.42']),
    ('43.2.0.192.in-addr.arpa', 'PTR', ['host 43.ptr.spf.test']),
    ('44.2.0.192.in-addr.arpa', 'PTR', ['host\udcff44.ptr.spf.test']),   # byte 0xff
    ('host\udcff44.ptr.spf.test', 'A', ['192.0.2.44']),
]

# any byte DNS carries is looked up, up to the limits DNS has
ANY_BYTE = [
    ('192.0.2.1 ok.space.spf.test', 'A', ['127.0.0.2']),
    ('back\\slash.spf.test', 'A', ['192.0.2.63']),           # a byte, not an escape
    ('caf\u00e9.spf.test', 'A', ['192.0.2.61']),               # UTF-8 on the wire
    ('\udcff\udcfe.spf.test.', 'A', ['192.0.2.62']),           # bytes 0xff 0xfe
    # the limits DNS has, just inside
    (LABEL63 + '.spf.test', 'A', []),
    (NAME253, 'A', []),
    (NAME253 + '.', 'A', []),
]

# aliases are followed: tinydns answers with the CNAME alone, dnscache with
# the whole chain
ALIASES = [
    ('alias.spf.test', 'TXT', [(b'v=spf1 ip4:192.0.2.0/24 ip4:127.0.0.1 ip6:2001:db8::/32 -all',)]),
    ('two.alias.spf.test', 'A', ['192.0.2.30']),
    ('HOST.alias.spf.test', 'A', ['192.0.2.30']),
    ('mx.alias.spf.test', 'MX', [(10, 'host.alias.spf.test')]),
    ('45.2.0.192.in-addr.arpa', 'PTR', ['host45.ptr.spf.test']),
    ('alias.spf.test', 'A', []),                 # the target has no address
    ('gone.alias.spf.test', 'A', []),            # the target does not exist
    ('chain2.alias.spf.test', 'A', ['192.0.2.30']),              # 10 aliases
]

# names DNS cannot carry: ValueError embedded, [] from dnsio.lookup
REFUSED = ['a' * 64 + '.spf.test', 'a' + NAME253, 'a..spf.test', '.spf.test', 'spf.test..',
           '..', '']

# lookups that fail (DNSError): more than 10 aliases; a loop (tinydns only:
# dnscache gives up on it later than a test should wait)
TOO_MANY_ALIASES = ['chain1.alias.spf.test', 'loop1.alias.spf.test']

# (client IP, identity, SPF result, why)
SPF = [
    # names with any byte (MX and PTR answers come back as they are; a
    # macro's space is looked up as a space)
    ('192.0.2.31', 'mxname.spf.test', 'pass', "MX host 'Relay:1/x.mxname.spf.test'"),
    ('192.0.2.32', 'mxname.spf.test', 'fail', 'not that MX host'),
    ('192.0.2.42', 'ptr.spf.test', 'pass', "PTR 'host+42.ptr.spf.test'"),
    ('192.0.2.43', 'ptr.spf.test', 'pass', "PTR 'host 43.ptr.spf.test'"),
    ('192.0.2.44', 'ptr.spf.test', 'pass', 'PTR with a byte 0xff'),
    ('192.0.2.1', 'space.spf.test', 'pass', "exists: '192.0.2.1 ok.space.spf.test' (%_)"),
    ('192.0.2.2', 'space.spf.test', 'fail', 'exists: no such name'),
    # aliases
    ('192.0.2.1', 'alias.spf.test', 'pass', 'the SPF record through a CNAME'),
    ('198.51.100.1', 'alias.spf.test', 'fail', 'the SPF record through a CNAME'),
    ('192.0.2.1', 'include.alias.spf.test', 'pass', 'include: of an alias'),
    ('192.0.2.30', 'a.alias.spf.test', 'pass', 'a: through two aliases'),
    ('192.0.2.31', 'a.alias.spf.test', 'fail', 'a: through two aliases'),
    ('192.0.2.30', 'mx.alias.spf.test', 'pass', 'the MX host is an alias'),
    ('192.0.2.45', 'ptr.spf.test', 'pass', 'RFC 2317 reverse alias'),
    ('192.0.2.1', 'dangling.alias.spf.test', 'neutral', 'an alias of nothing: no records'),
    ('192.0.2.30', 'loop.alias.spf.test', 'temperror', 'an alias loop'),
]


def expected(ip, identity, result):
    """checkID's answer at MAIL for that SPF result, with the policy's
    defaults (none of these identities is rated)."""
    if result == 'pass':
        return ('ACCEPT', (250, '', 'Sender OK'),
                [{'label': 'Authent:',
                  'text': '%s %s SPF1 PASS ratings=S1:-,M2:-,H1:-' % (ip, identity)}])
    if result == 'fail':
        return ('REJECT', (550, '5.7.1', "Sending MTA '%s' not authorized by '%s'"
                           % (ip, identity)), [])
    if result == 'neutral':
        return ('CONTINUE', (250, '', 'Sender OK'),
                [{'label': 'Authent:', 'text': '%s %s SPF1 NEUTRAL' % (ip, identity)}])
    if result == 'temperror':
        return ('TEMPFAIL', (451, '4.4.3', "Temporary DNS failure checking '%s', try again later"
                             % identity), [])
    raise ValueError(result)
