"""Test policy for the warm server's isolation: a sender whose local part is
'slow' stands for a client whose own calls are slow (its silent DNS server):
the call says so in the log, then sleeps far past every call timeout.
Everything else gets t_basic's answer (which echoes the client's IP)."""
import time

import idcheck
import t_basic


def checkID(IP=None, ID=None, H=None, S=None, R=None, Hdrs=None, Body=None):
    if R is None and Hdrs is None and (S or '').split('@')[0] == 'slow':
        idcheck.log('slow call from %s' % IP)
        time.sleep(600)
    return t_basic.checkID(IP, ID, H, S, R, Hdrs, Body)
