"""Rate limits (CHECKID_RATE_*): messages and recipients per client and per
authenticated identity, in fixed windows of CHECKID_RATE_WINDOW seconds
(3600).

  CHECKID_RATE_MESSAGES       MAIL commands per client      checked at MAIL
  CHECKID_RATE_RECIPIENTS     RCPT commands per client      checked at RCPT
  CHECKID_RATE_ID_MESSAGES    the same per identity
  CHECKID_RATE_ID_RECIPIENTS

0 (the default) is no limit. A client is its address, or its network with
CHECKID_RATE_NET4 below 32 (CHECKID_RATE_NET6: 64, since one IPv6 host
holds a /64 at least). The identity is the one checkID checked SPF for
(the declared ID, else the HELO name, else the MAIL FROM domain) when that
SPF result is pass: an identity that proved the client may send for it.
(A client that authenticated with AUTH never reaches the policy:
qmail-idcheck skips the policy for it.)

What is counted is what the policy let through: a MAIL or RCPT refused by
a limit counts for none of the counters (so a client past its own limit
does not use up its identity's), one refused for another reason before
the limits were asked (SPF fail, the pre-screen) is not counted either. A
recipient that greylisting then refuses is counted: the limits come first,
so that a flood fills neither the counters past the limit nor the
greylisting store.

Fixed windows, not sliding ones: one counter per client and window, which
the store increments atomically (SQLite: an UPSERT in one transaction;
Redis: INCR in a Lua script) and which expires with its window, so the
store holds one small record per active client whatever it sends; the
time to wait in the reply is exact (the window's end). The price: around a
window's end a client can get up to twice its limit through in a short
time. A sliding log would be exact but keeps a timestamp per message (a
client would grow the store); an interpolated sliding window gives no
exact time to wait. For a limit meant to stop floods, twice in the worst
case is acceptable; halve the limit if it is not.
"""
import math

from . import greylist, state


def counters(stage, ip, identity, cfg):
    """[(key, limit, who)] of this stage; who is how the reply names it."""
    mail = stage == 'mail'
    what = 'messages' if mail else 'recipients'
    out = []
    per_client = cfg.rate_messages if mail else cfg.rate_recipients
    if per_client and ip is not None:
        bits4, bits6 = cfg.rate_net4, cfg.rate_net6
        net = greylist.network(ip, bits4, bits6)
        if net is not None:
            whole = net.endswith('/32') or net.endswith('/128')
            out.append((state.key('rate', what, 'client', net), per_client,
                        "'%s'" % (ip if whole else net)))
    per_id = cfg.rate_id_messages if mail else cfg.rate_id_recipients
    if per_id and identity:
        out.append((state.key('rate', what, 'id', identity), per_id, "'%s'" % identity))
    return what, out


def check(call, stage, ip, identity, cfg):
    """None when under every limit (and counted), else (what, who, seconds
    to wait). Raises state.Unavailable."""
    what, found = counters(stage, ip, identity, cfg)
    if not found:
        return None
    now = state.now()
    over = call.run(stage, lambda store, deadline: store.count(
        [(k, limit) for k, limit, _ in found], now, cfg.rate_window, deadline))
    if over is None:
        return None
    _, end = state.window_of(now, cfg.rate_window)
    return what, found[over][2], max(1, int(math.ceil(end - now)))
