# qmail-idcheck — top-level Makefile.
# Each part has a fragment (*/module.mk) that adds its programs; objects and
# programs go to $(BUILD) so a sanitizer build can sit beside the plain one.

PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
PYDIR    ?= $(PREFIX)/lib/qmail-idcheck/python
SHAREDIR ?= $(PREFIX)/share/qmail-idcheck
DESTDIR  ?=

PYTHON   ?= /usr/bin/python3
PYCONFIG ?= /usr/bin/python3-config

BUILD    ?= build
SAN      ?=
CC       ?= cc
CFLAGS   ?= -O2 -g
WARN      = -std=gnu17 -Wall -Wextra -Werror
ALL_CFLAGS = $(WARN) $(CFLAGS) $(SAN) -Ilib -D_GNU_SOURCE
ALL_LDFLAGS = $(LDFLAGS) $(SAN)
OWFAT    = -lowfat

PY_INCLUDES := $(shell $(PYCONFIG) --includes)
PY_LIBS     := $(shell $(PYCONFIG) --embed --ldflags)
PY_STDLIB   := $(shell $(PYTHON) -c 'import sysconfig;print(sysconfig.get_path("stdlib"))')
PY_DYNLOAD  := $(shell $(PYTHON) -c 'import sysconfig;print(sysconfig.get_config_var("DESTSHARED"))')
PY_DISTPKG  ?= /usr/lib/python3/dist-packages

PROGS :=
TESTPROGS :=

.PHONY: all check check-fast demo install uninstall clean asan deps bench
all:

include lib/module.mk
include qmail-idcheck/module.mk
include python-host/module.mk
-include rblsmtpd-plus/module.mk
include qmail-idcheck-tls/module.mk
include tests/module.mk
include tests/fuzz/module.mk
include bench/module.mk

all: $(PROGS) $(TESTPROGS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CFLAGS_$(subst /,_,$(subst -,_,$(dir $<)))) -MMD -MP -c -o $@ $<

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# The sanitizer build: the same sources, ASan+UBSan, into build-asan/.
asan:
	$(MAKE) BUILD=build-asan SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" all

# Installs what the build and the suite need (Debian), as root, only if missing.
deps:
	@sh tests/install-deps

check: deps all asan fuzz-build
	$(PYTHON) -m pytest -p no:cacheprovider -q tests

# Without installing packages or building the sanitizer variant.
check-fast: all
	IDCHECK_NO_ASAN=1 $(PYTHON) -m pytest -p no:cacheprovider -q tests

demo: deps all
	sh tests/demo

# Sessions/s, latency, CPU and RSS per session of each chain against the bare
# one (bench/README). Not part of check: it takes minutes and wants the machine.
bench: all $(BENCHPROGS)
	$(PYTHON) bench/sessions

# The programs, the policy package byte-compiled, the man pages, and the run
# scripts as examples (never over a live service directory).
install: $(PROGS)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7 \
	  $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(PYDIR) $(DESTDIR)$(SHAREDIR)
	install -m 755 $(PROGS) $(DESTDIR)$(BINDIR)/
	for m in man/*.[0-9]; do s=$${m##*.}; install -m 644 $$m $(DESTDIR)$(MANDIR)/man$$s/ || exit 1; done
	[ ! -d python ] || (cd python && find . -name __pycache__ -prune -o -type f -name '*.py' -print | \
	  while read f; do install -D -m 644 "$$f" "$(DESTDIR)$(PYDIR)/$$f" || exit 1; done)
	$(PYTHON) -m compileall -q $(DESTDIR)$(PYDIR)
	cp -R run-scripts $(DESTDIR)$(SHAREDIR)/

uninstall:
	for p in $(notdir $(PROGS)); do rm -f $(DESTDIR)$(BINDIR)/$$p; done
	for m in man/*.[0-9]; do s=$${m##*.}; rm -f $(DESTDIR)$(MANDIR)/man$$s/$${m#man/}; done
	rm -rf $(DESTDIR)$(PYDIR) $(DESTDIR)$(SHAREDIR)
	-rmdir $(DESTDIR)$(PREFIX)/lib/qmail-idcheck 2>/dev/null

clean:
	rm -rf build build-asan build-fuzz
	find . -name __pycache__ -prune -exec rm -rf {} +
