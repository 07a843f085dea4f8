"""DNS for the test suite: Debian's tinydns on a loopback address, serving
the zone data in tests/dns/data and tests/dns/*.data, dnscache resolving
through it, plus two misbehaving servers.

Each server listens on port 53 of its own address in one loopback /24
(127.53.0.0/24 unless taken; see DnsFixture.start):

    .1  tinydns, tests/dns/data + tests/dns/*.data    fixture.ip
    .2  a black hole: reads queries, never answers    fixture.blackhole_ip
    .3  a forwarder to .1 that answers names under
        slow.test after SLOW_MS milliseconds          fixture.slow_ip
    .4  dnscache, asking .1 for every zone in the
        data: a recursive resolver's answers (a
        CNAME chain followed within one answer)       fixture.cache_ip
    .5+ more forwarders with their own delays         fixture.forwarder(...)
    .250 down: PacketServer, a thread in the test, for answers tinydns
        cannot send (malformed ones)

Programs find a server through DNSCACHEIP (djbdns, libowfat), so a test
picks its server with env={'DNSCACHEIP': fixture.ip}.

From Python:

    from dnsfixture import DnsFixture, dns    # dns: session-scoped fixture
    f = DnsFixture(); f.start()
    try: ... f.query('2.2.0.192.bl.test', 'A') ...
    finally: f.stop()

From a shell (make demo): the servers outlive the command, their pids and
logs are kept in DIR, and `start` prints sh assignments:

    eval "$(/usr/bin/python3 tests/dnsfixture.py start /tmp/dns)"
    DNSCACHEIP=$DNS_IP some-program ...
    /usr/bin/python3 tests/dnsfixture.py stop /tmp/dns

tinydns and dnscache need root to bind port 53 and to chroot; they run as
nobody.
"""
import json
import os
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, 'dns', 'data')
TINYDNS = '/usr/sbin/tinydns'
TINYDNS_DATA = '/usr/sbin/tinydns-data'
DNSCACHE = '/usr/sbin/dnscache'
PYTHON = '/usr/bin/python3'

DEFAULT_NET = '127.53.0'      # override with IDCHECK_DNS_NET=127.53.7
SLOW_SUFFIX = 'slow.test'
SLOW_MS = 300                 # the delay of fixture.slow_ip for SLOW_SUFFIX
START_TIMEOUT = 5.0           # seconds for a server to come up

QTYPES = {'A': 1, 'NS': 2, 'CNAME': 5, 'SOA': 6, 'PTR': 12, 'MX': 15,
          'TXT': 16, 'AAAA': 28}


class FixtureError(RuntimeError):
    pass


def data_files(data=DATA):
    """The zone data tinydns serves: data, then every *.data file beside it
    (sorted), compiled together."""
    here = os.path.dirname(os.path.abspath(data))
    return [data] + sorted(os.path.join(here, n) for n in os.listdir(here)
                           if n.endswith('.data') and os.path.join(here, n) != data)


# ---------------------------------------------------------------- packets

def encode_name(name):
    out = b''
    for label in name.rstrip('.').split('.'):
        if label:
            raw = label.encode('ascii')
            out += bytes([len(raw)]) + raw
    return out + b'\0'


def build_query(name, qtype='A', qid=None, rd=True):
    if qid is None:
        qid = random.randrange(65536)
    flags = 0x0100 if rd else 0
    return (struct.pack('>HHHHHH', qid, flags, 1, 0, 0, 0)
            + encode_name(name) + struct.pack('>HH', QTYPES[qtype], 1))


def _read_name(pkt, pos, depth=0):
    """(name, position after the name); follows compression pointers."""
    labels = []
    while True:
        if pos >= len(pkt) or depth > 20:
            raise ValueError('bad name')
        n = pkt[pos]
        if n & 0xc0 == 0xc0:
            ptr = ((n & 0x3f) << 8) | pkt[pos + 1]
            rest, _ = _read_name(pkt, ptr, depth + 1)
            if rest:
                labels.append(rest)
            return '.'.join(labels), pos + 2
        pos += 1
        if n == 0:
            return '.'.join(labels), pos
        labels.append(pkt[pos:pos + n].decode('ascii', 'replace'))
        pos += n


