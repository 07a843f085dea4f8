"""Names from the client, made fit for DNS, headers and replies.

>>> domain('Bücher.Example.')
'xn--bcher-kva.example'
>>> domain('[192.0.2.1]') is None, domain('localhost') is None
(True, True)
>>> printable('caf\\xe9\\r\\n')
'caf???'
"""


def printable(s):
    """Client text for a header or a reply: printable ASCII, '?' for the rest."""
    if isinstance(s, bytes):
        s = s.decode('ascii', 'replace')
    s = str(s)
    return ''.join(c if ' ' <= c <= '~' else '?' for c in s)[:255] or '-'


def domain(name):
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


def address_domain(address):
    """The domain of local@domain (the part after the last @), or None."""
    if not isinstance(address, str) or '@' not in address:
        return None
    return domain(address.rsplit('@', 1)[1])
