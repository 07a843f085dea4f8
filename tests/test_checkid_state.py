"""The policy's shared state (python/checkid/state.py, greylist.py,
ratelimit.py) in plain python3, against the real stores: a SQLite file in
a temporary directory and a real redis-server (tests/redisfixture.py,
started and stopped per test). Each store test runs on both: the
greylisting decision is written once in Python (SQLite) and once in Lua
(Redis), and the same cases must give the same answers.

Times are passed in (a base near the real time plus offsets), so nothing
sleeps through a delay; only the tests of Redis's own expiry and of the
deadlines wait, and then a second or two at most.
The whole chain (tcpserver, qmail-idcheck, embedded and warm) is in
tests/test_checkid_state_chain.py.
"""
import doctest
import multiprocessing
import os
import re
import sqlite3
import sys
import threading
import time

import pytest

import redisfixture
from redisfixture import redis_server  # noqa: F401  (fixture)
from dnsfixture import dns  # noqa: F401  (the session-scoped DNS fixture)
from test_checkid import env, TOP  # noqa: F401  (the policy's environment fixture)

sys.path.insert(0, os.path.join(TOP, 'python'))

from checkid import checkID, config, greylist, ratelimit, state   # noqa: E402

OK = (250, '', 'Sender OK')
DAY = 86400.0
P = state.GreyParams(delay=300.0, window=2 * DAY, max_age=35 * DAY, auto_allow=5)


@pytest.fixture(params=['sqlite', 'redis'])
def url(request, tmp_path):
    """The URL of a fresh store of each kind."""
    if request.param == 'sqlite':
        yield 'sqlite:' + str(tmp_path / 'state.sqlite')
        return
    if not redisfixture.available():
        pytest.skip('%s missing: apt-get install redis-server' % redisfixture.REDIS_SERVER)
    r = redisfixture.RedisServer().start()
    try:
        yield r.url
    finally:
        r.stop()


@pytest.fixture(autouse=True)
def fresh_stores():
    """No store or failure remembered from another test."""
    state._stores.clear()
    state._failed.clear()
    state._down.clear()
    yield
    for s in state._stores.values():
        s.close()
    state._stores.clear()
    state._failed.clear()
    state._down.clear()


def open_store(url, timeout=2.0):
    return state.store(url, timeout)


def later(seconds=2.0):
    return time.monotonic() + seconds


def grey(store, client, triplet, now, p=P):
    return store.grey(state.key('client', client), state.key('grey', *triplet), now, p, later())


T1 = ('192.0.2.0/24', 'a@example.com', 'b@example.org')
T2 = ('192.0.2.0/24', 'a@example.com', 'c@example.org')
T3 = ('192.0.2.0/24', 'a@example.com', 'd@example.org')


# ---- greylisting ----

def test_greylist_first_sight_early_retry_pass_and_known(url):
    s = open_store(url)
    t0 = time.time()
    assert grey(s, T1[0], T1, t0) == ('new', 300.0)
    result, wait = grey(s, T1[0], T1, t0 + 100)
    assert result == 'early' and abs(wait - 200.0) < 1e-3
    result, wait = grey(s, T1[0], T1, t0 + 299.5)
    assert result == 'early' and abs(wait - 0.5) < 1e-3
    # the early retries did not move the first sight
    assert grey(s, T1[0], T1, t0 + 300) == ('passed', 0.0)
    assert grey(s, T1[0], T1, t0 + 301) == ('known', 0.0)
    # another recipient is another triplet
    assert grey(s, T2[0], T2, t0 + 302) == ('new', 300.0)


def test_greylist_retry_window_and_max_age(url):
    """A first retry after the retry window is a first sight again; a passed
    triplet is kept max_age after it was last seen, then forgotten."""
    s = open_store(url)
    t0 = time.time()
    assert grey(s, T1[0], T1, t0)[0] == 'new'
    assert grey(s, T1[0], T1, t0 + 2 * DAY + 1) == ('new', 300.0)
    assert grey(s, T1[0], T1, t0 + 2 * DAY + 301)[0] == 'passed'
    # seen again 20 days later: kept 35 days from then
    assert grey(s, T1[0], T1, t0 + 22 * DAY)[0] == 'known'
    assert grey(s, T1[0], T1, t0 + 56 * DAY)[0] == 'known'
    assert grey(s, T1[0], T1, t0 + 92 * DAY)[0] == 'new'


def test_greylist_auto_allow_after_n_passed_triplets(url):
    s = open_store(url)
    p = state.GreyParams(delay=300.0, window=2 * DAY, max_age=35 * DAY, auto_allow=2)
    t0 = time.time()
    for t in (T1, T2):
        assert grey(s, t[0], t, t0, p)[0] == 'new'
    assert grey(s, T1[0], T1, t0 + 300, p)[0] == 'passed'
    # one triplet passed: a new one still waits
    assert grey(s, T3[0], T3, t0 + 300, p)[0] == 'new'
    # passing a known triplet again does not count
    assert grey(s, T1[0], T1, t0 + 301, p)[0] == 'known'
    assert grey(s, T3[0], T3, t0 + 301, p)[0] == 'early'
    assert grey(s, T2[0], T2, t0 + 302, p)[0] == 'passed'
    # two passed: every triplet of the network passes, new ones too
    other = ('192.0.2.0/24', 'z@example.net', 'y@example.org')
    assert grey(s, other[0], other, t0 + 303, p) == ('allowed', 0.0)
    assert grey(s, T3[0], T3, t0 + 303, p)[0] == 'allowed'
    # for max_age after the last time it was seen
    assert grey(s, other[0], other, t0 + 30 * DAY, p)[0] == 'allowed'
    assert grey(s, other[0], other, t0 + 64 * DAY, p)[0] == 'allowed'
    assert grey(s, other[0], other, t0 + 100 * DAY, p)[0] == 'new'
    # another network was never allowed
    elsewhere = ('192.0.3.0/24',) + T3[1:]
    assert grey(s, elsewhere[0], elsewhere, t0 + 303, p)[0] == 'new'


