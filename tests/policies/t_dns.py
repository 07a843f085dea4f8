"""Test policy for tests/test_checkid_embedded.py: the declared ID is a query
"NAME TYPE [TIMEOUT]" for idcheck.dns (NAME may hold spaces: the type is the
last word, or the last but one when the last is a number); the reply text is
the repr of the answer, or of the exception as (class name, is a DNSError,
message)."""
import time

import idcheck


def checkID(IP=None, ID=None, H=None, S=None, R=None, Hdrs=None, Body=None):
    words = (ID or '').split(' ')
    timeout = None
    if len(words) > 2:
        try:
            timeout = float(words[-1])
            words.pop()
        except ValueError:
            pass
    qtype = words.pop() if len(words) > 1 else 'A'
    name = ' '.join(words)
    # H 'bytes': the name goes in as bytes
    args = [name.encode('utf-8', 'surrogateescape') if H == 'bytes' else name, qtype]
    if timeout is not None:
        args.append(timeout)
    t = time.monotonic()
    try:
        value = repr(idcheck.dns(*args))
    except Exception as e:
        value = repr((type(e).__name__, isinstance(e, idcheck.DNSError), str(e)))
    ms = int((time.monotonic() - t) * 1000)
    return ('ACCEPT', (250, '', value), [{'label': 'X-Ms:', 'text': str(ms)}])
