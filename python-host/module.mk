# python-host/: every program that links libpython, the C side that hosts
# the policy written in Python (python/): the per-session callee
# qmail-idcheck-python and the warm server qmail-idcheckd, over one embedding
# (python_embed: start, one call; python_module: the idcheck module;
# python_dns: idcheck.dns; python_log: their log lines).
PROGS += $(BUILD)/qmail-idcheck-python $(BUILD)/qmail-idcheckd

CFLAGS_python_host_ = $(PY_INCLUDES) -DIDCHECK_PYDIR='"$(PYDIR)"' \
  -DPY_STDLIB='"$(PY_STDLIB)"' -DPY_DYNLOAD='"$(PY_DYNLOAD)"' -DPY_DISTPKG='"$(PY_DISTPKG)"'

PY_EMBED_OBJS := $(addprefix $(BUILD)/obj/python-host/,python_embed.o python_module.o \
  python_dns.o python_log.o)
IDCHECK_PY_OBJS := $(BUILD)/obj/python-host/qmail-idcheck-python.o $(PY_EMBED_OBJS)
IDCHECKD_OBJS := $(addprefix $(BUILD)/obj/python-host/,qmail-idcheckd.o idcheckd_pool.o \
  idcheckd_conns.o idcheckd_events.o idcheckd_worker.o) $(PY_EMBED_OBJS)

$(BUILD)/qmail-idcheck-python: $(IDCHECK_PY_OBJS) $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(OWFAT) $(PY_LIBS)

$(BUILD)/qmail-idcheckd: $(IDCHECKD_OBJS) $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(OWFAT) $(PY_LIBS)
