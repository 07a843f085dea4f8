# qmail-idcheck/: the proxy, the process that runs checkID in Python, the warm
# checkID server, and the QMAILQUEUE wrapper.
PROGS += $(BUILD)/qmail-idcheck $(BUILD)/qmail-idcheck-python $(BUILD)/qmail-idcheck-queue \
  $(BUILD)/qmail-idcheckd

CFLAGS_qmail_idcheck_ = -DIDCHECK_BINDIR='"$(BINDIR)"' -DIDCHECK_PYDIR='"$(PYDIR)"' \
  -DPY_STDLIB='"$(PY_STDLIB)"' -DPY_DYNLOAD='"$(PY_DYNLOAD)"' -DPY_DISTPKG='"$(PY_DISTPKG)"'

# The proxy: never linked with libpython (a session that never reaches MAIL
# never maps it); checkID calls go to a process or a server (policy.c).
IDCHECK_PROXY_SRCS := $(addprefix qmail-idcheck/,qmail-idcheck.c settings.c session.c \
  session_end.c client.c prog.c stream.c commands.c ehlo_rewrite.c data.c data_scan.c \
  message_collect.c checkid.c queue_channel.c tls.c policy.c policy_process.c policy_server.c)
IDCHECK_PROXY_OBJS := $(IDCHECK_PROXY_SRCS:%.c=$(BUILD)/obj/%.o)
IDCHECK_QUEUE_OBJS := $(addprefix $(BUILD)/obj/qmail-idcheck/,qmail-idcheck-queue.o queue_channel.o)

# The embedding (python_*.c): py_start/py_serve and the idcheck module, shared
# by the per-session callee and the warm server's workers.
PY_EMBED_SRCS := $(wildcard qmail-idcheck/python_*.c)
PY_EMBED_OBJS := $(PY_EMBED_SRCS:%.c=$(BUILD)/obj/%.o)
IDCHECK_PY_OBJS := $(BUILD)/obj/qmail-idcheck/qmail-idcheck-python.o $(PY_EMBED_OBJS)
IDCHECKD_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,qmail-idcheck/qmail-idcheckd.c \
  $(wildcard qmail-idcheck/idcheckd_*.c)) $(PY_EMBED_OBJS)

# The two programs every session execs are linked statically (not under the
# sanitizers): no dynamic loader, about 0.15 ms less per exec here (bench/README).
# STATIC= on the command line links them dynamically.
STATIC ?= $(if $(SAN),,-static)
$(BUILD)/qmail-idcheck: $(IDCHECK_PROXY_OBJS) $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) $(STATIC) -o $@ $^ $(OWFAT)

$(BUILD)/qmail-idcheck-queue: $(IDCHECK_QUEUE_OBJS) $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) $(STATIC) -o $@ $^ $(OWFAT)

$(sort $(IDCHECK_PY_OBJS) $(IDCHECKD_OBJS)): ALL_CFLAGS += $(PY_INCLUDES)
$(BUILD)/qmail-idcheck-python: $(IDCHECK_PY_OBJS) $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(OWFAT) $(PY_LIBS)

$(BUILD)/qmail-idcheckd: $(IDCHECKD_OBJS) $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(OWFAT) $(PY_LIBS)
