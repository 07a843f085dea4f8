"""SPF (RFC 7208) with pyspf (Debian python3-spf), its lookups through dnsio.

pyspf picks its resolver when it is imported: dnspython if it can, else
pydns. Neither is wanted inside qmail-idcheck, so the import runs with
dnspython hidden and, embedded, with a stand-in for pydns; then
spf.DNSLookup is replaced by lookup() below, which asks dnsio (idcheck.dns
embedded, pydns with DNSCACHEIP outside).
"""
import sys
import types

from . import dnsio

_spf = None
_MISSING = object()


class _hidden_resolvers:
    """During an import: dnspython cannot be imported; embedded, pydns is a
    stand-in with the few names pyspf and dkim touch at import time."""

    def __enter__(self):
        import warnings
        self.warnings = warnings.catch_warnings()
        self.warnings.__enter__()
        warnings.simplefilter('ignore', DeprecationWarning)   # pydns imports asyncore
        self.saved = {k: sys.modules.get(k, _MISSING) for k in ('dns', 'DNS')}
        sys.modules['dns'] = None          # import dns -> ImportError
        if dnsio.EMBEDDED:
            stub = types.ModuleType('DNS', 'stand-in: lookups go through idcheck.dns')
            stub.Type = types.SimpleNamespace(SPF=99, typemap={99: 'SPF'})
            stub.DNSError = type('DNSError', (Exception,), {})
            stub.DiscoverNameServers = lambda: None
            sys.modules['DNS'] = stub
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is _MISSING:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
        self.warnings.__exit__(*exc)
        return False


def module():
    """pyspf, imported at the first use, its DNS through dnsio."""
    global _spf
    if _spf is None:
        with _hidden_resolvers():
            import spf
        spf.DNSLookup = lookup
        _spf = spf
    return _spf


def lookup(name, qtype, strict=True, timeout=20):
    """spf.DNSLookup's interface: [((name, qtype), value)]."""
    spf = module()
    try:
        values = dnsio.lookup(name, qtype, min(float(timeout), _timeout))
    except dnsio.DNSError as e:
        raise spf.TempError('DNS %s' % e)
    return [((name, qtype), v) for v in values]


_timeout = 5.0     # seconds per lookup; set by check()


def check(ip, identity, dns_timeout=5.0, total_timeout=15.0):
    """The SPF result ('pass', 'fail', 'softfail', 'neutral', 'none',
    'temperror', 'permerror') and pyspf's explanation, for the domain
    identity sending from ip: the seed's check, postmaster@identity with
    identity as the HELO name (RFC 7208 section 2.3 for a HELO identity)."""
    return check_sender(ip, 'postmaster@' + identity, identity, dns_timeout, total_timeout)


def check_sender(ip, sender, helo, dns_timeout=5.0, total_timeout=15.0):
    """SPF (RFC 7208 section 2.4) of sender, the MAIL FROM address with its
    real local part (for the %{l} and %{s} macros), from ip, helo being the
    HELO/EHLO name (%{h}). For the HELO identity pass 'postmaster@' + helo."""
    global _timeout
    spf = module()
    _timeout = dns_timeout
    try:
        result, explanation = spf.check2(i=ip, s=sender, h=helo,
                                         timeout=dns_timeout, querytime=total_timeout)
    except spf.TempError as e:
        return 'temperror', str(e)
    except (spf.PermError, ValueError, UnicodeError) as e:
        return 'permerror', str(e)
    except Exception as e:          # a local part pyspf cannot take must not fault the call
        return 'permerror', '%s: %s' % (type(e).__name__, e)
    result = str(result).lower()
    if result not in ('pass', 'fail', 'softfail', 'neutral', 'none', 'temperror', 'permerror'):
        result = 'permerror'
    return result, explanation
