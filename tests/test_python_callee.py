"""qmail-idcheck-python: the per-session process that runs checkID.

Drives build/qmail-idcheck-python (and build-asan/qmail-idcheck-python when it
exists, unless IDCHECK_NO_ASAN is set) over its fds the way qmail-idcheck does:
request frames on stdin, reply frames on stdout, the log on stderr. Frames are
built and parsed here, independently of lib/policy_wire.c.

Run: make build/qmail-idcheck-python && /usr/bin/python3 -m pytest -q tests/test_python_callee.py
"""
import os
import re
import select
import subprocess
import tempfile
import time

import pytest

import harness

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLICIES = os.path.join(TOP, 'tests', 'policies')
SEED_HEADER = b'192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B'
CALL_TIMEOUT = 60   # seconds; generous for the sanitizer build


def binaries():
    return harness.variant_binaries('qmail-idcheck-python')


@pytest.fixture(params=binaries(), ids=lambda p: p.split(os.sep)[-2])
def binary(request):
    if not os.path.exists(request.param):
        pytest.fail('%s is missing: run make build/qmail-idcheck-python' % request.param)
    return request.param


# ---- the wire format (lib/policy_wire.h), written from the spec ----

def ns(b):
    return b'%d:%s,' % (len(b), b)


def ns_list(items):
    return b''.join(ns(i) for i in items)


def opt(v):
    return b'-' if v is None else b'+' + v


def request(nargs, ip=b'192.0.2.1', id=b'example.com', h=b'helo.example',
            s=b'sender@example.com', r=(), hdrs=(), body=None, bodysize=0, env=(), hdrscut=0):
    fields = [b'checkID1', str(nargs).encode(), opt(ip), opt(id), opt(h), opt(s),
              ns_list(r), ns_list(hdrs), opt(body), str(bodysize).encode(), ns_list(env),
              str(hdrscut).encode()]
    return ns(ns_list(fields))


def ns_split(buf):
    """All netstrings in buf; any malformation raises."""
    out, pos = [], 0
    while pos < len(buf):
        colon = buf.index(b':', pos)
        digits = buf[pos:colon]
        assert digits.isdigit(), buf
        n = int(digits)
        end = colon + 1 + n
        assert buf[end:end + 1] == b',', buf
        out.append(buf[colon + 1:end])
        pos = end + 1
    return out


def reply_decode(payload):
    """(action, code, xcode, text, headers), and the edits as a sixth item
    when the frame has them."""
    f = ns_split(payload)
    assert len(f) in (6, 7), f
    assert f[0] == b'checkID1'
    headers = []
    for item in ns_split(f[5]):
        lt = ns_split(item)
        assert len(lt) == 2, lt
        headers.append(tuple(lt))
    if len(f) == 7:
        edits = [tuple(ns_split(item)) for item in ns_split(f[6])]
        assert edits and all(len(e) == 3 for e in edits), edits
        return (f[1], f[2], f[3], f[4], headers, edits)
    return (f[1], f[2], f[3], f[4], headers)


def fault(reason):
    return (b'FAULT', b'', b'', reason, [])


