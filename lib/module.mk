# lib/: the shared C helpers, one archive every program links.
LIB_SRCS := $(wildcard lib/*.c)
LIBIDCHECK := $(BUILD)/libidcheck.a
$(LIBIDCHECK): $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
