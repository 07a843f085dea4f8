"""The test harness: a real tcpserver in front of qmail-idcheck (or of
qmail-smtpd alone: the project's stand-in, or a real notqmail one in the
'real' variant), a client that speaks SMTP line by line, and the queue
stand-in's directory to look at afterwards.

    chain = Chain('idcheck', env={'IDCHECK_MODULE': 't_basic'})
    try:
        chain.start()
        c = chain.connect()
        c.expect('220 standin.example ESMTP')
        c.send('QUIT'); c.expect('221 standin.example'); c.expect_eof()
        chain.wait_sessions()
        assert chain.stored() == []
    finally:
        chain.stop()          # kills everything; raises on sanitizer reports

Dialogue files (tests/dialogues/*.dlg, see tests/README) are run by
run_dialogue(). Every wait here has a deadline: a test fails, never hangs.
Failures raise HarnessError (an AssertionError) whose text shows expected and
got (repr) and the tail of the session log.
"""
import codecs
import ast
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import notqmail

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(TOP, 'tests')
PYTHON = '/usr/bin/python3'          # Debian's, never a pyenv shim on PATH
LOCAL_NAME = 'standin.example'

# Seconds. A read of one reply line; a session's end; tcpserver's start.
READ_TIMEOUT = float(os.environ.get('IDCHECK_READ_TIMEOUT', '5'))
END_TIMEOUT = 10.0
START_TIMEOUT = 5.0

# Build variants: where our programs come from.
VARIANTS = {'plain': 'build', 'asan': 'build-asan'}
# Chain variants: a build variant in front of a qmail-smtpd. 'real' is the
# plain build in front of a real notqmail qmail-smtpd (tests/notqmail.py);
# the sanitizer build is not run a third time against it (run time).
CHAIN_VARIANTS = {'plain': ('plain', 'standin'), 'asan': ('asan', 'standin'),
                  'real': ('plain', 'real')}

# The one place for the sanitizer options: every test that starts one of our
# programs puts SANITIZER_ENV in its environment (the plain build ignores
# it). A report goes to stderr and ends the program; leaks count. A test
# then fails when the program's stderr or log holds a SANITIZER_MARKS
# string: no_sanitizer_report().
ASAN_OPTIONS = 'abort_on_error=0:halt_on_error=1:detect_leaks=1:log_path=stderr:allocator_may_return_null=1'
UBSAN_OPTIONS = 'print_stacktrace=1:halt_on_error=1:abort_on_error=0:log_path=stderr'
LSAN_OPTIONS = 'log_path=stderr'
SANITIZER_ENV = {'ASAN_OPTIONS': ASAN_OPTIONS, 'UBSAN_OPTIONS': UBSAN_OPTIONS,
                 'LSAN_OPTIONS': LSAN_OPTIONS}
SANITIZER_MARKS = ('AddressSanitizer', 'LeakSanitizer', 'runtime error')


class HarnessError(AssertionError):
    pass


def no_sanitizer_report(log):
    """Raises HarnessError, with the end of LOG (str or bytes), if a
    sanitizer reported anything in it."""
    if isinstance(log, bytes):
        log = log.decode('utf-8', 'replace')
    for mark in SANITIZER_MARKS:
        if mark in log:
            raise HarnessError('sanitizer report (%s) in the log:\n%s' % (mark, log[-8000:]))


def asan_available():
    """The sanitizer variant runs unless IDCHECK_NO_ASAN is set or
    build-asan/ does not exist."""
    return not os.environ.get('IDCHECK_NO_ASAN') and os.path.isdir(os.path.join(TOP, 'build-asan'))


def variants():
    return ['plain', 'asan'] if asan_available() else ['plain']


def variant_binaries(name):
    """NAME in build/, and in build-asan/ when the sanitizer variant runs:
    for tests that run one program directly, once per variant."""
    return [os.path.join(build_dir(v), name) for v in variants()]