def question_name(pkt):
    """The (lower-cased) name asked in a query packet, or None."""
    try:
        return _read_name(pkt, 12)[0].lower()
    except (ValueError, IndexError):
        return None


def question_type(pkt):
    """The type asked in a query packet ('A', 'TXT', ...), or None."""
    try:
        _, pos = _read_name(pkt, 12)
        code = struct.unpack('>H', pkt[pos:pos + 2])[0]
    except (ValueError, IndexError, struct.error):
        return None
    return {v: k for k, v in QTYPES.items()}.get(code)


def parse_response(pkt):
    """{'id', 'rcode', 'answers': [(name, type, value)]}: A as dotted quad,
    TXT as the joined bytes of its strings, other types as raw bytes."""
    qid, flags, qd, an, _, _ = struct.unpack('>HHHHHH', pkt[:12])
    pos = 12
    for _ in range(qd):
        _, pos = _read_name(pkt, pos)
        pos += 4
    answers = []
    for _ in range(an):
        name, pos = _read_name(pkt, pos)
        rtype, _, _, rdlen = struct.unpack('>HHIH', pkt[pos:pos + 10])
        pos += 10
        rdata = pkt[pos:pos + rdlen]
        pos += rdlen
        if rtype == 1:
            value = socket.inet_ntoa(rdata)
        elif rtype == 16:
            parts, i = [], 0
            while i < len(rdata):
                parts.append(rdata[i + 1:i + 1 + rdata[i]])
                i += 1 + rdata[i]
            value = b''.join(parts)
        else:
            value = rdata
        answers.append((name.lower(), rtype, value))
    return {'id': qid, 'rcode': flags & 15, 'answers': answers}