class Callee:
    def __init__(self, binary, module='callee_basic', pythonpath=POLICIES, **env):
        self.log_file = tempfile.TemporaryFile()
        e = {'PATH': '/usr/bin:/bin', 'IDCHECK_PYTHONPATH': pythonpath, **harness.SANITIZER_ENV}
        if module is not None:
            e['IDCHECK_MODULE'] = module
        e.update(env)
        self.proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log_file, env=e, cwd=TOP)
        self.buf = b''

    def send(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def read_frame(self):
        deadline = time.monotonic() + CALL_TIMEOUT
        fd = self.proc.stdout.fileno()
        while True:
            m = re.match(rb'(\d+):', self.buf)
            if m and len(self.buf) >= m.end() + int(m.group(1)) + 1:
                end = m.end() + int(m.group(1))
                assert self.buf[end:end + 1] == b','
                payload, self.buf = self.buf[m.end():end], self.buf[end + 1:]
                return payload
            left = deadline - time.monotonic()
            assert left > 0, 'no reply in time; log:\n' + self.log()
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                assert chunk, 'EOF instead of a reply; log:\n' + self.log()
                self.buf += chunk

    def call(self, nargs=4, **kw):
        self.send(request(nargs, **kw))
        return reply_decode(self.read_frame())

    def log(self):
        self.log_file.seek(0)
        return self.log_file.read().decode('utf-8', 'replace')

    def finish(self, expect_rc=0):
        """EOF on stdin: the process must exit at once with expect_rc and
        must not have written anything but replies."""
        self.proc.stdin.close()
        rest = self.proc.stdout.read()
        rc = self.proc.wait(timeout=CALL_TIMEOUT)
        log = self.log()
        assert self.buf + rest == b'', 'stray bytes on the reply channel: %r' % (self.buf + rest)
        assert rc == expect_rc, log
        harness.no_sanitizer_report(log)
        return log

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def spawn(binary):
    started = []

    def start(**kw):
        c = Callee(binary, **kw)
        started.append(c)
        return c
    yield start
    for c in started:
        c.kill()


GOOD = (b'ACCEPT', b'250', b'', b'Sender OK', [(b'Authent:', SEED_HEADER)])


def prefix_lines(log):
    return [l for l in log.splitlines() if re.match(r'qmail-idcheck: pid \d+ policy: ', l)]


# ---- results ----

def test_accept_with_seed_header(spawn):
    c = spawn()
    assert c.call(id=b'example.com') == GOOD
    c.finish()


def test_reject_with_xcode(spawn):
    c = spawn()
    assert c.call(id=b'example.net') == (
        b'REJECT', b'550', b'5.7.1',
        b"Sending MTA '192.0.2.1' not authorized by 'example.net'", [])
    c.finish()


def test_reply_none_empty_and_xcode_none(spawn):
    c = spawn()
    assert c.call(id=b'reply-none') == (b'CONTINUE', b'', b'', b'', [])
    assert c.call(id=b'reply-empty') == (b'CONTINUE', b'', b'', b'', [])
    assert c.call(id=b'xcode-none') == (b'TEMPFAIL', b'451', b'', b'later', [(b'A:', b'')])
    assert c.call(id=b'code-zero') == (b'ACCEPT', b'0', b'', b'zero', [])
    # the callee checks shape only; the proxy rejects unknown actions
    assert c.call(id=b'unknown-action') == (b'MAYBE', b'', b'', b'', [])
    c.finish()


MALFORMED = {
    b'm-notuple': b'malformed return value: expected (action, reply, headers) or (action, reply, headers, edits)',
    b'm-none': b'malformed return value: expected (action, reply, headers) or (action, reply, headers, edits)',
    b'm-short': b'malformed return value: expected (action, reply, headers) or (action, reply, headers, edits)',
    b'm-long': b'malformed return value: expected (action, reply, headers) or (action, reply, headers, edits)',
    b'm-dict': b'malformed return value: expected (action, reply, headers) or (action, reply, headers, edits)',
    b'm-action-bytes': b'malformed return value: action is not a str',
    b'm-action-none': b'malformed return value: action is not a str',
    b'm-reply-str': b'malformed return value: reply is not None or (code, xcode, text)',
    b'm-reply-short': b'malformed return value: reply is not None or (code, xcode, text)',
    b'm-code-bool': b'malformed return value: reply code is not an int',
    b'm-code-str': b'malformed return value: reply code is not an int',
    b'm-code-float': b'malformed return value: reply code is not an int',
    b'm-code-big': b'malformed return value: reply code is not in 0..999',
    b'm-code-huge': b'malformed return value: reply code is not in 0..999',
    b'm-code-neg': b'malformed return value: reply code is not in 0..999',
    b'm-xcode-int': b'malformed return value: reply xcode is not a str or None',
    b'm-text-none': b'malformed return value: reply text is not a str',
    b'm-text-bytes': b'malformed return value: reply text is not a str',
    b'm-headers-dict': b'malformed return value: headers is not a list or None',
    b'm-headers-str': b'malformed return value: headers is not a list or None',
    b'm-header-tuple':
        b"malformed return value: header 0 is not a dict with str 'label' and 'text'",
    b'm-header-nolabel':
        b"malformed return value: header 0 is not a dict with str 'label' and 'text'",
    b'm-header-bytes':
        b"malformed return value: header 1 is not a dict with str 'label' and 'text'",
    b'm-surrogate': b'malformed return value: reply text cannot be encoded as UTF-8',
    b'm-edits-int': b'malformed return value: edits is not a list or None',
    b'm-edit-nofield': b"malformed return value: edit 0 is not a dict with an int 'field' and "
                       b"either a str 'rename' or 'remove': True",
    b'm-edit-both': b"malformed return value: edit 1 is not a dict with an int 'field' and "
                    b"either a str 'rename' or 'remove': True",
    b'm-edit-negative': b"malformed return value: edit 0 is not a dict with an int 'field' and "
                        b"either a str 'rename' or 'remove': True",
}


def test_malformed_results_are_faults_and_the_next_call_works(spawn):
    c = spawn()
    for id, reason in MALFORMED.items():
        assert c.call(id=id) == fault(reason), id
        assert c.call(id=b'example.com') == GOOD, id
    c.finish()


@pytest.mark.parametrize('id,reason,last', [
    (b'raise', b'exception: ValueError: bad thing happened',
     'ValueError: bad thing happened'),
    (b'raise-empty', b'exception: KeyError', 'KeyError'),
    (b'kbint', b'exception: KeyboardInterrupt', 'KeyboardInterrupt'),
    (b'sysexit', b'exception: SystemExit: 3', 'SystemExit: 3'),
])
def test_exceptions_are_faults_with_a_traceback(spawn, id, reason, last):
    c = spawn()
    assert c.call(id=id) == fault(reason)
    assert c.call(id=b'example.com') == GOOD
    log = c.finish()
    lines = prefix_lines(log)
    start = lines.index(next(l for l in lines if l.endswith('policy: Traceback (most recent call last):')))
    tb = lines[start:start + 4]
    assert tb[1].endswith('callee_basic.py", line %d, in checkID' % _line_of(id)), tb
    assert tb[3].endswith('policy: ' + last), tb
    # every traceback line carries the prefix
    assert 'Traceback' not in '\n'.join(l for l in log.splitlines() if l not in lines)


def _line_of(id):
    src = open(os.path.join(POLICIES, 'callee_basic.py')).read().splitlines()
    want = "    if ID == %r:" % id.decode()
    return src.index(want) + 2


def test_print_and_stdout_writes_do_not_touch_the_reply_channel(spawn):
    c = spawn()
    assert c.call(id=b'print') == (b'ACCEPT', b'250', b'', b"printed stdin=b''", [])
    assert c.call(id=b'example.com') == GOOD
    log = c.finish()   # also asserts nothing else reached stdout
    lines = prefix_lines(log)
    assert any(l.endswith('policy: printed by the policy') for l in lines), log
    assert any(l.endswith('policy: partial1:x,') for l in lines), log
    assert any(l.endswith('policy: to stderr') for l in lines), log
    assert 'from a child process' in log
    assert '2:xx,' in log and '9:not-reply,' in log


def test_non_utf8_bytes_round_trip(spawn):
    c = spawn()
    h, s = b'h\xffelo\xc3.example', b'\x80bad@ex\xe9mple.com'
    assert c.call(id=b'roundtrip', h=h, s=s) == (
        b'ACCEPT', b'', b'', b'', [(b'X-H:', h), (b'X-S:', s)])
    # and Python saw them as surrogateescape str
    assert c.call(id=b'echo', h=h, s=s)[3] == (
        b"('192.0.2.1', 'echo', 'h\\udcffelo\\udcc3.example', '\\udc80bad@ex\\udce9mple.com')")
    c.finish()


def test_nargs_pass_exactly_that_many_arguments(spawn):
    c = spawn()
    assert c.call(4, id=b'echo')[3] == (
        b"('192.0.2.1', 'echo', 'helo.example', 'sender@example.com')")
    assert c.call(4, ip=None, id=b'echo', h=None, s=None)[3] == b"(None, 'echo', None, None)"
    assert c.call(5, id=b'echo', s=b'', r=[b'a@example.org', b'b@example.org'])[3] == (
        b"('192.0.2.1', 'echo', 'helo.example', '', ['a@example.org', 'b@example.org'])")
    assert c.call(5, id=b'echo', r=[])[3] == (
        b"('192.0.2.1', 'echo', 'helo.example', 'sender@example.com', [])")
    assert c.call(7, id=b'echo', r=[b'a@example.org'],
                  hdrs=[b'Subject: hi', b'From: x@example.com\r\n\tfolded'],
                  body=b'line\r\n.dot\r\n', bodysize=12)[3] == (
        b"('192.0.2.1', 'echo', 'helo.example', 'sender@example.com', ['a@example.org'], "
        b"['Subject: hi', 'From: x@example.com\\r\\n\\tfolded'], b'line\\r\\n.dot\\r\\n')")
    assert c.call(7, id=b'echo', body=None)[3] == (
        b"('192.0.2.1', 'echo', 'helo.example', 'sender@example.com', [], [], None)")
    c.finish()


def test_large_body_frame(spawn):
    c = spawn()
    body = bytes(range(256)) * 8192   # 2 MiB, many reads
    assert c.call(7, id=b'bodylen', body=body, bodysize=5000000) == (
        b'ACCEPT', b'250', b'', b'2097152 5000000', [])
    c.finish()


def test_idcheck_hdrscut_and_edits(spawn):
    """idcheck.hdrscut says how many header fields Hdrs lacks; a fourth
    element, edits, travels as the frame's seventh field (the proxy checks
    where they point), and an empty one is no field at all."""
    c = spawn()
    assert c.call(7, id=b'hdrscut', hdrscut=3)[3] == b'hdrscut=3'
    assert c.call(7, id=b'hdrscut')[3] == b'hdrscut=0'
    assert c.call(7, id=b'edits') == (
        b'ACCEPT', b'', b'', b'', [],
        [(b'2', b'', b'Original-Authentication-Results:'), (b'0', b'', b'')])
    assert c.call(7, id=b'edits-none') == (b'ACCEPT', b'', b'', b'', [])
    c.finish()


def test_idcheck_environ_stage_bodysize(spawn):
    c = spawn()
    env = [b'TCPREMOTEIP=192.0.2.1', b'RBLSMTPD=', b'X=a=b', b'B=\xff']
    assert c.call(7, id=b'env', env=env, bodysize=123456789012)[3] == (
        b"('data', 123456789012, [('B', '\\udcff'), ('RBLSMTPD', ''), "
        b"('TCPREMOTEIP', '192.0.2.1'), ('X', 'a=b')])")
    # refreshed per call: old names are gone
    assert c.call(5, id=b'env', env=[b'TCPREMOTEIP=::1'], bodysize=7)[3] == (
        b"('rcpt', 7, [('TCPREMOTEIP', '::1')])")
    assert c.call(4, id=b'env')[3] == b"('mail', 0, [])"
    c.finish()


def test_first_call_environment_is_set_before_the_policy_import(spawn):
    c = spawn()
    assert c.call(id=b'import-env', env=[b'TCPREMOTEIP=198.51.100.7'])[3] == b"'198.51.100.7'"
    c.finish()


def test_idcheck_log(spawn):
    c = spawn()
    assert c.call(id=b'log') == (b'ACCEPT', b'250', b'', b'logged', [])
    log = c.finish()
    assert re.search(r'^qmail-idcheck: pid \d+ policy: line one\?line two\?\[31m end$', log, re.M)
    assert re.search(r'^qmail-idcheck: pid \d+ policy: L{1000}$', log, re.M), log


# ---- the policy cannot be found ----

def test_missing_module_is_a_fault_logged_once(spawn):
    c = spawn(module='callee_does_not_exist')
    reason = (b"cannot import policy module callee_does_not_exist: "
              b"ModuleNotFoundError: No module named 'callee_does_not_exist'")
    assert c.call() == fault(reason)
    assert c.call() == fault(reason)
    log = c.finish()
    assert log.count(reason.decode()) == 1, log


def test_module_that_raises_on_import(spawn):
    c = spawn(module='callee_importerror')
    reason = b'cannot import policy module callee_importerror: RuntimeError: broken policy module'
    assert c.call() == fault(reason)
    assert c.call() == fault(reason)
    log = c.finish()
    assert log.count('policy: RuntimeError: broken policy module') == 1, log


def test_idcheck_function(spawn):
    c = spawn(IDCHECK_FUNCTION='other')
    assert c.call(5) == (b'DISCARD', b'', b'', b'', [(b'X-Other:', b'5')])
    c.finish()
    c = spawn(IDCHECK_FUNCTION='nope')
    assert c.call() == fault(b'policy module callee_basic has no nope')
    c.finish()
    c = spawn(IDCHECK_FUNCTION='NOT_CALLABLE')
    assert c.call() == fault(b'policy callee_basic.NOT_CALLABLE is not callable')
    c.finish()


def test_default_module_name_is_checkid(spawn):
    c = spawn(module=None)
    assert c.call() == fault(b"cannot import policy module checkid: "
                             b"ModuleNotFoundError: No module named 'checkid'")
    c.finish()


def test_init_failure_answers_every_call_with_fault(spawn):
    c = spawn(pythonpath=os.path.join(POLICIES, 'callee_initfail'))
    reason = (b'python init failed: initialize: init_fs_encoding: '
              b'failed to get the Python codec of the filesystem encoding')
    assert c.call() == fault(reason)
    assert c.call() == fault(reason)
    log = c.finish()
    assert log.count(reason.decode()) == 1, log


# ---- the channel ----

@pytest.mark.parametrize('junk', [
    b'x',
    b'5:hello;',
    b'99999999999:',                       # longer than WIRE_MAX_FRAME
    b'67108865:',                          # WIRE_MAX_FRAME + 1
    ns(ns(b'checkID2') + ns(b'4')),        # wrong magic
    request(6),                            # nargs
    request(4, env=[b'NOEQUALS']),         # env item without '='
    request(4)[:-1] + b';',                # bad terminator
    ns(ns_list([b'checkID1', b'4', b'+a', b'+b', b'+c', b'+d', b'', b'', b'-', b'0', b'', b'x'])),
    ns(ns_list([b'checkID1', b'4', b'a', b'+b', b'+c', b'+d', b'', b'', b'-', b'0', b''])),
    ns(ns_list([b'checkID1', b'4', b'+a', b'+b', b'+c', b'+d', b'', b'', b'-', b'x', b''])),
    ns(ns_list([b'checkID1', b'4', b'+a', b'+b', b'+c', b'+d', b'3:ab', b'', b'-', b'0', b''])),
])
def test_malformed_frame_exits_111(spawn, junk):
    c = spawn()
    assert c.call(id=b'example.com') == GOOD
    c.send(junk)
    log = c.finish(expect_rc=111)
    assert re.search(r'^qmail-idcheck: pid \d+ python: fatal: malformed request', log, re.M), log


def test_eof_inside_a_frame_exits_111(spawn):
    c = spawn()
    c.send(request(4)[:20])
    log = c.finish(expect_rc=111)
    assert 'fatal: request frame cut short by EOF' in log


def test_eof_exits_0_at_once(spawn):
    c = spawn()
    assert c.call(id=b'example.com') == GOOD
    t = time.monotonic()
    c.finish(expect_rc=0)
    assert time.monotonic() - t < 5
    c = spawn()
    c.finish(expect_rc=0)   # no call at all


def test_pipelined_requests_answered_in_order(spawn):
    c = spawn()
    c.send(request(4, id=b'example.net') + request(4, id=b'raise') + request(4, id=b'example.com'))
    assert reply_decode(c.read_frame())[0] == b'REJECT'
    assert reply_decode(c.read_frame()) == fault(b'exception: ValueError: bad thing happened')
    assert reply_decode(c.read_frame()) == GOOD
    c.finish()


def test_trivial_policy_with_named_parameters(spawn):
    c = spawn(module='callee_trivial')
    assert c.call(4) == (b'ACCEPT', b'', b'', b'', [])
    assert c.call(7, body=b'x') == (b'ACCEPT', b'', b'', b'', [])
    c.finish()