def chain_variants():
    """The chain variants a chain test runs in: the build variants against
    the stand-in, and 'real' (skipped by conftest.py when there is no real
    qmail-smtpd, see notqmail.smtpd())."""
    return variants() + ['real']


def smtpd_kind(variant):
    """'standin' or 'real': which qmail-smtpd a (chain) variant runs."""
    return CHAIN_VARIANTS[variant][1]


def real_smtpd():
    """The real qmail-smtpd's path; HarnessError when there is none."""
    try:
        path, why_not = notqmail.smtpd()
    except notqmail.Unusable as e:
        raise HarnessError('no real qmail-smtpd: %s' % e) from None
    if path is None:
        raise HarnessError('no real qmail-smtpd: %s' % why_not)
    return path


def build_dir(variant):
    """The build directory of a build or chain variant."""
    return os.path.join(TOP, VARIANTS[CHAIN_VARIANTS[variant][0]])


def binary(variant, name):
    path = os.path.join(build_dir(variant), name)
    if not os.access(path, os.X_OK):
        make = 'make asan' if CHAIN_VARIANTS[variant][0] == 'asan' else 'make'
        raise HarnessError('%s is missing or not executable: run %s' % (path, make))
    return path


def _quietly(fn, *args, **kwargs):
    """fn(...), where a process already gone or a wait that ran out is fine."""
    try:
        return fn(*args, **kwargs)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        return None


def _wait_until(predicate, timeout, interval=0.005):
    """Polls predicate until it returns a true value or timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# ---- processes under /proc ----

def _proc_stat(pid):
    """(state, ppid) or None when the process is gone."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b')') + 2:].split()
    return fields[0].decode(), int(fields[1])


def _alive(pid):
    st = _proc_stat(pid)
    return st is not None and st[0] not in ('Z', 'X')


def _descendants(root):
    """Every living descendant of root, parents before children."""
    children = {}
    for name in os.listdir('/proc'):
        if name.isdigit():
            st = _proc_stat(int(name))
            if st and st[0] not in ('Z', 'X'):
                children.setdefault(st[1], []).append(int(name))
    out, todo = [], [root]
    while todo:
        for kid in children.get(todo.pop(0), []):
            out.append(kid)
            todo.append(kid)
    return out


