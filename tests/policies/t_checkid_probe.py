"""Test policy: the reference policy (checkid), plus a header telling which
resolver modules the embedded interpreter has imported, for
tests/test_checkid_embedded.py."""
import sys

import checkid


def checkID(*args):
    action, reply, headers = checkid.checkID(*args)
    loaded = ','.join(m for m in ('dns', 'dns.resolver', 'DNS', 'spf', 'dkim')
                      if sys.modules.get(m) is not None)
    return (action, reply, list(headers) + [{'label': 'X-Modules:', 'text': loaded or '-'}])
