"""Test policy that must never be called: sessions that skip the policy."""


def checkID(*args):
    return ('REJECT', (550, '5.7.1', 'the policy was called'), [])
