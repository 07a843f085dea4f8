"""The smallest policy: for measuring the cost of starting the callee."""


def checkID(IP, ID, H, S, R=None, Hdrs=None, Body=None):
    return ('ACCEPT', None, [])
