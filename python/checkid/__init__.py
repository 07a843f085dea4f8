"""checkid: the reference checkID policy for qmail-idcheck.

For the client IP and an identity (the declared ID, else the HELO name,
else the MAIL FROM domain), in this order:

  1. the quick pre-screen: the IP on a DNSBL (off unless a zone is set);
     listed: REJECT 554 5.7.1 (prescreen.py)
  2. SPF for the identity with pyspf, method label SPF1 (spf_check.py)
  3. what config.SPF_ACTIONS says for that result; for pass (RATE): the
     Registry ratings of the identity, weighted, against the thresholds:
     ACCEPT / FILTER / REJECT (ratings.py)
  4. at end of data, DKIM (dkim_check.py), in a header of its own

Headers: header0 'Authent:' with "IP ID SPF1 RESULT[ ratings=S1:A,...]",
and at end of data 'DKIM-Check:' with "dkim=pass header.d=... header.s=...".

Everything an administrator sets is in config.py, each setting overridable
per client by a CHECKID_* variable from tcprules. DNS goes through dnsio.py
(idcheck.dns inside qmail-idcheck, pydns with DNSCACHEIP outside). The
heavy imports (pyspf, dkimpy) happen at their first use. See checkid(7).
"""
import time as _time

from . import config as _config
from . import dnsio as _dnsio

__all__ = ['checkID']

_cache = {}            # per process: one SMTP session embedded, many in a qmail-idcheckd worker
_CACHE_MAX = 256


def checkID( IP=None, ID=None, H=None, S=None, R=[], Hdrs=[], Body=None ):
    '''
    Check that ID authorizes sending email from a machine with address IP.
    H, S, and R are the rest of the envelope information, whatever is known at the
    time of this call.
    ID should be left None if there is no declared ID.
    H and S are the names from the HELO/EHLO and MAIL FROM commands.
    R is a list of addresses from the RCPT TO command.
    Returns ( action, SMTP_reply, headers )
    action: 'ACCEPT', 'REJECT', 'FILTER', 'CONTINUE', 'TEMPFAIL', 'DISCARD'
    see http://www.milter.org/milter_api/api.html
    SMTP_reply = ( SMTP_code, Xcode, explanation )
    SMTP_code: SMTP Reply Code per RFC-2821
    Xcode: Enhanced Mail System Status Code per RFC-3463
    headers = [header0, header1, ...]
    header0 = {'label': 'Authent:',
    'text': <standard authentication parameters> }
    headerN = {'label': <method-specific label:>,
    'text': <method-specific text> }
    Headers to be pre-pended in the order listed. 'header0' is the very first
    header from this Administrative Domain, 'header1' is above that, etc. Other
    headers may be inserted in this list if required by a method, e.g. SPF
    requires that the 'Received:' header for the border MTA be below its header.
    Text strings have no line breaks. Folding white space
    should be added before prepending a long header.
    >>> checkID('192.0.2.1', 'example.net')
    ('REJECT', (550, '5.7.1', "Sending MTA '192.0.2.1' not
    authorized by \
    'example.net'"), [])
    >>> checkID('192.0.2.1', 'example.com')
    ('ACCEPT', (250, '', 'Sender OK'), \
    [{'text': '192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B', \
    'label': 'Authent:'}])
    '''
    env = _dnsio.environ()
    cfg = _config.Config(env)
    trace = _Trace(env.get('CHECKID_TRACE'))
    for w in cfg.warnings:
        _log('checkid: ' + w)

    ip = _address(IP)
    identity = _identity(ID, H, S)
    shown_ip = _printable(IP) if IP is not None else '-'
    shown_id = _printable(identity) if identity else '-'
    stage = _stage(R, Hdrs, Body)
    fill = {'ip': shown_ip, 'id': shown_id, 'zone': cfg.prescreen_zone, 'ratings': ''}

    # 1. the pre-screen
    if cfg.prescreen_zone:
        from . import prescreen
        state, detail = prescreen.check(ip, cfg, env, cfg.dns_timeout)
        trace.mark('prescreen')
        if state == 'listed':
            return ('REJECT', _reply('prescreen', 'REJECT', fill), [])
        if state == 'error':
            _log('checkid: pre-screen of %s in %s failed: %s'
                 % (shown_ip, cfg.prescreen_zone, _printable(detail)))

    # 2. SPF
    if ip is None or identity is None:
        result = 'none'
    else:
        result = _cached(('spf', ip, identity, cfg.key()), lambda: _spf(ip, identity, cfg, trace),
                         keep=lambda r: r != 'temperror')
    action = cfg.spf_actions[result]
    reason = result

    # 3. the Registry ratings, when SPF says so
    marks = None
    if action == 'RATE' and identity is None:
        action = cfg.unrated          # nobody to rate (CHECKID_SPF_NONE=RATE)
    if action == 'RATE':
        from . import ratings
        # a failed lookup ('?') is not kept: in qmail-idcheckd the cache
        # outlives the session, and an outage must not be remembered
        marks = _cached(('ratings', identity, cfg.key()),
                        lambda: ratings.lookup(identity, cfg.services, cfg.dns_timeout),
                        keep=lambda m: all(mark[1] != '?' for mark in m))
        trace.mark('ratings')
        action = ratings.decide(marks, cfg)
        reason = 'ratings'
        fill['ratings'] = 'ratings=' + ratings.text(marks)

    if action in ('REJECT', 'TEMPFAIL'):
        trace.done(action)
        return (action, _reply(reason, action, fill), [])

    text = '%s %s SPF1 %s' % (shown_ip, shown_id, result.upper())
    if marks is not None:
        text += ' ' + fill['ratings']
    headers = [{'text': text, 'label': 'Authent:'}]

    # 4. DKIM at end of data
    if stage == 'data':
        if cfg.dkim and Hdrs:
            from . import dkim_check
            _, dtext = dkim_check.verify(Hdrs, Body, _bodysize(Body), cfg.dns_timeout)
            trace.mark('dkim')
            headers.append({'text': dtext, 'label': 'DKIM-Check:'})
        if action == 'CONTINUE':
            action = 'ACCEPT'
    elif action == 'ACCEPT' and cfg.defer:
        action = 'CONTINUE'
    trace.done(action)
    # At MAIL the seed's reply; later, the MTA's own reply stands.
    return (action, _reply('ok', action, fill) if stage == 'mail' else None, headers)


