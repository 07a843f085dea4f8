# qmail-idcheck — top-level Makefile.
# Each part has a fragment (*/module.mk) that adds its programs; objects and
# programs go to $(BUILD) so a sanitizer build can sit beside the plain one.

PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
PYDIR    ?= $(PREFIX)/lib/qmail-idcheck/python
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

.PHONY: all check check-fast demo install uninstall clean asan deps
all:

include lib/module.mk
include qmail-idcheck/module.mk
-include rblsmtpd-plus/module.mk
include tests/module.mk

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

check: deps all asan
	$(PYTHON) -m pytest -p no:cacheprovider -q tests

# Without installing packages or building the sanitizer variant.
check-fast: all
	IDCHECK_NO_ASAN=1 $(PYTHON) -m pytest -p no:cacheprovider -q tests

demo: deps all
	sh tests/demo

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(PYDIR)
	install -m 755 $(PROGS) $(DESTDIR)$(BINDIR)/
	for m in man/*.[0-9]; do s=$${m##*.}; install -m 644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done
	cp -R python/. $(DESTDIR)$(PYDIR)/
	$(PYTHON) -m compileall -q $(DESTDIR)$(PYDIR)

uninstall:
	for p in $(notdir $(PROGS)); do rm -f $(DESTDIR)$(BINDIR)/$$p; done
	for m in man/*.[0-9]; do s=$${m##*.}; rm -f $(DESTDIR)$(MANDIR)/man$$s/$${m#man/}; done
	rm -rf $(DESTDIR)$(PYDIR)

clean:
	rm -rf build build-asan
	find . -name __pycache__ -prune -exec rm -rf {} +
