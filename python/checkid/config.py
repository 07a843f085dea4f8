"""The reference policy's configuration: the one place an administrator edits.

Every setting below has a default here and can be overridden per client by
an environment variable (set in the tcprules file that tcpserver reads, so
a partner network can get other rules than the rest of the world):

  setting          variable                 default
  SERVICES         CHECKID_SERVICES         ''     no rating services (see below)
  ACCEPT_AT        CHECKID_ACCEPT_AT        6      weighted grade >= this: ACCEPT
  FILTER_AT        CHECKID_FILTER_AT        3      >= this: FILTER, below: REJECT
  UNRATED          CHECKID_UNRATED          ACCEPT no service rates the identity
  SPF_ACTIONS      CHECKID_SPF_<RESULT>     see below, e.g. CHECKID_SPF_SOFTFAIL=REJECT
  PRESCREEN_ZONE   CHECKID_PRESCREEN_ZONE   ''     the DNSBL of the pre-screen ('' = off)
  PRESCREEN_CODES  CHECKID_PRESCREEN_CODES  127.0.0.0/8   answers that count as listed
  DKIM             CHECKID_DKIM             1      verify DKIM signatures at end of data
  DMARC            CHECKID_DMARC            1      evaluate DMARC at end of data
  DMARC_ACTIONS    CHECKID_DMARC_REJECT     REJECT what a failing message of a p=reject
                   CHECKID_DMARC_QUARANTINE FILTER domain gets, and of p=quarantine
  DEFER            CHECKID_DEFER            auto   when ACCEPT and FILTER wait for the
                                                   data (CONTINUE): see below
  AUTHSERV_ID      CHECKID_AUTHSERV_ID      ''     Authentication-Results' authserv-id;
                                                   '': control/me, else TCPLOCALHOST
  QMAIL_HOME       CHECKID_QMAIL_HOME       /var/qmail    where control/me is
  PSL_FILE         CHECKID_PSL_FILE         /usr/share/publicsuffix/public_suffix_list.dat
  DNS_TIMEOUT      CHECKID_DNS_TIMEOUT      5      seconds per DNS lookup
  SPF_TIMEOUT      CHECKID_SPF_TIMEOUT      15     seconds for all of SPF's lookups

Shared state, greylisting and rate limits (state.py, greylist.py,
ratelimit.py; all off by default; see checkid(7)):

  STATE            CHECKID_STATE            sqlite:/var/lib/qmail-idcheck/checkid.sqlite
                                                   or redis://HOST[:PORT][/DB]
  STATE_TIMEOUT    CHECKID_STATE_TIMEOUT    1      seconds for the store's work in one call
  STATE_ONERROR    CHECKID_STATE_ONERROR    skip   the store down or slow: skip the
                                                   checks, or tempfail (451 4.3.0)
  STATE_RETRY      CHECKID_STATE_RETRY      5      seconds a process leaves a failed
                                                   store alone before it asks again
  GREYLIST         CHECKID_GREYLIST         0      greylist (client net, MAIL FROM, RCPT)
  GREY_DELAY       CHECKID_GREY_DELAY       300    seconds before a retry passes
  GREY_RETRY_WINDOW CHECKID_GREY_RETRY_WINDOW 172800  seconds the first retry may take
  GREY_MAX_AGE     CHECKID_GREY_MAX_AGE     3024000 seconds a passed triplet and an
                                                   auto-allowed client are kept (35 days)
  GREY_AUTO_ALLOW  CHECKID_GREY_AUTO_ALLOW  5      passed triplets that let the client's
                                                   net through without delay (0: never)
  GREY_SKIP_TRUSTED CHECKID_GREY_SKIP_TRUSTED 1    SPF pass rated ACCEPT: no greylisting
  GREY_NET4/6      CHECKID_GREY_NET4, _NET6 24, 64 the client's network in the triplet
  RATE_WINDOW      CHECKID_RATE_WINDOW      3600   seconds of a rate limit's window
  RATE_MESSAGES    CHECKID_RATE_MESSAGES    0      messages (MAIL) per client per window
  RATE_RECIPIENTS  CHECKID_RATE_RECIPIENTS  0      recipients (RCPT) per client per window
  RATE_ID_MESSAGES CHECKID_RATE_ID_MESSAGES 0      the same per SPF-passing identity
  RATE_ID_RECIPIENTS CHECKID_RATE_ID_RECIPIENTS 0  (0: no limit)
  RATE_NET4/6      CHECKID_RATE_NET4, _NET6 32, 64 what "a client" is for the rate limits

Grades weigh A=9, B=7, C=5, D=0 (GRADES). The score is the weighted mean of
the grades the services gave (services without a grade do not count).

SERVICES is a comma-separated list of NAME=ZONE[@WEIGHT]: the rating of
identity example.com by service S1 is the TXT record at
example.com.<S1's zone>, whose text starts with the grade letter, e.g.
CHECKID_SERVICES=S1=s1.registry.example@1,M2=m2.registry.example@1. None is
set by default: no rating is looked up, and an SPF pass (RATE) gets UNRATED.
The test suite and the demo name their own zones under .test.

DEFER: checkID's ACCEPT before the data is final, so the message would
never be seen. auto (the default): a call that belongs to a transaction (S,
the MAIL FROM address, is given: always so from qmail-idcheck) answers
CONTINUE instead of ACCEPT or FILTER before the data, so that DKIM, DMARC
and the check of incoming Authentication-Results run at end of data, where
the verdict held back is given (or a stricter one). A call with IP and ID
only (the seed's examples) is about the identity alone and gets ACCEPT.
1: CONTINUE always; 0: never (an ACCEPT at MAIL is final: no DKIM, DMARC or
Authentication-Results check for that message).

DMARC_ACTIONS: the verdict at end of data for a message that fails DMARC,
by the policy that applies to it (after pct): reject and quarantine; any
action (ACCEPT, FILTER, CONTINUE, REJECT, TEMPFAIL, DISCARD); CONTINUE and
ACCEPT record the result only. p=none is recorded only.

SPF_ACTIONS maps each SPF result of the identity to what the policy does:

  RATE      look the identity up in the rating services and let the
            score decide (ACCEPT / FILTER / REJECT)
  ACCEPT, FILTER, CONTINUE, REJECT, TEMPFAIL, DISCARD
            that verdict, with the reply in REPLIES

The error answers 127.255.255.252-127.255.255.255 (Spamhaus: typo in the
list name, open resolver, rate limit) and answers outside 127/8 never count
as a pre-screen hit, whatever PRESCREEN_CODES says.
"""

