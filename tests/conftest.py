"""pytest set-up for the suite: the harness is importable; tests run in the
'real' chain variant get the real qmail-smtpd (built here once, before the
first test) or are skipped, with one line saying why; and the run ends with
one plain line `N passed, N failed` (`, N skipped` when some were), printed
after pytest's own summary so scripts can read the last line."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import notqmail  # noqa: E402

_real_skipped = (0, '')      # how many real runs were skipped, and why


def _runs_real(item):
    """Is the test parametrised with the 'real' chain variant (alone, or in a
    tuple such as ('bare', 'real'))?"""
    params = getattr(getattr(item, 'callspec', None), 'params', {})
    return any(v == 'real' or (isinstance(v, tuple) and 'real' in v) for v in params.values())


@pytest.hookimpl(trylast=True)      # after -k/-m deselection: no build for nothing
def pytest_collection_modifyitems(session, config, items):
    global _real_skipped
    real = [item for item in items if _runs_real(item)]
    if not real:
        return
    reporter = config.pluginmanager.get_plugin('terminalreporter')
    try:
        path, why_not = notqmail.smtpd(reporter.write_line if reporter else None)
    except notqmail.Unusable:
        path = why_not = None       # each real run fails with the reason
    if reporter is not None:
        reporter.write_line(notqmail.status)
    if path is None and why_not:
        _real_skipped = (len(real), why_not)
        mark = pytest.mark.skip(reason='no real qmail-smtpd: ' + why_not)
        for item in real:
            item.add_marker(mark)

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
    if _real_skipped[0]:
        sys.stdout.write('%d real qmail-smtpd runs skipped: %s\n' % _real_skipped)
    line = '%d passed, %d failed' % (passed, failed)
    if skipped:
        line += ', %d skipped' % skipped
    sys.stdout.write(line + '\n')
    sys.stdout.flush()
