"""make install and make uninstall into a DESTDIR: what lands where, and
that uninstall takes all of it away again."""
import os
import subprocess
import tempfile

import harness


def files_under(root):
    found = set()
    for dirpath, _, names in os.walk(root):
        for n in names:
            found.add(os.path.relpath(os.path.join(dirpath, n), root))
    return found


def test_install_and_uninstall():
    os.makedirs(os.path.join(harness.TESTS, 'tmp'), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.join(harness.TESTS, 'tmp')) as dest:
        make = ['make', '-s', '-C', harness.TOP, 'DESTDIR=' + dest, 'PREFIX=/usr/local']
        r = subprocess.run(make + ['install'], capture_output=True, timeout=300)
        assert r.returncode == 0, r.stderr.decode()
        got = files_under(dest)
        for prog in ('qmail-idcheck', 'qmail-idcheck-python', 'qmail-idcheck-queue', 'qmail-idcheckd',
                     'rblsmtpd-plus'):
            assert 'usr/local/bin/' + prog in got
            assert os.access(os.path.join(dest, 'usr/local/bin', prog), os.X_OK)
        for page in ('man8/qmail-idcheck.8', 'man8/qmail-idcheck-queue.8',
                     'man8/qmail-idcheck-python.8', 'man8/qmail-idcheckd.8', 'man1/rblsmtpd-plus.1'):
            assert 'usr/local/share/man/' + page in got
        assert 'usr/local/share/qmail-idcheck/run-scripts/qmail-smtpd/run' in got
        assert 'usr/local/share/qmail-idcheck/run-scripts/tcp.smtp' in got
        # the stand-ins are test programs: never installed
        assert not any('standin' in f for f in got)
        if os.path.exists(os.path.join(harness.TOP, 'python', 'checkid', '__init__.py')):
            assert 'usr/local/lib/qmail-idcheck/python/checkid/__init__.py' in got
            assert any(f.startswith('usr/local/lib/qmail-idcheck/python/checkid/__pycache__/')
                       and f.endswith('.pyc') for f in got)
        r = subprocess.run(make + ['uninstall'], capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        assert files_under(dest) == set()


def test_only_python_host_links_python():
    """The layout's promise: the programs built from python-host/ link
    libpython, no other does, and no C file outside python-host/ includes
    Python.h (lib/ and qmail-idcheck/ stay Python-free)."""
    build = harness.build_dir('plain')
    for prog in ('qmail-idcheck', 'qmail-idcheck-queue', 'rblsmtpd-plus',
                 'qmail-idcheck-python', 'qmail-idcheckd'):
        path = os.path.join(build, prog)
        r = subprocess.run(['ldd', path], capture_output=True, timeout=30)
        linked = b'libpython' in r.stdout
        assert linked == (prog in ('qmail-idcheck-python', 'qmail-idcheckd')), (prog, r.stdout)
    for folder, _, names in os.walk(harness.TOP):
        rel = os.path.relpath(folder, harness.TOP)
        if rel.split(os.sep)[0] in ('.git', 'build', 'build-asan', 'build-fuzz', 'python-host'):
            continue
        for n in names:
            if n.endswith(('.c', '.h')):
                with open(os.path.join(folder, n), 'rb') as f:
                    assert b'<Python.h>' not in f.read(), os.path.join(rel, n)
