"""RFC 8601 Authentication-Results, built and read with python3-authres.

authserv_id() is this host's name in the field: CHECKID_AUTHSERV_ID, else
the first line of control/me under the qmail home (CHECKID_QMAIL_HOME,
/var/qmail), else TCPLOCALHOST, else the host name.

field() returns the field's text (without the label): the authserv-id, then

  spf=RESULT smtp.mailfrom=ADDRESS     the MAIL FROM identity (RFC 7208 2.4)
  spf=RESULT smtp.helo=NAME            the HELO identity (RFC 7208 2.3)
  dkim=RESULT header.d=D header.s=S header.b=B    per signature (RFC 6008's
                                       8-character header.b tells them apart)
  dkim=none                            no signature
  dmarc=RESULT (p=P dis=D) header.from=DOMAIN     per author domain

each part only when it was evaluated. The result words are RFC 8601's
(section 2.7) and RFC 7489's (section 11.2).

claims_ours() reads an incoming field's authserv-id (CFWS and comments
before it, a token or a quoted-string, RFC 8601 section 2.2) with authres's
grammar rules, applied to the field's start (see claimed_id). RFC 8601
section 5: a field that names ours, compared without regard to case, or
whose authserv-id cannot be read, must not reach the mailbox as if this
host had written it.
"""
import re

_authres = None
READ_MAX = 512        # characters of an incoming field read for its authserv-id
                      # (authres's parser is quadratic; beyond: unreadable)
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`{|}~-]+\Z")        # RFC 2045 token
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")


def module():
    """authres with its DKIM header.b and DMARC extensions, at first use."""
    global _authres
    if _authres is None:
        import authres
        import authres.dkim_b
        import authres.dmarc
        _authres = authres
    return _authres


def authserv_id(cfg, env, control_me=None):
    """control_me(home) reads control/me (the caller may cache it)."""
    for source in (lambda: cfg.authserv_id, lambda: (control_me or _control_me)(cfg.qmail_home),
                   lambda: env.get('TCPLOCALHOST')):
        candidate = (source() or '').strip()
        if candidate and _TOKEN.match(candidate):
            return candidate.lower()
    import socket
    name = socket.gethostname()
    return name.lower() if _TOKEN.match(name or '') else 'localhost'


def _control_me(home):
    import os
    try:
        with open(os.path.join(home, 'control', 'me'), 'rb') as f:
            return f.readline(256).decode('ascii', 'replace').strip()
    except OSError:
        return ''


control_me = _control_me


def mailfrom_value(sender, domain):
    """What smtp.mailfrom shows: the address, or its domain alone when the
    local part is not a plain dot-atom (a pvalue must stay unquoted) or is
    longer than RFC 5321's 64 octets (the field must stay foldable)."""
    local = sender.rsplit('@', 1)[0] if '@' in sender else ''
    if local and len(local) <= 64 and _LOCAL.match(local):
        return '%s@%s' % (local, domain)
    return domain


def field(authserv_id, spf_mailfrom=None, spf_helo=None, signatures=None, dmarc=(),
          bodysize=None):
    """spf_mailfrom: (result, value) or None; spf_helo: (result, name) or
    None; signatures: dkim_check.Signature list, or None when DKIM was not
    checked; dmarc: dmarc.Verdict list."""
    ar = module()
    prop = ar.core.AuthenticationResultProperty
    results = []
    if spf_mailfrom:
        results.append(ar.SPFAuthenticationResult(result=spf_mailfrom[0],
                                                  smtp_mailfrom=spf_mailfrom[1]))
    if spf_helo:
        results.append(ar.SPFAuthenticationResult(result=spf_helo[0], smtp_helo=spf_helo[1]))
    if signatures is not None:
        if not signatures:
            results.append(ar.dkim_b.DKIMAuthenticationResult(result='none'))
        for sig in signatures:
            if sig.result == 'toolarge':
                reason = 'body too large to verify (%d bytes)' % (bodysize or 0)
                results.append(ar.dkim_b.DKIMAuthenticationResult(result='neutral', reason=reason))
                break
            props = [prop('header', name, value)
                     for name, value in (('d', sig.domain), ('s', sig.selector), ('b', sig.b))
                     if value]
            results.append(ar.dkim_b.DKIMAuthenticationResult(result=sig.result, properties=props))
    for v in dmarc:
        comment = None
        if v.applied:
            comment = '%s dis=%s' % (v.applied, v.disposition)
        results.append(ar.dmarc.DMARCAuthenticationResult(
            result=v.result, result_comment=comment, reason=v.reason, header_from=v.domain))
    return ar.AuthenticationResultsHeader(authserv_id=authserv_id, results=results).header_value()


def claimed_id(value):
    """The authserv-id an incoming Authentication-Results value names (lower
    case), or None when it cannot be read.

    Only the start is read, [CFWS] authserv-id, with authres's grammar
    pieces: a field whose results are malformed still names its author.
    authres's CFWS rule stops after a comment when white space preceded it
    (it would leave ' id' in ' (c) id'), so it is applied until it takes
    nothing more."""
    ar = module()
    h = ar.AuthenticationResultsHeader()
    h._parse_text = value.replace('\r\n', '').replace('\n', '')[:READ_MAX]
    try:
        for _ in range(READ_MAX):
            if not h._parse_rfc5322_cfws():
                break
        found = h._parse_rfc2045_value()
    except Exception:        # SyntaxError, RecursionError (nested comments): unreadable
        return None
    rest = h._parse_text
    if not found or (rest and rest[0] not in ' \t;(0123456789'):
        return None
    return found.lower()


def claims_ours(value, ours):
    claimed = claimed_id(value)
    return claimed is None or claimed == ours.lower()


def incoming(Hdrs):
    """[(index in Hdrs, value)] of the Authentication-Results fields."""
    out = []
    for i, h in enumerate(Hdrs or []):
        if isinstance(h, bytes):
            h = h.decode('utf-8', 'surrogateescape')
        name, colon, value = h.partition(':')
        if colon and name.strip().lower() == 'authentication-results':
            out.append((i, value))
    return out
