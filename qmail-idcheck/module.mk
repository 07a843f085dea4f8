# qmail-idcheck/: the proxy, and the process that runs checkID in Python.
PROGS += $(BUILD)/qmail-idcheck $(BUILD)/qmail-idcheck-python

CFLAGS_qmail_idcheck_ = -DIDCHECK_BINDIR='"$(BINDIR)"' -DIDCHECK_PYDIR='"$(PYDIR)"' \
  -DPY_STDLIB='"$(PY_STDLIB)"' -DPY_DYNLOAD='"$(PY_DYNLOAD)"' -DPY_DISTPKG='"$(PY_DISTPKG)"'

IDCHECK_PROXY_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out qmail-idcheck/qmail-idcheck-python.c qmail-idcheck/python_%.c,$(wildcard qmail-idcheck/*.c)))
IDCHECK_PY_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,qmail-idcheck/qmail-idcheck-python.c $(wildcard qmail-idcheck/python_*.c))

$(BUILD)/qmail-idcheck: $(IDCHECK_PROXY_OBJS) $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(OWFAT)

# Only this program links libpython: a session that never reaches MAIL never maps it.
$(IDCHECK_PY_OBJS): ALL_CFLAGS += $(PY_INCLUDES)
$(BUILD)/qmail-idcheck-python: $(IDCHECK_PY_OBJS) $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(OWFAT) $(PY_LIBS)