SERVICES = [
    # (name, zone, weight), e.g. ('S1', 's1.registry.example', 1.0)
]

GRADES = {'A': 9, 'B': 7, 'C': 5, 'D': 0}

ACCEPT_AT = 6.0
FILTER_AT = 3.0
UNRATED = 'ACCEPT'

SPF_ACTIONS = {
    'pass': 'RATE',
    'fail': 'REJECT',
    'softfail': 'FILTER',
    'neutral': 'CONTINUE',
    'none': 'CONTINUE',
    'temperror': 'TEMPFAIL',
    'permerror': 'FILTER',
}

PRESCREEN_ZONE = ''
PRESCREEN_CODES = '127.0.0.0/8'

DKIM = True
DMARC = True
DMARC_ACTIONS = {
    'reject': 'REJECT',
    'quarantine': 'FILTER',
}
DEFER = None          # None: auto; True, False
AUTHSERV_ID = ''
QMAIL_HOME = '/var/qmail'
PSL_FILE = '/usr/share/publicsuffix/public_suffix_list.dat'

# pct's draw: a function returning a float in [0, 1); None is
# random.random. Tests replace it to choose the outcome.
RANDOM = None

DNS_TIMEOUT = 5.0
SPF_TIMEOUT = 15.0

# ---- shared state: greylisting and rate limits (state.py, greylist.py,
# ratelimit.py; issue 14). Off unless GREYLIST or a RATE_* limit is set.
STATE = 'sqlite:/var/lib/qmail-idcheck/checkid.sqlite'
STATE_TIMEOUT = 1.0          # seconds; far below IDCHECK_CALLTIMEOUT (30)
STATE_ONERROR = 'skip'       # or 'tempfail'
STATE_RETRY = 5.0            # seconds a process leaves a store alone after it failed
STATE_MOST = 1e9             # the longest time a state setting may name (31 years):
                             # Redis's EXPIREAT and SQLite's REAL stay exact below it
GREYLIST = False
GREY_DELAY = 300.0
GREY_RETRY_WINDOW = 2 * 86400.0
GREY_MAX_AGE = 35 * 86400.0
GREY_AUTO_ALLOW = 5
GREY_SKIP_TRUSTED = True
GREY_NET4, GREY_NET6 = 24, 64
RATE_WINDOW = 3600.0
RATE_MESSAGES = RATE_RECIPIENTS = 0
RATE_ID_MESSAGES = RATE_ID_RECIPIENTS = 0
RATE_NET4, RATE_NET6 = 32, 64
# the time for greylisting and rate limits: a function returning seconds
# since the epoch; None is time.time. Tests replace it.
CLOCK = None
# ---- end of the shared state settings