def _die_with_parent():
    """In the child before exec: SIGKILL when the test process dies, so a
    killed pytest leaves no tcpserver behind (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def _exe(pid):
    try:
        return os.path.realpath('/proc/%d/exe' % pid)
    except OSError:
        return None


def _listening_port(pid):
    """The TCP port a process listens on, from its socket fds and /proc/net."""
    inodes = set()
    try:
        for fd in os.listdir('/proc/%d/fd' % pid):
            try:
                link = os.readlink('/proc/%d/fd/%s' % (pid, fd))
            except OSError:
                continue
            if link.startswith('socket:['):
                inodes.add(link[8:-1])
    except OSError:
        return None
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    col = line.split()
                    if col[3] == '0A' and col[9] in inodes:
                        return int(col[1].rsplit(':', 1)[1], 16)
        except OSError:
            continue
    return None


# ---- text helpers ----

def pattern(text):
    """A compiled bytes regex for TEXT where {*} matches any run of bytes
    without CR or LF; everything else is literal."""
    if isinstance(text, str):
        text = text.encode('utf-8', 'surrogateescape')
    return re.compile(b'[^\r\n]*'.join(re.escape(p) for p in text.split(b'{*}')), re.S)


def unescape(text):
    """Backslash escapes (\\r \\n \\t \\0 \\\\ \\xNN, octal) in unquoted TEXT."""
    return codecs.escape_decode(text.encode('utf-8', 'surrogateescape'))[0]


def quoted_bytes(arg):
    """A Python-style "..." string literal as bytes, nothing added."""
    arg = arg.strip()
    if len(arg) < 2 or arg[0] != '"' or arg[-1] != '"':
        raise ValueError('want a "quoted string", got %r' % arg)
    value = ast.literal_eval('b' + arg)
    if not isinstance(value, bytes):
        raise ValueError('not a string literal: %r' % arg)
    return value


def tcprules_value(value):
    """VAR="value" for tcprules: it ends a value at the next quote character,
    so pick one the value does not contain."""
    for q in '"\'/|#%+':
        if q not in value:
            return q + value + q
    raise HarnessError('no tcprules quote character left for %r' % value)


# ---- the client side of one connection ----

class Connection:
    def __init__(self, chain, sock, pid):
        self.chain = chain
        self.sock = sock
        self.pid = pid              # the tcpserver child running this session
        self.buf = b''
        self.eof = False
        self.send_error = None

    def fail(self, what):
        self.chain.fail(what)

    def sendraw(self, data):
        if self.sock is None:
            self.fail('send: the connection is closed')
        self.sock.settimeout(READ_TIMEOUT)
        try:
            self.sock.sendall(data)
        except socket.timeout:
            self.fail('send: server did not take %d bytes within %gs' % (len(data), READ_TIMEOUT))
        except OSError as e:
            # The server may close first; the next expect tells the real story.
            self.send_error = e

    def send(self, line):
        self.sendraw(line.encode('utf-8', 'surrogateescape') + b'\r\n')

    def _fill(self, deadline):
        """Reads more bytes into buf; False at EOF."""
        if self.sock is None:
            self.fail('read: the connection is closed')
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b''
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_line(self, timeout=None):
        """The next line through LF, or what is left at EOF (maybe b'')."""
        deadline = time.monotonic() + (timeout or READ_TIMEOUT)
        while b'\n' not in self.buf and not self.eof:
            try:
                self._fill(deadline)
            except socket.timeout:
                return None
        if b'\n' in self.buf:
            line, self.buf = self.buf.split(b'\n', 1)
            return line + b'\n'
        line, self.buf = self.buf, b''
        return line

    def expect(self, text, timeout=None):
        """The next reply line is TEXT + CRLF; {*} matches a run without CR/LF."""
        line = self.read_line(timeout)
        want = text.encode('utf-8', 'surrogateescape') + b'\r\n' if isinstance(text, str) else text + b'\r\n'
        if line is None:
            self.fail('expect: no reply line within %gs\n  expected: %r\n  got so far: %r'
                      % (timeout or READ_TIMEOUT, want, self.buf))
        if not pattern(want).fullmatch(line):
            got = 'EOF' if line == b'' else repr(line)
            extra = '' if self.send_error is None else '\n  (an earlier send failed: %s)' % self.send_error
            self.fail('expect: reply mismatch\n  expected: %r\n  got:      %s%s' % (want, got, extra))
        return line

    def helo_opening(self):
        """The opening most tests share (`include helo` in a dialogue): the
        greeting, HELO client.example, and qmail-smtpd's reply."""
        self.expect('220 standin.example ESMTP')
        self.send('HELO client.example')
        self.expect('250 standin.example')

    def expect_eof(self, timeout=None):
        """The server closes, sending nothing more."""
        deadline = time.monotonic() + (timeout or READ_TIMEOUT)
        try:
            while not self.eof and not self.buf:
                self._fill(deadline)
        except socket.timeout:
            self.fail('expect-eof: the server kept the connection open for %gs' % (timeout or READ_TIMEOUT))
        if self.buf:
            self.fail('expect-eof: got more bytes instead: %r' % self.buf)

    def close(self):
        """Shuts down the write side and closes."""
        if self.sock is None:
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.sock.close()
        self.sock = None


# ---- the chain: tcpserver and everything under it ----

