"""The shipped daemontools services (run-scripts/qmail-smtpd, qmail-smtps) under the real
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


class Services:
    """A service directory for svscan with copies of the shipped run-scripts
    services, a qmail home (control/me, concurrencyincoming), a queue for the
    queue stand-in, a tcprules file, and the environment the run scripts
    read: only what differs from a production host."""

    def __init__(self, dns, *names):
        self.build = harness.build_dir('plain')   # softlimit -m and ASan do not mix
        if not os.path.exists(os.path.join(self.build, 'rblsmtpd-plus')):
            pytest.skip('rblsmtpd-plus is not built')
        os.makedirs(os.path.join(harness.TESTS, 'tmp'), exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix='service-', dir=os.path.join(harness.TESTS, 'tmp'))
        self.svscan = None
        self.dir = os.path.join(self.tmp, 'service')
        os.makedirs(self.dir)
        for name in names:
            shutil.copytree(os.path.join(harness.TOP, 'run-scripts', name),
                            os.path.join(self.dir, name), symlinks=True)
        self.home = os.path.join(self.tmp, 'qmail')
        os.makedirs(os.path.join(self.home, 'control'))
        for name, text in (('me', 'service.example\n'), ('concurrencyincoming', '20\n')):
            with open(os.path.join(self.home, 'control', name), 'w') as f:
                f.write(text)
        self.queue = os.path.join(self.tmp, 'queue')
        os.makedirs(self.queue)
        self.logdir = os.path.join(self.tmp, 'log')
        rules = os.path.join(self.tmp, 'tcp.smtp')
        with open(rules, 'w') as f:
            f.write('127.0.0.1:allow,IDCHECK_MODULE="t_headers"\n:allow\n')
        with open(rules) as f:
            subprocess.run(['tcprules', rules + '.cdb', rules + '.tmp'], stdin=f, check=True, timeout=10)
        self.port = free_port()
        self.env = {
            'PATH': self.build + ':/usr/local/bin:/usr/bin:/bin',
            'QMAIL': self.home, 'SMTPUSER': 'root', 'RULES': rules + '.cdb',
            'IP': '127.0.0.1', 'PORT': str(self.port),
            'SMTPD': os.path.join(self.build, 'qmail-smtpd-standin'),
            'RBL': '-r bl.test', 'DNSCACHEIP': dns.ip,
            'LOGUSER': 'root', 'LOGDIR': self.logdir,
            'STANDIN_HOME': self.home, 'STANDIN_QUEUE': self.queue,
            'QMAILQUEUE': os.path.join(self.build, 'qmail-queue-standin'),
            'IDCHECK_PYTHONPATH': os.path.join(harness.TESTS, 'policies'),
        }

    def start(self):
        self.svscan = subprocess.Popen(['svscan', self.dir], env=self.env, cwd=self.tmp,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
        assert wait_for(lambda: listening(self.port)), 'the service did not start listening'

    def stored(self):
        """The stored messages' names (the .env of each), in arrival order."""
        return sorted(n for n in os.listdir(self.queue) if n.endswith('.env')) or None

    def message(self, name):
        with open(os.path.join(self.queue, name[:-4] + '.msg'), 'rb') as f:
            return f.read()

    def stop(self):
        if self.svscan is not None:
            try:
                os.killpg(self.svscan.pid, 9)     # svscan, its supervise processes, multilog
            except ProcessLookupError:
                pass
            self.svscan.wait(timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.mark.skipif(not shutil.which('svscan'), reason='daemontools is not installed')
def test_service_runs_under_supervise(dns):  # noqa: F811
    """With control/servercert.pem in place, the shipped qmail-smtpd service
    offers STARTTLS; a message sent in clear and one sent with swaks --tls
    are both stored, the second with its TLS record; multilog has the
    decision; svc stops it."""
    svc = Services(dns, 'qmail-smtpd')
    try:
        make_servercert(os.path.join(svc.home, 'control', 'servercert.pem'))
        svc.start()
        s = smtplib.SMTP('127.0.0.1', svc.port, local_hostname='client.example', timeout=10)
        try:
            code, text = s.ehlo()
            assert code == 250 and b'\nID\n' in text + b'\n'
            assert b'\nSTARTTLS\n' in text + b'\n'    # the certificate is there
            assert s.docmd('ID', 'example.com') == (250, b'2.1.0 ID example.com accepted')
            s.sendmail('seed@example.com', ['one@example.org'], b'Subject: service\r\n\r\nhello\r\n')
        finally:
            s.quit()
        names = wait_for(svc.stored)
        assert names and len(names) == 1
        msg = svc.message(names[0])
        assert msg.startswith(b'Authent: 192.0.2.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B\n'
                              b'Received: from localhost (HELO client.example) (127.0.0.1)\n'
                              b'  by service.example with SMTP; ')
        assert msg.endswith(b'\nSubject: service\n\nhello\n')

        # swaks --tls: STARTTLS on the shipped service, and the stored copy
        # says the message came over TLS
        r = subprocess.run(['swaks', '--server', '127.0.0.1', '--port', str(svc.port), '--tls',
                            '--helo', 'client.example', '--from', 'seed@example.com',
                            '--to', 'one@example.org', '--timeout', '10'],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        names = wait_for(lambda: len(svc.stored() or []) == 2 and svc.stored())
        assert names, 'the message sent over TLS was not stored'
        tls_msg = svc.message(names[1])
        assert re.match(rb'Authent: 192\.0\.2\.1 example\.com SPF1 PASS ratings=S1:A,M2:A,H1:B\n'
                        + TRACE.pattern + rb'Received: from localhost \(HELO client\.example\)',
                        tls_msg), tls_msg

        def logged():
            try:
                with open(os.path.join(svc.logdir, 'current'), 'rb') as f:
                    text = f.read()
            except OSError:
                return None
            return text if b'qmail-idcheck: pid' in text and b'seed@example.com mail ACCEPT' in text else None
        assert wait_for(logged), 'multilog did not record the decision'

        service = os.path.join(svc.dir, 'qmail-smtpd')
        subprocess.run(['svc', '-d', service], check=True, timeout=10)
        assert wait_for(lambda: not listening(svc.port)), 'svc -d did not stop tcpserver'
        status = subprocess.run(['svstat', service], capture_output=True, timeout=10).stdout
        assert b': down ' in status, status
        subprocess.run(['svc', '-dx', service, os.path.join(service, 'log')], timeout=10)
    finally:
        svc.stop()


@pytest.mark.skipif(not shutil.which('svscan'), reason='daemontools is not installed')
def test_smtps_service(dns):  # noqa: F811
    """run-scripts/qmail-smtps beside qmail-smtpd (whose run script it runs
    with TLSMODE=implicit): TLS from the first byte, the message stored with
    its TLS record; without a certificate it refuses to start."""
    svc = Services(dns, 'qmail-smtpd', 'qmail-smtps')
    try:
        # qmail-smtpd's directory is there for its run script; not started
        open(os.path.join(svc.dir, 'qmail-smtpd', 'down'), 'w').close()
        r = subprocess.run(['./run'], cwd=os.path.join(svc.dir, 'qmail-smtps'), env=svc.env,
                           capture_output=True, timeout=10)
        assert r.returncode == 1 and b'TLSMODE=implicit needs a certificate' in r.stdout, r
        make_servercert(os.path.join(svc.home, 'control', 'servercert.pem'))
        svc.start()
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP_SSL('127.0.0.1', svc.port, local_hostname='client.example', context=ctx,
                              timeout=10) as s:
            code, text = s.ehlo()
            assert code == 250 and b'\nID\n' in text + b'\n' and b'STARTTLS' not in text
            s.sendmail('seed@example.com', ['one@example.org'], b'Subject: smtps\r\n\r\nhello\r\n')
        names = wait_for(svc.stored)
        assert names and len(names) == 1
        msg = svc.message(names[0])
        assert TRACE.search(msg), msg
        assert msg.endswith(b'\nSubject: smtps\n\nhello\n')
        service = os.path.join(svc.dir, 'qmail-smtps')
        subprocess.run(['svc', '-dx', service, os.path.join(service, 'log')], timeout=10)
    finally:
        svc.stop()
