"""A real redis-server for the suite (Debian's redis-server package): on a
loopback port of its own, persistence off, in a temporary directory,
stopped after; every wait has a deadline.

    from redisfixture import RedisServer, redis_server   # redis_server: a pytest fixture
    r = RedisServer().start()
    try: ... r.url ... r.kill(); r.start()   (the same port again) ...
    finally: r.stop()

start() picks a free port the first time (a port the kernel hands out for
a moment, then given to redis-server; tried again on a clash) and keeps it,
so that a server killed and started again is where the clients look.
command() speaks RESP over a socket of its own (no client library), for
the tests to look at the data behind the policy's back.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

REDIS_SERVER = '/usr/bin/redis-server'
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
HERE = os.path.dirname(os.path.abspath(__file__))


class RedisError(RuntimeError):
    pass


def available():
    return os.access(REDIS_SERVER, os.X_OK)


def _free_port():
    s = socket.socket()
    try:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
    finally:
        s.close()


class RedisServer:
    def __init__(self):
        base = os.path.join(HERE, 'tmp')
        os.makedirs(base, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix='redis-', dir=base)
        self.port = None
        self.proc = None
        self.logfile = os.path.join(self.dir, 'redis.log')

    @property
    def url(self):
        return 'redis://127.0.0.1:%d/0' % self.port

    def start(self):
        """Starts the server (on its old port after kill()), waits until it
        answers PING."""
        if not available():
            raise RedisError('%s is not installed (Debian package redis-server)' % REDIS_SERVER)
        for _ in range(5):
            port = self.port or _free_port()
            self.proc = subprocess.Popen(
                [REDIS_SERVER, '--port', str(port), '--bind', '127.0.0.1', '--save', '',
                 '--appendonly', 'no', '--dir', self.dir, '--daemonize', 'no',
                 '--logfile', self.logfile, '--unixsocket', '', '--protected-mode', 'yes'],
                cwd=self.dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if self._command(port, 'PING', timeout=0.5) == 'PONG':
                        self.port = port
                        return self
                except OSError:
                    pass
                time.sleep(0.02)
            self._reap()
            if self.port:                  # our port was taken meanwhile: no other will do
                break
        raise RedisError('redis-server did not start on port %s:\n%s' % (port, self.log()))

    def log(self):
        try:
            with open(self.logfile, errors='replace') as f:
                return f.read()[-3000:]
        except OSError:
            return ''

    def kill(self):
        """SIGKILL, as a crash would; the data is gone (no persistence)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self._reap()

    def pause(self):
        """SIGSTOP: the port still accepts connections, nothing answers."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def _reap(self):
        if self.proc is not None:
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
            self.proc = None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGCONT)
                self.proc.terminate()
            except ProcessLookupError:
                pass
        self._reap()
        shutil.rmtree(self.dir, ignore_errors=True)

    def command(self, *words, timeout=5.0):
        return self._command(self.port, *words, timeout=timeout)

    @staticmethod
    def _command(port, *words, timeout=5.0):
        """One command, its reply: str, int, None, or a list of those."""
        with socket.create_connection(('127.0.0.1', port), timeout=timeout) as s:
            out = b'*%d\r\n' % len(words)
            for w in words:
                w = w if isinstance(w, bytes) else str(w).encode()
                out += b'$%d\r\n%s\r\n' % (len(w), w)
            s.sendall(out)
            return _Reader(s).reply()


class _Reader:
    def __init__(self, sock):
        self.sock, self.buf = sock, b''

    def _line(self):
        while b'\r\n' not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise OSError('redis closed the connection')
            self.buf += data
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line

    def _exactly(self, n):
        while len(self.buf) < n + 2:
            data = self.sock.recv(65536)
            if not data:
                raise OSError('redis closed the connection')
            self.buf += data
        value, self.buf = self.buf[:n], self.buf[n + 2:]
        return value

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b'+':
            return rest.decode()
        if kind == b'-':
            raise RedisError(rest.decode())
        if kind == b':':
            return int(rest)
        if kind == b'$':
            n = int(rest)
            return None if n < 0 else self._exactly(n).decode('latin-1')
        if kind == b'*':
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RedisError('unexpected reply %r' % line)


def _die_with_parent():
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


try:
    import pytest

    @pytest.fixture
    def redis_server():
        """A fresh redis-server per test; skipped (with the reason) only
        when Debian's redis-server is not installed (tests/install-deps
        installs it)."""
        if not available():
            pytest.skip('%s missing: apt-get install redis-server' % REDIS_SERVER)
        r = RedisServer().start()
        try:
            yield r
        finally:
            r.stop()
except ImportError:        # bench/ imports this without pytest
    pass