class Chain:
    """chain: 'idcheck' (tcpserver → [prefix] qmail-idcheck SMTPD) or 'bare'
    (tcpserver → [prefix] SMTPD). variant: a chain variant (CHAIN_VARIANTS):
    the build our programs come from and which SMTPD, the stand-in or the
    real qmail-smtpd. env: per-connection variables, set by tcprules for
    127/8 (connect(source=) picks the client's address there). server_env:
    added to tcpserver's environment. control: {file: text} written to
    home/control/ (me is standin.example unless control gives it; text None:
    the file is absent). prefix: argv words put before the chain (words
    starting with build/ are taken from the variant's build directory).

    home/ is the session's qmail home: tcpserver runs there, the stand-in is
    told so (STANDIN_HOME), and the real qmail-smtpd, built with qmail home
    ".", reads its control files there. Each chain has its own."""

    def __init__(self, chain='idcheck', variant='plain', env=None, server_env=None,
                 control=None, prefix=None):
        if chain not in ('idcheck', 'bare'):
            raise HarnessError('unknown chain %r' % chain)
        self.chain = chain
        self.variant = variant
        self.env = dict(env or {})
        self.server_env = dict(server_env or {})
        self.control = dict(control or {})
        self.prefix = list(prefix or [])
        self.proc = None
        self.port = None
        self.dir = None
        self.connections = []
        self.sessions = []          # pids of every session started
        self.stopped = False

    # -- set-up --

    def _tmpdir(self):
        base = os.path.join(TESTS, 'tmp')
        try:
            os.makedirs(base, exist_ok=True)
        except OSError:
            base = None
        return tempfile.mkdtemp(prefix='chain-', dir=base)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def smtpd(self):
        if smtpd_kind(self.variant) == 'real':
            return real_smtpd()
        return binary(self.variant, 'qmail-smtpd-standin')

    def argv(self):
        words = []
        for w in self.prefix:
            words.append(os.path.join(build_dir(self.variant), w[len('build/'):])
                         if w.startswith('build/') else w)
        if self.chain == 'idcheck':
            words.append(binary(self.variant, 'qmail-idcheck'))
        words.append(self.smtpd())
        return words

    def start(self):
        """Sets up the directory and starts tcpserver; on any failure
        everything started so far is undone before the error goes up."""
        try:
            return self._start()
        except BaseException:
            self.stop(check=False)
            raise

    def _start(self):
        argv_chain = self.argv()       # fails early when a binary is missing
        self.dir = self._tmpdir()
        os.makedirs(self.path('home', 'control'))
        os.makedirs(self.path('queue'))
        control = {'me': LOCAL_NAME + '\n'}
        control.update(self.control)
        for name, text in control.items():
            if text is not None:
                with open(self.path('home', 'control', name), 'w') as f:
                    f.write(text)

        rule = '127.:allow'
        for var, value in self.env.items():
            if '\n' in value or ',' in var or '=' in var:
                raise HarnessError('tcprules cannot carry %s=%r' % (var, value))
            rule += ',%s=%s' % (var, tcprules_value(value))
        with open(self.path('rules'), 'w') as f:
            f.write(rule + '\n:allow\n')
        with open(self.path('rules')) as f:
            r = subprocess.run(['tcprules', self.path('rules.cdb'), self.path('rules.tmp')],
                               stdin=f, capture_output=True, timeout=10)
        if r.returncode != 0:
            raise HarnessError('tcprules failed: %r' % r.stderr)

        build = build_dir(self.variant)
        env = {
            'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
            'STANDIN_HOME': self.path('home'),
            'STANDIN_QUEUE': self.path('queue'),
            'QMAILQUEUE': binary(self.variant, 'qmail-queue-standin'),
            'IDCHECK_PYTHONPATH': os.path.join(TESTS, 'policies') + ':' + os.path.join(TOP, 'python'),
            'IDCHECK_PYTHONPROG': os.path.join(build, 'qmail-idcheck-python'),
            **SANITIZER_ENV,
        }
        env.update(self.server_env)
        argv = ['tcpserver', '-v', '-H', '-R', '-l', LOCAL_NAME, '-x', self.path('rules.cdb'),
                '127.0.0.1', '0'] + argv_chain
        self.logfile = self.path('log')
        self.logfd = open(self.logfile, 'ab')
        self.proc = subprocess.Popen(argv, env=env, cwd=self.path('home'), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.logfd,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        # Port 0: tcpserver binds a free port itself; read it back from /proc.
        # No window in which another process can take it.
        self.port = _wait_until(lambda: self.proc.poll() is None and _listening_port(self.proc.pid),
                                START_TIMEOUT)
        if not self.port:
            self.fail('tcpserver did not start listening (exit %r)' % self.proc.poll())
        if not _wait_until(lambda: 'tcpserver: status: 0/' in self.log(), START_TIMEOUT):
            self.fail('tcpserver did not report its status')
        return self

    # -- connections and sessions --

    def connect(self, source=None):
        """A new session; source: the client's address (any 127/8 one)."""
        sock = socket.create_connection(('127.0.0.1', self.port), timeout=READ_TIMEOUT,
                                        source_address=(source, 0) if source else None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        myport = sock.getsockname()[1]
        ok = re.compile(r'^tcpserver: ok (\d+) .*:%d$' % myport, re.M)
        m = _wait_until(lambda: ok.search(self.log()), START_TIMEOUT)
        if not m:
            sock.close()
            self.fail('tcpserver did not log the connection from port %d' % myport)
        conn = Connection(self, sock, int(m.group(1)))
        self.connections.append(conn)
        self.sessions.append(conn.pid)
        return conn

    def session_ended(self, pid):
        """The exit status tcpserver logged for a session, or None."""
        m = re.search(r'^tcpserver: end %d status (\d+)$' % pid, self.log(), re.M)
        return int(m.group(1)) if m else None

    def wait_sessions(self, timeout=END_TIMEOUT):
        """Closes every open connection and waits until tcpserver has logged
        the end of every session, so their processes (and the queue's) are
        gone before anyone looks at the queue."""
        for conn in self.connections:
            conn.close()
        deadline = time.monotonic() + timeout
        for pid in self.sessions:
            if not _wait_until(lambda: self.session_ended(pid) is not None,
                               max(0.0, deadline - time.monotonic())):
                self.fail('session %d did not end within %gs' % (pid, timeout))

    def backend_pid(self, conn):
        """The process running SMTPD for a session."""
        smtpd = os.path.realpath(self.smtpd())
        for pid in [conn.pid] + _descendants(conn.pid):
            if _exe(pid) == smtpd and _alive(pid):
                return pid
        return None

    def kill_backend(self, conn):
        pid = _wait_until(lambda: self.backend_pid(conn), READ_TIMEOUT)
        if not pid:
            self.fail('kill-backend: no %s running under session %d' % (self.smtpd(), conn.pid))
        os.kill(pid, signal.SIGKILL)
        if not _wait_until(lambda: not _alive(pid), READ_TIMEOUT):
            self.fail('kill-backend: %d did not die' % pid)

    # -- what happened --

    def log_bytes(self):
        try:
            with open(self.logfile, 'rb') as f:
                return f.read()
        except (OSError, AttributeError):
            return b''

    def log(self):
        return self.log_bytes().decode('utf-8', 'replace')

    def stored(self):
        """[(message bytes, envelope bytes)] in arrival order. Only messages
        whose .env is in place count (the queue stand-in renames it last)."""
        qdir = self.path('queue')
        out = []
        for name in sorted(os.listdir(qdir)):
            if name.endswith('.env'):
                base = name[:-4]
                with open(os.path.join(qdir, base + '.msg'), 'rb') as f:
                    msg = f.read()
                with open(os.path.join(qdir, name), 'rb') as f:
                    env = f.read()
                out.append((msg, env))
        return out

    def fail(self, what):
        raise HarnessError('%s\n--- log (%s) ---\n%s' % (what, self.variant, self._log_tail()))

    def _log_tail(self, limit=6000):
        text = self.log()
        return text if len(text) <= limit else '...\n' + text[-limit:]

    # -- tear-down --

    def stop(self, check=True):
        """Kills tcpserver and everything under it, removes the temporary
        directory (kept when IDCHECK_KEEP is set), then fails if a sanitizer
        reported anything."""
        if self.stopped:
            return
        self.stopped = True
        for conn in self.connections:
            conn.close()
        log = ''
        if self.proc is not None:
            pgid = self.proc.pid
            strays = _descendants(self.proc.pid)
            _quietly(os.killpg, pgid, signal.SIGTERM)
            _quietly(self.proc.wait, timeout=2)
            for pid in strays:       # those that left the process group too
                _quietly(os.kill, pid, signal.SIGKILL)
            _quietly(os.killpg, pgid, signal.SIGKILL)
            _quietly(self.proc.wait, timeout=2)
            log = self.log()
        if getattr(self, 'logfd', None) is not None:
            self.logfd.close()
        if self.dir and not os.environ.get('IDCHECK_KEEP'):
            shutil.rmtree(self.dir, ignore_errors=True)
        elif self.dir:
            print('harness: kept %s' % self.dir)
        if check:
            no_sanitizer_report(log)

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        # A failing test keeps its own error; the sanitizer check still runs.
        self.stop(check=exc_type is None)
        if exc_type is not None:
            return False


# ---- dialogue files ----

class Dialogue:
    """A parsed .dlg file: set-up directives, then the dialogue steps, as
    they hold for SMTPD ('standin' or 'real': lines marked standin-only are
    left out for the real qmail-smtpd). `include NAME` puts the lines of
    dialogues/include/NAME in its place, read as if they stood there."""

    SETUP = ('chain', 'policy', 'env', 'server-env', 'control', 'no-control', 'prefix',
             'standin-only')
    STEPS = ('connect', 'send', 'sendraw', 'expect', 'expect-eof', 'close', 'sleep',
             'kill-backend', 'stored', 'message', 'messageraw', 'envelope', 'log', 'no-log')
    INCLUDE_DIR = os.path.join(TESTS, 'dialogues', 'include')

    def __init__(self, path, smtpd='standin'):
        self.path = path
        self.name = os.path.basename(path)
        self.chain = 'idcheck'
        self.env = {}
        self.server_env = {}
        self.control = {}
        self.prefix = []
        self.standin_only = False
        self.steps = []             # (where, directive, argument); where: file:line
        lines = self._lines(path, lambda n: '%s:%d' % (self.name, n))
        i = 0
        while i < len(lines):
            where, line, included = lines[i]
            i += 1
            if line == '' or line.startswith('#'):
                continue
            word, _, arg = line.partition(' ')
            if word == 'include':
                # Its lines stand in its place: they are read by this loop
                # like any other, standin-only and message blocks included.
                if included:
                    raise HarnessError('%s: an included file cannot include' % where)
                lines[i:i] = self._included(where, arg)
                continue
            only_standin = False
            repeat = 1
            if word == 'repeat':
                # repeat N DIRECTIVE: the directive N times (send, sendraw, expect)
                count, _, rest = arg.partition(' ')
                word, _, arg = rest.partition(' ')
                if not count.isdigit() or word not in ('send', 'sendraw', 'expect'):
                    raise HarnessError('%s: repeat N send|sendraw|expect ...' % where)
                repeat = int(count)
            if word == 'standin-only' and arg:
                # A single directive that holds for the stand-in only.
                only_standin = True
                word, _, arg = arg.partition(' ')
                if word in self.SETUP or word == 'include':
                    raise HarnessError('%s: standin-only cannot prefix %s' % (where, word))
                if word not in self.STEPS:
                    raise HarnessError('%s: unknown directive %r' % (where, word))
            if only_standin and smtpd != 'standin':
                if word == 'message':
                    while i < len(lines) and lines[i][1] != '.end':
                        i += 1
                    i += 1
                continue
            if word in self.SETUP:
                if self.steps:
                    raise HarnessError('%s: %s must come before the dialogue' % (where, word))
                self._setup(where, word, arg)
            elif word == 'message':
                body = []
                while True:
                    if i >= len(lines):
                        raise HarnessError('%s: message without .end' % where)
                    i += 1
                    if lines[i - 1][1] == '.end':
                        break
                    body.append(lines[i - 1][1])
                self.steps.append((where, word, body))
            elif word in self.STEPS:
                if word in ('sendraw', 'messageraw'):
                    try:
                        arg = quoted_bytes(arg)
                    except (ValueError, SyntaxError) as e:
                        raise HarnessError('%s: %s' % (where, e))
                elif word in ('stored',) and not arg.isdigit():
                    raise HarnessError('%s: stored wants a number' % where)
                elif word == 'connect' and arg and not re.fullmatch(r'127(\.\d{1,3}){3}', arg):
                    raise HarnessError('%s: connect [127.x.y.z]' % where)
                self.steps.extend([(where, word, arg)] * repeat)
            else:
                raise HarnessError('%s: unknown directive %r' % (where, word))

    @staticmethod
    def _lines(path, where, included=False):
        """[(where(lineno), line, included)] of a file, without the final
        newline."""
        with open(path, encoding='utf-8', errors='surrogateescape') as f:
            lines = f.read().split('\n')
        if lines and lines[-1] == '':
            lines.pop()
        return [(where(n), line, included) for n, line in enumerate(lines, 1)]

    def _included(self, where, name):
        """The lines of dialogues/include/NAME, each placed as
        'this.dlg:4 (include helo, line 2)'."""
        path = os.path.join(self.INCLUDE_DIR, name)
        if not re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9._-]*', name) or not os.path.isfile(path):
            raise HarnessError('%s: include NAME: no file dialogues/include/%s' % (where, name))
        return self._lines(path, lambda n: '%s (include %s, line %d)' % (where, name, n), True)

    def wants_dns(self):
        """Does a set-up value name {dns}, the DNS fixture's address?"""
        values = (list(self.env.values()) + list(self.server_env.values())
                  + [v for v in self.control.values() if v is not None] + self.prefix)
        return any('{dns}' in v for v in values)

    def _setup(self, where, word, arg):
        if word == 'chain':
            if arg not in ('bare', 'idcheck'):
                raise HarnessError('%s: chain bare|idcheck' % where)
            self.chain = arg
        elif word == 'policy':
            self.env['IDCHECK_MODULE'] = arg
        elif word in ('env', 'server-env'):
            var, eq, value = arg.partition('=')
            if not eq or not var:
                raise HarnessError('%s: %s NAME=value' % (where, word))
            (self.env if word == 'env' else self.server_env)[var] = value
        elif word == 'control':
            name, _, text = arg.partition(' ')
            if not name or '/' in name:
                raise HarnessError('%s: control FILE text' % where)
            self.control[name] = (self.control.get(name) or '') + text + '\n'
        elif word == 'no-control':
            if not arg or '/' in arg or ' ' in arg:
                raise HarnessError('%s: no-control FILE' % where)
            self.control[arg] = None
        elif word == 'prefix':
            self.prefix.extend(arg.split())
        elif word == 'standin-only':      # alone on its line: the whole test
            self.standin_only = True


def _message_diff(template, got):
    """Where a stored message first differs from its template, line by line
    (lines end at LF; {*} as in pattern())."""
    want_lines = template.split(b'\n')
    got_lines = got.split(b'\n')
    for n, (w, g) in enumerate(zip(want_lines, got_lines)):
        if not pattern(w).fullmatch(g):
            return ('  first difference in line %d:\n  expected: %r\n  got:      %r\n'
                    '  whole message: %r' % (n + 1, w, g, got[:4000]))
    return ('  expected %d lines, got %d\n  expected: %r\n  got:      %r'
            % (len(want_lines) - 1, len(got_lines) - 1, template[:4000], got[:4000]))


def run_dialogue(path, variant='plain', dns=None):
    """Runs one dialogue file against a fresh chain of the (chain) variant;
    raises HarnessError. dns: the DNS fixture's address (tests/dnsfixture.py),
    for a dialogue that names {dns}."""
    d = Dialogue(path, smtpd_kind(variant))
    # Paths in set-up values: {top} the repository, {tests} tests/, {build}
    # the variant's build directory; {dns} the DNS fixture's tinydns.
    places = {'{top}': TOP, '{tests}': TESTS, '{build}': build_dir(variant)}
    if d.wants_dns():
        if dns is None:
            raise HarnessError('%s names {dns}: run it with the DNS fixture' % d.name)
        places['{dns}'] = dns

    def place(value):
        for key, where in places.items():
            value = value.replace(key, where)
        return value

    chain = Chain(d.chain, variant,
                  env={k: place(v) for k, v in d.env.items()},
                  server_env={k: place(v) for k, v in d.server_env.items()},
                  control={k: v if v is None else place(v) for k, v in d.control.items()},
                  prefix=[place(w) for w in d.prefix])
    conn = None
    cursor = {'i': 0, 'message': False, 'envelope': False}

    def entry(kind, where):
        """The stored entry a message/envelope check is about."""
        if cursor[kind]:
            cursor.update(i=cursor['i'] + 1, message=False, envelope=False)
        cursor[kind] = True
        chain.wait_sessions()
        stored = chain.stored()
        if cursor['i'] >= len(stored):
            chain.fail('message #%d was not stored (%d stored)' % (cursor['i'] + 1, len(stored)))
        return stored[cursor['i']]

    try:
        chain.start()
        for where, word, arg in d.steps:
            try:
                if word in ('send', 'sendraw', 'expect', 'expect-eof', 'close', 'kill-backend'):
                    if conn is None:
                        conn = chain.connect()      # implicit at the first use
                    elif conn.sock is None:
                        chain.fail('the connection is closed (by close or a check of the '
                                   'queue or log); use connect for another')
                if word == 'connect':
                    if conn is not None:
                        conn.close()
                    conn = chain.connect(arg or None)
                elif word == 'send':
                    conn.send(arg)
                elif word == 'sendraw':
                    conn.sendraw(arg)
                elif word == 'expect':
                    conn.expect(arg)
                elif word == 'expect-eof':
                    conn.expect_eof()
                elif word == 'close':
                    conn.close()
                    chain.wait_sessions()
                elif word == 'sleep':
                    time.sleep(float(arg))
                elif word == 'kill-backend':
                    chain.kill_backend(conn)
                elif word == 'stored':
                    chain.wait_sessions()
                    n = len(chain.stored())
                    if n != int(arg):
                        chain.fail('stored: expected %s message(s), got %d: %r'
                                   % (arg, n, chain.stored()))
                elif word in ('message', 'messageraw'):
                    msg, _ = entry('message', where)
                    template = (b''.join(l.encode('utf-8', 'surrogateescape') + b'\n' for l in arg)
                                if word == 'message' else arg)
                    if not pattern(template).fullmatch(msg):
                        chain.fail('message #%d mismatch\n%s'
                                   % (cursor['i'] + 1, _message_diff(template, msg)))
                elif word == 'envelope':
                    _, env = entry('envelope', where)
                    want = unescape(arg)
                    if not pattern(want).fullmatch(env):
                        chain.fail('envelope #%d mismatch\n  expected: %r\n  got:      %r'
                                   % (cursor['i'] + 1, want, env))
                elif word == 'log':
                    # Waits for the line to appear; the session may go on.
                    want = pattern(arg)
                    if not _wait_until(lambda: want.search(chain.log_bytes()), READ_TIMEOUT):
                        chain.fail('log: no line contains %r' % arg)
                elif word == 'no-log':
                    chain.wait_sessions()
                    if pattern(arg).search(chain.log_bytes()):
                        chain.fail('no-log: the log contains %r' % arg)
            except HarnessError as e:
                raise HarnessError('%s: %s %s\n%s' % (where, word, _show(arg), e)) from None
        # Every session must end by itself once the client has gone.
        chain.wait_sessions()
    except BaseException:
        chain.stop(check=False)
        raise
    chain.stop()


def _show(arg):
    if isinstance(arg, list):
        return '(%d lines)' % len(arg)
    s = repr(arg) if isinstance(arg, bytes) else arg
    return s if len(s) <= 120 else s[:117] + '...'
