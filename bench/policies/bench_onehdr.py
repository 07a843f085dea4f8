"""bench/sessions' one-header policy: at MAIL, ACCEPT (final) with one
header naming the client and the sender. bench/spp-onehdr is the same
policy as a qmail-spp plugin, for the peer row."""


def checkID(IP=None, ID=None, H=None, S=None, R=None, Hdrs=None, Body=None):
    return ('ACCEPT', None, [{'label': 'X-Checked:', 'text': '%s %s' % (IP, S)}])
