"""Test policy for tests/test_checkid_embedded.py: a thread counts while
idcheck.dns waits 0.3 s for a server that never answers; the reply text is
how often it got to run (0 if the wait held the interpreter lock)."""
import threading
import time

import idcheck


def checkID(IP=None, ID=None, H=None, S=None, R=None, Hdrs=None, Body=None):
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(1)
            time.sleep(0.01)
    t = threading.Thread(target=count)
    t.start()
    time.sleep(0.02)
    n0 = len(ticks)
    try:
        idcheck.dns(ID, 'A', 0.3)
    except idcheck.DNSTimeout:
        pass
    n = len(ticks) - n0
    done.set()
    t.join()
    return ('ACCEPT', (250, '', str(n)), [])
