"""Organizational domains (RFC 7489 section 3.2) from the Public Suffix List.

The list is Debian's (package publicsuffix,
/usr/share/publicsuffix/public_suffix_list.dat; config.PSL_FILE), read once
per process and kept as bytes: the few exception (!) and wildcard (*.) rules
are picked out, and a plain rule is one substring test on the file (about
0.1 ms); nothing else is built, so a process that needs one organizational
domain pays about a millisecond. (python3-publicsuffix2 would import
urllib.request and build its tree, about 150 ms per process here, and its
get_sld() answers 'test' for 'dmarc.test': the default rule "*" is not
applied to top-level domains the list does not name.)

The algorithm is the list's own (https://publicsuffix.org/list/): an
exception rule wins; else the matching rule with the most labels, a
wildcard matching any one label; no match: the rule "*". The organizational
domain is the public suffix plus one label; a name that is itself a public
suffix is its own. IDN rules are in the list as U-labels (UTF-8): A-labels
of the name are compared as U-labels.

>>> org_domain('mail.example.co.uk', _rules('uk\\nco.uk'))
'example.co.uk'
>>> org_domain('a.b.dmarc.test', _rules('uk'))
'dmarc.test'
>>> rules = _rules('// Japan\\njp\\n*.kobe.jp\\n!city.kobe.jp')
>>> org_domain('x.y.kobe.jp', rules), org_domain('www.city.kobe.jp', rules)
('x.y.kobe.jp', 'city.kobe.jp')
>>> org_domain('co.uk', _rules('uk\\nco.uk'))
'co.uk'
"""
_loaded = {}       # path -> Rules (empty ones when the file cannot be read)
_found = {}        # (path, domain) -> org domain
_FOUND_MAX = 4096


class Rules:
    def __init__(self, raw):
        if b'\r' in raw or b' \n' in raw or b'\t' in raw:
            # a rule is a line's first word (the list's format)
            raw = b'\n'.join(line.split()[0] for line in raw.splitlines() if line.split())
        self.text = b'\n' + raw.lower() + b'\n' if raw else b''
        self.exceptions = set(_starting(self.text, b'\n!'))
        self.wildcards = set(_starting(self.text, b'\n*.'))

    def __bool__(self):
        return bool(self.text)

    def has(self, rule):
        return b'\n' + rule + b'\n' in self.text


def _starting(text, prefix):
    """The rest of each line of text that starts with prefix[1:]."""
    pos = text.find(prefix)
    while pos >= 0:
        end = text.find(b'\n', pos + 1)
        yield text[pos + len(prefix):end]
        pos = text.find(prefix, end)


def _rules(text):
    return Rules(text.encode('utf-8'))


def load(path):
    """The list at path (empty Rules when it cannot be read)."""
    rules = _loaded.get(path)
    if rules is None:
        try:
            with open(path, 'rb') as f:
                raw = f.read()
        except OSError:
            raw = b''
        rules = _loaded[path] = Rules(raw)
    return rules


def _unicode(label):
    if label.startswith('xn--'):
        try:
            return label[4:].encode('ascii').decode('punycode')
        except (UnicodeError, ValueError):
            return label
    return label


def org_domain(domain, rules):
    """The organizational domain of domain (lower case, A-labels)."""
    labels = domain.split('.')
    n = len(labels)
    suffixes = [('.'.join(_unicode(label) for label in labels[i:])).encode('utf-8')
                for i in range(n)]
    suffix_len = 1                      # the default rule "*"
    for i in range(n):
        if suffixes[i] in rules.exceptions:      # an exception rule prevails
            suffix_len = n - i - 1
            break
    else:
        for i in range(n):              # longest first: the most labels
            if (i + 1 < n and suffixes[i + 1] in rules.wildcards) or rules.has(suffixes[i]):
                suffix_len = n - i
                break
    if suffix_len >= n:
        return domain
    return '.'.join(labels[n - suffix_len - 1:])


def organizational(domain, path):
    """org_domain() with the list at path, remembered per process."""
    key = (path, domain)
    org = _found.get(key)
    if org is None:
        org = org_domain(domain, load(path))
        if len(_found) >= _FOUND_MAX:
            _found.clear()
        _found[key] = org
    return org
