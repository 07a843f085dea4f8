"""Test policy for tests/test_checkid_dns.py: the declared ID is a query
"NAME TYPE [TIMEOUT]" for idcheck.dns; the reply text is the repr of the
answer, or of the exception as (class name, message)."""
import time

import idcheck


def checkID(IP=None, ID=None, H=None, S=None, R=None, Hdrs=None, Body=None):
    words = (ID or '').split(' ')
    name, qtype = words[0], words[1] if len(words) > 1 else 'A'
    # H 'bytes': the name goes in as bytes
    args = [name.encode('utf-8', 'surrogateescape') if H == 'bytes' else name, qtype]
    if len(words) > 2:
        args.append(float(words[2]))
    t = time.monotonic()
    try:
        value = repr(idcheck.dns(*args))
    except Exception as e:
        value = repr((type(e).__name__, isinstance(e, idcheck.DNSError), str(e)))
    ms = int((time.monotonic() - t) * 1000)
    return ('ACCEPT', (250, '', value), [{'label': 'X-Ms:', 'text': str(ms)}])