def test_greylist_auto_allow_off(url):
    s = open_store(url)
    p = state.GreyParams(delay=10.0, window=DAY, max_age=DAY, auto_allow=0)
    t0 = time.time()
    for i in range(6):
        t = ('192.0.2.0/24', 'a@example.com', 'r%d@example.org' % i)
        assert grey(s, t[0], t, t0, p)[0] == 'new'
        assert grey(s, t[0], t, t0 + 10, p)[0] == 'passed'
    assert grey(s, T1[0], T1, t0 + 11, p)[0] == 'new'


def test_greylist_triplet_parts():
    """The network (/24, /64, IPv4-mapped as IPv4 by the policy before),
    the sender as postgrey keys it, the recipient in lower case."""
    assert greylist.network('192.0.2.200', 24, 64) == '192.0.2.0/24'
    assert greylist.network('192.0.2.200', 32, 64) == '192.0.2.200/32'
    assert greylist.network('2001:db8:0:1:ffff::1', 24, 64) == '2001:db8:0:1::/64'
    assert greylist.network('not an address', 24, 64) is None
    # an IPv4 client in IPv6 notation, however written, is its IPv4 network
    for mapped in ('::ffff:192.0.2.7', '::ffff:c000:207', '0:0:0:0:0:ffff:192.0.2.7'):
        assert greylist.network(mapped, 24, 64) == '192.0.2.0/24', mapped
        assert greylist.network(mapped, 32, 64) == '192.0.2.7/32', mapped
    assert greylist.network('::192.0.2.7', 24, 64) == '::/64'      # not mapped: IPv6
    assert greylist.sender('') == ''
    assert greylist.sender('Bounce+Joe=example.com@Lists.Example.ORG') == 'bounce@lists.example.org'
    assert greylist.sender('owner-list-123-456@example.org') == 'owner-list-#-#@example.org'
    assert greylist.sender('user42@example.org') == 'user42@example.org'
    assert greylist.sender('prvs=0123456789=joe@example.com') == 'joe@example.com'
    assert greylist.sender('caf\udce9@example.com') == 'caf\udce9@example.com'
    # any bytes, any length: the key is 16 bytes
    k = state.key('grey', '192.0.2.0/24', 'x\udcff' * 5000, 'b@example.org')
    assert k[0] == 'grey' and len(k[1]) == 16
    assert k != state.key('grey', '192.0.2.0/24', 'x\udcff' * 4999, 'xb@example.org')


