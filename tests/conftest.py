"""pytest set-up for the suite: the harness is importable, and the run ends
with one plain line `N passed, N failed` (`, N skipped` when some were),
printed after pytest's own summary so scripts can read the last line."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_outcomes = {}      # nodeid -> 'passed' | 'failed' | 'skipped'
_collect_errors = 0


def pytest_runtest_logreport(report):
    previous = _outcomes.get(report.nodeid)
    if report.failed:
        _outcomes[report.nodeid] = 'failed'
    elif report.skipped and previous is None:
        # xfail counts as skipped too: it proved nothing either way
        _outcomes[report.nodeid] = 'skipped'
    elif report.passed and report.when == 'call' and previous is None:
        _outcomes[report.nodeid] = 'passed'


def pytest_collectreport(report):
    global _collect_errors
    if report.failed:
        _collect_errors += 1


def pytest_unconfigure(config):
    # Runs after the terminal reporter's summary; --help/--version end earlier.
    if not _outcomes and not _collect_errors:
        return
    values = list(_outcomes.values())
    passed = values.count('passed')
    failed = values.count('failed') + _collect_errors
    skipped = values.count('skipped')
    line = '%d passed, %d failed' % (passed, failed)
    if skipped:
        line += ', %d skipped' % skipped
    sys.stdout.write(line + '\n')
    sys.stdout.flush()
