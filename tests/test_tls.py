"""qmail-idcheck-tls under the real tcpserver, with tests/ucspi-tls-app as the
next program (it speaks a little SMTP-like protocol, asks for TLS over
UCSPI-TLS and reports what it got) and real clients: Python's ssl and
smtplib, and openssl s_client. Certificates are made here with openssl req.

    tcpserver ... [setuidgid nobody] build/qmail-idcheck-tls [-i] tests/ucspi-tls-app

Each test runs in each variant (build/, and build-asan/ unless IDCHECK_NO_ASAN).
"""
import hashlib
import os
import random
import re
import select
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

import harness

APP = os.path.join(harness.TESTS, 'ucspi-tls-app')
SNI = 'mail.example.test'
CLIENT_SUBJECT = '/C=DE/O=Example Client/CN=client.example.test'
NO_DETAILS = 'app: no TLS details'
S_CLIENT_TIMEOUT = 20


# ---- certificates, made once for the module ----

def openssl(*args):
    subprocess.run(('openssl',) + args, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope='module')
def certs():
    """server.pem (certificate and key in one file, as servercert.pem),
    server-cert.pem / server-key.pem apart, another key, a client certificate,
    an encrypted key, and files that are not what they claim. The directory
    is world-readable, the key files not (0600) except public/ copies."""
    d = tempfile.mkdtemp(prefix='tls-', dir=_tmp_base())
    os.chmod(d, 0o755)
    p = lambda name: os.path.join(d, name)
    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
            '-keyout', p('server-key.pem'), '-out', p('server-cert.pem'), '-days', '30',
            '-subj', '/CN=' + SNI, '-addext', 'subjectAltName=DNS:' + SNI)
    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
            '-keyout', p('client-key.pem'), '-out', p('client-cert.pem'), '-days', '30',
            '-subj', CLIENT_SUBJECT)
    openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256',
            '-out', p('other-key.pem'))
    openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256',
            '-aes-128-cbc', '-pass', 'pass:secret', '-out', p('encrypted-key.pem'))
    with open(p('server.pem'), 'wb') as out:
        for name in ('server-cert.pem', 'server-key.pem'):
            with open(p(name), 'rb') as f:
                out.write(f.read())
    with open(p('garbage.pem'), 'wb') as f:
        f.write(b'this is not a certificate\n')
    os.mkdir(p('public'))
    shutil.copy(p('server.pem'), p('public/server.pem'))
    for name in os.listdir(d):
        if os.path.isfile(p(name)):
            os.chmod(p(name), 0o600)
    os.chmod(p('public/server.pem'), 0o644)
    with open(p('client-cert.pem'), 'rb') as f:
        der = ssl.PEM_cert_to_DER_cert(f.read().decode())
    yield {'dir': d, 'path': p, 'client_hash': 'SHA256:' + hashlib.sha256(der).hexdigest()}
    if not os.environ.get('IDCHECK_KEEP'):
        shutil.rmtree(d, ignore_errors=True)


def _tmp_base():
    base = os.path.join(harness.TESTS, 'tmp')
    os.makedirs(base, exist_ok=True)
    return base


# ---- the chain: tcpserver → [prefix] qmail-idcheck-tls [-i] → the app ----

class TLSChain(harness.Chain):
    def smtpd(self):
        return APP


@pytest.fixture(params=harness.variants())
def variant(request):
    return request.param


def start(variant, certs, *, implicit=False, cert='server.pem', key=None, timeout=None,
          idle=None, env=None, prefix=()):
    server_env = {'IDCHECK_TLS_CERT': certs['path'](cert) if not cert.startswith('/') else cert}
    if key:
        server_env['IDCHECK_TLS_KEY'] = certs['path'](key) if not key.startswith('/') else key
    if timeout:
        server_env['IDCHECK_TLS_TIMEOUT'] = str(timeout)
    if idle:
        server_env['IDCHECK_TLS_IDLE'] = str(idle)
    words = list(prefix) + ['build/qmail-idcheck-tls'] + (['-i'] if implicit else [])
    chain = TLSChain('bare', variant, env=env, server_env=server_env, prefix=words)
    chain.start()
    return chain


@pytest.fixture
def chains():
    """Every chain a test starts is stopped, and checked for sanitizer reports."""
    started = []
    yield started
    errors = []
    for chain in started:
        try:
            chain.stop()
        except harness.HarnessError as e:
            errors.append(str(e))
        finally:
            chain.stop(check=False)
    if errors:
        pytest.fail('\n'.join(errors), pytrace=False)


