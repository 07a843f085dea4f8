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

Both back ends alike: aliases (CNAME) are followed, up to 10; a name is
its labels' bytes joined by '.', any byte (a str goes out as UTF-8, its
surrogates as the bytes they stand for; names in answers come back the same
way); refused are only an empty label, a label over 63 bytes, a name over
255 bytes on the wire.
"""
import os
import sys

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


ALIASES_MAX = 10      # as idcheck.dns (and pyspf's MAX_CNAME)


def _wire_name(name):
    """name as the bytes idcheck.dns would send (labels joined by b'.', no
    trailing dot), or None when DNS cannot carry it."""
    if isinstance(name, str):
        try:
            name = name.encode('utf-8', 'surrogateescape')
        except UnicodeError:
            return None
    if name == b'.':
        return b''
    if name.endswith(b'.') and len(name) > 1:
        name = name[:-1]
    if not name or len(name) > 253 or any(not 0 < len(label) <= 63 for label in name.split(b'.')):
        return None
    return name


def _text(raw):
    """A name from pydns (decoded latin-1, see _pydns_query) as idcheck.dns
    gives it."""
    return raw.encode('latin-1').decode('utf-8', 'surrogateescape')


def _pydns_lookup(name, qtype, timeout):
    import time
    wire = _wire_name(name)
    if wire is None:
        return []
    shown = wire.decode('utf-8', 'backslashreplace')
    end = time.monotonic() + timeout      # one deadline for the whole lookup
    aliases = 0
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise DNSTimeout('no answer for %s %s within %gs' % (shown, qtype, timeout))
        rcode, records = _pydns_query(wire, qtype, left, shown)
        # the records wire owns, following the aliases within the answer
        # (bytes.lower: ASCII letters only, as DNS compares names)
        owner, followed = wire, False
        while True:
            mine = [(t, d) for n, t, d in records if n.encode('latin-1').lower() == owner.lower()]
            found = [d for t, d in mine if t == qtype]
            target = next((d for t, d in mine if t == 'CNAME'), None)
            if found or target is None:
                break
            aliases += 1
            if aliases > ALIASES_MAX:
                raise DNSError('lookup of %s %s: more than %d aliases' % (shown, qtype, ALIASES_MAX))
            owner, followed = target.encode('latin-1'), True
        if found or not followed or rcode != 0:
            return [_value(qtype, d) for d in found]
        wire = owner      # an authoritative server's CNAME alone: ask for the target


def _value(qtype, data):
    import socket
    if qtype == 'TXT':
        return tuple(d if isinstance(d, bytes) else d.encode('latin-1') for d in data)
    if qtype == 'AAAA' and isinstance(data, bytes):
        return socket.inet_ntop(socket.AF_INET6, data)
    if qtype == 'MX':
        return (int(data[0]), _text(data[1]))
    if qtype == 'PTR':
        return _text(data)
    return data


def _pydns_query(wire, qtype, timeout, shown):
    """(rcode, [(owner, type, data)]) of one query for the name wire (bytes).
    pydns encodes labels with IDNA, which cannot carry every byte: during
    the query they are latin-1, one character per byte."""
    DNS = _pydns_module()
    kw = {'qtype': qtype, 'timeout': timeout}
    servers = _servers()
    if servers:
        kw['server'] = servers
    # the package object DNS.Lib reads it from: after an import that hid and
    # restored sys.modules['DNS'] (spf_check), `import DNS` may give another
    labels = sys.modules['DNS.Lib'].DNS
    saved = labels.LABEL_ENCODING
    labels.LABEL_ENCODING = 'latin-1'
    try:
        resp = DNS.DnsRequest(wire.decode('latin-1'), **kw).req()
        if resp.header.get('tc'):
            kw['protocol'] = 'tcp'
            resp = DNS.DnsRequest(wire.decode('latin-1'), **kw).req()
    except DNS.TimeoutError as e:
        raise DNSTimeout('no answer for %s %s within %gs (%s)' % (shown, qtype, timeout, e)) from None
    except (DNS.DNSError, OSError, IndexError, UnicodeError) as e:
        raise DNSError('lookup of %s %s failed: %s' % (shown, qtype, e)) from None
    finally:
        labels.LABEL_ENCODING = saved
    rcode = resp.header.get('rcode')
    if rcode not in (0, 3):
        raise DNSError('lookup of %s %s failed: %s' % (shown, qtype, resp.header.get('status')))
    return rcode, [(a['name'], a.get('typename'), a['data']) for a in resp.answers
                   if a.get('class') in (1, None)]
