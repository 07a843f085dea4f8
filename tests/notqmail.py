"""The real qmail-smtpd the suite's 'real' chain variant runs: notqmail's,
built from its public source once and cached, or one named by QMAIL_SMTPD.

    path, why_not = notqmail.smtpd()

Where it comes from, first match wins:
  QMAIL_SMTPD=/path     that program, as it is
  NOTQMAIL_SRC=tarball  built from that notqmail source tarball
  shared/notqmail/notqmail-main.tar.gz in the nearest directory above the top
                        of the tree that has one (../shared in CI, ../../shared
                        from a git worktree under wt/)
A build goes to build/notqmail-HASH/ (HASH of the tarball and of the recipe),
so it happens once per fresh tree: about 10-20 s.

The build's qmail home is "." (conf-qmail): qmail-smtpd "chdirs" to its
working directory, which the harness makes each test's own qmail home. Every
chain therefore reads its own control/ (me, rcpthosts, databytes, ...), and
no two chains, even running at the same time, can see each other's files.
The same holds for QMAIL_SMTPD: it must have been built with qmail home "."
(a program with /var/qmail compiled in would read /var/qmail/control, which
the suite never touches); a probe checks that before any test runs.

Without a source the real runs are skipped (why_not says why). A source that
was named or found but cannot be built, or a QMAIL_SMTPD that fails the
probe, is an error: the real runs fail with the reason, so a broken set-up is
never mistaken for a passing one.
"""
import hashlib
import os
import shutil
import subprocess
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARBALL = os.path.join('shared', 'notqmail', 'notqmail-main.tar.gz')
BUILD_TIMEOUT = 600
# Part of the cache key: a change to how it is built means a new build.
RECIPE = b'conf-qmail=.\nmake qmail-smtpd\n'

_result = None
status = ''         # one line for the run's report: what was used, or why not


class Unusable(Exception):
    """A real qmail-smtpd was asked for (or its source found) but cannot be used."""


def smtpd(announce=None):
    """(path, None) when the real qmail-smtpd can run; (None, why) when the
    real runs are to be skipped. Raises Unusable (once per run, remembered)
    when they are to fail. Builds at the first call, saying so first through
    announce(line) if given."""
    global _result, status
    if _result is None:
        started = time.monotonic()
        try:
            path, how = _find(announce or (lambda line: None))
            if path is None:
                _result = (None, how)
                status = 'real qmail-smtpd: not available, runs skipped: ' + how
            else:
                _probe(path)
                _result = (path, None)
                status = 'real qmail-smtpd: %s (%s, %.1f s)' % (
                    os.path.relpath(path, TOP), how, time.monotonic() - started)
        except Unusable as e:
            _result = e
            status = 'real qmail-smtpd: unusable, runs fail: %s' % e
    if isinstance(_result, Unusable):
        raise _result
    return _result


def _find(announce):
    """(path, how it was got) or (None, why there is none)."""
    given = os.environ.get('QMAIL_SMTPD')
    if given:
        if not os.access(given, os.X_OK):
            raise Unusable('QMAIL_SMTPD=%s is not an executable file' % given)
        return os.path.abspath(given), 'QMAIL_SMTPD'
    src = os.environ.get('NOTQMAIL_SRC')
    if src:
        if not os.path.isfile(src):
            raise Unusable('NOTQMAIL_SRC=%s is not a file (it names a notqmail tarball)' % src)
        return build(os.path.abspath(src), announce)
    for up in _ancestors(TOP):
        candidate = os.path.join(up, TARBALL)
        if os.path.isfile(candidate):
            return build(candidate, announce)
    return None, ('no notqmail source: NOTQMAIL_SRC is unset, QMAIL_SMTPD is unset, '
                  'and no directory above %s has %s' % (TOP, TARBALL))


PATCHED = {'tls': 'notqmail-smtp-tls.tar.gz', 'spp': 'notqmail-smtpd-spp.tar.gz'}
_patched = {}


