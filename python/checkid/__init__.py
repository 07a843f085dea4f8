"""checkid: the reference checkID policy for qmail-idcheck.

For the client IP and an identity (the declared ID, else the HELO name,
else the MAIL FROM domain), in this order:

  1. the quick pre-screen: the IP on a DNSBL (off unless a zone is set);
     listed: REJECT 554 5.7.1 (prescreen.py)
  2. SPF for the identity with pyspf, method label SPF1 (spf_check.py)
  3. what config.SPF_ACTIONS says for that result; for pass (RATE): the
     Registry ratings of the identity, weighted, against the thresholds:
     ACCEPT / FILTER / REJECT (ratings.py; no services by default)
  3b. shared state (state.py; off unless configured): rate limits at MAIL
     and RCPT (ratelimit.py), greylisting at RCPT (greylist.py); a refusal
     is TEMPFAIL 451 4.7.1, final for that command only;
  4. before the data, an ACCEPT or FILTER is held back as CONTINUE (config
     DEFER; always while greylisting or a rate limit is on), so that the
     policy sees the message;
  5. at end of data: DKIM (dkim_check.py, one verification per message),
     SPF of the MAIL FROM and HELO identities, DMARC (dmarc.py), whose
     policy may make the verdict stricter (p=reject: REJECT 550 5.7.1, p=
     quarantine: FILTER); incoming Authentication-Results fields that claim
     to be ours are renamed Original-Authentication-Results (a message with
     header fields cut from Hdrs, or more than 500 such, is refused: one
     of them could not be renamed).

Headers: header0 'Authent:' with "IP ID SPF1 RESULT[ ratings=S1:A,...]",
then 'DKIM-Check:' with "dkim=pass header.d=... header.s=...", then the RFC
8601 'Authentication-Results:' (authresults.py) with spf, dkim and dmarc.

checkID returns the seed's (action, reply, headers), or (action, reply,
headers, edits) when incoming fields are to be renamed: edits is a list of
{'field': i, 'rename': 'Original-Authentication-Results:'}, i indexing
Hdrs; qmail-idcheck carries them out. idcheck.hdrscut (the header fields
qmail-idcheck left out of Hdrs, for its cap) is read where it exists.

Everything an administrator sets is in config.py, each setting overridable
per client by a CHECKID_* variable from tcprules. DNS goes through dnsio.py
(idcheck.dns inside qmail-idcheck, pydns with DNSCACHEIP outside). The
heavy imports (pyspf, dkimpy, authres) happen at their first use. See
checkid(7).
"""
import time as _time

from . import config as _config
from . import dnsio as _dnsio
from .names import domain as _domain, printable as _printable

__all__ = ['checkID']

