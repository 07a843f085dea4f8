# rblsmtpd-plus/: the DNSBL pre-screen, a drop-in for ucspi-tcp's rblsmtpd.
PROGS += $(BUILD)/rblsmtpd-plus

RBLSMTPD_PLUS_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard rblsmtpd-plus/*.c))

$(BUILD)/rblsmtpd-plus: $(RBLSMTPD_PLUS_OBJS) $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(OWFAT)
