"""Test policy: the reference policy (checkid), plus a header telling which
resolver modules the embedded interpreter has imported, for
tests/test_checkid_embedded.py. A 4th element (field edits) is passed on."""
import sys

import checkid


def checkID(*args):
    answer = checkid.checkID(*args)
    action, reply, headers = answer[:3]
    loaded = ','.join(m for m in ('dns', 'dns.resolver', 'DNS', 'spf', 'dkim', 'authheaders',
                                  'publicsuffix2')
                      if sys.modules.get(m) is not None)
    return (action, reply, list(headers) + [{'label': 'X-Modules:', 'text': loaded or '-'}]) \
        + tuple(answer[3:])