def query(server, name, qtype='A', timeout=2.0):
    """One UDP query to server:53; the parsed response, or None on timeout."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        qid = random.randrange(65536)
        s.sendto(build_query(name, qtype, qid), (server, 53))
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            s.settimeout(left)
            try:
                pkt, _ = s.recvfrom(4096)
            except socket.timeout:
                return None
            resp = parse_response(pkt)
            if resp['id'] == qid:
                return resp
    finally:
        s.close()


def reply(query_pkt, records=(), rcode=0, count=None):
    """A response to query_pkt (its id and question copied) whose answer
    section is the records as given (bytes, see record()); count, when set,
    is the answer count the header claims."""
    qid = struct.unpack('>H', query_pkt[:2])[0]
    end = 12
    while query_pkt[end]:
        end += 1 + query_pkt[end]
    question = query_pkt[12:end + 5]
    return (struct.pack('>HHHHHH', qid, 0x8180 | rcode, 1,
                        len(records) if count is None else count, 0, 0)
            + question + b''.join(records))


def record(qtype, rdata, rdlength=None, ttl=60):
    """One answer record for the question's name (a pointer to offset 12);
    rdlength, when set, is the RDLENGTH claimed instead of len(rdata)."""
    code = QTYPES.get(qtype, qtype)
    return (struct.pack('>HHHIH', 0xc00c, code, 1, ttl,
                        len(rdata) if rdlength is None else rdlength) + rdata)


class PacketServer:
    """A DNS peer that tinydns cannot be: it answers each UDP query to port
    53 of a free address in the fixture's /24 with respond(packet) (bytes,
    or None to stay silent), from a thread. For malformed and failure
    answers only; every real answer comes from tinydns.

        with PacketServer(dns, lambda q: reply(q, rcode=2)) as srv:
            ... DNSCACHEIP=srv.ip ..."""

    def __init__(self, fixture, respond):
        import threading
        self.respond = respond
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for host in range(250, 200, -1):
            try:
                self.sock.bind(('%s.%d' % (fixture.net, host), 53))
                self.ip = '%s.%d' % (fixture.net, host)
                break
            except OSError:
                continue
        else:
            self.sock.close()
            raise FixtureError('no free address in %s.0/24 for a packet server' % fixture.net)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                pkt, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            out = self.respond(pkt)
            if out is not None:
                self.sock.sendto(out, peer)

    def close(self):
        self.stopping = True
        self.thread.join(2)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ---------------------------------------------------------------- servers
# These run as child processes (`dnsfixture.py serve-...`), so that the
# shell API can leave them running after the command returns.

def serve_blackhole(ip):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, 53))
    print('ready', flush=True)
    while True:
        s.recvfrom(4096)   # and drop it


def parse_rules(text):
    """'slow.test=300,*=20' -> ([('slow.test', 300)], 20): delays in ms by
    name suffix, first match wins; '*' is the delay of every other name."""
    rules, default = [], 0
    for item in filter(None, text.split(',')):
        suffix, _, ms = item.partition('=')
        if suffix == '*':
            default = int(ms)
        else:
            rules.append((suffix.lower().strip('.'), int(ms)))
    return rules, default


def delay_for(name, rules, default):
    if name is not None:
        for suffix, ms in rules:
            if name == suffix or name.endswith('.' + suffix):
                return ms
    return default


def serve_forward(ip, upstream, rules_text):
    """Forward each query to upstream:53 after its delay; relay the answer."""
    rules, default = parse_rules(rules_text)
    listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listen.bind((ip, 53))
    print('ready', flush=True)
    scheduled = []   # (due, packet, client)
    waiting = {}     # upstream socket -> (client, give-up time)
    while True:
        now = time.monotonic()
        for item in [x for x in scheduled if x[0] <= now]:
            scheduled.remove(item)
            up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            up.connect((upstream, 53))
            up.send(item[1])
            waiting[up] = (item[2], now + 5)
        for up in [u for u, (_, end) in waiting.items() if end <= now]:
            up.close()
            del waiting[up]
        timeout = 1.0
        if scheduled:
            timeout = max(0.0, min(x[0] for x in scheduled) - now)
        ready, _, _ = select.select([listen] + list(waiting), [], [], timeout)
        for s in ready:
            if s is listen:
                pkt, client = listen.recvfrom(4096)
                ms = delay_for(question_name(pkt), rules, default)
                scheduled.append((time.monotonic() + ms / 1000.0, pkt, client))
            else:
                try:
                    listen.sendto(s.recv(4096), waiting[s][0])
                except OSError:
                    pass
                s.close()
                del waiting[s]


# ---------------------------------------------------------------- fixture

def _free(ip):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((ip, 53))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _nobody():
    try:
        import pwd
        p = pwd.getpwnam('nobody')
        return p.pw_uid, p.pw_gid
    except KeyError:
        return 0, 0


class DnsFixture:
    """tinydns + black hole + slow forwarder on one loopback /24."""

    def __init__(self, workdir=None, net=None, slow_ms=SLOW_MS, data=DATA):
        self.workdir = workdir
        self._own_workdir = workdir is None
        self.net = net or os.environ.get('IDCHECK_DNS_NET')
        self.slow_ms = slow_ms
        self.data = data
        self.procs = {}       # name -> Popen (or pid, when loaded from DIR)
        self.ip = self.blackhole_ip = self.slow_ip = self.cache_ip = None
        self._next_host = 5
        self.nonce = None

    # -- addresses
    def _pick_net(self):
        candidates = [self.net] if self.net else (
            [DEFAULT_NET] + ['127.53.%d' % n for n in random.sample(range(1, 255), 40)])
        for net in candidates:
            if all(_free('%s.%d' % (net, h)) for h in (1, 2, 3, 4, 5)):
                return net
        raise FixtureError('no free loopback /24 for the DNS fixture (tried %s...)'
                           % candidates[0])

    # -- start / stop
    def start(self):
        if os.geteuid() != 0:
            raise FixtureError('the DNS fixture needs root (port 53, tinydns chroot)')
        for tool, package in ((TINYDNS, 'tinydns'), (TINYDNS_DATA, 'tinydns'),
                              (DNSCACHE, 'dnscache')):
            if not os.access(tool, os.X_OK):
                raise FixtureError('%s is missing: apt-get install %s' % (tool, package))
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix='dnsfixture.')
        os.makedirs(self.workdir, exist_ok=True)
        try:
            self.net = self._pick_net()
            self.ip = self.net + '.1'
            self.blackhole_ip = self.net + '.2'
            self.slow_ip = self.net + '.3'
            self.cache_ip = self.net + '.4'
            self._start_tinydns()
            self._start_dnscache()
            self._spawn('blackhole', ['serve-blackhole', self.blackhole_ip])
            self.forwarder('%s=%d' % (SLOW_SUFFIX, self.slow_ms), ip=self.slow_ip,
                           name='slow')
            self.save()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_tinydns(self):
        root = os.path.join(self.workdir, 'root')
        os.makedirs(root, exist_ok=True)
        self.nonce = '%016x' % random.getrandbits(64)
        text = ''
        for path in data_files(self.data):
            with open(path) as f:
                text += f.read().rstrip('\n') + '\n'
        self.zones = sorted({line[1:].split(':')[0].lower().rstrip('.')
                             for line in text.split('\n') if line[:1] in ('.', 'Z')}
                            | {'fixture.test'})
        with open(os.path.join(root, 'data'), 'w') as f:
            f.write(text)
            f.write("\n# added by dnsfixture.py: proves the server is ours\n")
            f.write(".fixture.test::ns.fixture.test\n'nonce.fixture.test:%s\n" % self.nonce)
        r = subprocess.run([TINYDNS_DATA], cwd=root, capture_output=True, text=True)
        if r.returncode != 0:
            raise FixtureError('tinydns-data failed: %s%s' % (r.stdout, r.stderr))
        uid, gid = _nobody()
        env = {'ROOT': root, 'IP': self.ip, 'UID': str(uid), 'GID': str(gid),
               'PATH': '/usr/sbin:/usr/bin:/sbin:/bin'}
        log = open(os.path.join(self.workdir, 'tinydns.log'), 'ab')
        self.procs['tinydns'] = subprocess.Popen(
            [TINYDNS], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
        log.close()
        self._wait_answering('tinydns', self.ip)

    def _start_dnscache(self):
        """dnscache with tinydns as the server of each zone in the data (its
        servers/ directory), answering clients on 127/8."""
        root = os.path.join(self.workdir, 'cache')
        for sub in ('servers', 'ip'):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        for zone in self.zones + ['@']:
            with open(os.path.join(root, 'servers', zone), 'w') as f:
                f.write(self.ip + '\n')
        open(os.path.join(root, 'ip', '127'), 'w').close()
        uid, gid = _nobody()
        env = {'ROOT': root, 'IP': self.cache_ip, 'IPSEND': self.cache_ip,
               'CACHESIZE': '1000000', 'UID': str(uid), 'GID': str(gid),
               'PATH': '/usr/sbin:/usr/bin:/sbin:/bin'}
        log = open(os.path.join(self.workdir, 'dnscache.log'), 'ab')
        self.procs['dnscache'] = p = subprocess.Popen(
            [DNSCACHE], env=env, stdin=subprocess.PIPE, stdout=log, stderr=log,
            start_new_session=True)
        log.close()
        p.stdin.write(os.urandom(128))     # its seed for query ids and ports
        p.stdin.close()
        self._wait_answering('dnscache', self.cache_ip)

    def _wait_answering(self, name, ip):
        """Until the server NAME started on IP answers the nonce record of
        this run's data; FixtureError if it dies or START_TIMEOUT passes."""
        end = time.monotonic() + START_TIMEOUT
        while time.monotonic() < end:
            if self.procs[name].poll() is not None:
                break
            resp = query(ip, 'nonce.fixture.test', 'TXT', timeout=0.2)
            if resp and resp['answers'] and resp['answers'][0][2] == self.nonce.encode():
                return
        raise FixtureError('%s on %s did not come up; see %s/%s.log'
                           % (name, ip, self.workdir, name))

    def _spawn(self, name, args):
        log = open(os.path.join(self.workdir, name + '.log'), 'ab')
        p = subprocess.Popen([PYTHON, os.path.abspath(__file__)] + args,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=log, start_new_session=True)
        log.close()
        self.procs[name] = p
        ready, _, _ = select.select([p.stdout], [], [], START_TIMEOUT)
        line = p.stdout.readline() if ready else b''
        p.stdout.close()
        if line.strip() != b'ready':
            raise FixtureError('%s did not start; see %s/%s.log' % (name, self.workdir, name))

    def forwarder(self, rules, ip=None, name=None):
        """Start a forwarder to tinydns with delays 'suffix=ms,...,*=ms' (see
        parse_rules) on the next free address of the /24; returns its IP."""
        parse_rules(rules)   # fail here, not in the child
        if ip is None:
            while True:
                ip = '%s.%d' % (self.net, self._next_host)
                self._next_host += 1
                if self._next_host > 254:
                    raise FixtureError('no address left for a forwarder')
                if _free(ip):
                    break
        self._spawn(name or 'forward-' + ip, ['serve-forward', ip, self.ip, rules])
        return ip

    def env(self, server=None):
        return {'DNSCACHEIP': server or self.ip}

    def query(self, name, qtype='A', server=None, timeout=2.0):
        return query(server or self.ip, name, qtype, timeout)

    def stop(self):
        for name, p in list(self.procs.items()):
            pid = p if isinstance(p, int) else p.pid
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not isinstance(p, int):
                try:
                    p.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            else:
                for _ in range(300):
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        break
                    time.sleep(0.01)
            del self.procs[name]
        if self._own_workdir and self.workdir and os.path.isdir(self.workdir):
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the shell API keeps the state in DIR/fixture.json
    def save(self):
        state = {'net': self.net, 'ip': self.ip, 'blackhole_ip': self.blackhole_ip,
                 'slow_ip': self.slow_ip, 'cache_ip': self.cache_ip, 'slow_ms': self.slow_ms,
                 'pids': {n: (p if isinstance(p, int) else p.pid)
                          for n, p in self.procs.items()}}
        with open(os.path.join(self.workdir, 'fixture.json'), 'w') as f:
            json.dump(state, f)

    @classmethod
    def load(cls, workdir):
        with open(os.path.join(workdir, 'fixture.json')) as f:
            state = json.load(f)
        f = cls(workdir=workdir, net=state['net'], slow_ms=state['slow_ms'])
        f.ip, f.blackhole_ip, f.slow_ip = state['ip'], state['blackhole_ip'], state['slow_ip']
        f.cache_ip = state.get('cache_ip')
        f.procs = dict(state['pids'])
        return f

    def shell(self):
        return ('DNS_IP=%s\nDNS_BLACKHOLE_IP=%s\nDNS_SLOW_IP=%s\nDNS_CACHE_IP=%s\n'
                'DNS_SLOW_MS=%d\n'
                % (self.ip, self.blackhole_ip, self.slow_ip, self.cache_ip, self.slow_ms))


