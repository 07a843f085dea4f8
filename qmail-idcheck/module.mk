# qmail-idcheck/: the proxy and the QMAILQUEUE wrapper. Static, never linked
# with libpython (a session that never reaches MAIL never maps it): checkID
# calls go to a process or a server that runs Python (python-host/) through
# the policy client (policy.c and its two transports).
PROGS += $(BUILD)/qmail-idcheck $(BUILD)/qmail-idcheck-queue

CFLAGS_qmail_idcheck_ = -DIDCHECK_BINDIR='"$(BINDIR)"'

IDCHECK_PROXY_SRCS := $(addprefix qmail-idcheck/,qmail-idcheck.c settings.c session.c \
  session_end.c client.c prog.c stream.c commands.c ehlo_rewrite.c data.c data_scan.c \
  message_collect.c checkid.c queue_channel.c tls.c policy.c policy_process.c policy_server.c)
IDCHECK_PROXY_OBJS := $(IDCHECK_PROXY_SRCS:%.c=$(BUILD)/obj/%.o)
IDCHECK_QUEUE_OBJS := $(addprefix $(BUILD)/obj/qmail-idcheck/,qmail-idcheck-queue.o queue_channel.o)

# The two programs every session execs are linked statically (not under the
# sanitizers): no dynamic loader, about 0.15 ms less per exec here (bench/README).
# STATIC= on the command line links them dynamically.
STATIC ?= $(if $(SAN),,-static)
$(BUILD)/qmail-idcheck: $(IDCHECK_PROXY_OBJS) $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) $(STATIC) -o $@ $^ $(OWFAT)

$(BUILD)/qmail-idcheck-queue: $(IDCHECK_QUEUE_OBJS) $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) $(STATIC) -o $@ $^ $(OWFAT)