def client_context(certs, client_cert=False, version=None, verify=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Python ignores a TCP EOF without close_notify by default: the tests
    # tell the two apart
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    if verify:
        ctx.load_verify_locations(certs['path']('server-cert.pem'))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client_cert:
        ctx.load_cert_chain(certs['path']('client-cert.pem'), certs['path']('client-key.pem'))
    if version:
        ctx.minimum_version = ctx.maximum_version = version
        if version < ssl.TLSVersion.TLSv1_2:
            ctx.set_ciphers('DEFAULT@SECLEVEL=0')   # else the client itself refuses
    return ctx


def starttls(conn, ctx, sni=SNI):
    """STARTTLS on a harness connection; its socket becomes the TLS socket."""
    conn.send('STARTTLS')
    conn.expect('220 2.0.0 go ahead')
    assert conn.buf == b''
    conn.sock = ctx.wrap_socket(conn.sock, server_hostname=sni, suppress_ragged_eofs=False)
    return conn.sock


def details(conn):
    """The details the app got: the raw bytes, and whether the control
    channel ended after them."""
    conn.send('DETAILS')
    raw = conn.expect('250-raw {*}')[len('250-raw '):-2]
    eof = conn.expect('250 eof {*}')[len('250 eof '):-2]
    return bytes.fromhex(raw.decode()), eof == b'yes'


def entries(raw):
    """NAME=value\\0 ... \\0 as a dict, checking the framing."""
    assert raw.endswith(b'\0\0'), raw
    out = {}
    for entry in raw[:-2].split(b'\0'):
        name, eq, value = entry.partition(b'=')
        assert eq, raw
        out[name.decode()] = value.decode()
    return out


def app_env(conn):
    conn.send('ENV')
    out = {}
    while True:
        line = conn.read_line()
        assert line and line.startswith(b'250'), line
        if line.startswith(b'250 '):
            return out
        name, _, value = line[4:-2].decode().partition('=')
        out[name] = value


def app_fds(conn):
    conn.send('FDS')
    out = {}
    while True:
        line = conn.read_line()
        assert line and line.startswith(b'250'), line
        if line.startswith(b'250 '):
            return out
        fd, _, what = line[4:-2].decode().partition(' ')
        out[int(fd)] = what


def expect_close_notify(sock):
    """The server ends TLS with close_notify (b'', where a bare TCP EOF would
    raise UNEXPECTED_EOF_WHILE_READING), then the TCP connection ends."""
    sock.settimeout(harness.READ_TIMEOUT)
    assert sock.recv(100) == b''
    assert socket.socket.recv(sock, 100) == b''


def ended(chain, conn):
    """The session's exit status as tcpserver logged it."""
    chain.wait_sessions()
    return chain.session_ended(conn.pid)


END = re.compile(r'^tcpserver: end \d+ status (\d+)$', re.M)


def statuses(chain, n):
    """The exit statuses of the first n sessions to end, for clients that
    were not opened through the harness; waits for them to end."""
    chain.wait_sessions()
    if not harness._wait_until(lambda: len(END.findall(chain.log())) >= n, harness.END_TIMEOUT):
        chain.fail('%d session(s) did not end' % n)
    return [int(x) for x in END.findall(chain.log())]


UCSPI_ENV = ('SSLCTLFD', 'SSLREADFD', 'SSLWRITEFD')


# ---- STARTTLS: the handshake and the details ----

def test_starttls_details_tls13_sni(variant, certs, chains):
    """Python's ssl, TLS 1.3 with SNI, the server certificate verified: the
    details are exactly protocol, cipher and SNI, ended by the empty entry,
    and the control channel ends after them."""
    chains.append(chain := start(variant, certs))
    conn = chain.connect()
    conn.expect('220 app ucspi-tls')
    conn.send('EHLO client')
    conn.expect('250-app')
    conn.expect('250-STARTTLS')
    conn.expect('250 HELP')
    env = app_env(conn)
    assert set(env) == set(UCSPI_ENV), env
    tls = starttls(conn, client_context(certs))
    assert tls.version() == 'TLSv1.3'
    raw, eof = details(conn)
    assert raw == (b'SSL_PROTOCOL=TLSv1.3\0SSL_CIPHER=' + tls.cipher()[0].encode()
                   + b'\0SSL_TLS_SNI_SERVERNAME=' + SNI.encode() + b'\0\0')
    assert eof
    conn.send('EHLO client')
    conn.expect('250-app')
    conn.expect('250 HELP')          # no STARTTLS any more
    conn.send('QUIT')
    conn.expect('221 bye')
    expect_close_notify(tls)
    assert ended(chain, conn) == 0


def test_starttls_tls12_client_certificate(variant, certs, chains):
    """TLS 1.2, no SNI, a client certificate (requested, not required, not
    verified): its SHA-256 and subject are in the details."""
    chains.append(chain := start(variant, certs))
    conn = chain.connect()
    conn.expect('220 app ucspi-tls')
    ctx = client_context(certs, client_cert=True, version=ssl.TLSVersion.TLSv1_2, verify=False)
    tls = starttls(conn, ctx, sni=None)
    assert tls.version() == 'TLSv1.2'
    raw, eof = details(conn)
    assert entries(raw) == {
        'SSL_PROTOCOL': 'TLSv1.2',
        'SSL_CIPHER': tls.cipher()[0],
        'SSL_PEER_CERT_HASH': certs['client_hash'],
        'SSL_PEER_CERT_SUBJECT': CLIENT_SUBJECT,
    }
    assert list(entries(raw)) == ['SSL_PROTOCOL', 'SSL_CIPHER', 'SSL_PEER_CERT_HASH',
                                  'SSL_PEER_CERT_SUBJECT']
    assert eof
    conn.send('QUIT')
    conn.expect('221 bye')
    assert ended(chain, conn) == 0


def test_smtplib_starttls(variant, certs, chains):
    """smtplib: EHLO shows STARTTLS, starttls() verifies the server by name,
    the app then talks over the pipes; QUIT ends it with status 0."""
    chains.append(chain := start(variant, certs))
    ctx = client_context(certs)

    class SMTP(smtplib.SMTP):
        def _get_socket(self, host, port, timeout):
            self._host = SNI            # what starttls() verifies and sends as SNI
            return socket.create_connection(('127.0.0.1', port), timeout)

    with SMTP(SNI, chain.port, local_hostname='client.example', timeout=harness.READ_TIMEOUT) as s:
        assert s.ehlo() == (250, b'app\nSTARTTLS\nHELP')
        assert s.starttls(context=ctx) == (220, b'2.0.0 go ahead')
        code, text = s.docmd('DETAILS')
        assert code == 250
        raw = bytes.fromhex(text.split(b'\n')[0][len(b'raw '):].decode())
        assert entries(raw)['SSL_TLS_SNI_SERVERNAME'] == SNI
        assert entries(raw)['SSL_PROTOCOL'] == s.sock.version()
        assert s.ehlo() == (250, b'app\nHELP')
    chain.wait_sessions()
    assert 'qmail-idcheck-tls' not in chain.log()


def s_client(port, *args, stdin=b''):
    return subprocess.run(['openssl', 's_client', '-connect', '127.0.0.1:%d' % port] + list(args),
                          input=stdin, capture_output=True, timeout=S_CLIENT_TIMEOUT)


def test_openssl_s_client_starttls_client_certificate(variant, certs, chains):
    """openssl s_client -starttls smtp with SNI and -cert: the exact details."""
    chains.append(chain := start(variant, certs))
    r = s_client(chain.port, '-starttls', 'smtp', '-servername', SNI, '-crlf', '-quiet',
                 '-cert', certs['path']('client-cert.pem'), '-key', certs['path']('client-key.pem'),
                 stdin=b'DETAILS\nQUIT\n')
    out = r.stdout.decode('latin-1')
    raw_line = [l for l in out.split('\r\n') if l.startswith('250-raw ')]
    assert raw_line, (out, r.stderr)
    got = entries(bytes.fromhex(raw_line[0][len('250-raw '):]))
    assert got['SSL_PROTOCOL'] == 'TLSv1.3'
    assert got['SSL_TLS_SNI_SERVERNAME'] == SNI
    assert got['SSL_PEER_CERT_HASH'] == certs['client_hash']
    assert got['SSL_PEER_CERT_SUBJECT'] == CLIENT_SUBJECT
    assert got['SSL_CIPHER'].startswith('TLS_')
    assert '250 eof yes\r\n221 bye\r\n' in out
    assert statuses(chain, 1) == [0]


# ---- what is refused ----

@pytest.mark.filterwarnings('ignore:ssl.TLSVersion.TLSv1:DeprecationWarning')
@pytest.mark.parametrize('flag,version', [('-tls1', ssl.TLSVersion.TLSv1),
                                          ('-tls1_1', ssl.TLSVersion.TLSv1_1)])
def test_old_tls_refused(variant, certs, chains, flag, version):
    """TLS 1.0 and 1.1 are refused, to openssl s_client and to Python's ssl,
    both set up to offer the old version (seclevel 0): no details, the app
    ends (status 1), the handshake failure is logged."""
    chains.append(chain := start(variant, certs))
    r = s_client(chain.port, '-starttls', 'smtp', flag, '-cipher', 'DEFAULT@SECLEVEL=0', '-crlf',
                 stdin=b'QUIT\n')
    assert r.returncode != 0
    assert b'alert protocol version' in r.stderr, r.stderr

    conn = chain.connect()
    conn.expect('220 app ucspi-tls')
    with pytest.raises(ssl.SSLError):
        starttls(conn, client_context(certs, version=version, verify=False), sni=None)
    assert statuses(chain, 2) == [256, 256]
    log = chain.log()
    assert log.count('TLS handshake failed: error:0A000102:SSL routines::unsupported protocol') == 2
    assert log.count(NO_DETAILS) == 2


def test_old_tls_control(certs):
    """The control for test_old_tls_refused: the same s_client settings do
    get TLS 1.1 from an openssl s_server that allows it, so the refusal above
    is the server's."""
    server = subprocess.Popen(['openssl', 's_server', '-accept', '127.0.0.1:0', '-naccept', '1',
                               '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0',
                               '-cert', certs['path']('server-cert.pem'),
                               '-key', certs['path']('server-key.pem')],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    try:
        port = harness._wait_until(lambda: harness._listening_port(server.pid), 10)
        assert port, 'openssl s_server did not listen'
        r = s_client(port, '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0')
        assert b'Protocol  : TLSv1.1' in r.stdout, (r.stdout, r.stderr)
    finally:
        server.kill()
        server.wait()


def test_renegotiation_refused(variant, certs, chains):
    """A TLS 1.2 client asking to renegotiate (s_client's "R" line) gets
    "no renegotiation". s_client's standard input stays open meanwhile: at
    its end s_client would quit before the answer."""
    chains.append(chain := start(variant, certs))
    proc = subprocess.Popen(['openssl', 's_client', '-connect', '127.0.0.1:%d' % chain.port,
                             '-starttls', 'smtp', '-tls1_2', '-crlf'],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = b''
    try:
        proc.stdin.write(b'R\n')
        proc.stdin.flush()
        deadline = time.monotonic() + S_CLIENT_TIMEOUT
        while b'no renegotiation' not in out:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
                break
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                break
            out += data
    finally:
        proc.kill()
        proc.communicate()
    assert b'RENEGOTIATING' in out, out
    assert b'no renegotiation' in out, out


# ---- deadlines and bad clients ----

def test_handshake_silent_client_cut_at_deadline(variant, certs, chains):
    """STARTTLS, then nothing: the connection ends at IDCHECK_TLS_TIMEOUT
    (1 s here, the client waits up to 5), logged; the app gets no details."""
    chains.append(chain := start(variant, certs, timeout=1))
    conn = chain.connect()
    conn.expect('220 app ucspi-tls')
    conn.send('STARTTLS')
    conn.expect('220 2.0.0 go ahead')
    conn.expect_eof()
    assert ended(chain, conn) == 256
    assert 'qmail-idcheck-tls: pid %d TLS handshake timed out\n' % conn.pid in chain.log()
    assert NO_DETAILS in chain.log()


def test_handshake_half_client_hello_cut_at_deadline(variant, certs, chains):
    """Half a real ClientHello, then silence: cut at the deadline too."""
    chains.append(chain := start(variant, certs, timeout=1))
    ctx = client_context(certs, verify=False)
    hello = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname=None)
    with pytest.raises(ssl.SSLWantReadError):
        hello.do_handshake()
    record = out.read()
    conn = chain.connect()
    conn.expect('220 app ucspi-tls')
    conn.send('STARTTLS')
    conn.expect('220 2.0.0 go ahead')
    conn.sendraw(record[:len(record) // 2])
    conn.expect_eof()
    assert ended(chain, conn) == 256
    assert 'TLS handshake timed out' in chain.log()


def test_handshake_garbage_ends_at_once(variant, certs, chains):
    """Text instead of a ClientHello: the handshake fails at once, well
    before the 30 s deadline (the client waits 5), and says why."""
    chains.append(chain := start(variant, certs, timeout=30))
    conn = chain.connect()
    conn.expect('220 app ucspi-tls')
    conn.send('STARTTLS')
    conn.expect('220 2.0.0 go ahead')
    conn.send('MAIL FROM:<injected@example.com>')
    conn.expect_eof()
    assert ended(chain, conn) == 256
    assert ('qmail-idcheck-tls: pid %d TLS handshake failed: error:0A00010B:SSL routines::'
            'wrong version number\n' % conn.pid) in chain.log()
    assert NO_DETAILS in chain.log()


def test_idle_tls_connection_closed(variant, certs, chains):
    """Once TLS runs, IDCHECK_TLS_IDLE (1 s here) without a byte either way
    closes the connection, logged; the app sees EOF and ends."""
    chains.append(chain := start(variant, certs, idle=1))
    conn = chain.connect()
    conn.expect('220 app ucspi-tls')
    starttls(conn, client_context(certs))
    conn.send('EHLO client')
    conn.expect('250-app')
    conn.expect('250 HELP')
    conn.sock.settimeout(harness.READ_TIMEOUT)
    with pytest.raises(ssl.SSLError, match='UNEXPECTED_EOF_WHILE_READING'):  # no close_notify
        conn.sock.recv(100)
    assert ended(chain, conn) == 0
    assert ('qmail-idcheck-tls: pid %d TLS connection idle past IDCHECK_TLS_IDLE: closed\n'
            % conn.pid) in chain.log()


def test_client_input_after_the_app_is_gone_keeps_nothing_alive(variant, certs, chains):
    """The app has gone (killed here, as a proxy that timed out on a client
    that stopped reading ends) while its output waits for a client that
    reads none of it; the client keeps sending a little. What it sends goes
    into the void and does not restart IDCHECK_TLS_IDLE (1 s): the engine
    ends within it, the trickle notwithstanding."""
    import signal
    chains.append(chain := start(variant, certs, idle=1))
    conn = chain.connect()
    conn.expect('220 app ucspi-tls')
    starttls(conn, client_context(certs))
    conn.send('BLOB 16000000')              # more than every buffer on the way holds
    time.sleep(0.5)
    for pid in harness._descendants(conn.pid):
        os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    gone = False
    while not gone and time.monotonic() - started < 8:
        try:
            conn.sock.send(b'NOOP\r\n')
        except (OSError, ssl.SSLError):
            pass
        time.sleep(0.25)
        gone = chain.session_ended(conn.pid) is not None
    assert gone, chain.log()          # a trickle that restarted the idle limit never ends
    assert ('qmail-idcheck-tls: pid %d TLS connection idle past IDCHECK_TLS_IDLE: closed\n'
            % conn.pid) in chain.log()


# ---- no certificate, no STARTTLS ----

BAD_FILES = [
    ('missing', {'cert': '/nonexistent/servercert.pem'},
     'cannot read /nonexistent/servercert.pem: No such file or directory'),
    ('directory', {'cert': '/'}, 'cannot read /: not a regular file'),
    ('not-pem', {'cert': 'garbage.pem'}, 'no PEM certificate in {dir}/garbage.pem'),
    ('cert-without-key', {'cert': 'server-cert.pem'},
     'no unencrypted PEM private key in {dir}/server-cert.pem'),
    ('encrypted-key', {'cert': 'server-cert.pem', 'key': 'encrypted-key.pem'},
     'no unencrypted PEM private key in {dir}/encrypted-key.pem'),
    ('missing-key', {'cert': 'server-cert.pem', 'key': 'nokey.pem'},
     'cannot read {dir}/nokey.pem: No such file or directory'),
]


@pytest.mark.parametrize('case', BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_files_plain_runs_without_starttls(variant, certs, chains, case):
    """One log line, and the app runs without the three variables (so it
    does not offer STARTTLS): the session itself goes on."""
    _, files, why = case
    chains.append(chain := start(variant, certs, **files))
    conn = chain.connect()
    conn.expect('220 app plain')
    conn.send('EHLO client')
    conn.expect('250-app')
    conn.expect('250 HELP')
    assert app_env(conn) == {}
    conn.send('QUIT')
    conn.expect('221 bye')
    assert ended(chain, conn) == 0
    line = 'qmail-idcheck-tls: pid %d STARTTLS not offered: %s\n' % (conn.pid, why.format(dir=certs['dir']))
    assert chain.log().count('qmail-idcheck-tls') == 1
    assert line in chain.log()


@pytest.mark.parametrize('case', BAD_FILES[:2], ids=[c[0] for c in BAD_FILES[:2]])
def test_bad_files_implicit_refuses(variant, certs, chains, case):
    """With -i a connection without a usable certificate is refused: not a
    byte, exit 111, logged; the app never runs."""
    _, files, why = case
    chains.append(chain := start(variant, certs, implicit=True, **files))
    conn = chain.connect()
    conn.expect_eof()
    assert ended(chain, conn) == 111 << 8
    assert ('qmail-idcheck-tls: pid %d connection refused: %s\n'
            % (conn.pid, why.format(dir=certs['dir']))) in chain.log()


def plain_without_starttls(chain, why):
    """A session the app ran without the UCSPI-TLS variables, and the one
    line saying why STARTTLS was not offered."""
    conn = chain.connect()
    conn.expect('220 app plain')
    conn.send('QUIT')
    conn.expect('221 bye')
    assert ended(chain, conn) == 0
    assert ('qmail-idcheck-tls: pid %d STARTTLS not offered: %s\n' % (conn.pid, why)) in chain.log()


def test_unreadable_key_as_another_user(variant, certs, chains):
    """Run as nobody (as tcpserver -u runs the chain): the 0600 key of
    another user cannot be read, so no STARTTLS; a world-readable copy works."""
    chains.append(chain := start(variant, certs, prefix=['setuidgid', 'nobody']))
    plain_without_starttls(chain, 'cannot read %s: Permission denied' % certs['path']('server.pem'))

    chains.append(chain := start(variant, certs, prefix=['setuidgid', 'nobody'],
                                 cert='public/server.pem'))
    conn = chain.connect()
    conn.expect('220 app ucspi-tls')
    starttls(conn, client_context(certs))
    conn.send('QUIT')
    conn.expect('221 bye')
    assert ended(chain, conn) == 0


def test_key_not_matching_certificate(variant, certs, chains):
    """A key that is PEM but not the certificate's passes the cheap check at
    connect; STARTTLS then fails, logged, and qmail-idcheck-tls -c finds it."""
    chains.append(chain := start(variant, certs, cert='server-cert.pem', key='other-key.pem'))
    conn = chain.connect()
    conn.expect('220 app ucspi-tls')
    conn.send('STARTTLS')
    conn.expect('220 2.0.0 go ahead')
    conn.expect_eof()
    assert ended(chain, conn) == 256
    assert 'TLS not started: cannot use the certificate or key: ' in chain.log()

    prog = harness.binary(variant, 'qmail-idcheck-tls')
    env = {'PATH': '/usr/bin:/bin', 'IDCHECK_TLS_CERT': certs['path']('server-cert.pem'),
           **harness.SANITIZER_ENV}
    bad = subprocess.run([prog, '-c'], env=dict(env, IDCHECK_TLS_KEY=certs['path']('other-key.pem')),
                         capture_output=True, timeout=30)
    harness.no_sanitizer_report(bad.stderr)
    assert bad.returncode == 111
    assert b'cannot use the certificate or key: ' in bad.stderr
    good = subprocess.run([prog, '-c'], env=dict(env, IDCHECK_TLS_KEY=certs['path']('server-key.pem')),
                          capture_output=True, timeout=30)
    harness.no_sanitizer_report(good.stderr)
    assert good.returncode == 0, good.stderr
    assert good.stderr.endswith(b' certificate and key are usable\n')


def test_engine_missing(variant, certs, chains):
    """qmail-idcheck-tls-io cannot be run: STARTTLS is not offered (as with
    a bad certificate), logged, and the session goes on in clear, rather
    than a STARTTLS answered with a hang-up; with -i, refused."""
    engine = {'IDCHECK_TLS_IO': '/nonexistent/tls-io'}
    chains.append(chain := start(variant, certs, env=engine))
    plain_without_starttls(chain, 'cannot run /nonexistent/tls-io: No such file or directory')
    chains.append(chain := start(variant, certs, implicit=True, env=engine))
    conn = chain.connect()
    conn.expect_eof()
    assert ended(chain, conn) == 111 << 8
    assert ('qmail-idcheck-tls: pid %d connection refused: cannot run /nonexistent/tls-io: '
            'No such file or directory\n' % conn.pid) in chain.log()


# ---- implicit TLS (-i) ----

def test_implicit_details_in_environment(variant, certs, chains):
    """-i: the handshake at connect; the app sees plaintext on pipes as fds
    0/1 and the details in its environment, without the UCSPI-TLS variables;
    a forged detail from tcprules is gone."""
    chains.append(chain := start(variant, certs, implicit=True,
                                 env={'SSL_PEER_CERT_SUBJECT': '/CN=forged', 'SSLCTLFD': '7'}))
    conn = chain.connect()
    tls = conn.sock = client_context(certs).wrap_socket(conn.sock, server_hostname=SNI,
                                                         suppress_ragged_eofs=False)
    conn.expect('220 app implicit')
    assert app_env(conn) == {'SSL_PROTOCOL': 'TLSv1.3', 'SSL_CIPHER': tls.cipher()[0],
                             'SSL_TLS_SNI_SERVERNAME': SNI}
    fds = app_fds(conn)
    assert sorted(fds) == [0, 1, 2]
    assert fds[0].startswith('pipe:') and fds[1].startswith('pipe:')
    conn.send('QUIT')
    conn.expect('221 bye')
    expect_close_notify(tls)
    assert ended(chain, conn) == 0


def test_implicit_client_certificate(variant, certs, chains):
    chains.append(chain := start(variant, certs, implicit=True))
    conn = chain.connect()
    ctx = client_context(certs, client_cert=True, version=ssl.TLSVersion.TLSv1_2, verify=False)
    tls = conn.sock = ctx.wrap_socket(conn.sock, suppress_ragged_eofs=False)
    conn.expect('220 app implicit')
    assert app_env(conn) == {'SSL_PROTOCOL': 'TLSv1.2', 'SSL_CIPHER': tls.cipher()[0],
                             'SSL_PEER_CERT_HASH': certs['client_hash'],
                             'SSL_PEER_CERT_SUBJECT': CLIENT_SUBJECT}
    conn.send('QUIT')
    conn.expect('221 bye')
    assert ended(chain, conn) == 0


def test_implicit_silent_client_cut_at_deadline(variant, certs, chains):
    chains.append(chain := start(variant, certs, implicit=True, timeout=1))
    conn = chain.connect()
    conn.expect_eof()
    assert ended(chain, conn) == 111 << 8
    assert 'TLS handshake timed out' in chain.log()


def test_implicit_plaintext_client_refused(variant, certs, chains):
    """An SMTP client that speaks plaintext to port 465 gets nothing back."""
    chains.append(chain := start(variant, certs, implicit=True))
    conn = chain.connect()
    conn.send('EHLO client')
    conn.expect_eof()
    assert ended(chain, conn) == 111 << 8
    assert 'TLS handshake failed: ' in chain.log()


# ---- the data path ----

SIZE = 4 << 20


def blob_and_sink(conn):
    """SIZE bytes each way, compared byte for byte (down) and by SHA-256 (up)."""
    conn.send('BLOB %d' % SIZE)
    conn.expect('250 blob %d' % SIZE)
    want = random.Random(SIZE).randbytes(SIZE)
    deadline = time.monotonic() + 60
    while len(conn.buf) < SIZE:
        assert conn._fill(deadline), 'EOF after %d bytes' % len(conn.buf)
    got, conn.buf = conn.buf[:SIZE], conn.buf[SIZE:]
    assert got == want
    up = random.Random(1).randbytes(SIZE)
    conn.send('SINK %d' % SIZE)
    conn.sock.settimeout(60)
    conn.sock.sendall(up)
    conn.expect('250 sha256 ' + hashlib.sha256(up).hexdigest(), timeout=60)


def test_large_transfers_starttls(variant, certs, chains):
    chains.append(chain := start(variant, certs))
    conn = chain.connect()
    conn.expect('220 app ucspi-tls')
    starttls(conn, client_context(certs))
    blob_and_sink(conn)
    conn.send('QUIT')
    conn.expect('221 bye')
    assert ended(chain, conn) == 0


def test_large_transfers_implicit(variant, certs, chains):
    chains.append(chain := start(variant, certs, implicit=True))
    conn = chain.connect()
    conn.sock = client_context(certs).wrap_socket(conn.sock, server_hostname=SNI)
    conn.expect('220 app implicit')
    blob_and_sink(conn)
    conn.send('QUIT')
    conn.expect('221 bye')
    assert ended(chain, conn) == 0


class BioClient:
    """TLS over a plain socket through memory BIOs, so that the test decides
    when close_notify goes out and can tell it from a bare TCP EOF."""

    def __init__(self, sock, ctx):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=None)
        self.sock.settimeout(harness.READ_TIMEOUT)

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _feed(self):
        data = self.sock.recv(65536)
        if data:
            self.inc.write(data)
        else:
            self.inc.write_eof()

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                self._feed()

    def send(self, data):
        self.obj.write(data)
        self._flush()

    def recv(self):
        """Bytes; b'' at close_notify; SSLError at a TCP EOF without it."""
        while True:
            try:
                return self.obj.read(65536)
            except ssl.SSLZeroReturnError:
                return b''
            except ssl.SSLWantReadError:
                self._flush()
                self._feed()

    def close_notify(self):
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._flush()


def read_until(client, end):
    got = b''
    while not got.endswith(end):
        data = client.recv()
        assert data, 'close_notify after %r' % got
        got += data
    return got


def test_eof_from_client_reaches_app(variant, certs, chains):
    """The client sends data, close_notify and a TCP half-close: the app reads
    every byte, then EOF; its answer still reaches the client, followed by
    close_notify and the TCP EOF."""
    chains.append(chain := start(variant, certs))
    conn = chain.connect()
    conn.expect('220 app ucspi-tls')
    conn.send('STARTTLS')
    conn.expect('220 2.0.0 go ahead')
    client = BioClient(conn.sock, client_context(certs, verify=False))
    client.handshake()
    client.send(b'HALF\r\n')
    assert read_until(client, b'\r\n') == b'250 reading to EOF\r\n'
    client.send(b'x' * 100000)
    client.close_notify()
    conn.sock.shutdown(socket.SHUT_WR)
    assert read_until(client, b'\r\n') == b'250 saw EOF after 100000 bytes\r\n'
    assert client.recv() == b''              # close_notify
    assert conn.sock.recv(10) == b''         # then the TCP EOF
    assert ended(chain, conn) == 0


def test_eof_from_app_is_close_notify(variant, certs, chains):
    """The app ends (QUIT): the client gets the last reply, close_notify, then
    the TCP EOF, even while it keeps its own side open."""
    chains.append(chain := start(variant, certs))
    conn = chain.connect()
    conn.expect('220 app ucspi-tls')
    conn.send('STARTTLS')
    conn.expect('220 2.0.0 go ahead')
    client = BioClient(conn.sock, client_context(certs, verify=False))
    client.handshake()
    client.send(b'QUIT\r\n')
    assert read_until(client, b'\r\n') == b'221 bye\r\n'
    assert client.recv() == b''
    assert conn.sock.recv(10) == b''
    conn.sock.close()
    assert ended(chain, conn) == 0


# ---- the path without TLS, and what the app holds ----

def test_never_asks_plain_session(variant, certs, chains):
    """A client that never says STARTTLS: plain on fds 0/1 (the socket
    itself), the app's exit status passed on, nothing logged."""
    chains.append(chain := start(variant, certs))
    conn = chain.connect()
    conn.expect('220 app ucspi-tls')
    fds = app_fds(conn)
    env = app_env(conn)
    ctl, rd, wr = (int(env[n]) for n in UCSPI_ENV)
    # fds 0/1 are the connection itself, the rest are the three channels
    # and stderr: no certificate or key file, nothing else inherited
    assert sorted(fds) == sorted({0, 1, 2, ctl, rd, wr})
    assert fds[0].startswith('socket:') and fds[0] == fds[1]
    assert fds[ctl].startswith('socket:') and fds[ctl] != fds[0]
    assert fds[rd].startswith('pipe:') and fds[wr].startswith('pipe:')
    conn.send('QUIT')
    conn.expect('221 bye')
    conn.expect_eof()
    assert ended(chain, conn) == 0
    assert 'qmail-idcheck-tls' not in chain.log()


def test_app_declines_then_plain(variant, certs, chains):
    """The app closes SSLCTLFD without a command: the session goes on in
    plaintext on the socket, and ends with the app."""
    chains.append(chain := start(variant, certs))
    conn = chain.connect()
    conn.expect('220 app ucspi-tls')
    conn.send('NOTLS')
    conn.expect('250 declined')
    conn.send('EHLO client')
    conn.expect('250-app')
    conn.expect('250 HELP')
    conn.send('QUIT')
    conn.expect('221 bye')
    conn.expect_eof()
    assert ended(chain, conn) == 0