# ---------------------------------------------------------------- pytest

try:
    import pytest

    @pytest.fixture(scope='session')
    def dns():
        """The running DnsFixture, shared by the whole session."""
        f = DnsFixture()
        try:
            f.start()
        except FixtureError as e:
            pytest.fail(str(e))
        yield f
        f.stop()
except ImportError:   # the shell API works without pytest
    pass


# ---------------------------------------------------------------- command line

USAGE = '''usage: dnsfixture.py start DIR | stop DIR | query NAME [TYPE [SERVER]]
       dnsfixture.py serve-blackhole IP | serve-forward IP UPSTREAM RULES'''


def main(argv):
    if len(argv) == 2 and argv[0] == 'start':
        f = DnsFixture(workdir=argv[1])
        f.start()
        sys.stdout.write(f.shell())
        return 0
    if len(argv) == 2 and argv[0] == 'stop':
        if not os.path.exists(os.path.join(argv[1], 'fixture.json')):
            return 0
        DnsFixture.load(argv[1]).stop()
        os.unlink(os.path.join(argv[1], 'fixture.json'))
        return 0
    if argv and argv[0] == 'query' and 2 <= len(argv) <= 4:
        server = argv[3] if len(argv) > 3 else os.environ.get('DNSCACHEIP', DEFAULT_NET + '.1')
        print(query(server, argv[1], argv[2] if len(argv) > 2 else 'A'))
        return 0
    if len(argv) == 2 and argv[0] == 'serve-blackhole':
        serve_blackhole(argv[1])
    if len(argv) == 4 and argv[0] == 'serve-forward':
        serve_forward(argv[1], argv[2], argv[3])
    sys.stderr.write(USAGE + '\n')
    return 100


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.exit(main(sys.argv[1:]))
