"""make demo stays true: tests/demo starts the chain, and every command it
prints for the user does what the comment above it says."""
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile

import harness

DEMO = os.path.join(harness.TESTS, 'demo')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_demo_commands_work():
    os.makedirs(os.path.join(harness.TESTS, 'tmp'), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='demo-', dir=os.path.join(harness.TESTS, 'tmp'))
    env = dict(os.environ, DEMO_PORT=str(free_port()), DEMO_DIR=tmp)
    try:
        r = subprocess.run(['sh', DEMO, 'start'], env=env, capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        text = r.stdout.decode()
        assert '(policy: checkid;' in text
        commands = [line.strip() for line in text.splitlines()
                    if line.startswith('  swaks ') or line.startswith('  /usr/bin/python3 -c')]
        assert len(commands) == 5, text
        out = [subprocess.run(['sh', '-c', c], capture_output=True, timeout=60).stdout.decode('latin1')
               for c in commands]

        assert '<-  250-ID\n' in out[0] and '<-  250 Sender OK\n' in out[0]
        assert re.search(r'<-  250 ok \d+ qp \d+\n', out[0])
        assert out[1] == "(250, b'2.1.0 ID example.com accepted')\n{}\n"
        assert "<** 550 5.7.1 Sending MTA '127.0.0.1' not authorized by 'example.net'\n" in out[2]
        assert '<-  220 rblsmtpd.local\n' in out[3] and '<** 451 ' in out[3]
        assert " -> From: ceo@dmarc-reject.test\r\n" in out[4]
        assert "<** 550 5.7.1 Message from 'dmarc-reject.test' refused by its DMARC policy\n" \
            in out[4]

        msgs = []
        for path in sorted(glob.glob(os.path.join(tmp, 'queue', '*.msg'))):
            with open(path, 'rb') as f:
                msgs.append(f.read())
        assert len(msgs) == 2
        # swaks's message (From: a@example.com, p=reject, aligned by SPF);
        # smtplib's has no From. Folding undone (the wrapper folds).
        for msg, helo, results in zip(msgs, (b'example.com', b'mx.example.com'), (
                b'spf=pass smtp.helo=example.com; dkim=none; '
                b'dmarc=pass (p=reject dis=none) header.from=example.com',
                b'spf=none smtp.helo=mx.example.com; dkim=none; '
                b'dmarc=permerror reason="no From field"')):
            assert msg.replace(b'\n ', b' ').startswith(
                b'Authentication-Results: demo.example; spf=pass smtp.mailfrom=a@example.com; '
                + results + b'\nDKIM-Check: dkim=none\n'
                b'Authent: 127.0.0.1 example.com SPF1 PASS ratings=S1:A,M2:A,H1:B\n'
                b'Received: from unknown (HELO ' + helo + b') (127.0.0.1)  by demo.example '), msg
    finally:
        subprocess.run(['sh', DEMO, 'stop'], env=env, capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