def patched_smtpd(kind):
    """notqmail with one of its own patches, built like the main one from the
    tarball beside it in shared/notqmail/: 'tls' (STARTTLS inside
    qmail-smtpd, OpenSSL; control/servercert.pem) or 'spp' (qmail-spp
    plugins). (path, None), or (None, why) when there is no source; a source
    that does not build raises Unusable."""
    if kind not in _patched:
        name = os.path.join('shared', 'notqmail', PATCHED[kind])
        found = next((os.path.join(up, name) for up in _ancestors(TOP)
                      if os.path.isfile(os.path.join(up, name))), None)
        _patched[kind] = (build(found, lambda line: None)[0], None) if found else \
            (None, 'no directory above %s has %s' % (TOP, name))
    return _patched[kind]


def _ancestors(path):
    path = os.path.dirname(path)
    while True:
        yield path
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def _digest(tarball):
    h = hashlib.sha256(RECIPE)
    with open(tarball, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()[:16]


def build(tarball, announce):
    """build/notqmail-HASH/qmail-smtpd from TARBALL, built unless cached:
    (path, how). The build happens in a temporary directory renamed into
    place, so a concurrent run never sees half a build."""
    top_build = os.path.join(TOP, 'build')
    dest = os.path.join(top_build, 'notqmail-' + _digest(tarball))
    path = os.path.join(dest, 'qmail-smtpd')
    if os.access(path, os.X_OK):
        return path, 'cached build of %s' % tarball
    announce('real qmail-smtpd: building it from %s (10-20 s) ...' % tarball)
    os.makedirs(top_build, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='notqmail-tmp-', dir=top_build)
    try:
        src = os.path.join(tmp, 'src')
        os.makedirs(src)
        _run(['tar', '-xzf', tarball, '-C', src, '--strip-components=1'], tmp, 'unpacking')
        with open(os.path.join(src, 'conf-qmail'), 'w') as f:
            f.write('.\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith('MAKE')}
        _run(['make', '-C', src, 'qmail-smtpd'], tmp, 'building', env=env)
        shutil.copy2(os.path.join(src, 'qmail-smtpd'), os.path.join(tmp, 'qmail-smtpd'))
        shutil.rmtree(src)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not os.access(path, os.X_OK):    # not another run's build either
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path, 'built from %s' % tarball


def _run(argv, tmp, what, env=None):
    log = os.path.join(tmp, 'build.log')
    with open(log, 'ab') as out:
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                               env=env, timeout=BUILD_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise Unusable('%s notqmail: %s' % (what, e))
    if r.returncode != 0:
        with open(log, 'rb') as f:
            tail = f.read()[-1500:].decode('utf-8', 'replace')
        raise Unusable('%s notqmail failed (%s exit %d):\n%s' % (what, argv[0], r.returncode, tail))


def _probe(path):
    """Does PATH greet with the name in control/me of its working directory?
    Then each chain's home reaches it. (QUIT: it answers and exits.)"""
    base = os.path.join(TOP, 'tests', 'tmp')
    os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='probe-', dir=base) as home:
        os.makedirs(os.path.join(home, 'control'))
        with open(os.path.join(home, 'control', 'me'), 'w') as f:
            f.write('probe.example\n')
        try:
            r = subprocess.run([path], cwd=home, input=b'QUIT\r\n', capture_output=True,
                               timeout=10, env={'PATH': '/usr/bin:/bin', 'TCPREMOTEIP': '127.0.0.1'})
        except (OSError, subprocess.TimeoutExpired) as e:
            raise Unusable('%s: %s' % (path, e))
    want = b'220 probe.example ESMTP\r\n221 probe.example\r\n'
    if r.stdout != want:
        raise Unusable('%s does not read control/ in its working directory (its qmail home '
                       'is elsewhere, /var/qmail?): it answered %r to QUIT where %r was expected. '
                       'Build it with qmail home "." (echo . >conf-qmail; make qmail-smtpd), or '
                       'unset QMAIL_SMTPD to have the suite build one' % (path, r.stdout[:200], want))
