"""The policy's shared state: one store for every process that runs checkID,
on one host (SQLite) or for several MX hosts (Redis). greylist.py and
ratelimit.py say what is kept; this file keeps it.

CHECKID_STATE names the store:

  sqlite:/var/lib/qmail-idcheck/checkid.sqlite   Python's sqlite3, WAL
  redis://[:PASSWORD@]HOST[:PORT][/DB]            Debian's python3-redis

Two operations, each atomic in the store (a Lua script in Redis, one
IMMEDIATE transaction in SQLite) so that concurrent sessions, in one
process or many, on one host or many, lose no update:

  grey(client, triplet, now, params)  the greylisting decision (decide()
                                      below, written once for SQLite and once
                                      in Lua: the tests run both)
  count(counters, now, window)        rate counters of the current fixed
                                      window: all incremented, or none when
                                      one is at its limit

Records expire: a Redis key carries its expiry (EXPIREAT); a SQLite row an
expires column, read as absent once past, and deleted by a purge that one
process runs at most every PURGE_EVERY seconds, at most PURGE_BATCH rows
a table at a time, through an index (never a scan of the table per call).
A purge that found a full batch leaves the next one due at once, so that
the deletions keep up with any rate of new records (each call adds at most
two rows, each purge deletes up to PURGE_BATCH).

Deadlines. The store's work in one call has CHECKID_STATE_TIMEOUT seconds
(default 1) in all, far below IDCHECK_CALLTIMEOUT. SQLite: the busy
timeout is what is left of it (set before each transaction), a progress
handler interrupts a statement past it, and "database is locked" met
anyway is retried while time is left. Redis: every connect, request and
reply (AUTH, SELECT, a script loaded again after a restart) within what is
left of it (BoundedConnection); the host is an IP address, so that no
resolver is asked (getaddrinfo has no timeout). A store that fails or runs
out of time raises StateError, and so does any other exception of the
store's code; run() turns that into CHECKID_STATE_ONERROR: skip (the
default: the checks are skipped, one log line per session) or tempfail. A
session whose store failed does not ask it again, and for
CHECKID_STATE_RETRY seconds (5) after a failure no call in the same
process does: a store that hangs costs one deadline per process and
period, not one per session.

Processes: nothing is opened at import time. qmail-idcheckd forks its
workers after importing the policy; a store is opened in the process that
uses it, at its first use, and a process that finds stores of another pid
(inherited across a fork) leaves them alone and opens its own.
"""
import hashlib
import math
import os
import time

PURGE_EVERY = 300.0        # seconds between SQLite purges (per database)
PURGE_BATCH = 500          # rows per table per purge
SCHEMA = 1                 # SQLite's PRAGMA user_version for the tables below
REFRESH = 3600.0           # a kept record's expiry is pushed on at most this often


class StateError(Exception):
    """The store failed or ran out of time."""


# ---- the greylisting decision ----

class GreyParams:
    def __init__(self, delay, window, max_age, auto_allow):
        self.delay, self.window, self.max_age, self.auto_allow = delay, window, max_age, auto_allow
        self.refresh = min(REFRESH, max_age / 10.0)


def decide(client, triplet, now, p):
    """(result, wait, new client record or None, new triplet record or None).

    client: (count, expires) or None; triplet: (first, passed, expires) or
    None; records past their expiry count as absent. result:
      allowed  the client's network passed p.auto_allow triplets: no delay
      known    the triplet passed before
      passed   the triplet's first retry after the delay: it passes now,
               and counts for the client's auto-allow
      new      first sight (or the retry window ran out): refused, wait
               p.delay
      early    retried before the delay: refused, wait what is left
    """
    if client is not None and client[1] <= now:
        client = None
    if triplet is not None and triplet[2] <= now:
        triplet = None
    if p.auto_allow and client is not None and client[0] >= p.auto_allow:
        stale = client[1] < now + p.max_age - p.refresh
        return 'allowed', 0.0, (client[0], now + p.max_age) if stale else None, None
    if triplet is None:
        return 'new', p.delay, None, (now, 0, now + p.window)
    first, passed, expires = triplet
    if passed:
        stale = expires < now + p.max_age - p.refresh
        return 'known', 0.0, None, (first, 1, now + p.max_age) if stale else None
    age = now - first
    if age < p.delay:
        return 'early', p.delay - age, None, None
    count = (client[0] if client is not None else 0) + 1
    return ('passed', 0.0, (count, now + p.max_age) if p.auto_allow else None,
            (first, 1, now + p.max_age))