# ---- helpers ----

def _spf(ip, identity, cfg, trace):
    from . import spf_check
    spf_check.module()
    trace.mark('import spf')
    result, _ = spf_check.check(ip, identity, cfg.dns_timeout, cfg.spf_timeout)
    trace.mark('spf')
    return result


def _cached(key, compute, keep=lambda value: True):
    import os
    key = key + (os.environ.get('DNSCACHEIP'),)
    if key in _cache:
        return _cache[key]
    value = compute()
    if keep(value):
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[key] = value
    return value


def _reply(reason, action, fill):
    code, xcode, text = _config.REPLIES.get(reason, _config.REPLIES['fail'])
    # The proxy wants 5xx with REJECT and 4xx with TEMPFAIL: an administrator
    # may map any result to either.
    if action == 'REJECT' and not 500 <= code < 600:
        code, xcode = 550, '5' + xcode[1:] if xcode else '5.7.1'
    elif action == 'TEMPFAIL' and not 400 <= code < 500:
        code, xcode = 451, '4' + xcode[1:] if xcode else '4.7.1'
    elif action not in ('REJECT', 'TEMPFAIL'):
        code, xcode, text = _config.REPLIES['ok']
    return (code, xcode, text % fill)


def _printable(s):
    """Client text for a header or a reply: printable ASCII, '?' for the rest."""
    if isinstance(s, bytes):
        s = s.decode('ascii', 'replace')
    s = str(s)
    return ''.join(c if ' ' <= c <= '~' else '?' for c in s)[:255] or '-'


def _address(IP):
    """The client address as pyspf and DNSBLs want it, or None."""
    if not isinstance(IP, str) or not IP or not IP.isascii():
        return None
    ip = IP.strip()
    if ip.startswith('[') and ip.endswith(']'):
        ip = ip[1:-1]
    ip = ip.split('%', 1)[0]
    if ip.lower().startswith('::ffff:') and '.' in ip:
        ip = ip[7:]
    import socket
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_ntop(family, socket.inet_pton(family, ip))
        except (OSError, ValueError):
            pass
    return None


def _domain(name):
    """A domain name fit for DNS (IDNA applied, lower case), or None."""
    if not isinstance(name, str):
        return None
    name = name.strip().rstrip('.')
    if not name or name.startswith('['):
        return None
    if not name.isascii():
        try:
            name = name.encode('idna').decode('ascii')
        except (UnicodeError, ValueError):
            return None
    name = name.lower()
    labels = name.split('.')
    if len(name) > 253 or len(labels) < 2:
        return None
    for label in labels:
        if not label or len(label) > 63 or label.startswith('-') or label.endswith('-'):
            return None
        if not all(c.isalnum() or c in '-_' for c in label):
            return None
    return name


def _identity(ID, H, S):
    """The declared ID, else the HELO name, else the MAIL FROM domain."""
    for candidate in (ID, H):
        d = _domain(candidate)
        if d:
            return d
    if isinstance(S, str) and '@' in S:
        return _domain(S.rsplit('@', 1)[1])
    return None


def _stage(R, Hdrs, Body):
    if _dnsio.idcheck is not None and getattr(_dnsio.idcheck, 'stage', None):
        return _dnsio.idcheck.stage
    if Body is not None:
        return 'data'
    return 'rcpt' if R else 'mail'


def _bodysize(Body):
    if _dnsio.idcheck is not None:
        return getattr(_dnsio.idcheck, 'bodysize', None)
    return None


def _log(text):
    if _dnsio.idcheck is not None:
        _dnsio.idcheck.log(text)


class _Trace:
    """CHECKID_TRACE=1: one log line per call with the milliseconds spent
    in each part."""

    def __init__(self, on):
        self.on = bool(on) and on not in ('0', '')
        self.t0 = self.last = _time.perf_counter()
        self.parts = []

    def mark(self, what):
        if self.on:
            now = _time.perf_counter()
            self.parts.append('%s=%.2fms' % (what.replace(' ', '_'), (now - self.last) * 1000))
            self.last = now

    def done(self, action):
        if self.on:
            self.mark('rest')
            _log('checkid: trace %s total=%.2fms %s'
                 % (action, (_time.perf_counter() - self.t0) * 1000, ' '.join(self.parts)))
