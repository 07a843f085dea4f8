"""Every libFuzzer harness in tests/fuzz/ (built by `make fuzz-build`, part
of `make check`) runs for a few seconds from its seed corpus: a harness that
no longer builds, or that finds a crash or a broken property at once, fails
here. `make fuzz` runs them for longer (FUZZ_SECONDS)."""
import glob
import os
import shutil
import subprocess
import tempfile

import pytest

import harness

FUZZ_DIR = os.path.join(harness.TESTS, 'fuzz')
BUILD = os.path.join(harness.TOP, 'build-fuzz')
HARNESSES = sorted(os.path.basename(p)[:-2] for p in glob.glob(os.path.join(FUZZ_DIR, 'fuzz_*.c')))
SECONDS = os.environ.get('FUZZ_CHECK_SECONDS', '3')


@pytest.mark.parametrize('name', HARNESSES)
def test_fuzz_harness(name):
    binary = os.path.join(BUILD, name)
    if not os.access(binary, os.X_OK):
        pytest.skip('%s not built (make fuzz-build needs clang)' % binary)
    seeds = os.path.join(FUZZ_DIR, 'corpus', name)
    assert os.listdir(seeds), 'no seed corpus for %s' % name
    tmp = os.path.join(harness.TESTS, 'tmp')
    os.makedirs(tmp, exist_ok=True)   # run alone, no earlier test made it
    work = tempfile.mkdtemp(prefix='fuzz-', dir=tmp)
    try:
        r = subprocess.run([binary, '-max_total_time=' + SECONDS, '-print_final_stats=1',
                            '-artifact_prefix=' + work + '/', work, seeds],
                           capture_output=True, timeout=120)
        out = r.stderr.decode('utf-8', 'replace')
        assert r.returncode == 0, out[-4000:]
        assert 'stat::number_of_executed_units' in out
    finally:
        shutil.rmtree(work, ignore_errors=True)