def now():
    """The time: time.time(), or config.CLOCK when a test set one."""
    from . import config
    return config.CLOCK() if config.CLOCK is not None else time.time()


def key(kind, *parts):
    """A fixed-size key for client text (any bytes, any length): 16 bytes
    of BLAKE2b over the parts. The store never holds the addresses."""
    h = hashlib.blake2b(digest_size=16, person=b'checkid-' + kind.encode())
    for part in parts:
        b = part.encode('utf-8', 'surrogateescape') if isinstance(part, str) else bytes(part)
        h.update(b'%d:' % len(b) + b)
    return kind, h.digest()


def window_of(now, window):
    """(index, end) of the fixed window that holds now."""
    index = math.floor(now / window)
    return index, (index + 1) * window


# ---- SQLite ----

_SQLITE_TABLES = (
    'CREATE TABLE IF NOT EXISTS grey (key BLOB PRIMARY KEY, first REAL NOT NULL, '
    'passed INTEGER NOT NULL, expires REAL NOT NULL) WITHOUT ROWID',
    'CREATE INDEX IF NOT EXISTS grey_expires ON grey (expires)',
    'CREATE TABLE IF NOT EXISTS client (key BLOB PRIMARY KEY, n INTEGER NOT NULL, '
    'expires REAL NOT NULL) WITHOUT ROWID',
    'CREATE INDEX IF NOT EXISTS client_expires ON client (expires)',
    'CREATE TABLE IF NOT EXISTS rate (key BLOB PRIMARY KEY, n INTEGER NOT NULL, '
    'expires REAL NOT NULL) WITHOUT ROWID',
    'CREATE INDEX IF NOT EXISTS rate_expires ON rate (expires)',
    'CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value REAL)',
)
TABLES = ('grey', 'client', 'rate')


