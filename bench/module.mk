# bench/: the load client and the floor programs for bench/sessions (built by
# `make bench` only; never installed). smtp-load links OpenSSL for its
# STARTTLS mode: only the bench build needs libssl-dev.
BENCHPROGS := $(BUILD)/smtp-load $(BUILD)/relay-floor $(BUILD)/queue-floor

$(BUILD)/smtp-load: $(BUILD)/obj/bench/smtp-load.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ -lssl -lcrypto -lpthread

# The floor programs are linked statically, as the proxy and its queue
# wrapper are (STATIC, qmail-idcheck/module.mk): the floor pays no more for
# its exec than they do.
$(BUILD)/relay-floor: $(BUILD)/obj/bench/relay-floor.o
	$(CC) $(ALL_LDFLAGS) $(STATIC) -o $@ $^

$(BUILD)/queue-floor: $(BUILD)/obj/bench/queue-floor.o
	$(CC) $(ALL_LDFLAGS) $(STATIC) -o $@ $^
