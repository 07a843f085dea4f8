# tests/: the qmail-smtpd and qmail-queue stand-ins (test programs, never installed).
TESTPROGS += $(BUILD)/qmail-smtpd-standin $(BUILD)/qmail-queue-standin

$(BUILD)/qmail-smtpd-standin: $(BUILD)/obj/tests/standin/qmail-smtpd-standin.o $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(OWFAT)
$(BUILD)/qmail-queue-standin: $(BUILD)/obj/tests/standin/qmail-queue-standin.o $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(OWFAT)
