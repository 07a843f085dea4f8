"""Test policy that misbehaves in the way the sender's local part names."""
import os
import time


def checkID(IP=None, ID=None, H=None, S=None, R=None, Hdrs=None, Body=None):
    how = (S or '').split('@')[0]
    if R is not None:
        how = R[-1].split('@')[0]
    if how == 'raise':
        raise ValueError('policy bug')
    if how == 'hang':
        import idcheck
        idcheck.log('hanging')          # the tests know the call has begun
        time.sleep(600)
    if how == 'exit':
        os._exit(3)
    if how == 'reject':
        return ('REJECT', (550, '5.7.1', 'refused after all'), [])
    if how == 'garbage':
        return 'nonsense'
    if how == 'reject250':
        return ('REJECT', (250, '', 'not really a rejection'), [])
    if how == 'tempfail550':
        return ('TEMPFAIL', (550, '5.0.0', 'wrong class'), [])
    if how == 'unknown':
        return ('MAYBE', (250, '', 'hmm'), [])
    if how == 'badxcode':
        return ('REJECT', (550, '4.7.1', 'class does not match'), [])
    if how == 'crlfheader':
        return ('ACCEPT', (250, '', 'ok'), [{'label': 'Authent:', 'text': 'x\r\nBcc: victim@example.net'}])
    if how == 'badlabel':
        return ('ACCEPT', (250, '', 'ok'), [{'label': 'Bad Label:', 'text': 'x'}])
    if how == 'crlftext':
        return ('REJECT', (550, '5.7.1', 'line one\r\n250 fake'), [])
    return ('CONTINUE', (250, '', 'fine'), [])
