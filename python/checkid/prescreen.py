"""The quick pre-screen: is the client IP on a DNSBL (config.PRESCREEN_ZONE)?

A hit rejects before any SPF or Registry query is spent. The A answers
count when they fall in config.PRESCREEN_CODES; the error answers
127.255.255.252-127.255.255.255 (Spamhaus: typo in the list name, query
through an open resolver, rate limit) and answers outside 127/8 (resolvers
that rewrite NXDOMAIN) never count, nor does a failed lookup.

When rblsmtpd-plus ran in front in tag mode (-e) it has already asked its
lists and left the outcome in the environment (RBLSMTPD_HITS, a comma-
separated list of zone=code, set even when empty; RBLSMTPD_ALLOW for
allowlist hits): then nothing is looked up again, and the client is
listed when RBLSMTPD_HITS holds the pre-screen zone with a counting code.
Give rblsmtpd-plus the same zone (-r zone) for this to mean anything.

check() returns (state, detail): state 'off', 'listed', 'clean', 'error',
'tagged' (rblsmtpd-plus's answer, not listed) or 'allowed'; detail is the
code that listed, or what went wrong.
"""
from . import dnsio
from .config import _ip4


def query_name(ip, zone):
    """'2.2.0.192.zone' for IPv4, nibbles for IPv6; None for a bad address."""
    import ipaddress
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    if addr.version == 4:
        return '.'.join(reversed(str(addr).split('.'))) + '.' + zone
    return '.'.join(reversed(addr.exploded.replace(':', ''))) + '.' + zone


def counts(code, ranges):
    """Whether answer code (dotted quad) means listed."""
    try:
        n = _ip4(code)
    except ValueError:
        return False
    if n >> 24 != 127 or n >= _ip4('127.255.255.252'):
        return False
    return any(low <= n <= high for low, high in ranges)


def check(ip, cfg, env, timeout=5.0):
    zone = cfg.prescreen_zone
    if not zone:
        return 'off', ''
    if env.get('RBLSMTPD_HITS') is not None:
        if env.get('RBLSMTPD_ALLOW'):
            return 'allowed', env.get('RBLSMTPD_ALLOW')
        for item in env.get('RBLSMTPD_HITS', '').split(','):
            base, _, code = item.strip().partition('=')
            if base.strip().strip('.').lower() == zone and counts(code.strip(), cfg.prescreen_codes):
                return 'listed', code.strip()
        return 'tagged', ''
    if not ip:
        return 'error', 'no client address'
    name = query_name(ip, zone)
    if name is None:
        return 'error', 'not an address'
    try:
        answers = dnsio.lookup(name, 'A', timeout)
    except dnsio.DNSError as e:
        return 'error', str(e)
    for code in sorted(answers):
        if counts(code, cfg.prescreen_codes):
            return 'listed', code
    if answers:
        return 'clean', 'ignored ' + ','.join(sorted(answers))
    return 'clean', ''
