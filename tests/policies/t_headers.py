"""Test policy for the queue wrapper: the sender's local part picks the
verdict and headers; at end of data the Subject does."""

SEED = ('ACCEPT', (250, '', 'Sender OK'),
        [{'text': '192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B',
          'label': 'Authent:'}])

LONG = ('192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B '
        'receiver=mx.example.org client-ip=192.0.2.1 envelope-from=someone@example.com '
        'helo=client.example identity=mailfrom mechanism=ip4:192.0.2.0/24 '
        'problem=none comment=this-is-a-rather-long-header-used-to-test-folding')


def _verdict(key, stage):
    if key == 'seed':
        return SEED
    if key == 'three':
        return ('ACCEPT', None, [{'label': 'Authent:', 'text': 'header0'},
                                 {'label': 'X-One', 'text': 'header1'},
                                 {'label': 'X-Two:', 'text': 'header2'}])
    if key == 'long':
        return ('ACCEPT', None, [{'label': 'Authent:', 'text': LONG}])
    if key == 'trailing':
        return ('ACCEPT', None, [{'label': 'Authent:', 'text': 'w' * 66 + ' ' * 20}])
    if key == 'longword':
        return ('ACCEPT', None, [{'label': 'Authent:', 'text': 'x' * 1200}])
    if key == 'inject':
        return ('ACCEPT', None, [{'label': 'Authent:', 'text': 'ok\nBcc: victim@example.net'}])
    if key == 'injectlabel':
        return ('ACCEPT', None, [{'label': 'Bcc: victim@example.net\r\nX:', 'text': 'x'}])
    if key == 'nul':
        return ('ACCEPT', None, [{'label': 'Authent:', 'text': 'a\0b'}])
    if key in ('accept', 'filter', 'discard'):
        return (key.upper(), None, [{'label': 'Authent:', 'text': '%s at %s' % (key, stage)}])
    if key == 'reject':
        return ('REJECT', (554, '5.7.1', 'refused at %s' % stage), [])
    if key == 'edits':
        # Hdrs: From, .X-Dot, Authentication-Results, X-Remove, Subject
        return ('ACCEPT', None, [{'label': 'Authent:', 'text': 'edited at data'}],
                [{'field': 2, 'rename': 'Original-Authentication-Results:'},
                 {'field': 3, 'remove': True}])
    if key == 'edits-mail':
        return ('ACCEPT', None, [], [{'field': 0, 'remove': True}])
    if key == 'edits-beyond':
        return ('ACCEPT', None, [], [{'field': 99, 'remove': True}])
    if key == 'edits-twice':
        return ('ACCEPT', None, [], [{'field': 0, 'remove': True}, {'field': 0, 'rename': 'X:'}])
    if key == 'edits-badlabel':
        return ('ACCEPT', None, [], [{'field': 0, 'rename': 'Bad Label:'}])
    if key == 'edits-emptylabel':
        # on the wire an empty label means remove: never by mistake
        return ('ACCEPT', None, [], [{'field': 0, 'rename': ''}])
    if key == 'edits-toomany':
        return ('ACCEPT', None, [], [{'field': i, 'remove': True} for i in range(501)])
    if key == 'edits-oddnames':
        # Hdrs: a field with no name, one with a 300-byte name, Subject
        return ('ACCEPT', None, [{'label': 'Authent:', 'text': 'edited at data'}],
                [{'field': 0, 'remove': True}, {'field': 1, 'rename': 'X-Was-Long:'}])
    if key == 'longtext':
        # far more than a reply line or one datagram to the wrapper holds
        return ('REJECT', (550, '5.7.1', 'x' * 300000), [])
    if key == 'tempfail':
        return ('TEMPFAIL', (452, '4.3.1', 'deferred at %s' % stage), [])
    return ('CONTINUE', None, [{'label': 'Authent:', 'text': 'continue at %s' % stage}])


def checkID(IP=None, ID=None, H=None, S=None, R=None, Hdrs=None, Body=None):
    if Hdrs is not None:
        subject = ''
        for h in Hdrs:
            name, _, value = h.partition(':')
            if name.lower() == 'subject':
                subject = value.strip()
        return _verdict(subject, 'data')
    if R is not None:
        return _verdict(R[-1].split('@')[0], 'rcpt')
    return _verdict((S or '').split('@')[0], 'mail')
