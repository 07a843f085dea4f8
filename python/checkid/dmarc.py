"""DMARC (RFC 7489) at end of data.

check() takes the message's header fields, the SPF result of the MAIL FROM
identity (with its domain: the MAIL FROM domain, or the HELO name for the
null sender, RFC 7208 section 2.4) and the DKIM signatures as dkim_check
verified them, and returns one Verdict per author domain:

  result       'pass', 'fail', 'none' (no policy published), 'temperror',
               'permerror' (RFC 7489 section 11.2)
  domain       the RFC5322.From domain (A-labels), or None
  applied      'p=reject' / 'sp=quarantine': the policy that applied, or None
  disposition  what to do after pct: 'none', 'quarantine', 'reject'
  reason       a short text for the header, or None

Author domains (section 6.6.1): every address of every From field; the
policy of each domain is evaluated and the strictest failing one wins. No
From field, or no address with a domain: permerror, nothing enforced. An
author that cannot be checked fails with the reject disposition, whatever
the rest says: when qmail-idcheck could not pass every header field
(hdrscut > 0: Hdrs is capped at 256 KB) a From may be among those left
out; a From the address parser gives up on (comments nested thousands
deep) may show a mail reader a domain; more than MAX_AUTHORS author
domains would each cost DNS lookups within one call's deadline.

Policy discovery (section 6.6.3): the TXT records at _dmarc.<domain> that
start with v=DMARC1; none: the same at the organizational domain (psl.py),
where sp= (else p=) applies; several: no policy. A record without a valid
p= (or with an invalid sp=) counts as p=none when it names a report
address (rua=), else it is a permerror. A DNS failure is a temperror.

Alignment (section 3.1): an SPF pass or a DKIM pass aligns when its domain
is the From domain (adkim/aspf=s, strict) or shares its organizational
domain (r, relaxed, the default). No aligned pass: fail; but temperror when
an identifier that would have aligned met a DNS failure (the sender can try
again). pct (section 6.6.4): a failing message is subject to the policy
with probability pct/100; otherwise one step lower (reject -> quarantine ->
none).

>>> parse_record('v=DMARC1; p=Reject; pct=50; adkim=s')['p']
'reject'
>>> parse_record('v=DMARC1; p=bogus; rua=mailto:d@example.com')['p']
'none'
>>> parse_record('v=spf1 -all') is None, parse_record('v=DMARC1; p=bogus')
(True, 'permerror')
"""
import collections

from . import names

Verdict = collections.namedtuple('Verdict', 'result domain applied disposition reason')
MAX_AUTHORS = 5
UNSEEN = 'not seen'          # the reasons of the fails of authors that cannot be checked
UNREADABLE = 'From not readable'
TOO_MANY = 'more than %d author domains' % MAX_AUTHORS
POLICIES = ('none', 'quarantine', 'reject')
DOWNGRADE = {'reject': 'quarantine', 'quarantine': 'none', 'none': 'none'}


# ---- the author domains ----

def _field(h):
    """(name lower case, value unfolded) of a header field."""
    if isinstance(h, bytes):
        h = h.decode('utf-8', 'surrogateescape')
    name, _, value = h.partition(':')
    return name.strip().lower(), value.replace('\r\n', '').replace('\n', '')


def _addresses(value):
    """The addresses of a From value: the strict parser's, else the lenient
    one's (what the strict parser refuses a mail reader may still show)."""
    from email.utils import getaddresses
    for strict in (True, False):
        try:
            pairs = getaddresses([value], strict=strict)
        except TypeError:                 # a Python without the strict parser
            pairs = getaddresses([value])
        except RecursionError:            # comments nested beyond the parser
            return None
        found = [a for _, a in pairs if a]
        if found:
            return found
    return []


def author_domains(Hdrs):
    """(domains in order, problem or None); problem UNREADABLE when the
    parser gave up on a From."""
    values = [value for name, value in map(_field, Hdrs or []) if name == 'from']
    if not values:
        return [], 'no From field'
    domains, problem = [], None
    for value in values:
        addresses = _addresses(value)
        if addresses is None:
            return domains, UNREADABLE
        if not addresses:
            problem = 'From without an address'
        for address in addresses:
            d = names.address_domain(address)
            if d is None:
                problem = 'From address without a domain'
            elif d not in domains:
                domains.append(d)
    return domains, problem


# ---- the policy record ----

