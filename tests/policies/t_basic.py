"""Test policy: decides by the local part of the sender (at MAIL) or of the
newest recipient (at RCPT), and echoes what it was given in its reply text so
the dialogue tests can see every argument arrive."""


def _local(addr):
    return (addr or '').split('@')[0]


def _subject(Hdrs):
    for h in Hdrs:
        name, _, value = h.partition(':')
        if name.lower() == 'subject':
            return value.strip()
    return ''


def checkID(IP=None, ID=None, H=None, S=None, R=None, Hdrs=None, Body=None):
    if Hdrs is not None:
        import idcheck
        stage, key = 'data', _subject(Hdrs)
        seen = 'hdrs=%d body=%d bodysize=%d' % (len(Hdrs), len(Body), idcheck.bodysize)
    elif R is None:
        stage, key = 'mail', _local(S)
        seen = 'IP=%s ID=%s H=%s S=%s' % (IP, ID, H, S)
    else:
        stage, key = 'rcpt', _local(R[-1])
        seen = 'R=%s' % ','.join(R)
    header = [{'label': 'Authent:', 'text': '%s %s TEST %s' % (IP, ID, stage.upper())}]
    if stage == 'data':
        header.append({'label': 'X-Data-Seen:', 'text': seen})
    if key == 'reject':
        if stage == 'data':
            return ('REJECT', (550, '5.7.1', 'message refused by policy'), [])
        return ('REJECT', (550, '5.7.1', "Sending MTA '%s' not authorized by '%s'" % (IP, ID)), [])
    if key == 'tempfail':
        return ('TEMPFAIL', (451, '4.7.1', '%s: try again later' % stage), [])
    if key == 'accept':
        return ('ACCEPT', (250, '', 'Sender OK'), header)
    if key == 'discard':
        return ('DISCARD', (250, '2.0.0', 'discarded quietly'), [])
    if key == 'filter':
        return ('FILTER', (250, '', 'filtered'), header)
    if key == 'tls':
        import idcheck
        env = idcheck.environ
        return ('CONTINUE', (250, '2.1.0', 'tls: %s %s sni=%s' % (
            env.get('SSL_PROTOCOL'), env.get('SSL_CIPHER'), env.get('SSL_TLS_SNI_SERVERNAME'))),
            [])
    if key == 'noreply':
        return ('CONTINUE', None, [])
    if stage == 'data':
        return ('CONTINUE', (250, '2.0.0', 'data ok: %s' % seen), header)
    return ('CONTINUE', (250, '2.1.0', '%s ok: %s' % (stage, seen)), [])
