"""Runs every dialogue file in tests/dialogues/ as one test per variant.

A dialogue file is an SMTP conversation with a fresh chain, one directive per
line (the full syntax is in tests/README):

    # comment                     chain bare|idcheck      policy NAME
    env NAME=value                server-env NAME=value   control FILE text
    no-control FILE               prefix WORD...          standin-only [DIRECTIVE]
    connect [127.x.y.z]   send TEXT   sendraw "bytes\\r\\n"   expect TEXT
    expect-eof  close  sleep SECS  kill-backend  repeat N send|sendraw|expect ...
    stored N  message ... .end  messageraw "bytes"  envelope F..\\0T..\\0\\0
    log TEXT  no-log TEXT                       ({*}: any run without CR/LF)
    include NAME        the lines of tests/dialogues/include/NAME, in place

Most dialogues open with `include helo` (the greeting, HELO client.example,
its reply) or `include ehlo-id` (the same with EHLO and the proxy's 250-ID);
the rest of each file is written out, so it reads on its own.

Variants: 'plain' (build/) and 'asan' (build-asan/, left out when
IDCHECK_NO_ASAN is set or build-asan/ is missing) against the qmail-smtpd
stand-in, and 'real': build/ against a real notqmail qmail-smtpd (see
tests/notqmail.py; skipped when there is none), where files and lines marked
standin-only are left out (included lines too).

Run:  /usr/bin/python3 -m pytest -p no:cacheprovider -q tests/test_dialogues.py
      ... -k bare-data          one file
      IDCHECK_KEEP=1 ...        keep the temporary directories (tests/tmp/)
Set-up values may use {top}, {tests} and {build} (absolute paths), and {dns}:
the address of tinydns serving tests/dns/data (tests/dnsfixture.py), e.g.
    env DNSCACHEIP={dns}
"""
import glob
import os

import pytest

import harness
from dnsfixture import dns  # noqa: F401  (the DNS fixture, for {dns})

DIALOGUES = sorted(glob.glob(os.path.join(harness.TESTS, 'dialogues', '*.dlg')))


@pytest.mark.parametrize('variant', harness.chain_variants())
@pytest.mark.parametrize('path', DIALOGUES, ids=lambda p: os.path.basename(p)[:-4])
def test_dialogue(path, variant, request):
    error = None
    try:
        smtpd = harness.smtpd_kind(variant)
        d = harness.Dialogue(path, smtpd)
        if d.standin_only and smtpd != 'standin':
            pytest.skip('standin-only: needs what only the stand-in has')
        # the DNS fixture (tinydns) is started only for a dialogue that uses it
        dns_ip = request.getfixturevalue('dns').ip if d.wants_dns() else None
        harness.run_dialogue(path, variant, dns_ip)
    except harness.HarnessError as e:
        error = str(e)
    if error is not None:       # outside the except: no chained traceback
        pytest.fail(error, pytrace=False)
