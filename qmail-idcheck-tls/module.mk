# qmail-idcheck-tls/: the UCSPI-TLS server end. qmail-idcheck-tls waits for
# the command and links no TLS library; qmail-idcheck-tls-io, the engine it
# execs when TLS starts, links libtls (libretls).
PROGS += $(BUILD)/qmail-idcheck-tls $(BUILD)/qmail-idcheck-tls-io

CFLAGS_qmail_idcheck_tls_ = -DIDCHECK_BINDIR='"$(BINDIR)"'

TLS_COMMON_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,qmail-idcheck-tls/tls_common.c qmail-idcheck-tls/pem_file.c)

# Both static outside the sanitizer build, like the proxy: every session
# execs the first, and the engine, a static binary, is not relocated at start
# (0.55 against 1.2 ms of CPU per exec here with libcrypto linked statically
# and libc dynamically). Static libcrypto names getaddrinfo and dlopen, so the
# linker notes that static NSS and dlopen need the shared libc at run time:
# those notes (and the lines naming where they come from) are filtered out;
# errors still show.
$(BUILD)/qmail-idcheck-tls: $(BUILD)/obj/qmail-idcheck-tls/qmail-idcheck-tls.o $(TLS_COMMON_OBJS) $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) $(STATIC) -o $@ $^ $(OWFAT)

TLS_LIBS := -ltls -lssl -lcrypto
$(BUILD)/qmail-idcheck-tls-io: $(patsubst %.c,$(BUILD)/obj/%.o,qmail-idcheck-tls/qmail-idcheck-tls-io.c \
  qmail-idcheck-tls/tls_end.c) $(TLS_COMMON_OBJS) $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) $(STATIC) -o $@ $^ $(TLS_LIBS) $(OWFAT) 2>$@.ld; s=$$?; \
	  grep -v -e 'in statically linked applications requires at runtime' -e ': in function `' $@.ld >&2; \
	  rm -f $@.ld; exit $$s
