"""DNS for the reference policy: one function, two back ends.

Inside qmail-idcheck (the built-in module `idcheck` is importable) every
lookup goes through idcheck.dns: libowfat in C, a deadline per call, the
resolvers of DNSCACHEIP; nothing heavier than this file is imported.

Outside (plain python3, the doctests) it falls back to pydns (Debian
python3-dns), asking the servers named in DNSCACHEIP when it is set (as
djbdns and libowfat do), else those of /etc/resolv.conf. dnspython is never
imported: it costs hundreds of milliseconds.

lookup(name, qtype, timeout) returns the answer's records of that type:
A/AAAA address strings, MX (preference, name) tuples, PTR name strings, TXT
tuples of bytes (one per character-string); [] for NXDOMAIN, no records, or
a name DNS cannot carry. It raises DNSTimeout (a DNSError) when no answer
came in time and DNSError when the servers failed.
"""
import os

try:
    import idcheck
    EMBEDDED = hasattr(idcheck, 'dns')
except ImportError:
    idcheck = None
    EMBEDDED = False

QTYPES = ('A', 'AAAA', 'MX', 'PTR', 'TXT')


class DNSError(Exception):
    """The lookup failed (server failure, refused, malformed answer)."""


class DNSTimeout(DNSError):
    """No answer before the deadline."""


def environ():
    """The connection's environment: idcheck.environ inside qmail-idcheck
    (what tcpserver and tcprules set), os.environ outside."""
    return idcheck.environ if idcheck is not None else os.environ


def lookup(name, qtype, timeout=5.0):
    if qtype not in QTYPES:
        return []
    if isinstance(name, str):
        name = name.rstrip('.')
        if not name or not name.isascii():
            return []
    if EMBEDDED:
        try:
            return idcheck.dns(name, qtype, timeout)
        except idcheck.DNSTimeout as e:
            raise DNSTimeout(str(e)) from None
        except idcheck.DNSError as e:
            raise DNSError(str(e)) from None
        except (ValueError, TypeError):
            return []
    return _pydns_lookup(name, qtype, timeout)


# ---- the fallback: pydns ----

_pydns = None


def _servers():
    """The addresses in DNSCACHEIP (space/comma separated), or None."""
    value = os.environ.get('DNSCACHEIP', '')
    found = [w for w in value.replace(',', ' ').split() if w]
    return found or None


def _pydns_module():
    global _pydns
    if _pydns is None:
        import warnings
        with warnings.catch_warnings():       # pydns imports asyncore
            warnings.simplefilter('ignore', DeprecationWarning)
            import DNS
        if not DNS.defaults.get('server'):
            try:
                DNS.DiscoverNameServers()
            except Exception:
                pass
        _pydns = DNS
    return _pydns


def _pydns_lookup(name, qtype, timeout):
    import socket
    if isinstance(name, bytes):
        try:
            name = name.decode('ascii')
        except UnicodeDecodeError:
            return []
    if any(c <= ' ' or c > '~' or c == '\\' for c in name) or len(name) > 253 \
            or any(len(label) > 63 or not label for label in name.split('.')):
        return []
    DNS = _pydns_module()
    kw = {'qtype': qtype, 'timeout': timeout}
    servers = _servers()
    if servers:
        kw['server'] = servers
    try:
        resp = DNS.DnsRequest(name, **kw).req()
        if resp.header.get('tc'):
            kw['protocol'] = 'tcp'
            resp = DNS.DnsRequest(name, **kw).req()
    except DNS.TimeoutError as e:
        raise DNSTimeout('no answer for %s %s within %gs (%s)' % (name, qtype, timeout, e)) from None
    except (DNS.DNSError, OSError, IndexError, UnicodeError) as e:
        raise DNSError('lookup of %s %s failed: %s' % (name, qtype, e)) from None
    rcode = resp.header.get('rcode')
    if rcode not in (0, 3):
        raise DNSError('lookup of %s %s failed: %s' % (name, qtype, resp.header.get('status')))
    out = []
    for a in resp.answers:
        if a.get('typename') != qtype:
            continue
        data = a['data']
        if qtype == 'TXT':
            data = tuple(d if isinstance(d, bytes) else d.encode('utf-8', 'surrogateescape')
                         for d in data)
        elif qtype == 'AAAA' and isinstance(data, bytes):
            data = socket.inet_ntop(socket.AF_INET6, data)
        elif qtype == 'MX':
            data = (int(data[0]), str(data[1]))
        out.append(data)
    return out
