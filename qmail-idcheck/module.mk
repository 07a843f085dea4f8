# qmail-idcheck/: the proxy, the process that runs checkID in Python, and the
# QMAILQUEUE wrapper.
PROGS += $(BUILD)/qmail-idcheck $(BUILD)/qmail-idcheck-python $(BUILD)/qmail-idcheck-queue

CFLAGS_qmail_idcheck_ = -DIDCHECK_BINDIR='"$(BINDIR)"' -DIDCHECK_PYDIR='"$(PYDIR)"' \
  -DPY_STDLIB='"$(PY_STDLIB)"' -DPY_DYNLOAD='"$(PY_DYNLOAD)"' -DPY_DISTPKG='"$(PY_DISTPKG)"'

IDCHECK_PROXY_SRCS := qmail-idcheck/qmail-idcheck.c qmail-idcheck/stream.c qmail-idcheck/policy_process.c \
  qmail-idcheck/message_collect.c
IDCHECK_PY_SRCS := qmail-idcheck/qmail-idcheck-python.c $(wildcard qmail-idcheck/python_*.c)
IDCHECK_PROXY_OBJS := $(IDCHECK_PROXY_SRCS:%.c=$(BUILD)/obj/%.o)
IDCHECK_PY_OBJS := $(IDCHECK_PY_SRCS:%.c=$(BUILD)/obj/%.o)

$(BUILD)/qmail-idcheck: $(IDCHECK_PROXY_OBJS) $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(OWFAT)

$(BUILD)/qmail-idcheck-queue: $(BUILD)/obj/qmail-idcheck/qmail-idcheck-queue.o $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(OWFAT)

# Only this program links libpython: a session that never reaches MAIL never maps it.
$(IDCHECK_PY_OBJS): ALL_CFLAGS += $(PY_INCLUDES)
$(BUILD)/qmail-idcheck-python: $(IDCHECK_PY_OBJS) $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(OWFAT) $(PY_LIBS)