def parse_record(text):
    """The tags of a DMARC record (names lower case; p, sp, adkim, aspf
    normalized, pct an int), 'permerror' for a record without a usable
    policy, None when text is not a DMARC record."""
    tags = {}
    for i, part in enumerate(text.split(';')):
        name, eq, value = part.partition('=')
        name, value = name.strip().lower(), value.strip()
        if i == 0 and (name != 'v' or not eq or value != 'DMARC1'):
            return None
        if eq and name not in tags:
            tags[name] = value
    p = tags.get('p', '').lower()
    sp = tags.get('sp', p).lower()
    if p not in POLICIES or sp not in POLICIES:
        if ':' not in tags.get('rua', ''):
            return 'permerror'
        p = sp = 'none'                   # section 6.6.3: as if p=none
        tags.pop('sp', None)
    tags['p'] = p
    if 'sp' in tags:
        tags['sp'] = sp
    for tag in ('adkim', 'aspf'):
        tags[tag] = 's' if tags.get(tag, 'r').lower() == 's' else 'r'
    pct = tags.get('pct', '100')
    tags['pct'] = int(pct) if pct.isdigit() and int(pct) <= 100 else 100
    return tags


def lookup(domain, timeout):
    """('record', tags), ('none', None) when no record, ('several', None),
    ('permerror', None) or ('temperror', reason), from _dmarc.<domain>."""
    from . import dnsio
    try:
        answers = dnsio.lookup('_dmarc.' + domain, 'TXT', timeout)
    except dnsio.DNSError as e:
        return 'temperror', str(e)
    found = []
    for record in answers:
        text = b''.join(record).decode('ascii', 'replace')
        tags = parse_record(text)
        if tags is not None:
            found.append(tags)
    if not found:
        return 'none', None
    if len(found) > 1:
        return 'several', None
    if found[0] == 'permerror':
        return 'permerror', None
    return 'record', found[0]


# ---- evaluation ----

def evaluate(domain, spf, signatures, record, organizational, draw):
    """The Verdict for one author domain. spf: (result, domain or None);
    signatures: dkim_check.Signature list; record(domain) is lookup() (the
    caller caches it); organizational(domain) the org domain; draw() a float
    in [0, 1) for pct."""
    status, tags = record(domain)
    at_org = False
    if status == 'none':
        org = organizational(domain)
        if org != domain:
            status, tags = record(org)
            at_org = True
    if status == 'temperror':
        return Verdict('temperror', domain, None, 'none', 'DMARC record lookup failed')
    if status == 'permerror':
        return Verdict('permerror', domain, None, 'none', 'malformed DMARC record')
    if status != 'record':
        return Verdict('none', domain, None, 'none', None)
    tag = 'sp' if at_org and 'sp' in tags else 'p'
    policy = tags[tag]
    applied = '%s=%s' % (tag, policy)

    def aligned(other, mode):
        if not other:
            return False
        if other == domain:
            return True
        return mode == 'r' and organizational(other) == organizational(domain)

    spf_result, spf_domain = spf
    spf_aligned = aligned(spf_domain, tags['aspf'])
    if (spf_result == 'pass' and spf_aligned) or any(
            s.result == 'pass' and aligned(s.domain, tags['adkim']) for s in signatures):
        return Verdict('pass', domain, applied, 'none', None)
    temporary = (spf_result == 'temperror' and spf_aligned) or any(
        s.result == 'temperror' and aligned(s.domain, tags['adkim']) for s in signatures)
    disposition = policy
    if tags['pct'] < 100 and not draw() * 100 < tags['pct']:
        disposition = DOWNGRADE[policy]
    return Verdict('temperror' if temporary else 'fail', domain, applied, disposition, None)


def check(Hdrs, spf, signatures, record, organizational, draw, hdrscut=0):
    """[Verdict], one per author domain (at least one)."""
    domains, problem = author_domains(Hdrs)
    reason = None
    if hdrscut > 0:
        reason = '%d header field%s %s' % (hdrscut, '' if hdrscut == 1 else 's', UNSEEN)
    elif problem == UNREADABLE:
        reason = UNREADABLE
    elif len(domains) > MAX_AUTHORS:
        reason, domains = TOO_MANY, []
    if reason:
        return [Verdict('fail', d, None, 'reject', reason) for d in domains or [None]]
    if not domains:
        return [Verdict('permerror', None, None, 'none', problem)]
    return [evaluate(d, spf, signatures, record, organizational, draw) for d in domains]
