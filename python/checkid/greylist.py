"""Greylisting (CHECKID_GREYLIST=1), at RCPT, as postgrey does it.

The triplet is the client's network (CHECKID_GREY_NET4, /24; CHECKID_GREY_
NET6, /64: a sending farm retries from another address of its network),
the MAIL FROM address and the recipient. Its first sight is refused with
451 4.7.1; a retry after CHECKID_GREY_DELAY seconds (300), within
CHECKID_GREY_RETRY_WINDOW (2 days) of the first sight, passes, and the
triplet passes from then on until it has not been seen for
CHECKID_GREY_MAX_AGE (35 days). A network whose CHECKID_GREY_AUTO_ALLOW
(5) triplets passed that way has shown that it retries as a mail server
does: every triplet of it passes without delay until it has not been seen
for CHECKID_GREY_MAX_AGE (postgrey's auto-whitelist-clients).

The addresses as postgrey keys them: lower case; the null sender <> is the
empty address; in the sender, a BATV tag (prvs=TAG=local) and an
extension (local+ext) are dropped and runs of digits between word
boundaries become '#', so that the bounce addresses of a mailing list (VERP)
are one sender. The store keeps a hash of each key (state.key), never the
addresses.

>>> sender('prvs=1234abcdef=Bounce-1234-55@Lists.Example.org')
'bounce-#-#@lists.example.org'
>>> sender('Joe+Lists@example.com'), sender('')
('joe@example.com', '')
>>> network('192.0.2.77', 24, 64), network('2001:db8:1:2:3::9', 24, 64)
('192.0.2.0/24', '2001:db8:1:2::/64')
"""
import re

from . import state

_DIGITS = re.compile(r'\b\d+\b')
_BATV = re.compile(r'^(prvs|msprvs\d?|btv1)=[^=@]*=', re.I)


def network(ip, bits4, bits6):
    """The client's network, e.g. '192.0.2.0/24', or None. (socket's
    conversions: a fifth of ipaddress's cost, at every RCPT.)"""
    import socket
    for family, size, bits in ((socket.AF_INET, 32, bits4), (socket.AF_INET6, 128, bits6)):
        try:
            n = int.from_bytes(socket.inet_pton(family, ip), 'big')
        except (OSError, TypeError, ValueError):
            continue
        if family == socket.AF_INET6 and n >> 32 == 0xffff:
            # an IPv4 client written as IPv6 (::ffff:c000:207): its IPv4 network
            family, size, bits, n = socket.AF_INET, 32, bits4, n & 0xffffffff
        n = n >> (size - bits) << (size - bits)
        return '%s/%d' % (socket.inet_ntop(family, n.to_bytes(size // 8, 'big')), bits)
    return None


def sender(address):
    a = address.strip().lower()
    if '@' not in a:
        return a
    local, domain = a.rsplit('@', 1)
    local = _BATV.sub('', local)
    local = local.split('+', 1)[0] if not local.startswith('+') else local
    return _DIGITS.sub('#', local) + '@' + domain


def params(cfg):
    return state.GreyParams(cfg.grey_delay, cfg.grey_retry_window, cfg.grey_max_age,
                            cfg.grey_auto_allow)


def check(call, ip, S, rcpt, cfg):
    """None when the recipient passes, else the seconds to wait (an int
    >= 1). Raises state.Unavailable."""
    import math
    net = network(ip, cfg.grey_net4, cfg.grey_net6)
    if net is None:
        return None
    client = state.key('client', net)
    triplet = state.key('grey', net, sender(S), rcpt.strip().lower())
    p = params(cfg)
    result, wait = call.run('rcpt', lambda store, deadline: store.grey(
        client, triplet, state.now(), p, deadline))
    if result in ('new', 'early'):
        return max(1, int(math.ceil(wait)))
    return None