# The replies, by what led to the verdict. %(ip)s, %(id)s, %(zone)s,
# %(ratings)s are filled in; quotes as in the seed's example.
REPLIES = {
    'ok': (250, '', 'Sender OK'),
    'fail': (550, '5.7.1', "Sending MTA '%(ip)s' not authorized by '%(id)s'"),
    'softfail': (550, '5.7.1', "Sending MTA '%(ip)s' not authorized by '%(id)s'"),
    'neutral': (550, '5.7.1', "Sending MTA '%(ip)s' not authorized by '%(id)s'"),
    'none': (550, '5.7.1', "No sender authentication for '%(id)s'"),
    'permerror': (550, '5.7.1', "Sender authentication record of '%(id)s' is broken"),
    'temperror': (451, '4.4.3', "Temporary DNS failure checking '%(id)s', try again later"),
    'ratings': (550, '5.7.1', "Sender '%(id)s' is not accepted here (%(ratings)s)"),
    'prescreen': (554, '5.7.1', "Sending MTA '%(ip)s' is listed in %(zone)s"),
    'prescreen-temp': (451, '4.7.1', "Sending MTA '%(ip)s': try again later"),
    # DMARC at end of data; %(from)s is the From domain
    'dmarc': (550, '5.7.1', "Message from '%(from)s' refused by its DMARC policy"),
    'dmarc-temp': (451, '4.7.1', "Temporary failure checking the DMARC policy of '%(from)s', "
                                 "try again later"),
    'dmarc-unseen': (550, '5.7.1', "Header section too large to check the message's author"),
    'dmarc-author': (550, '5.7.1', "The message's author (From) cannot be checked"),
    # RFC 8601 section 5 at end of data: fields claiming our results that
    # cannot be renamed (left out of Hdrs, or more than checkID may edit)
    'hdrs-cut': (552, '5.3.4', 'Header section too large to check'),
    'ar-forged': (550, '5.7.1', 'Too many Authentication-Results fields claiming to be ours'),
    # shared state (issue 14): %(wait)s seconds, %(what)s messages or
    # recipients, %(who)s the client's address or network, or the identity
    'greylist': (451, '4.7.1', "Greylisted, please try again later (in %(wait)s seconds)"),
    'rate': (451, '4.7.1', "Too many %(what)s from %(who)s, try again in %(wait)s seconds"),
    'state-temp': (451, '4.3.0', "Temporary local problem checking the sender, "
                                 "try again later"),
}

ACTIONS = ('ACCEPT', 'REJECT', 'FILTER', 'CONTINUE', 'TEMPFAIL', 'DISCARD')
SPF_RESULTS = tuple(SPF_ACTIONS)


_configs = {}          # the values of the variables Config reads -> Config
_variables = None


class _Reading:
    """An environment that notes the names asked of it."""

    def __init__(self, env):
        self.env, self.names = env, []

    def get(self, name, default=None):
        self.names.append(name)
        return self.env.get(name, default)


def for_environ(environ):
    """Config(environ), remembered per process by the values of the
    variables it reads: the settings are parsed once, not at every call.
    (So Config must ask for every variable it uses whatever their values:
    the names are learnt from the first construction.)"""
    global _variables
    env = environ or {}
    if _variables is None:
        reading = _Reading(env)
        Config(reading)
        _variables = tuple(dict.fromkeys(reading.names))
    key = tuple(env.get(name) for name in _variables)
    cfg = _configs.get(key)
    if cfg is None:
        if len(_configs) >= 64:
            _configs.clear()
        cfg = _configs[key] = Config(env)
    return cfg


