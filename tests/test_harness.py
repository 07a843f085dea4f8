"""The harness on its own, no processes. The dialogue parser
(harness.Dialogue): `include NAME` puts the lines of an included file in its
place, standin-only lines and message blocks in it hold as they would in
place, and a mistake names the file and line (files in tmp_path). The
sanitizer check: a report in a log fails the test.
"""
import pytest

import harness


@pytest.fixture
def write(tmp_path, monkeypatch):
    """write(name, text): a dialogue file in tmp_path, or with name
    'include/X' an include file (the parser looks there)."""
    (tmp_path / 'include').mkdir()
    monkeypatch.setattr(harness.Dialogue, 'INCLUDE_DIR', str(tmp_path / 'include'))

    def write(name, text):
        path = tmp_path / name
        path.write_text(text)
        return str(path)
    return write


def steps(d):
    return [(word, arg) for _, word, arg in d.steps]


def test_included_lines_stand_in_place(write):
    write('include/opening', '# a shared opening\n'
                             'expect 220 standin.example ESMTP\n'
                             'standin-only send AUTH PLAIN\n'
                             'standin-only expect 502 unimplemented (#5.5.1)\n'
                             'send HELO client.example\n'
                             'expect 250 standin.example\n')
    path = write('t.dlg', 'chain bare\n'
                          'include opening\n'
                          'send QUIT\n'
                          'expect 221 standin.example\n')
    d = harness.Dialogue(path, 'standin')
    assert d.chain == 'bare'
    assert steps(d) == [('expect', '220 standin.example ESMTP'),
                        ('send', 'AUTH PLAIN'), ('expect', '502 unimplemented (#5.5.1)'),
                        ('send', 'HELO client.example'), ('expect', '250 standin.example'),
                        ('send', 'QUIT'), ('expect', '221 standin.example')]
    assert [where for where, _, _ in d.steps] == [
        't.dlg:2 (include opening, line 2)', 't.dlg:2 (include opening, line 3)',
        't.dlg:2 (include opening, line 4)', 't.dlg:2 (include opening, line 5)',
        't.dlg:2 (include opening, line 6)', 't.dlg:3', 't.dlg:4']
    # the real qmail-smtpd: the included standin-only lines are left out
    assert steps(harness.Dialogue(path, 'real')) == [
        ('expect', '220 standin.example ESMTP'),
        ('send', 'HELO client.example'), ('expect', '250 standin.example'),
        ('send', 'QUIT'), ('expect', '221 standin.example')]


def test_included_set_up_message_block_and_whole_test_standin_only(write):
    write('include/parts', 'standin-only\n'
                           'env A=1\n'
                           'standin-only message\n'
                           'include not a directive here\n'
                           '.end\n'
                           'message\n'
                           'include me neither\n'
                           '.end\n')
    path = write('t.dlg', 'include parts\n'
                          'stored 1\n')
    d = harness.Dialogue(path, 'standin')
    assert d.standin_only and d.env == {'A': '1'}
    assert steps(d) == [('message', ['include not a directive here']),
                        ('message', ['include me neither']), ('stored', '1')]
    assert steps(harness.Dialogue(path, 'real')) == [('message', ['include me neither']),
                                                     ('stored', '1')]


def test_included_set_up_after_a_step_is_refused(write):
    write('include/late', 'env A=1\n')
    path = write('t.dlg', 'send NOOP\ninclude late\n')
    with pytest.raises(harness.HarnessError,
                       match=r'^t\.dlg:2 \(include late, line 1\): env must come before'):
        harness.Dialogue(path)


@pytest.mark.parametrize('lines,error', [
    ('include\n', r'^t\.dlg:1: include NAME: no file dialogues/include/$'),
    ('include nothere\n', r'^t\.dlg:1: include NAME: no file dialogues/include/nothere$'),
    ('include ../t.dlg\n', r'^t\.dlg:1: include NAME: no file dialogues/include/\.\./t\.dlg$'),
    ('include inner\n', r'^t\.dlg:1 \(include inner, line 1\): an included file cannot include$'),
    ('standin-only include inner\n', r'^t\.dlg:1: standin-only cannot prefix include$'),
    ('repeat 2 include inner\n', r'^t\.dlg:1: repeat N send\|sendraw\|expect'),
    ('include bad\n', r"^t\.dlg:1 \(include bad, line 2\): unknown directive 'nonsense'$"),
])
def test_include_mistakes_name_the_line(write, lines, error):
    write('include/inner', 'include other\n')
    write('include/other', 'send NOOP\n')
    write('include/bad', 'send NOOP\nnonsense\n')
    path = write('t.dlg', lines)
    with pytest.raises(harness.HarnessError, match=error):
        harness.Dialogue(path)


@pytest.mark.parametrize('log', [
    'x\n==1==ERROR: AddressSanitizer: heap-use-after-free\n',
    b'==1==ERROR: LeakSanitizer: detected memory leaks\n',
    b'\xff lib/x.c:3:5: runtime error: signed integer overflow\n',
])
def test_a_sanitizer_report_fails_the_test(log):
    with pytest.raises(harness.HarnessError, match='^sanitizer report'):
        harness.no_sanitizer_report(log)


def test_a_clean_log_passes():
    harness.no_sanitizer_report('qmail-idcheck: pid 1 127.0.0.1 - - - mail ACCEPT\n')
    harness.no_sanitizer_report(b'')


def test_connect_takes_a_127_address(write):
    path = write('t.dlg', 'connect\nconnect 127.0.0.2\n')
    assert steps(harness.Dialogue(path)) == [('connect', ''), ('connect', '127.0.0.2')]
    path = write('t.dlg', 'connect 192.0.2.1\n')
    with pytest.raises(harness.HarnessError, match=r'^t\.dlg:1: connect \[127\.x\.y\.z\]$'):
        harness.Dialogue(path)


def test_dns_is_wanted_only_where_named(write):
    assert not harness.Dialogue(write('t.dlg', 'env A={tests}\nsend NOOP\n')).wants_dns()
    assert harness.Dialogue(write('t.dlg', 'env DNSCACHEIP={dns}\n')).wants_dns()
    assert harness.Dialogue(write('t.dlg', 'prefix build/rblsmtpd-plus -s {dns}\n')).wants_dns()
    with pytest.raises(harness.HarnessError, match=r'^t\.dlg names \{dns\}: run it with the DNS'):
        harness.run_dialogue(write('t.dlg', 'env DNSCACHEIP={dns}\n'))
