"""Registry ratings: what each configured service says about an identity.

A service NAME with zone ZONE rates identity example.com with a TXT record
at example.com.ZONE whose text starts with a grade letter A, B, C or D (case
ignored; after the letter, a space and free text may follow: "B rated
2026-01-01"). Several records: the worst grade counts. The marks shown in
the Authent header are the grade, '-' (the service has no record for the
identity) or '?' (the lookup failed or the record is unreadable); only
grades count.

score(): the weighted mean of the counted grades (config.GRADES: A=9 B=7
C=5 D=0), or None when no service gave one. decide(): ACCEPT at
config.ACCEPT_AT and above, FILTER at config.FILTER_AT and above, else
REJECT; unrated: config.UNRATED.
"""
from . import dnsio
from .config import GRADES


def grade_of(records):
    """The grade ('A'-'D') from a list of TXT records, '-' for none, '?' for
    unreadable ones."""
    if not records:
        return '-'
    grades = []
    for rec in records:
        text = b''.join(rec).strip()
        letter = text[:1].upper().decode('ascii', 'replace')
        if letter in GRADES and (len(text) == 1 or text[1:2] in (b' ', b'\t', b';', b',')):
            grades.append(letter)
    if not grades:
        return '?'
    return min(grades, key=lambda g: GRADES[g])      # the worst


def lookup(identity, services, timeout=5.0):
    """[(name, mark, weight)] for each service, in configured order."""
    out = []
    for name, zone, weight in services:
        try:
            mark = grade_of(dnsio.lookup('%s.%s' % (identity, zone), 'TXT', timeout))
        except dnsio.DNSError:
            mark = '?'
        out.append((name, mark, weight))
    return out


def text(marks):
    """'S1:A,M2:A,H1:B'"""
    return ','.join('%s:%s' % (name, mark) for name, mark, _ in marks)


def score(marks):
    total = weights = 0.0
    for _, mark, weight in marks:
        if mark in GRADES and weight > 0:
            total += GRADES[mark] * weight
            weights += weight
    return total / weights if weights else None


def decide(marks, cfg):
    s = score(marks)
    if s is None:
        return cfg.unrated
    if s >= cfg.accept_at - 1e-9:
        return 'ACCEPT'
    if s >= cfg.filter_at - 1e-9:
        return 'FILTER'
    return 'REJECT'
