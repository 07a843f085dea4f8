"""qmail-idcheck-queue run by itself, with this test in qmail-idcheck's
place on the verdict channel (a SOCK_SEQPACKET socketpair, as the proxy
makes it) and the queue stand-in as the real queue: what the wrapper does
with a channel it cannot use, and with a message longer than its spool."""
import os
import socket
import subprocess
import tempfile
import threading
import time

import pytest

import harness

WRAPPERS = harness.variant_binaries('qmail-idcheck-queue')
ENVELOPE = b'Fsender@example.com\0Tone@example.org\0\0'
RECEIVED = b'Received: from unknown (HELO client.example) (127.0.0.1)\n  by standin.example with SMTP; DATE\n'


def ns(b):
    return b'%d:%s,' % (len(b), b)


def accept_frame():
    """A reply frame (lib/policy_wire.h): ACCEPT, no reply, one header."""
    header = ns(ns(b'Authent:') + ns(b'wrapper test'))
    return ns(ns(b'checkID1') + ns(b'ACCEPT') + ns(b'') + ns(b'') + ns(b'') + ns(header))


def answer_one(sock):
    """Plays qmail-idcheck: answers the first question with the verdict."""
    try:
        sock.settimeout(10)
        question = sock.recv(256)
        # "3:ask,N:pid," -> "N:pid," + frame
        pid = question[len(b'3:ask,'):]
        sock.send(pid + ns(accept_frame()))
    except OSError:
        pass


def run_wrapper(wrapper, message, env, pass_fds=()):
    queue = tempfile.mkdtemp(prefix='queue-', dir=os.path.join(harness.TESTS, 'tmp'))
    standin = os.path.join(os.path.dirname(wrapper), 'qmail-queue-standin')
    full = dict(os.environ, IDCHECK_QUEUE=standin, STANDIN_QUEUE=queue, **harness.SANITIZER_ENV)
    full.pop('IDCHECK_CHANNEL', None)
    full.update(env)
    with tempfile.TemporaryFile() as inp:
        inp.write(message)
        inp.seek(0)
        # fd 1 is the envelope pipe qmail-smtpd writes after fd 0's EOF
        r, w = os.pipe()
        os.write(w, ENVELOPE)
        os.close(w)
        proc = subprocess.Popen([wrapper], stdin=inp, stdout=r, stderr=subprocess.PIPE,
                                env=full, pass_fds=pass_fds)
        os.close(r)
        _, err = proc.communicate(timeout=60)
    stored = sorted(n for n in os.listdir(queue) if n.endswith('.msg'))
    msgs = []
    for n in stored:
        with open(os.path.join(queue, n), 'rb') as f:
            msgs.append(f.read())
    for n in os.listdir(queue):
        os.unlink(os.path.join(queue, n))
    os.rmdir(queue)
    harness.no_sanitizer_report(err)
    return proc.returncode, msgs, err


@pytest.mark.parametrize('wrapper', WRAPPERS)
@pytest.mark.parametrize('channel', ['', '99', 'abc', '2', 'not-a-socket'])
def test_unusable_channel_is_a_temporary_failure(wrapper, channel):
    """IDCHECK_CHANNEL set but not the proxy's socket: exit 71, nothing
    queued, never the message passed on without its verdict."""
    with tempfile.TemporaryFile() as f:
        pass_fds = ()
        if channel == 'not-a-socket':
            # an open descriptor, but not the proxy's SEQPACKET socket
            pass_fds, channel = (f.fileno(),), str(f.fileno())
        code, msgs, err = run_wrapper(wrapper, RECEIVED + b'Subject: x\n\nbody\n',
                                      {'IDCHECK_CHANNEL': channel}, pass_fds)
    assert code == 71, err
    assert msgs == []
    assert b'the verdict channel is unusable, refusing for now' in err


@pytest.mark.parametrize('wrapper', WRAPPERS)
def test_unusable_channel_reads_the_message_first(wrapper):
    """qmail-smtpd writes the whole message before the envelope, both to
    pipes: with an unusable channel the wrapper reads the message to its
    end and answers 71 at once, not after waiting its 120 s for an
    envelope that cannot come while qmail-smtpd is stuck on a full pipe."""
    full = dict(os.environ, IDCHECK_CHANNEL='99', **harness.SANITIZER_ENV)
    msg_r, msg_w = os.pipe()
    env_r, env_w = os.pipe()
    proc = subprocess.Popen([wrapper], stdin=msg_r, stdout=env_r, stderr=subprocess.PIPE,
                            env=full)
    os.close(msg_r)
    os.close(env_r)
    started = time.monotonic()

    def smtpd():
        try:
            os.write(msg_w, RECEIVED + b'Subject: x\n\n' + b'y' * 300000 + b'\n')
            os.close(msg_w)
            os.write(env_w, ENVELOPE)
        except OSError:
            pass
        finally:
            os.close(env_w)
    writer = threading.Thread(target=smtpd)
    writer.start()
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()             # no wrapper left waiting its 120 s
            proc.wait()
        writer.join(30)
    assert proc.returncode == 71, err
    assert time.monotonic() - started < 10
    assert b'the verdict channel is unusable, refusing for now' in err
    harness.no_sanitizer_report(err)


@pytest.mark.parametrize('wrapper', WRAPPERS)
@pytest.mark.parametrize('size,code', [(100, 0), (2000, 31)])
def test_spool_limit(wrapper, size, code):
    """A message longer than IDCHECK_DATABYTES plus the Received line's room
    is read to its end and refused (31), never held whole; within it, it
    is queued with the verdict's header."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    answering = threading.Thread(target=answer_one, args=(mine,))
    answering.start()
    # the limit the wrapper keeps is IDCHECK_DATABYTES + 65536
    body = RECEIVED + b'Subject: x\n\n' + b'y' * (size - 1 if size < 1000 else 70000) + b'\n'
    try:
        code_got, msgs, err = run_wrapper(wrapper, body, {'IDCHECK_CHANNEL': str(theirs.fileno()),
                                                          'IDCHECK_DATABYTES': '1000'},
                                          (theirs.fileno(),))
    finally:
        theirs.close()
        answering.join(15)
        mine.close()
    assert code_got == code, err
    if code == 0:
        assert msgs == [b'Authent: wrapper test\n' + body]
    else:
        assert msgs == []
        assert b'message too big' in err
