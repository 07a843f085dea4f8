"""DKIM (RFC 6376) at end of data, with dkimpy (Debian python3-dkim).

The message is put back together from what checkID got: the header fields
(str, surrogateescape, folding kept) each with CRLF, an empty line, the
body bytes. When Body was cut (idcheck.bodysize is larger than len(Body))
the signatures cannot be checked: the result is 'toolarge'.

check() verifies each signature once (at most MAX_SIGNATURES) and returns a
Signature per signature: result ('pass', 'fail', 'temperror', 'permerror'
or 'toolarge'), domain (d=, lower case) or None, selector (s=) or None, and
b, the first 8 characters of the signature (b=, RFC 6008's header.b). The
caller keeps that list for the DKIM-Check header, Authentication-Results
and DMARC: one verification per message.

verify() is check() as (best result, text) for the DKIM-Check header: one
"dkim=RESULT header.d=DOMAIN header.s=SELECTOR" per signature, joined with
"; "; ('none', 'dkim=none') without signatures.
"""
import collections

from . import dnsio
from .spf_check import _hidden_resolvers

_dkim = None
_logger = None
ORDER = ('pass', 'fail', 'temperror', 'permerror', 'toolarge', 'none')


def module():
    global _dkim, _logger
    if _dkim is None:
        with _hidden_resolvers():
            import dkim
        import logging
        _logger = logging.getLogger('checkid.dkim')
        _logger.addHandler(logging.NullHandler())
        _logger.propagate = False
        _dkim = dkim
    return _dkim


def message_bytes(Hdrs, Body):
    head = b''.join(h.encode('utf-8', 'surrogateescape') if isinstance(h, str) else bytes(h)
                    for h in _with_crlf(Hdrs))
    return head + b'\r\n' + (Body or b'')


def _with_crlf(Hdrs):
    for h in Hdrs:
        yield h
        yield '\r\n' if isinstance(h, str) else b'\r\n'


def _signatures(Hdrs):
    n = 0
    for h in Hdrs:
        name = h.split(':', 1)[0] if isinstance(h, str) else h.split(b':', 1)[0].decode('latin-1')
        if name.strip().lower() == 'dkim-signature':
            n += 1
    return n


def _token(value):
    """A d= or s= value fit for a header: printable ASCII, no spaces."""
    if isinstance(value, bytes):
        value = value.decode('ascii', 'replace')
    value = ''.join(c if '!' <= c <= '~' and c != ';' else '?' for c in str(value))
    return value[:100] or '?'


MAX_SIGNATURES = 5

Signature = collections.namedtuple('Signature', 'result domain selector b')


def check(Hdrs, Body, bodysize=None, timeout=5.0, txt=None):
    """[Signature] for the message's DKIM signatures, top first. txt(name,
    timeout) looks up a key record (dnsio.lookup's TXT answer; the caller
    may cache it)."""
    count = _signatures(Hdrs or [])
    if not count:
        return []
    # each signature costs a parse and a DNS lookup: a client must not make
    # the call outlast IDCHECK_CALLTIMEOUT with many of them
    count = min(count, MAX_SIGNATURES)
    if bodysize is not None and Body is not None and bodysize > len(Body):
        return [Signature('toolarge', None, None, None)] * count
    dkim = module()

    failed = []        # what dnsfunc met: dkimpy turns its errors into False

    def dnsfunc(name, timeout=timeout):
        if isinstance(name, bytes):
            name = name.decode('ascii', 'replace')
        try:
            records = txt(name, timeout) if txt else dnsio.lookup(name, 'TXT', timeout)
        except dnsio.DNSError as e:
            failed.append('temperror')
            raise dkim.DnsTimeoutError(str(e))
        return b''.join(records[0]) if records else None

    message = message_bytes(Hdrs, Body)
    out = []
    for idx in range(count):
        d = None
        del failed[:]
        try:
            d = dkim.DKIM(message, logger=_logger, timeout=timeout)
            ok = d.verify(idx=idx, dnsfunc=dnsfunc)
            if ok:
                result = 'pass'
            elif failed:
                result = failed[0]
            elif getattr(d, 'pk', None) is None:
                result = 'permerror'      # no key, or a key that is not one
            else:
                result = 'fail'
        except dkim.ValidationError:
            result = 'fail'               # body hash mismatch and the like
        except dkim.DKIMException:
            result = 'permerror'
        except Exception:                 # a malformed message must not fault the call
            result = 'permerror'
        domain = getattr(d, 'domain', None)
        selector = getattr(d, 'selector', None)
        fields = getattr(d, 'signature_fields', None) or {}
        b = fields.get(b'b') if domain else None
        out.append(Signature(result, _token(domain).lower() if domain else None,
                             _token(selector) if selector else None,
                             _b_prefix(b) if b else None))
    return out


def _b_prefix(b):
    """RFC 6008: the signature's first 8 characters identify it."""
    value = b''.join(b.split())[:8] if isinstance(b, bytes) else b''
    value = value.decode('ascii', 'replace')
    if not all(c.isalnum() or c in '+/=' for c in value):
        return None
    return value or None


def verify(Hdrs, Body, bodysize=None, timeout=5.0):
    return summary(check(Hdrs, Body, bodysize, timeout), bodysize)


def summary(signatures, bodysize=None):
    """(best result, DKIM-Check text) of check()'s list."""
    if not signatures:
        return 'none', 'dkim=none'
    if signatures[0].result == 'toolarge':
        return 'toolarge', 'dkim=neutral reason="body too large to verify (%d bytes)"' % bodysize
    parts = []
    for sig in signatures:
        text = 'dkim=%s' % sig.result
        if sig.domain:
            text += ' header.d=%s' % sig.domain
        if sig.selector:
            text += ' header.s=%s' % sig.selector
        parts.append(text)
    best = min((sig.result for sig in signatures), key=ORDER.index)
    return best, '; '.join(parts)
