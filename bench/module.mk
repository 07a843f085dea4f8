# bench/: the load client for bench/sessions (built by `make bench` only).
BENCHPROGS := $(BUILD)/smtp-load

$(BUILD)/smtp-load: $(BUILD)/obj/bench/smtp-load.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ -lpthread