_cache = {}            # per process: one SMTP session embedded, many in a qmail-idcheckd worker
_CACHE_MAX = 256
_CACHE_TTL = 300.0     # seconds: a qmail-idcheckd worker lives long, DNS data changes
_SEVERITY = {'ACCEPT': 0, 'CONTINUE': 0, 'FILTER': 1, 'DISCARD': 2, 'TEMPFAIL': 3, 'REJECT': 4}
AR_LABEL = 'Authentication-Results:'
AR_RENAMED = 'Original-Authentication-Results:'
EDITS_MAX = 500          # the edits one checkID answer may ask for (qmail-idcheck(8))


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
    cfg = _config.for_environ(env)
    trace = _Trace(env.get('CHECKID_TRACE'))
    for w in cfg.warnings:
        _log('checkid: ' + w)

    ip = _address(IP)
    identity = _identity(ID, H, S)
    shown_ip = _printable(IP) if IP is not None else '-'
    shown_id = _printable(identity) if identity else '-'
    stage = _stage(R, Hdrs, Body)
    fill = {'ip': shown_ip, 'id': shown_id, 'zone': cfg.prescreen_zone, 'ratings': '',
            'from': '-'}

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

    # 2. SPF of the identity: the seed's check, label SPF1
    if ip is None or identity is None:
        result = 'none'
    else:
        result = _spf(ip, 'postmaster@' + identity, identity, cfg, trace)
    action = cfg.spf_actions[result]
    reason = result

    # 3. the Registry ratings, when SPF says so
    marks = None
    trusted = False       # an SPF pass the ratings accept (greylisting may skip it)
    if action == 'RATE' and (identity is None or not cfg.services):
        action = cfg.unrated          # nobody to rate, or nobody to ask
    if action == 'RATE':
        from . import ratings
        # a failed lookup ('?') is not kept: in qmail-idcheckd the cache
        # outlives the session, and an outage must not be remembered
        marks = _cached(('ratings', identity, cfg.key()),
                        lambda: ratings.lookup(identity, cfg.services, cfg.dns_timeout),
                        keep=lambda m: all(mark[1] != '?' for mark in m))
        trace.mark('ratings')
        action = ratings.decide(marks, cfg)
        trusted = action == 'ACCEPT' and ratings.score(marks) is not None
        reason = 'ratings'
        fill['ratings'] = 'ratings=' + ratings.text(marks)

    if action in ('REJECT', 'TEMPFAIL'):
        trace.done(action)
        return (action, _reply(reason, action, fill), [])

    # 3b. shared state (issue 14, state.py): the rate limits at MAIL and
    # RCPT, greylisting at RCPT; off unless configured
    if cfg.stateful and stage != 'data' and S is not None and action != 'DISCARD':
        from . import state
        refused = state.check(stage, ip, identity if result == 'pass' else None, S, R,
                              trusted, cfg, env, _log)
        trace.mark('state')
        if refused is not None:
            trace.done('TEMPFAIL')
            return ('TEMPFAIL', _reply(refused[0], 'TEMPFAIL', dict(fill, **refused[1])), [])

    text = '%s %s SPF1 %s' % (shown_ip, shown_id, result.upper())
    if marks is not None:
        text += ' ' + fill['ratings']
    headers = [{'text': text, 'label': 'Authent:'}]

    if stage != 'data':
        # 4. hold an ACCEPT or FILTER back until the message is seen
        # (the shared state's checks need every RCPT: CONTINUE whatever DEFER says)
        if action in ('ACCEPT', 'FILTER') and (_defer(cfg, S) or (cfg.stateful and S is not None)):
            action = 'CONTINUE'
        elif action in ('ACCEPT', 'FILTER') and S is not None:
            # final before the data: what is known so far
            spf_from, spf_helo = _envelope_spf(ip, H, S, cfg, trace)
            from . import authresults
            headers.append({'label': AR_LABEL, 'text': authresults.field(
                _authserv_id(cfg, env), spf_from, spf_helo)})
        trace.done(action)
        # At MAIL the seed's reply; later, the MTA's own reply stands.
        return (action, _reply('ok', action, fill) if stage == 'mail' else None, headers)

    # 5. end of data
    if action == 'CONTINUE':
        action = 'ACCEPT'
    return _end_of_data(action, ip, H, S, Hdrs, Body, cfg, env, fill, headers, trace)


def _end_of_data(action, ip, H, S, Hdrs, Body, cfg, env, fill, headers, trace):
    from . import authresults
    hdrscut = _hdrscut()
    if hdrscut:
        _log('checkid: %d header field(s) not passed to checkID (Hdrs is capped): an '
             'Authentication-Results field among them could not be renamed; refused'
             % hdrscut)
    bodysize = _bodysize(Body)
    signatures = None
    if cfg.dkim and Hdrs:
        from . import dkim_check
        signatures = dkim_check.check(
            Hdrs, Body, bodysize, cfg.dns_timeout,
            txt=lambda name, timeout: _cached(('txt', name, cfg.key()),
                                              lambda: _dnsio.lookup(name, 'TXT', timeout)))
        trace.mark('dkim')
        headers.append({'text': dkim_check.summary(signatures, bodysize)[1],
                        'label': 'DKIM-Check:'})
    spf_from, spf_helo = _envelope_spf(ip, H, S, cfg, trace)

    verdicts = []
    if cfg.dmarc:
        verdicts = _dmarc(Hdrs, S, H, spf_from, signatures or [], cfg, hdrscut, trace)
        dmarc_action, why, domain = _dmarc_action(verdicts, cfg)
        if _SEVERITY[dmarc_action] > _SEVERITY[action]:
            action = dmarc_action
            fill['from'] = _printable(domain) if domain else '-'
            if action in ('REJECT', 'TEMPFAIL'):
                trace.done(action)
                return (action, _reply(why, action, fill), [])

    # RFC 8601 section 5: a field claiming to be ours must not pass as ours;
    # one left out of Hdrs cannot be renamed, nor more than checkID may edit
    ours = _authserv_id(cfg, env)
    edits = [{'field': i, 'rename': AR_RENAMED}
             for i, value in authresults.incoming(Hdrs) if authresults.claims_ours(value, ours)]
    trace.mark('authres')
    if hdrscut or len(edits) > EDITS_MAX:
        action = 'REJECT'
        trace.done(action)
        return (action, _reply('hdrs-cut' if hdrscut else 'ar-forged', action, fill), [])
    headers.append({'label': AR_LABEL, 'text': authresults.field(
        ours, spf_from, spf_helo, signatures, verdicts, bodysize)})
    trace.done(action)
    if edits:
        return (action, None, headers, edits)
    return (action, None, headers)


