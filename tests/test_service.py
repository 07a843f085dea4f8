"""The shipped daemontools service (run-scripts/qmail-smtpd) under the real
svscan/supervise: it starts, delivers a message through tcpserver →
rblsmtpd-plus → qmail-idcheck → the stand-in, logs through multilog, and
stops with svc. Only the settings the run script reads from its environment
differ from a production host."""
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

import harness
from dnsfixture import dns  # noqa: F401  (the session's tinydns)

SERVICE = os.path.join(harness.TOP, 'run-scripts', 'qmail-smtpd')
SMTPS = os.path.join(harness.TOP, 'run-scripts', 'qmail-smtps')
TRACE = re.compile(rb'Received-TLS: TLSv1\.[23] cipher=\S+\n')


def make_servercert(path):
    """A self-signed certificate and its key in one PEM file, as qmail's TLS
    patch keeps control/servercert.pem."""
    key, cert = path + '.key', path + '.crt'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert,
                    '-days', '30', '-subj', '/CN=service.example'],
                   check=True, capture_output=True, timeout=60)
    with open(path, 'wb') as out:
        for name in (cert, key):
            with open(name, 'rb') as f:
                out.write(f.read())
            os.unlink(name)
    os.chmod(path, 0o600)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return None


def listening(port):
    try:
        socket.create_connection(('127.0.0.1', port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not shutil.which('svscan'), reason='daemontools is not installed')
def test_service_runs_under_supervise(dns):  # noqa: F811
    build = harness.build_dir('plain')   # softlimit -m and ASan's reservations do not mix
    if not os.path.exists(os.path.join(build, 'rblsmtpd-plus')):
        pytest.skip('rblsmtpd-plus is not built')
    os.makedirs(os.path.join(harness.TESTS, 'tmp'), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='service-', dir=os.path.join(harness.TESTS, 'tmp'))
    svscan = None
    try:
        services = os.path.join(tmp, 'service')
        os.makedirs(services)
        shutil.copytree(SERVICE, os.path.join(services, 'qmail-smtpd'), symlinks=True)
        home = os.path.join(tmp, 'qmail')
        os.makedirs(os.path.join(home, 'control'))
        with open(os.path.join(home, 'control', 'me'), 'w') as f:
            f.write('service.example\n')
        with open(os.path.join(home, 'control', 'concurrencyincoming'), 'w') as f:
            f.write('20\n')
        make_servercert(os.path.join(home, 'control', 'servercert.pem'))
        queue = os.path.join(tmp, 'queue')
        os.makedirs(queue)
        logdir = os.path.join(tmp, 'log')
        rules = os.path.join(tmp, 'tcp.smtp')
        with open(rules, 'w') as f:
            f.write('127.0.0.1:allow,IDCHECK_MODULE="t_headers"\n:allow\n')
        with open(rules) as f:
            subprocess.run(['tcprules', rules + '.cdb', rules + '.tmp'], stdin=f, check=True, timeout=10)

        port = free_port()
        env = {
            'PATH': build + ':/usr/local/bin:/usr/bin:/bin',
            'QMAIL': home, 'SMTPUSER': 'root', 'RULES': rules + '.cdb',
            'IP': '127.0.0.1', 'PORT': str(port), 'SMTPD': os.path.join(build, 'qmail-smtpd-standin'),
            'RBL': '-r bl.test', 'DNSCACHEIP': dns.ip,
            'LOGUSER': 'root', 'LOGDIR': logdir,
            'STANDIN_HOME': home, 'STANDIN_QUEUE': queue,
            'QMAILQUEUE': os.path.join(build, 'qmail-queue-standin'),
            'IDCHECK_PYTHONPATH': os.path.join(harness.TESTS, 'policies'),
        }
        svscan = subprocess.Popen(['svscan', services], env=env, cwd=tmp,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        assert wait_for(lambda: listening(port)), 'the service did not start listening'

        s = smtplib.SMTP('127.0.0.1', port, local_hostname='client.example', timeout=10)
        try:
            code, text = s.ehlo()
            assert code == 250 and b'\nID\n' in text + b'\n'
            assert b'\nSTARTTLS\n' in text + b'\n'    # the certificate is there
            assert s.docmd('ID', 'example.com') == (250, b'2.1.0 ID example.com accepted')
            s.sendmail('seed@example.com', ['one@example.org'], b'Subject: service\r\n\r\nhello\r\n')
        finally:
            s.quit()

        def stored():
            names = sorted(n for n in os.listdir(queue) if n.endswith('.env'))
            return names or None
        names = wait_for(stored)
        assert names and len(names) == 1
        with open(os.path.join(queue, names[0][:-4] + '.msg'), 'rb') as f:
            msg = f.read()
        # swaks --tls: STARTTLS on the shipped service, and the stored copy
        # says the message came over TLS
        r = subprocess.run(['swaks', '--server', '127.0.0.1', '--port', str(port), '--tls',
                            '--helo', 'client.example', '--from', 'seed@example.com',
                            '--to', 'one@example.org', '--timeout', '10'],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        names = wait_for(lambda: len(stored() or []) == 2 and stored())
        assert names, 'the message sent over TLS was not stored'
        with open(os.path.join(queue, names[1][:-4] + '.msg'), 'rb') as f:
            tls_msg = f.read()
        assert re.match(rb'Authent: 192\.0\.2\.1 example\.com SPF1 PASS ratings=S1:A,M2:A,H1:B\n'
                        + TRACE.pattern + rb'Received: from localhost \(HELO client\.example\)',
                        tls_msg), tls_msg
        assert msg.startswith(b'Authent: 192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B\n'
                              b'Received: from localhost (HELO client.example) (127.0.0.1)\n'
                              b'  by service.example with SMTP; ')
        assert msg.endswith(b'\nSubject: service\n\nhello\n')

        def logged():
            try:
                with open(os.path.join(logdir, 'current'), 'rb') as f:
                    text = f.read()
            except OSError:
                return None
            return text if b'qmail-idcheck: pid' in text and b'seed@example.com mail ACCEPT' in text else None
        assert wait_for(logged), 'multilog did not record the decision'

        svc = os.path.join(services, 'qmail-smtpd')
        subprocess.run(['svc', '-d', svc], check=True, timeout=10)
        assert wait_for(lambda: not listening(port)), 'svc -d did not stop tcpserver'
        status = subprocess.run(['svstat', svc], capture_output=True, timeout=10).stdout
        assert b': down ' in status, status
        subprocess.run(['svc', '-dx', svc, os.path.join(svc, 'log')], timeout=10)
    finally:
        if svscan is not None:
            try:
                os.killpg(svscan.pid, 9)     # svscan, its supervise processes, multilog
            except ProcessLookupError:
                pass
            svscan.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.skipif(not shutil.which('svscan'), reason='daemontools is not installed')
def test_smtps_service(dns):  # noqa: F811
    """run-scripts/qmail-smtps beside qmail-smtpd (whose run script it runs
    with TLSMODE=implicit): TLS from the first byte, the message stored with
    its TLS record; without a certificate it refuses to start."""
    build = harness.build_dir('plain')
    os.makedirs(os.path.join(harness.TESTS, 'tmp'), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='service-', dir=os.path.join(harness.TESTS, 'tmp'))
    svscan = None
    try:
        services = os.path.join(tmp, 'service')
        os.makedirs(services)
        for src in (SERVICE, SMTPS):
            shutil.copytree(src, os.path.join(services, os.path.basename(src)), symlinks=True)
        # qmail-smtpd's directory is there for its run script; not started
        open(os.path.join(services, 'qmail-smtpd', 'down'), 'w').close()
        home = os.path.join(tmp, 'qmail')
        os.makedirs(os.path.join(home, 'control'))
        with open(os.path.join(home, 'control', 'me'), 'w') as f:
            f.write('service.example\n')
        with open(os.path.join(home, 'control', 'concurrencyincoming'), 'w') as f:
            f.write('20\n')
        queue = os.path.join(tmp, 'queue')
        os.makedirs(queue)
        rules = os.path.join(tmp, 'tcp.smtp')
        with open(rules, 'w') as f:
            f.write('127.0.0.1:allow,IDCHECK_MODULE="t_headers"\n:allow\n')
        with open(rules) as f:
            subprocess.run(['tcprules', rules + '.cdb', rules + '.tmp'], stdin=f, check=True, timeout=10)
        port = free_port()
        env = {
            'PATH': build + ':/usr/local/bin:/usr/bin:/bin',
            'QMAIL': home, 'SMTPUSER': 'root', 'RULES': rules + '.cdb',
            'IP': '127.0.0.1', 'PORT': str(port), 'SMTPD': os.path.join(build, 'qmail-smtpd-standin'),
            'RBL': '-r bl.test', 'DNSCACHEIP': dns.ip,
            'LOGUSER': 'root', 'LOGDIR': os.path.join(tmp, 'log'),
            'STANDIN_HOME': home, 'STANDIN_QUEUE': queue,
            'QMAILQUEUE': os.path.join(build, 'qmail-queue-standin'),
            'IDCHECK_PYTHONPATH': os.path.join(harness.TESTS, 'policies'),
        }
        # no certificate: the run script says so and does not start
        r = subprocess.run(['./run'], cwd=os.path.join(services, 'qmail-smtps'), env=env,
                           capture_output=True, timeout=10)
        assert r.returncode == 1 and b'TLSMODE=implicit needs a certificate' in r.stdout, r
        make_servercert(os.path.join(home, 'control', 'servercert.pem'))

        svscan = subprocess.Popen(['svscan', services], env=env, cwd=tmp,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        assert wait_for(lambda: listening(port)), 'the SMTPS service did not start listening'
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP_SSL('127.0.0.1', port, local_hostname='client.example', context=ctx,
                              timeout=10) as s:
            code, text = s.ehlo()
            assert code == 250 and b'\nID\n' in text + b'\n' and b'STARTTLS' not in text
            s.sendmail('seed@example.com', ['one@example.org'], b'Subject: smtps\r\n\r\nhello\r\n')
        names = wait_for(lambda: sorted(n for n in os.listdir(queue) if n.endswith('.env')) or None)
        assert names and len(names) == 1
        with open(os.path.join(queue, names[0][:-4] + '.msg'), 'rb') as f:
            msg = f.read()
        assert TRACE.search(msg), msg
        assert msg.endswith(b'\nSubject: smtps\n\nhello\n')
        subprocess.run(['svc', '-dx', os.path.join(services, 'qmail-smtps'),
                        os.path.join(services, 'qmail-smtps', 'log')], timeout=10)
    finally:
        if svscan is not None:
            try:
                os.killpg(svscan.pid, 9)
            except ProcessLookupError:
                pass
            svscan.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