class SQLiteStore:
    """One connection per process, autocommit, explicit BEGIN IMMEDIATE for
    writes (the write lock is taken first, so no transaction ever has to
    upgrade and fail); WAL (readers never wait for the writer),
    synchronous=NORMAL (no fsync per commit: a power cut may lose the last
    greylisting records, never corrupt the file)."""

    def __init__(self, path):
        self.path = path
        self.pid = os.getpid()
        self.conn = None
        self.deadline = 0.0
        self.next_purge = 0.0

    def _interrupt(self):
        return time.monotonic() > self.deadline

    def _connect(self):
        import sqlite3
        conn = sqlite3.connect(self.path, timeout=0.001, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.set_progress_handler(self._interrupt, 500)
            self._busy(conn)
            if conn.execute('PRAGMA journal_mode').fetchone()[0].lower() != 'wal':
                conn.execute('PRAGMA journal_mode=WAL')
            conn.execute('PRAGMA synchronous=NORMAL')
            if conn.execute('PRAGMA user_version').fetchone()[0] != SCHEMA:
                conn.execute('BEGIN IMMEDIATE')
                for statement in _SQLITE_TABLES:
                    conn.execute(statement)
                conn.execute('PRAGMA user_version=%d' % SCHEMA)
                conn.execute('COMMIT')
        except BaseException:
            conn.close()
            raise
        return conn

    def _busy(self, conn):
        """The busy timeout: what is left of the deadline."""
        left = max(1, int((self.deadline - time.monotonic()) * 1000))
        conn.execute('PRAGMA busy_timeout=%d' % left)

    def _run(self, deadline, work):
        """work(conn) under the deadline; a locked database is retried while
        time is left; every other failure is a StateError."""
        import sqlite3
        self.deadline = deadline
        pause = 0.002
        while True:
            try:
                if self.conn is None:
                    self.conn = self._connect()
                else:
                    self._busy(self.conn)
                return work(self.conn)
            except sqlite3.Error as e:
                self._rollback()
                locked = isinstance(e, sqlite3.OperationalError) and (
                    'locked' in str(e) or 'busy' in str(e))
                if not locked or time.monotonic() + pause >= deadline:
                    if time.monotonic() >= deadline:
                        raise StateError('%s: no answer within the deadline (%s)'
                                         % (self.path, e)) from None
                    raise StateError('%s: %s' % (self.path, e)) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    def _rollback(self):
        if self.conn is not None and self.conn.in_transaction:
            try:
                self.conn.execute('ROLLBACK')
            except Exception:
                self.close()          # a connection in an unknown state: a new one next time

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    @staticmethod
    def _read(conn, client, triplet):
        c = conn.execute('SELECT n, expires FROM client WHERE key = ?', (client[1],)).fetchone()
        t = conn.execute('SELECT first, passed, expires FROM grey WHERE key = ?',
                         (triplet[1],)).fetchone()
        return c, t

    def grey(self, client, triplet, now, p, deadline):
        def work(conn):
            # most calls change nothing (early, known, allowed): a read alone
            result = decide(*self._read(conn, client, triplet), now, p)
            if result[2] is None and result[3] is None:
                return result[:2]
            conn.execute('BEGIN IMMEDIATE')
            result = decide(*self._read(conn, client, triplet), now, p)
            _, _, c, t = result
            if c is not None:
                conn.execute('INSERT INTO client (key, n, expires) VALUES (?, ?, ?) ON CONFLICT '
                             '(key) DO UPDATE SET n = excluded.n, expires = excluded.expires',
                             (client[1],) + c)
            if t is not None:
                conn.execute('INSERT INTO grey (key, first, passed, expires) VALUES (?, ?, ?, ?) '
                             'ON CONFLICT (key) DO UPDATE SET first = excluded.first, '
                             'passed = excluded.passed, expires = excluded.expires',
                             (triplet[1],) + t)
            conn.execute('COMMIT')
            return result[:2]
        answer = self._run(deadline, work)
        self._maybe_purge(now, deadline)
        return answer

    def count(self, counters, now, window, deadline):
        """counters: [(key, limit)]. None when all were under their limit
        (each is now one more), else the index of the first at its limit
        (nothing counted)."""
        index, end = window_of(now, window)

        def work(conn):
            conn.execute('BEGIN IMMEDIATE')
            for i, (k, limit) in enumerate(counters):
                row = conn.execute('SELECT n FROM rate WHERE key = ? AND expires > ?',
                                   (_window_key(k, window, index), now)).fetchone()
                if row is not None and row[0] >= limit:
                    conn.execute('COMMIT')
                    return i
            for k, _ in counters:
                conn.execute('INSERT INTO rate (key, n, expires) VALUES (?, 1, ?) ON CONFLICT '
                             '(key) DO UPDATE SET n = n + 1', (_window_key(k, window, index), end))
            conn.execute('COMMIT')
            return None
        answer = self._run(deadline, work)
        self._maybe_purge(now, deadline)
        return answer

    def _maybe_purge(self, now, deadline):
        """At most every PURGE_EVERY seconds per process, and then only if no
        process purged this database for that long; at the next call again
        while a purge finds full batches. Its failure (the deadline, a
        lock) is no failure of the call."""
        if time.monotonic() < self.next_purge:
            return
        self.next_purge = time.monotonic() + PURGE_EVERY
        try:
            if self.purge(now, deadline) == self.FULL:
                self.next_purge = 0.0
        except StateError:
            pass

    FULL = -1        # purge(): a table had more expired rows than one batch

    def purge(self, now, deadline, force=False):
        """Deletes up to PURGE_BATCH expired rows of each table; the number
        deleted, FULL when a table had a batch or more (the next purge is
        then due at once, for every process), or None when another process
        purged recently."""
        def due(conn):
            row = conn.execute("SELECT value FROM meta WHERE name = 'purged'").fetchone()
            return force or row is None or now - row[0] >= PURGE_EVERY

        def work(conn):
            if not due(conn):               # a read: no write lock for nothing
                return None
            conn.execute('BEGIN IMMEDIATE')
            if not due(conn):
                conn.execute('COMMIT')
                return None
            deleted, full = 0, False
            for table in TABLES:
                n = conn.execute(
                    'DELETE FROM %s WHERE key IN (SELECT key FROM %s WHERE expires <= ? '
                    'LIMIT %d)' % (table, table, PURGE_BATCH), (now,)).rowcount
                deleted += n
                full = full or n >= PURGE_BATCH
            conn.execute("INSERT INTO meta (name, value) VALUES ('purged', ?) ON CONFLICT "
                         "(name) DO UPDATE SET value = excluded.value",
                         (now - PURGE_EVERY if full else now,))
            conn.execute('COMMIT')
            return self.FULL if full else deleted
        return self._run(deadline, work)


def _window_key(k, window, index):
    """The counter k in window number index (of window seconds)."""
    return hashlib.blake2b(k[1] + b'%r:%d' % (float(window), index), digest_size=16).digest()


# ---- Redis ----

# KEYS: client, triplet. ARGV: now, delay, window, max_age, auto_allow,
# refresh. The same decision as decide(); hashes with f(irst), p(assed),
# e(xpires) and n (the count), each key with EXPIREAT its expiry (+1 s:
# EXPIREAT takes whole seconds), so that Redis drops it by itself.
# Numbers leave the script as strings (Redis would truncate a Lua number).
_GREY_LUA = """
local now, delay, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local max_age, auto, refresh = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local function keep(key, expires)
  redis.call('HSET', key, 'e', string.format('%.6f', expires))
  redis.call('EXPIREAT', key, math.ceil(expires) + 1)
end
local c = redis.call('HMGET', KEYS[1], 'n', 'e')
local n = 0
if c[1] and tonumber(c[2]) > now then n = tonumber(c[1]) end
if auto > 0 and n >= auto then
  if tonumber(c[2]) < now + max_age - refresh then keep(KEYS[1], now + max_age) end
  return {'allowed', '0'}
end
local t = redis.call('HMGET', KEYS[2], 'f', 'p', 'e')
if not t[1] or tonumber(t[3]) <= now then
  redis.call('HSET', KEYS[2], 'f', string.format('%.6f', now), 'p', '0')
  keep(KEYS[2], now + window)
  return {'new', tostring(delay)}
end
if t[2] == '1' then
  if tonumber(t[3]) < now + max_age - refresh then keep(KEYS[2], now + max_age) end
  return {'known', '0'}
end
local age = now - tonumber(t[1])
if age < delay then
  return {'early', string.format('%.6f', delay - age)}
end
redis.call('HSET', KEYS[2], 'p', '1')
keep(KEYS[2], now + max_age)
if auto > 0 then
  redis.call('HSET', KEYS[1], 'n', tostring(n + 1))
  keep(KEYS[1], now + max_age)
end
return {'passed', '0'}
"""

# KEYS: the counters of this window. ARGV[1]: the window's end (EXPIREAT),
# ARGV[2..]: the limits. 0 when all were counted, else the (1-based) index
# of the first at its limit, nothing counted.
_COUNT_LUA = """
for i, k in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', k) or '0')
  if n >= tonumber(ARGV[i + 1]) then return i end
end
for i, k in ipairs(KEYS) do
  redis.call('INCR', k)
  redis.call('EXPIREAT', k, ARGV[1])
end
return 0
"""


def redis_address(url):
    """(host, port, db, password) of redis://[:PASSWORD@]HOST[:PORT][/DB];
    ValueError for anything else. HOST is an IPv4 or IPv6 address
    ("localhost" is 127.0.0.1): a name would be looked up by getaddrinfo,
    which no deadline can interrupt."""
    import socket
    from urllib.parse import urlsplit, unquote
    parts = urlsplit(url)
    if parts.scheme != 'redis' or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(url)
    port = parts.port or 6379          # ValueError for a bad port
    path = parts.path.strip('/')
    if path and not (path.isascii() and path.isdigit() and len(path) <= 5):
        raise ValueError(url)
    host = '127.0.0.1' if parts.hostname == 'localhost' else parts.hostname
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            break
        except (OSError, ValueError):
            continue
    else:
        raise ValueError(url)
    return (host, port, int(path or 0),
            unquote(parts.password) if parts.password is not None else None)


def shown(url):
    """The URL for a log line: a password replaced by ***."""
    if url.startswith('redis://') and '@' in url.split('/', 3)[2]:
        userinfo, host = url[8:].split('/', 1)[0].rsplit('@', 1)
        rest = url[8 + len(userinfo) + 1 + len(host):]
        user = userinfo.split(':', 1)[0]
        return 'redis://%s:***@%s%s' % (user, host, rest)
    return url


def _bounded_connection(store):
    """python3-redis's Connection with every wait cut to what is left of
    store.deadline: the connect, each request written, each reply read
    (so AUTH, SELECT and a script loaded again count against it too)."""
    import redis

    class BoundedConnection(redis.Connection):
        def _left(self):
            left = store.deadline - time.monotonic()
            if left <= 0:
                raise redis.TimeoutError('no answer within the deadline')
            return left

        def connect(self):
            self.socket_connect_timeout = self._left()
            return super().connect()

        def send_packed_command(self, command, check_health=True):
            left = self._left()
            if self._sock is not None:
                self._sock.settimeout(left)
            return super().send_packed_command(command, check_health)

        def read_response(self, *args, **kwargs):
            left = self._left()
            if self._sock is not None:
                self._sock.settimeout(left)
            return super().read_response(*args, **kwargs)

    return BoundedConnection


class RedisStore:
    """A client per process (python3-redis, imported at the first use: it
    costs ~100 ms of CPU, once per qmail-idcheckd worker, but once per
    session embedded). A connection found dead (the server restarted) is
    replaced once within the same call, if time is left."""

    def __init__(self, url, timeout):
        self.url = url
        self.address = redis_address(url)
        self.timeout = timeout
        self.pid = os.getpid()
        self.client = None
        self.deadline = 0.0

    def _client(self):
        if self.client is None:
            import redis
            host, port, db, password = self.address
            pool = redis.ConnectionPool(connection_class=_bounded_connection(self),
                                        host=host, port=port, db=db, password=password,
                                        socket_connect_timeout=self.timeout,
                                        socket_timeout=self.timeout,
                                        retry_on_timeout=False, health_check_interval=0)
            self.client = redis.Redis(connection_pool=pool)
            self.grey_script = self.client.register_script(_GREY_LUA)
            self.count_script = self.client.register_script(_COUNT_LUA)
        return self.client

    def _run(self, deadline, work):
        import redis
        self.deadline = deadline
        for attempt in (1, 2):
            try:
                return work(self._client())
            except redis.TimeoutError as e:
                raise StateError('%s: %s' % (shown(self.url), e)) from None
            except redis.ConnectionError as e:
                # dead connection (server restarted): once more with a new one
                if attempt == 2 or time.monotonic() >= deadline:
                    raise StateError('%s: %s' % (shown(self.url), e)) from None
            except redis.RedisError as e:
                raise StateError('%s: %s' % (shown(self.url), e)) from None

    def close(self):
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                pass
            self.client = None

    def grey(self, client, triplet, now, p, deadline):
        def work(r):
            result, wait = self.grey_script(
                keys=[_redis_key(client), _redis_key(triplet)],
                args=['%.6f' % now, repr(float(p.delay)), repr(float(p.window)),
                      repr(float(p.max_age)), str(int(p.auto_allow)), repr(float(p.refresh))],
                client=r)
            return result.decode(), float(wait)
        return self._run(deadline, work)

    def count(self, counters, now, window, deadline):
        index, end = window_of(now, window)

        def work(r):
            found = self.count_script(
                keys=[b'checkid:rate:' + _window_key(k, window, index).hex().encode()
                      for k, _ in counters],
                args=[str(int(math.ceil(end)) + 1)] + [str(int(limit)) for _, limit in counters],
                client=r)
            return None if int(found) == 0 else int(found) - 1
        return self._run(deadline, work)


def _redis_key(k):
    return b'checkid:' + k[0].encode() + b':' + k[1].hex().encode()


# ---- the stores of this process ----

_stores = {}
_inherited = []        # stores of a parent process, kept open and never used


def store(url, timeout):
    """The store for url in this process, opened at its first use."""
    me = os.getpid()
    k = (url, timeout if url.startswith('redis:') else None)
    s = _stores.get(k)
    if s is not None and s.pid != me:
        # after a fork: a connection must never be shared with the parent
        _inherited.extend(_stores.values())
        _stores.clear()
        s = None
    if s is None:
        if len(_stores) >= 8:
            for old in _stores.values():
                old.close()
            _stores.clear()
        s = _stores[k] = (SQLiteStore(url[7:]) if url.startswith('sqlite:')
                          else RedisStore(url, timeout))
    return s


# ---- a call's use of the store: the deadline, the fallback ----

_failed = {}           # session -> the store URL that failed in it
_FAILED_MAX = 1024
_down = {}             # store URL -> (monotonic time it may be asked again, why it failed)


def session_of(env):
    """What tells one SMTP session from another in this process: qmail-
    idcheck's pid (IDCHECK_PID) with the client's address and port; None
    outside qmail-idcheck."""
    pid = env.get('IDCHECK_PID')
    if not pid:
        return None
    return (pid, env.get('TCPREMOTEIP'), env.get('TCPREMOTEPORT'))


class Call:
    """The store's work in one checkID call: one deadline for all of it.
    run(op) returns op(store, deadline), or raises Unavailable when the
    store failed now or earlier in this session; log is idcheck.log or
    None."""

    def __init__(self, cfg, env, log):
        self.cfg = cfg
        self.session = session_of(env)
        self.deadline = time.monotonic() + cfg.state_timeout
        self.log = log

    def run(self, what, op):
        url = self.cfg.state
        if self.session is not None and _failed.get(self.session) == url:
            raise Unavailable()
        try:
            down = _down.get(url)
            if down is not None and time.monotonic() < down[0]:
                raise StateError('%s; not asked again before %g s have passed'
                                 % (down[1], self.cfg.state_retry))
            try:
                return op(store(url, self.cfg.state_timeout), self.deadline)
            except StateError as e:
                _down[url] = (time.monotonic() + self.cfg.state_retry, str(e))
                raise
            except Exception as e:          # the store's code, python3-redis missing, ...
                why = '%s: %s: %s' % (shown(url), type(e).__name__, e)
                _down[url] = (time.monotonic() + self.cfg.state_retry, why)
                raise StateError(why) from None
        except StateError as e:
            if self.session is not None:
                if len(_failed) >= _FAILED_MAX:
                    _failed.clear()
                _failed[self.session] = self.cfg.state
            if self.log is not None:
                from .names import printable
                self.log('checkid: state store failed (%s) at %s: %s for this session'
                         % (printable(str(e)), what,
                            'greylisting and rate limits skipped'
                            if self.cfg.state_onerror == 'skip' else 'TEMPFAIL'))
            raise Unavailable() from None


class Unavailable(Exception):
    """The store cannot be used in this call."""


# ---- the checks of one checkID call ----

def check(stage, ip, identity, S, R, trusted, cfg, env, log):
    """The rate limits (MAIL, RCPT), then greylisting (RCPT), for a call
    that belongs to a transaction. None when the command may go on, else
    (reply reason, fill) for a TEMPFAIL: 'rate', 'greylist' or
    'state-temp' (the store failed and CHECKID_STATE_ONERROR=tempfail).
    identity: the identity when its SPF result is pass, else None."""
    from . import greylist, ratelimit
    if ip is None or stage not in ('mail', 'rcpt'):
        return None
    call = Call(cfg, env, log)
    try:
        over = ratelimit.check(call, stage, ip, identity, cfg)
        if over is not None:
            what, who, wait = over
            return 'rate', {'what': what, 'who': who, 'wait': wait}
        if stage == 'rcpt' and cfg.greylist and not (trusted and cfg.grey_skip_trusted) \
                and R and isinstance(R[-1], str) and isinstance(S, str):
            wait = greylist.check(call, ip, S, R[-1], cfg)
            if wait is not None:
                return 'greylist', {'wait': wait}
    except Unavailable:
        if cfg.state_onerror == 'tempfail':
            return 'state-temp', {}
    return None
