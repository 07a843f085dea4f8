"""Test policy for tests/test_python_callee.py: the declared ID picks what
checkID does, so one process can be walked through every case."""
import os
import sys

import idcheck

# What the environment held when this module was imported (the first call's).
IMPORT_ENV_IP = idcheck.environ.get('TCPREMOTEIP')

SEED_HEADER = '192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B'

MALFORMED = {
    'm-notuple': lambda: 'ACCEPT',
    'm-none': lambda: None,
    'm-short': lambda: ('ACCEPT', None),
    'm-long': lambda: ('ACCEPT', None, [], [], 1),
    'm-edits-int': lambda: ('ACCEPT', None, [], 1),
    'm-edit-nofield': lambda: ('ACCEPT', None, [], [{'rename': 'X:'}]),
    'm-edit-both': lambda: ('ACCEPT', None, [], [{'field': 0, 'remove': True},
                                                 {'field': 1, 'remove': True, 'rename': 'X:'}]),
    'm-edit-negative': lambda: ('ACCEPT', None, [], [{'field': -1, 'remove': True}]),
    'm-dict': lambda: {'action': 'ACCEPT'},
    'm-action-bytes': lambda: (b'ACCEPT', None, []),
    'm-action-none': lambda: (None, None, []),
    'm-reply-str': lambda: ('REJECT', '550 no', []),
    'm-reply-short': lambda: ('REJECT', (550, '5.7.1'), []),
    'm-code-bool': lambda: ('REJECT', (True, '5.7.1', 'no'), []),
    'm-code-str': lambda: ('REJECT', ('550', '5.7.1', 'no'), []),
    'm-code-float': lambda: ('REJECT', (550.0, '5.7.1', 'no'), []),
    'm-code-big': lambda: ('REJECT', (1000, '5.7.1', 'no'), []),
    'm-code-huge': lambda: ('REJECT', (10**30, '5.7.1', 'no'), []),
    'm-code-neg': lambda: ('REJECT', (-1, '5.7.1', 'no'), []),
    'm-xcode-int': lambda: ('REJECT', (550, 571, 'no'), []),
    'm-text-none': lambda: ('REJECT', (550, '5.7.1', None), []),
    'm-text-bytes': lambda: ('REJECT', (550, '5.7.1', b'no'), []),
    'm-headers-dict': lambda: ('ACCEPT', None, {'label': 'X:', 'text': 'y'}),
    'm-headers-str': lambda: ('ACCEPT', None, 'X: y'),
    'm-header-tuple': lambda: ('ACCEPT', None, [('X:', 'y')]),
    'm-header-nolabel': lambda: ('ACCEPT', None, [{'text': 'y'}]),
    'm-header-bytes': lambda: ('ACCEPT', None, [{'label': 'X:', 'text': 'ok'},
                                                 {'label': 'X:', 'text': b'y'}]),
    'm-surrogate': lambda: ('ACCEPT', (250, '', '\ud800'), []),
}


def checkID(*args):
    ID = args[1] if len(args) > 1 else None
    if ID == 'example.com':
        return ('ACCEPT', (250, '', 'Sender OK'),
                [{'text': SEED_HEADER, 'label': 'Authent:'}])
    if ID == 'example.net':
        return ('REJECT', (550, '5.7.1',
                           "Sending MTA '192.0.2.1' not authorized by 'example.net'"), [])
    if ID == 'reply-none':
        return ('CONTINUE', None, None)
    if ID == 'reply-empty':
        return ['CONTINUE', (), ()]
    if ID == 'xcode-none':
        return ('TEMPFAIL', [451, None, 'later'], ({'label': 'A:', 'text': ''},))
    if ID == 'code-zero':
        return ('ACCEPT', (0, '', 'zero'), [])
    if ID == 'unknown-action':
        return ('MAYBE', None, [])
    if ID == 'echo':
        return ('ACCEPT', (250, '', repr(args)), [])
    if ID == 'roundtrip':
        return ('ACCEPT', None, [{'label': 'X-H:', 'text': args[2]},
                                 {'label': 'X-S:', 'text': args[3]}])
    if ID == 'env':
        env = sorted(idcheck.environ.items())
        return ('ACCEPT', (250, '', repr((idcheck.stage, idcheck.bodysize, env))), [])
    if ID == 'hdrscut':
        return ('ACCEPT', (250, '', 'hdrscut=%d' % idcheck.hdrscut), [])
    if ID == 'edits':
        return ('ACCEPT', None, [], [{'field': 2, 'rename': 'Original-Authentication-Results:'},
                                     {'field': 0, 'remove': True}])
    if ID == 'edits-none':
        return ('ACCEPT', None, [], [])
    if ID == 'bodylen':
        return ('ACCEPT', (250, '', '%d %d' % (len(args[6]), idcheck.bodysize)), [])
    if ID == 'import-env':
        return ('ACCEPT', (250, '', repr(IMPORT_ENV_IP)), [])
    if ID == 'raise':
        raise ValueError('bad thing happened')
    if ID == 'raise-empty':
        raise KeyError
    if ID == 'sysexit':
        sys.exit(3)
    if ID == 'kbint':
        raise KeyboardInterrupt
    if ID == 'print':
        print('printed by the policy')
        print('partial', end='')
        sys.stdout.write('1:x,')          # looks like a frame: must not reach the channel
        sys.__stdout__.write('9:not-reply,\n')
        sys.stderr.write('to stderr\n')
        os.write(1, b'2:xx,\n')
        os.system('echo from a child process')
        stdin = os.read(0, 100)           # fd 0 is /dev/null, never the requests
        return ('ACCEPT', (250, '', 'printed stdin=%r' % stdin), [])
    if ID == 'log':
        idcheck.log('line one\nline two\x1b[31m end')
        idcheck.log('L' * 5000)
        return ('ACCEPT', (250, '', 'logged'), [])
    if ID in MALFORMED:
        return MALFORMED[ID]()
    return ('CONTINUE', None, [])


def other(*args):
    return ('DISCARD', None, [{'label': 'X-Other:', 'text': str(len(args))}])


NOT_CALLABLE = 42