def test_doctests_of_the_state_modules():
    """greylist.py's examples (the only state module that has any)."""
    r = doctest.testmod(greylist, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert r.failed == 0 and r.attempted == 3


# ---- rate counters ----

def count(store, keys_limits, now, window=3600.0):
    return store.count([(state.key('rate', k), limit) for k, limit in keys_limits], now, window,
                       later())


def test_rate_fixed_window(url):
    s = open_store(url)
    t0 = (int(time.time()) // 3600 + 1) * 3600.0          # the start of a window
    assert [count(s, [('a', 3)], t0 + i) for i in range(3)] == [None, None, None]
    assert count(s, [('a', 3)], t0 + 10) == 0
    assert count(s, [('a', 3)], t0 + 3599) == 0
    # the next window starts from zero
    assert count(s, [('a', 3)], t0 + 3600) is None
    # two counters: the first at its limit refuses, and neither is counted
    assert count(s, [('b', 5), ('c', 1)], t0) is None
    assert count(s, [('b', 5), ('c', 1)], t0 + 1) == 1
    assert count(s, [('b', 5), ('c', 1)], t0 + 2) == 1
    assert [count(s, [('b', 5)], t0 + 3) for _ in range(5)] == [None] * 4 + [0]
    # another window length is another counter
    assert count(s, [('a', 3)], t0 + 11, window=60.0) is None


def _count_in_process(url, n, limit, out):
    got = [count(open_store(url), [('shared', limit)], time.time(), window=1e9) for _ in range(n)]
    out.put(got.count(None))


def test_rate_exact_across_processes_and_forks(url):
    """Eight processes (forked after the parent used the store: each opens
    its own connection) count 25 each against a limit of 100: exactly 100
    pass, whatever the interleaving; no lost update, no double count."""
    parent = open_store(url)
    assert count(parent, [('warm-up', 1)], time.time()) is None
    ctx = multiprocessing.get_context('fork')
    out = ctx.Queue()
    procs = [ctx.Process(target=_count_in_process, args=(url, 25, 100, out)) for _ in range(8)]
    for p in procs:
        p.start()
    passed = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sum(passed) == 100, passed
    # and the parent's connection still works
    assert count(parent, [('shared', 101)], time.time(), window=1e9) is None
    assert count(parent, [('shared', 101)], time.time(), window=1e9) == 0


def test_store_is_reopened_after_fork(tmp_path):
    url = 'sqlite:' + str(tmp_path / 'state.sqlite')
    parent = open_store(url)
    count(parent, [('x', 5)], time.time())
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                  # the child: a store of its own
        try:
            child = open_store(url)
            ok = child is not parent and child.pid == os.getpid() and parent in state._inherited
            ok = ok and count(child, [('x', 5)], time.time()) is None and child.conn is not parent.conn
            os.write(w, b'1' if ok else b'0')
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    assert got == b'1'
    assert open_store(url) is parent


# ---- expiry ----

def test_sqlite_purge_deletes_expired_rows_only(tmp_path, monkeypatch):
    url = 'sqlite:' + str(tmp_path / 'state.sqlite')
    s = open_store(url)
    t0 = time.time()
    p = state.GreyParams(delay=1.0, window=100.0, max_age=1000.0, auto_allow=1)
    grey(s, T1[0], T1, t0, p)                                 # expires t0 + 100
    grey(s, T2[0], T2, t0, p)
    grey(s, T2[0], T2, t0 + 1, p)                             # passed: t0 + 1001, client too
    count(s, [('a', 5)], t0, window=10.0)                     # its window's end

    def rows():
        with sqlite3.connect(str(tmp_path / 'state.sqlite')) as c:
            return [c.execute('SELECT count(*) FROM %s' % t).fetchone()[0] for t in state.TABLES]
    assert rows() == [2, 1, 1]
    assert s.purge(t0 + 50, later(), force=True) == 1         # the rate counter
    assert rows() == [2, 1, 0]
    # another purge within PURGE_EVERY: another process did it, nothing done
    assert s.purge(t0 + 200, later()) is None
    assert s.purge(t0 + 50 + state.PURGE_EVERY, later()) == 1  # T1, never retried
    assert rows() == [1, 1, 0]
    assert s.purge(t0 + 2000, later(), force=True) == 2
    assert rows() == [0, 0, 0]
    # at most PURGE_BATCH rows of a table at a time
    monkeypatch.setattr(state, 'PURGE_BATCH', 3)
    for i in range(7):
        grey(s, 'n', ('n', 'a', str(i)), t0, p)
    assert s.purge(t0 + 3000, later(), force=True) == state.SQLiteStore.FULL
    assert rows() == [4, 0, 0]


def test_sqlite_purge_keeps_up_with_any_inflow(tmp_path, monkeypatch):
    """A purge that found a full batch leaves the next one due at once, for
    this process (its next call) and for every other (the database's
    'purged' time): expired rows never pile up, however fast they come."""
    monkeypatch.setattr(state, 'PURGE_BATCH', 3)
    path = str(tmp_path / 'state.sqlite')
    s, other = state.SQLiteStore(path), state.SQLiteStore(path)
    t0 = time.time()
    p = state.GreyParams(delay=1.0, window=100.0, max_age=1000.0, auto_allow=0)
    for i in range(8):
        grey(s, 'n', ('n', 'a', str(i)), t0, p)             # each expires t0 + 100

    def left():
        with sqlite3.connect(path) as c:
            return c.execute('SELECT count(*) FROM grey').fetchone()[0]
    s.next_purge = 0.0
    s._maybe_purge(t0 + 400, later())   # (its first call purged at t0)
    assert left() == 5 and s.next_purge == 0.0              # due again at once
    assert other.purge(t0 + 401, later()) == state.SQLiteStore.FULL   # not "purged recently"
    assert left() == 2
    s._maybe_purge(t0 + 402, later())
    assert left() == 0 and s.next_purge > time.monotonic()  # caught up: every PURGE_EVERY
    assert other.purge(t0 + 403, later()) is None


def test_sqlite_purge_runs_by_itself(tmp_path, monkeypatch):
    """Not by a call of the administrator: a call that uses the store purges
    when PURGE_EVERY has passed (here 0)."""
    monkeypatch.setattr(state, 'PURGE_EVERY', 0.0)
    path = tmp_path / 'state.sqlite'
    s = open_store('sqlite:' + str(path))
    t0 = time.time()
    count(s, [('a', 5)], t0 - 7200, window=10.0)              # long expired
    count(s, [('b', 5)], t0, window=3600.0)
    with sqlite3.connect(str(path)) as c:
        assert c.execute('SELECT count(*) FROM rate').fetchone()[0] == 1


def test_redis_keys_expire_by_themselves(redis_server):
    """Each key carries its expiry: the store never grows without bound."""
    s = open_store(redis_server.url)
    p = state.GreyParams(delay=0.0, window=1.0, max_age=2.0, auto_allow=1)
    t0 = time.time()
    grey(s, T1[0], T1, t0, p)                                 # new: 1 s
    grey(s, T2[0], T2, t0, p)
    grey(s, T2[0], T2, t0, p)                                 # passed: 2 s, the client too
    count(s, [('a', 5)], t0, window=1.0)
    keys = redis_server.command('KEYS', 'checkid:*')
    assert len(keys) == 4
    assert all(1 <= redis_server.command('TTL', k) <= 4 for k in keys), keys
    deadline = time.monotonic() + 10
    while redis_server.command('DBSIZE') and time.monotonic() < deadline:
        time.sleep(0.1)
    assert redis_server.command('DBSIZE') == 0


# ---- deadlines and failures ----

def test_sqlite_locked_past_the_deadline(tmp_path):
    """Another process holds the write lock: the call gives up at its
    deadline with StateError (never "database is locked" to the client);
    once the lock is gone the same connection works."""
    path = str(tmp_path / 'state.sqlite')
    s = open_store('sqlite:' + path)
    count(s, [('a', 5)], time.time())
    t0 = time.time()
    assert grey(s, T1[0], T1, t0)[0] == 'new'
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute('BEGIN EXCLUSIVE')
    try:
        with pytest.raises(state.StateError, match='deadline'):
            within(5, lambda: s.count([(state.key('rate', 'a'), 5)], time.time(), 3600.0,
                                      time.monotonic() + 0.3))
        # what needs no write is not blocked by the writer (WAL)
        assert grey(s, T1[0], T1, t0 + 10)[0] == 'early'
    finally:
        blocker.execute('ROLLBACK')
        blocker.close()
    assert count(s, [('a', 5)], time.time()) is None


def test_sqlite_long_statement_interrupted_at_the_deadline(tmp_path):
    """sqlite3 has no statement timeout: the progress handler stops one at
    the deadline."""
    s = open_store('sqlite:' + str(tmp_path / 'state.sqlite'))
    count(s, [('a', 5)], time.time())

    def slow(conn):
        return conn.execute('WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) '
                            'SELECT count(*) FROM n').fetchone()
    with pytest.raises(state.StateError, match='deadline'):
        within(5, lambda: s._run(time.monotonic() + 0.2, slow))
    assert count(s, [('a', 5)], time.time()) is None


def test_sqlite_unusable_path_is_a_state_error(tmp_path):
    s = open_store('sqlite:' + str(tmp_path / 'no' / 'such' / 'dir' / 'state.sqlite'))
    with pytest.raises(state.StateError):
        count(s, [('a', 5)], time.time())


def within(seconds, fn):
    """fn() in a thread: its result or exception, or a failure when it
    has not returned after seconds (a hung store must fail the test, not
    hang it)."""
    box = {}

    def run():
        try:
            box['value'] = fn()
        except BaseException as e:        # noqa: B902  (handed to the test)
            box['error'] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), 'no answer within %g s' % seconds
    if 'error' in box:
        raise box['error']
    return box['value']


def test_redis_paused_then_resumed(redis_server):
    """A server that accepts but never answers (SIGSTOP): the operation
    fails at the client's socket timeout, half the deadline."""
    s = open_store(redis_server.url, timeout=0.4)
    assert count(s, [('a', 5)], time.time()) is None
    redis_server.pause()
    try:
        with pytest.raises(state.StateError):
            within(5, lambda: s.count([(state.key('rate', 'a'), 5)], time.time(), 3600.0,
                                      time.monotonic() + 0.4))
    finally:
        redis_server.resume()
    assert count(s, [('a', 5)], time.time()) is None


def test_redis_killed_then_back_without_reopening(redis_server):
    s = open_store(redis_server.url)
    assert grey(s, T1[0], T1, time.time())[0] == 'new'
    redis_server.kill()
    with pytest.raises(state.StateError):
        grey(s, T1[0], T1, time.time())
    redis_server.start()
    # the same store object: its dead connection is replaced within the call;
    # the data went with the server (no persistence)
    assert grey(s, T1[0], T1, time.time())[0] == 'new'
    assert open_store(redis_server.url) is s


# ---- through checkID ----

def state_env(env, url, **more):
    env.setenv('CHECKID_STATE', url)
    env.setenv('CHECKID_DKIM', '0')
    env.setenv('CHECKID_DMARC', '0')
    for k, v in more.items():
        env.setenv('CHECKID_' + k, str(v))


GREYLISTED = (451, '4.7.1', 'Greylisted, please try again later (in %d seconds)')


def test_off_by_default(env, tmp_path):
    cfg = config.Config({})
    assert not cfg.stateful and not cfg.greylist and cfg.state.startswith('sqlite:/var/lib/')
    # nothing is opened: the default path does not exist here
    assert checkID('192.0.2.1', None, 'client.example', 'a@example.com', ['b@example.org'])[0] \
        == 'CONTINUE'
    assert state._stores == {}


def test_checkid_greylists_at_rcpt_only(env, url):
    state_env(env, url, GREYLIST=1, GREY_DELAY=300)
    clock = [time.time()]
    env.setattr(config, 'CLOCK', lambda: clock[0])
    args = ('192.0.2.1', None, 'client.example', 'a@example.com')
    # MAIL: nothing to greylist yet; the verdict stays open (CONTINUE)
    assert checkID(*args) == ('CONTINUE', OK, [{'text': '192.0.2.1 client.example SPF1 NONE',
                                                'label': 'Authent:'}])
    assert checkID(*args, ['b@example.org']) == ('TEMPFAIL', GREYLISTED[:2] + (GREYLISTED[2] % 300,), [])
    clock[0] += 120
    assert checkID(*args, ['b@example.org'])[1] == GREYLISTED[:2] + (GREYLISTED[2] % 180,)
    # the same network, another address
    clock[0] += 180
    assert checkID('192.0.2.99', None, 'client.example', 'a@example.com', ['b@example.org']) == (
        'CONTINUE', None, [{'text': '192.0.2.99 client.example SPF1 NONE', 'label': 'Authent:'}])
    # a second recipient of the same message is a triplet of its own
    assert checkID(*args, ['b@example.org', 'c@example.org'])[0] == 'TEMPFAIL'
    # end of data: nothing to greylist
    assert checkID(*args, ['b@example.org'], ['Subject: x'], b'x\r\n')[0] == 'ACCEPT'


def test_checkid_null_sender_is_greylisted_as_an_empty_address(env, url):
    state_env(env, url, GREYLIST=1, GREY_DELAY=300)
    clock = [time.time()]
    env.setattr(config, 'CLOCK', lambda: clock[0])
    args = ('192.0.2.1', None, 'client.example', '')
    assert checkID(*args, ['b@example.org'])[0] == 'TEMPFAIL'
    clock[0] += 300
    assert checkID(*args, ['b@example.org'])[0] == 'CONTINUE'
    # a real sender to the same recipient is another triplet
    assert checkID('192.0.2.1', None, 'client.example', 'x@example.com', ['b@example.org'])[0] \
        == 'TEMPFAIL'


def test_checkid_trusted_senders_skip_greylisting(env, url):
    """example.com passes SPF from 192.0.2.1 and the test services rate it
    A, A, B: ACCEPT, trusted (CHECKID_GREY_SKIP_TRUSTED=1, the default). A
    pass that nobody rated is not trusted."""
    state_env(env, url, GREYLIST=1)
    args = ('192.0.2.1', 'example.com', 'client.example', 'a@example.com', ['b@example.org'])
    assert checkID(*args) == ('CONTINUE', None, [
        {'text': '192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B', 'label': 'Authent:'}])
    assert checkID('192.0.2.1', 'pass.spf.test', 'client.example', 'a@pass.spf.test',
                   ['b@example.org'])[0] == 'CONTINUE'            # S1:A,M2:B,H1:A
    env.setenv('CHECKID_SERVICES', '')
    assert checkID(*args)[0] == 'TEMPFAIL'
    env.setenv('CHECKID_SERVICES', 'S1=s1.registry.test@1')
    env.setenv('CHECKID_GREY_SKIP_TRUSTED', '0')
    assert checkID(*args)[0] == 'TEMPFAIL'


def test_checkid_rate_limits_per_client_and_identity(env, url):
    state_env(env, url, RATE_MESSAGES=2, RATE_RECIPIENTS=3, RATE_ID_MESSAGES=3,
              RATE_WINDOW=600)
    t0 = (int(time.time()) // 600 + 1) * 600.0
    clock = [t0 + 100]
    env.setattr(config, 'CLOCK', lambda: clock[0])
    mail = ('pass.spf.test', 'client.example', 'a@pass.spf.test')    # SPF pass from 192.0.2/24
    assert checkID('192.0.2.1', *mail)[0] == 'CONTINUE'
    assert checkID('192.0.2.1', *mail)[0] == 'CONTINUE'
    assert checkID('192.0.2.1', *mail) == ('TEMPFAIL', (
        451, '4.7.1', "Too many messages from '192.0.2.1', try again in 500 seconds"), [])
    # another client, the same identity (SPF pass): the identity's third
    assert checkID('192.0.2.2', *mail)[0] == 'CONTINUE'
    assert checkID('192.0.2.3', *mail) == ('TEMPFAIL', (
        451, '4.7.1', "Too many messages from 'pass.spf.test', try again in 500 seconds"), [])
    # an identity that did not pass SPF is not counted as one
    for _ in range(4):
        assert checkID('192.0.2.%d' % (10 + _), 'example.net', 'x.example', 'a@example.net')[0] \
            == 'REJECT'
        assert checkID('192.0.2.%d' % (20 + _), None, 'client.example', 'a@example.net')[0] \
            == 'CONTINUE'
    # recipients, counted at RCPT
    rcpt = ('192.0.2.1',) + mail
    assert [checkID(*rcpt, ['r%d@example.org' % i])[0] for i in range(4)] == \
        ['CONTINUE'] * 3 + ['TEMPFAIL']
    clock[0] = t0 + 599.2
    assert checkID(*rcpt, ['x@example.org'])[1] == (
        451, '4.7.1', "Too many recipients from '192.0.2.1', try again in 1 seconds")
    clock[0] = t0 + 600
    assert checkID(*rcpt, ['x@example.org'])[0] == 'CONTINUE'
    assert checkID('192.0.2.1', *mail)[0] == 'CONTINUE'


def test_checkid_rate_limit_per_network(env, url):
    state_env(env, url, RATE_MESSAGES=1, RATE_NET4=24, RATE_NET6=48)
    assert checkID('192.0.2.1', None, 'client.example', 'a@example.com')[0] == 'CONTINUE'
    assert checkID('192.0.2.200', None, 'client.example', 'a@example.com')[1][2].startswith(
        "Too many messages from '192.0.2.0/24', try again in ")
    assert checkID('2001:db8:1:2::1', None, 'client.example', 'a@example.com')[0] == 'CONTINUE'
    assert checkID('2001:db8:1:ffff::1', None, 'client.example', 'a@example.com')[1][2] \
        .startswith("Too many messages from '2001:db8:1::/48'")


def test_checkid_seed_calls_are_not_counted(env, url):
    """checkID(IP, ID), the seed's call, is about the identity, not a
    transaction: no counting, no greylisting, the seed's answer."""
    state_env(env, url, GREYLIST=1, RATE_MESSAGES=1, RATE_ID_MESSAGES=1)
    for _ in range(3):
        assert checkID('192.0.2.1', 'example.com') == ('ACCEPT', OK, [
            {'text': '192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B',
             'label': 'Authent:'}])


def test_checkid_defer_off_still_waits_for_the_recipients(env, url):
    """CHECKID_DEFER=0 would make the ACCEPT at MAIL final, and no RCPT
    would be asked: with greylisting on the verdict stays CONTINUE."""
    state_env(env, url, GREYLIST=1, DEFER=0)
    assert checkID('192.0.2.1', 'example.com', 'client.example', 'a@example.com')[0] == 'CONTINUE'
    env.setenv('CHECKID_GREYLIST', '0')
    assert checkID('192.0.2.1', 'example.com', 'client.example', 'a@example.com')[0] == 'ACCEPT'


STORE_DOWN = 'redis://127.0.0.1:%d/0'


def unused_port():
    import socket
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_checkid_store_down_skip_or_tempfail(env):
    state_env(env, STORE_DOWN % unused_port(), GREYLIST=1, RATE_MESSAGES=5)
    args = ('192.0.2.1', None, 'client.example', 'a@example.com')
    assert checkID(*args)[0] == 'CONTINUE'
    assert checkID(*args, ['b@example.org'])[0] == 'CONTINUE'
    env.setenv('CHECKID_STATE_ONERROR', 'tempfail')
    tempfail = ('TEMPFAIL', (451, '4.3.0', 'Temporary local problem checking the sender, '
                                          'try again later'), [])
    assert checkID(*args) == tempfail
    assert checkID(*args, ['b@example.org']) == tempfail
    # a refusal that needs no store is still given
    assert checkID('192.0.2.1', 'example.net', 'client.example', 'a@example.net')[0] == 'REJECT'


class FakeIdcheck:
    """What qmail-idcheck gives the policy: idcheck.log, the environment
    with IDCHECK_PID (here only log and stage matter)."""

    def __init__(self):
        self.lines = []
        self.stage = None

    def log(self, text):
        self.lines.append(text)


@pytest.fixture
def policy_log(monkeypatch):
    """The policy's idcheck module replaced by a FakeIdcheck: its lines."""
    from checkid import dnsio
    fake = FakeIdcheck()
    monkeypatch.setattr(dnsio, 'idcheck', fake)
    monkeypatch.setattr(dnsio, 'environ', lambda: os.environ)
    return fake


def test_store_failure_logged_once_per_session(env, monkeypatch, policy_log):
    """One line per session (IDCHECK_PID, TCPREMOTEIP, TCPREMOTEPORT), and
    the session's later calls do not ask the store again."""
    fake = policy_log
    url = STORE_DOWN % unused_port()
    state_env(env, url, GREYLIST=1)
    env.setenv('IDCHECK_PID', '4711')
    env.setenv('TCPREMOTEIP', '192.0.2.1')
    env.setenv('TCPREMOTEPORT', '5555')
    asked = []
    real = state.RedisStore.grey
    monkeypatch.setattr(state.RedisStore, 'grey', lambda *a: asked.append(1) or real(*a))
    for r in ('b@example.org', 'c@example.org', 'd@example.org'):
        fake.stage = 'rcpt'
        assert checkID('192.0.2.1', None, 'client.example', 'a@example.com', [r])[0] == 'CONTINUE'
    assert len(asked) == 1
    assert len(fake.lines) == 1, fake.lines
    assert re.fullmatch(r'checkid: state store failed \(%s: Error 111 connecting to '
                        r'127\.0\.0\.1:\d+\. Connection refused\.\) at rcpt: greylisting and '
                        r'rate limits skipped for this session' % re.escape(url), fake.lines[0])
    # the next session, within CHECKID_STATE_RETRY (5 s): this process
    # leaves the store alone, and says so once for that session too
    env.setenv('TCPREMOTEPORT', '5556')
    checkID('192.0.2.1', None, 'client.example', 'a@example.com', ['b@example.org'])
    assert len(asked) == 1 and len(fake.lines) == 2
    assert fake.lines[1].startswith('checkid: state store failed (%s: Error 111 ' % url)
    assert 'not asked again before 5 s have passed' in fake.lines[1]
    # once that time has passed, the next session asks again
    env.setenv('CHECKID_STATE_RETRY', '0.2')
    state._down.clear()
    checkID('192.0.2.1', None, 'client.example', 'a@example.com', ['b@example.org'])
    env.setenv('TCPREMOTEPORT', '5557')
    checkID('192.0.2.1', None, 'client.example', 'a@example.com', ['b@example.org'])
    assert len(asked) == 2
    time.sleep(0.3)
    env.setenv('TCPREMOTEPORT', '5558')
    checkID('192.0.2.1', None, 'client.example', 'a@example.com', ['b@example.org'])
    assert len(asked) == 3 and len(fake.lines) == 4


def ignored(cfg):
    """The variables a Config logged as malformed, sorted."""
    return sorted(w.split('=')[0] for w in cfg.warnings)


def test_settings(env):
    c = config.Config({'CHECKID_STATE': 'redis://:pw@10.0.0.5:6380/3', 'CHECKID_GREYLIST': '1',
                       'CHECKID_GREY_DELAY': '0', 'CHECKID_GREY_AUTO_ALLOW': '0',
                       'CHECKID_RATE_RECIPIENTS': '100', 'CHECKID_STATE_ONERROR': 'TempFail'})
    assert c.warnings == [] and c.stateful and c.grey_delay == 0 and c.grey_auto_allow == 0
    assert c.state_onerror == 'tempfail' and c.rate_recipients == 100
    assert state.redis_address(c.state) == ('10.0.0.5', 6380, 3, 'pw')
    assert state.redis_address('redis://[::1]') == ('::1', 6379, 0, None)
    bad = config.Config({'CHECKID_STATE': 'sqlite:relative.db', 'CHECKID_GREY_DELAY': '-1',
                         'CHECKID_GREY_AUTO_ALLOW': '2.5', 'CHECKID_GREY_NET4': '33',
                         'CHECKID_STATE_ONERROR': 'accept', 'CHECKID_STATE_TIMEOUT': '0',
                         'CHECKID_RATE_MESSAGES': '-3'})
    assert ignored(bad) == [
        'CHECKID_GREY_AUTO_ALLOW', 'CHECKID_GREY_DELAY', 'CHECKID_GREY_NET4',
        'CHECKID_RATE_MESSAGES', 'CHECKID_STATE', 'CHECKID_STATE_ONERROR',
        'CHECKID_STATE_TIMEOUT']
    assert bad.state == config.STATE and not bad.stateful and bad.grey_net4 == 24
    for url in ('redis://h:port/0', 'redis://h/x', 'redis://', 'memcache://h', 'redis://h/0?x=1',
                'redis://a..b:6379/0', 'redis://redis.example:6379/0', 'redis://10.0.0.5/²'):
        assert config.Config({'CHECKID_STATE': url}).state == config.STATE, url
    # a host name would be looked up by getaddrinfo, which no deadline bounds
    assert state.redis_address('redis://localhost') == ('127.0.0.1', 6379, 0, None)
    hidden = config.Config({'CHECKID_STATE': 'redis://:s3cret@redis.example/0'})
    assert hidden.warnings == ["CHECKID_STATE='redis://:***@redis.example/0' ignored"]
    # values that would overflow or never let a triplet pass are refused
    odd = config.Config({'CHECKID_RATE_WINDOW': '1e-300', 'CHECKID_STATE_TIMEOUT': '1e300',
                         'CHECKID_RATE_MESSAGES': '²', 'CHECKID_RATE_RECIPIENTS': '9' * 5000,
                         'CHECKID_GREY_RETRY_WINDOW': '1e20', 'CHECKID_GREY_MAX_AGE': '1e20',
                         'CHECKID_STATE_RETRY': '-1'})
    assert ignored(odd) == [
        'CHECKID_GREY_MAX_AGE', 'CHECKID_GREY_RETRY_WINDOW', 'CHECKID_RATE_MESSAGES',
        'CHECKID_RATE_RECIPIENTS', 'CHECKID_RATE_WINDOW', 'CHECKID_STATE_RETRY',
        'CHECKID_STATE_TIMEOUT']
    assert (odd.rate_window, odd.state_timeout, odd.rate_messages, odd.rate_recipients,
            odd.grey_retry_window, odd.grey_max_age, odd.state_retry) == (
        config.RATE_WINDOW, config.STATE_TIMEOUT, 0, 0, config.GREY_RETRY_WINDOW,
        config.GREY_MAX_AGE, config.STATE_RETRY)
    never = config.Config({'CHECKID_GREY_DELAY': '600', 'CHECKID_GREY_RETRY_WINDOW': '60'})
    assert never.warnings == ['CHECKID_GREY_DELAY=600.0 not below CHECKID_GREY_RETRY_WINDOW=60.0: '
                              'both ignored']
    assert (never.grey_delay, never.grey_retry_window) == (config.GREY_DELAY,
                                                           config.GREY_RETRY_WINDOW)


def test_plain_policy_import_opens_nothing():
    """The package's import creates no connection and imports neither store
    library (qmail-idcheckd imports the policy, then forks)."""
    import subprocess
    code = ('import sys; sys.path.insert(0, %r); import checkid, checkid.state, '
            'checkid.greylist, checkid.ratelimit; '
            'print("redis" in sys.modules, "sqlite3" in sys.modules, checkid.state._stores)'
            % os.path.join(TOP, 'python'))
    r = subprocess.run(['/usr/bin/python3', '-c', code], capture_output=True, text=True,
                       timeout=30)
    assert r.stdout == 'False False {}\n', r.stderr


def test_sqlite_concurrent_first_open(tmp_path):
    """Twenty threads' first use of a new file at once (the schema made
    once, WAL switched on once): each gets an answer, and the count is
    exact. (Processes: test_rate_exact_across_processes_and_forks; whole
    sessions: the chain tests.)"""
    url = 'sqlite:' + str(tmp_path / 'state.sqlite')
    results = []

    def one():
        s = state.SQLiteStore(url[7:])
        try:
            results.append(count(s, [('n', 1000)], time.time(), window=1e9))
        except state.StateError as e:
            results.append(e)
        finally:
            s.close()
    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [None] * 20
    with sqlite3.connect(str(tmp_path / 'state.sqlite')) as c:
        assert c.execute('SELECT n FROM rate').fetchall() == [(20,)]
        assert c.execute('PRAGMA journal_mode').fetchone() == ('wal',)


def test_store_failure_line_hides_the_redis_password(env, policy_log):
    fake = policy_log
    fake.stage = 'rcpt'
    port = unused_port()
    state_env(env, 'redis://:s3cret@127.0.0.1:%d/0' % port, GREYLIST=1)
    assert checkID('192.0.2.1', None, 'client.example', 'a@example.com', ['b@example.org'])[0] \
        == 'CONTINUE'
    assert len(fake.lines) == 1 and 's3cret' not in fake.lines[0]
    assert ('state store failed (redis://:***@127.0.0.1:%d/0: Error 111 ' % port) in fake.lines[0]
    assert state.shown('redis://user:pw@h/1') == 'redis://user:***@h/1'
    assert state.shown('redis://h:6379/0') == 'redis://h:6379/0'


def test_redis_slow_replies_end_at_the_deadline(redis_server):
    """Every reply in time for its own read, but many of them (a proxy
    holds each back 0.15 s): the call still ends at its deadline, a
    StateError, never later."""
    import socket
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def pump(a, b, delay):
        try:
            while not stop.is_set():
                data = a.recv(65536)
                if not data:
                    break
                time.sleep(delay)
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def serve():
        while not stop.is_set():
            try:
                c, _ = listener.accept()
            except OSError:
                return
            u = socket.create_connection(('127.0.0.1', redis_server.port))
            threading.Thread(target=pump, args=(c, u, 0), daemon=True).start()
            threading.Thread(target=pump, args=(u, c, 0.15), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    try:
        s = open_store('redis://127.0.0.1:%d/1' % port, timeout=0.5)    # SELECT 1 first
        started = time.monotonic()
        with pytest.raises(state.StateError, match='deadline|Timeout'):
            # SELECT, a script not loaded (NOSCRIPT), SCRIPT LOAD, the script
            s.grey(state.key('client', T1[0]), state.key('grey', *T1), time.time(), P,
                   time.monotonic() + 0.5)
        assert time.monotonic() - started < 0.65
    finally:
        stop.set()
        listener.close()


def test_store_code_failure_is_a_store_failure(env, monkeypatch, policy_log):
    """Whatever fails in the store's code (here python3-redis missing) is a
    store failure, as CHECKID_STATE_ONERROR says: never an exception out of
    checkID (which qmail-idcheck would take for a broken policy)."""
    fake = policy_log
    fake.stage = 'mail'
    monkeypatch.setitem(sys.modules, 'redis', None)
    state_env(env, 'redis://127.0.0.1:%d/0' % unused_port(), RATE_MESSAGES=5)
    assert checkID('192.0.2.1', None, 'client.example', 'a@example.com')[0] == 'CONTINUE'
    assert len(fake.lines) == 1 and 'ModuleNotFoundError' in fake.lines[0], fake.lines
    env.setenv('CHECKID_STATE_ONERROR', 'tempfail')
    state._down.clear()
    assert checkID('192.0.2.1', None, 'client.example', 'a@example.com')[0] == 'TEMPFAIL'


def test_hung_store_costs_one_deadline_per_process_and_period(env, redis_server):
    """A store that accepts and never answers: the first session waits its
    deadline; the sessions after it, in the same process and within
    CHECKID_STATE_RETRY, do not wait at all; after it, the store is asked
    again (and, answering again, used)."""
    state_env(env, redis_server.url, GREYLIST=1, STATE_TIMEOUT=0.4, STATE_RETRY=1)
    env.setenv('IDCHECK_PID', '4711')
    env.setenv('TCPREMOTEIP', '192.0.2.1')

    def session(port, rcpt='b@example.org'):
        env.setenv('TCPREMOTEPORT', str(port))
        started = time.monotonic()
        verdict = checkID('192.0.2.1', None, 'client.example', 'a@example.com', [rcpt])
        return verdict, time.monotonic() - started
    assert session(1)[0][0] == 'TEMPFAIL'                   # greylisted: the store works
    redis_server.pause()
    try:
        verdict, took = session(2)
        assert verdict[0] == 'CONTINUE' and 0.3 < took < 1.0      # skipped, after the wait
        verdict, took = session(3)
        assert verdict[0] == 'CONTINUE' and took < 0.2            # skipped at once
    finally:
        redis_server.resume()
    time.sleep(1.1)
    assert session(4, 'c@example.org')[0][0] == 'TEMPFAIL'  # asked again: greylisted