class Config:
    """The settings in force for one call: the defaults above with the
    connection's CHECKID_* variables applied. A malformed variable is
    ignored (the default stands) and reported in .warnings."""

    def __init__(self, environ=None):
        env = environ or {}
        self.warnings = []
        self.services = self._services(env.get('CHECKID_SERVICES'))
        self.accept_at = self._number(env, 'CHECKID_ACCEPT_AT', ACCEPT_AT)
        self.filter_at = self._number(env, 'CHECKID_FILTER_AT', FILTER_AT)
        self.unrated = self._action(env, 'CHECKID_UNRATED', UNRATED)
        self.spf_actions = {}
        for result, action in SPF_ACTIONS.items():
            self.spf_actions[result] = self._action(env, 'CHECKID_SPF_' + result.upper(),
                                                    action, allow_rate=True)
        zone = env.get('CHECKID_PRESCREEN_ZONE', PRESCREEN_ZONE)
        self.prescreen_zone = zone.strip().strip('.').lower()
        self.prescreen_codes = self._codes(env.get('CHECKID_PRESCREEN_CODES', PRESCREEN_CODES))
        self.dkim = self._flag(env, 'CHECKID_DKIM', DKIM)
        self.dmarc = self._flag(env, 'CHECKID_DMARC', DMARC)
        self.dmarc_actions = {}
        for policy, action in DMARC_ACTIONS.items():
            self.dmarc_actions[policy] = self._action(env, 'CHECKID_DMARC_' + policy.upper(),
                                                      action)
        self.defer = DEFER
        if env.get('CHECKID_DEFER', '').strip().lower() != 'auto':
            self.defer = self._flag(env, 'CHECKID_DEFER', DEFER)
        self.authserv_id = env.get('CHECKID_AUTHSERV_ID', AUTHSERV_ID).strip()
        self.qmail_home = env.get('CHECKID_QMAIL_HOME', QMAIL_HOME)
        self.psl_file = env.get('CHECKID_PSL_FILE', PSL_FILE)
        self.dns_timeout = self._number(env, 'CHECKID_DNS_TIMEOUT', DNS_TIMEOUT, positive=True)
        self.spf_timeout = self._number(env, 'CHECKID_SPF_TIMEOUT', SPF_TIMEOUT, positive=True)
        self._state_settings(env)          # shared state (issue 14)

    def key(self):
        """What SPF, rating and DMARC answers depend on (for the cache)."""
        return (tuple(self.services), self.dns_timeout, self.spf_timeout)

    # ---- shared state (issue 14): greylisting and rate limits ----

    def _state_settings(self, env):
        self.state = self._state_url(env.get('CHECKID_STATE'))
        self.state_timeout = self._number(env, 'CHECKID_STATE_TIMEOUT', STATE_TIMEOUT,
                                          positive=True, most=60)
        self.state_retry = self._number(env, 'CHECKID_STATE_RETRY', STATE_RETRY,
                                        nonnegative=True, most=3600)
        onerror = env.get('CHECKID_STATE_ONERROR', STATE_ONERROR).strip().lower()
        if onerror not in ('skip', 'tempfail'):
            self._warn('CHECKID_STATE_ONERROR', onerror)
            onerror = STATE_ONERROR
        self.state_onerror = onerror
        self.greylist = self._flag(env, 'CHECKID_GREYLIST', GREYLIST)
        self.grey_delay = self._number(env, 'CHECKID_GREY_DELAY', GREY_DELAY, nonnegative=True,
                                       most=STATE_MOST)
        self.grey_retry_window = self._number(env, 'CHECKID_GREY_RETRY_WINDOW',
                                              GREY_RETRY_WINDOW, positive=True, most=STATE_MOST)
        self.grey_max_age = self._number(env, 'CHECKID_GREY_MAX_AGE', GREY_MAX_AGE,
                                         positive=True, most=STATE_MOST)
        if self.grey_delay >= self.grey_retry_window:
            # no first retry could ever pass: greylisting would refuse all mail
            self.warnings.append('CHECKID_GREY_DELAY=%r not below CHECKID_GREY_RETRY_WINDOW=%r: '
                                 'both ignored' % (self.grey_delay, self.grey_retry_window))
            self.grey_delay, self.grey_retry_window = GREY_DELAY, GREY_RETRY_WINDOW
        self.grey_auto_allow = self._count(env, 'CHECKID_GREY_AUTO_ALLOW', GREY_AUTO_ALLOW)
        self.grey_skip_trusted = self._flag(env, 'CHECKID_GREY_SKIP_TRUSTED', GREY_SKIP_TRUSTED)
        self.grey_net4 = self._count(env, 'CHECKID_GREY_NET4', GREY_NET4, 32)
        self.grey_net6 = self._count(env, 'CHECKID_GREY_NET6', GREY_NET6, 128)
        self.rate_window = self._number(env, 'CHECKID_RATE_WINDOW', RATE_WINDOW, least=1,
                                        most=STATE_MOST)
        self.rate_messages = self._count(env, 'CHECKID_RATE_MESSAGES', RATE_MESSAGES)
        self.rate_recipients = self._count(env, 'CHECKID_RATE_RECIPIENTS', RATE_RECIPIENTS)
        self.rate_id_messages = self._count(env, 'CHECKID_RATE_ID_MESSAGES', RATE_ID_MESSAGES)
        self.rate_id_recipients = self._count(env, 'CHECKID_RATE_ID_RECIPIENTS',
                                              RATE_ID_RECIPIENTS)
        self.rate_net4 = self._count(env, 'CHECKID_RATE_NET4', RATE_NET4, 32)
        self.rate_net6 = self._count(env, 'CHECKID_RATE_NET6', RATE_NET6, 128)
        self.stateful = self.greylist or any((self.rate_messages, self.rate_recipients,
                                              self.rate_id_messages, self.rate_id_recipients))

    def _state_url(self, value):
        """sqlite:/absolute/path or redis://host[:port][/db], as given."""
        if value is None:
            return STATE
        v = value.strip()
        if v.startswith('sqlite:') and v[7:].startswith('/') and '\0' not in v:
            return v
        if v.startswith('redis://'):
            from . import state
            try:
                state.redis_address(v)
                return v
            except ValueError:
                pass
            from .state import shown
            value = shown(value)            # never a password in a log line
        self._warn('CHECKID_STATE', value)
        return STATE

    def _count(self, env, var, default, most=None):
        """A whole number >= 0 (<= most)."""
        value = env.get(var)
        if value is None:
            return default
        v = value.strip()
        # isascii: '²'.isdigit() is true; 18 digits: int() of thousands refuses
        if v.isascii() and v.isdigit() and len(v) <= 18 and (most is None or int(v) <= most):
            return int(v)
        self._warn(var, value)
        return default

    # ---- parsers ----

    def _warn(self, var, value):
        self.warnings.append('%s=%r ignored' % (var, value))

    def _number(self, env, var, default, positive=False, nonnegative=False, least=None,
                most=None):
        value = env.get(var)
        if value is None:
            return default
        try:
            n = float(value)
            if n != n or n in (float('inf'), float('-inf')) or (positive and n <= 0) \
                    or (nonnegative and n < 0) or (least is not None and n < least) \
                    or (most is not None and n > most):
                raise ValueError
            return n
        except ValueError:
            self._warn(var, value)
            return default

    def _flag(self, env, var, default):
        value = env.get(var)
        if value is None:
            return default
        v = value.strip().lower()
        if v in ('1', 'yes', 'on', 'true'):
            return True
        if v in ('0', 'no', 'off', 'false', ''):
            return False
        self._warn(var, value)
        return default

    def _action(self, env, var, default, allow_rate=False):
        value = env.get(var)
        if value is None:
            return default
        v = value.strip().upper()
        if v in ACTIONS or (allow_rate and v == 'RATE'):
            return v
        self._warn(var, value)
        return default

    def _services(self, value):
        if value is None:
            return list(SERVICES)
        out = []
        for item in value.split(','):
            item = item.strip()
            if not item:
                continue
            name, eq, rest = item.partition('=')
            zone, at, weight = rest.partition('@')
            try:
                w = float(weight) if at else 1.0
                if not eq or not name.strip() or not zone.strip() or not (w >= 0) \
                        or w == float('inf'):
                    raise ValueError
            except ValueError:
                self._warn('CHECKID_SERVICES', item)
                continue
            out.append((name.strip(), zone.strip().strip('.').lower(), w))
        return out

    def _codes(self, value):
        """[(low, high)] as 32-bit integers, inside 127/8."""
        out = []
        for item in value.split(','):
            item = item.strip()
            if not item:
                continue
            try:
                if '/' in item:
                    base, bits = item.split('/')
                    b = int(bits)
                    if not 8 <= b <= 32:
                        raise ValueError
                    low = _ip4(base)
                    high = low | ((1 << (32 - b)) - 1)
                elif '-' in item:
                    a, b = item.split('-')
                    low, high = _ip4(a), _ip4(b)
                else:
                    low = high = _ip4(item)
                if low > high or low >> 24 != 127 or high >> 24 != 127:
                    raise ValueError
            except ValueError:
                self._warn('CHECKID_PRESCREEN_CODES', item)
                continue
            out.append((low, high))
        return out


def _ip4(text):
    parts = text.strip().split('.')
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise ValueError(text)
    n = 0
    for p in parts:
        n = n * 256 + int(p)
    return n