# ---- helpers ----

def _spf(ip, sender, helo, cfg, trace):
    """SPF of sender from ip (helo for %{h}), cached; a temperror is not."""
    def compute():
        from . import spf_check
        spf_check.module()
        trace.mark('import spf')
        result, _ = spf_check.check_sender(ip, sender, helo, cfg.dns_timeout, cfg.spf_timeout)
        trace.mark('spf')
        return result
    return _cached(('spf', ip, sender, helo, cfg.key()), compute,
                   keep=lambda r: r != 'temperror')


def _envelope_spf(ip, H, S, cfg, trace):
    """((result, smtp.mailfrom value), (result, smtp.helo name)) for the MAIL
    FROM and HELO identities (RFC 7208 sections 2.4 and 2.3); None for an
    identity without a domain to check. The null sender is postmaster@HELO."""
    from .names import address_domain
    helo = _domain(H)
    mailfrom = None
    if ip is not None and S is not None:
        if S == '':
            if helo:
                mailfrom = (_spf(ip, 'postmaster@' + helo, helo, cfg, trace),
                            'postmaster@' + helo)
        else:
            d = address_domain(S)
            if d:
                from .authresults import mailfrom_value
                local = S.rsplit('@', 1)[0]
                shown_helo = helo or (_printable(H) if H else 'unknown')
                mailfrom = (_spf(ip, local + '@' + d, shown_helo, cfg, trace),
                            mailfrom_value(S, d))
    spf_helo = None
    if ip is not None and helo:
        spf_helo = (_spf(ip, 'postmaster@' + helo, helo, cfg, trace), helo)
    return mailfrom, spf_helo


def _dmarc(Hdrs, S, H, spf_from, signatures, cfg, hdrscut, trace):
    from . import dmarc, psl
    from .names import address_domain
    if S == '':
        spf_domain = _domain(H)
    else:
        spf_domain = address_domain(S) if S else None
    spf = (spf_from[0] if spf_from else 'none', spf_domain)
    if not psl.load(cfg.psl_file):
        _log('checkid: the Public Suffix List %s cannot be read: organizational '
             'domains are the last two labels' % _printable(cfg.psl_file))

    def record(domain):
        return _cached(('dmarc', domain, cfg.key()),
                       lambda: dmarc.lookup(domain, cfg.dns_timeout),
                       keep=lambda r: r[0] != 'temperror')

    def draw():
        if _config.RANDOM is not None:
            return _config.RANDOM()
        import random
        return random.random()

    verdicts = dmarc.check(Hdrs, spf, signatures, record,
                           lambda d: psl.organizational(d, cfg.psl_file), draw, hdrscut)
    trace.mark('dmarc')
    return verdicts


def _dmarc_action(verdicts, cfg):
    """(action, reply reason, domain) for the strictest failing verdict."""
    from . import dmarc
    worst = ('ACCEPT', 'ok', None)
    for v in verdicts:
        if v.result not in ('fail', 'temperror') or v.disposition == 'none':
            continue
        action = cfg.dmarc_actions[v.disposition]
        why = 'dmarc'
        if v.applied is None:                           # an author that cannot be checked
            why = 'dmarc-unseen' if v.reason.endswith(dmarc.UNSEEN) else 'dmarc-author'
        if v.result == 'temperror' and action == 'REJECT':
            action, why = 'TEMPFAIL', 'dmarc-temp'      # the sender may try again
        if _SEVERITY[action] > _SEVERITY[worst[0]]:
            worst = (action, why, v.domain)
    return worst


def _authserv_id(cfg, env):
    from . import authresults
    return authresults.authserv_id(
        cfg, env, lambda home: _cached(('me', home), lambda: authresults.control_me(home)))


def _defer(cfg, S):
    if cfg.defer is None:
        return S is not None
    return cfg.defer


def _cached(key, compute, keep=lambda value: True):
    import os
    key = key + (os.environ.get('DNSCACHEIP'),)
    now = _time.monotonic()
    hit = _cache.get(key)
    if hit is not None and now - hit[0] < _CACHE_TTL:
        return hit[1]
    value = compute()
    if keep(value):
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[key] = (now, value)
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


def _hdrscut():
    """How many header fields qmail-idcheck left out of Hdrs (its cap)."""
    if _dnsio.idcheck is not None:
        try:
            return max(0, int(getattr(_dnsio.idcheck, 'hdrscut', 0) or 0))
        except (TypeError, ValueError):
            return 0
    return 0


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
