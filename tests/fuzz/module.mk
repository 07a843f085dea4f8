# tests/fuzz/: libFuzzer harnesses (clang, ASan+UBSan), one per parser a client
# or a policy feeds. `make fuzz` runs each for FUZZ_SECONDS; `make check`
# builds them and tests/test_fuzz.py runs each for a few seconds from its seed
# corpus (tests/fuzz/corpus/NAME/), so a harness that no longer builds or
# crashes at once is caught. New inputs found go to build-fuzz/corpus/NAME/.
FUZZERS := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
FUZZ_SECONDS ?= 60
CFLAGS_tests_fuzz_ := -Iqmail-idcheck -Irblsmtpd-plus

# The parts of the proxy the harnesses drive (all Python-free).
FUZZ_PROXY_OBJS := $(addprefix $(BUILD)/obj/qmail-idcheck/,data_scan.o ehlo_rewrite.o \
  stream.o message_collect.o client.o session_end.o)

# rblsmtpd-plus's DNS answer reading, for fuzz_rbl_answer alone (a harness's
# own objects are a line of their own below; the link puts the archive last).
FUZZ_RBL_OBJS := $(BUILD)/obj/rblsmtpd-plus/rbl_lookup.o

.PHONY: fuzz fuzz-build fuzzers
fuzzers: $(FUZZERS:%=$(BUILD)/%)

$(BUILD)/fuzz_%: $(BUILD)/obj/tests/fuzz/fuzz_%.o $(FUZZ_PROXY_OBJS) $(LIBIDCHECK)
	$(CC) $(ALL_LDFLAGS) -fsanitize=fuzzer -o $@ $(filter %.o,$^) $(LIBIDCHECK) $(OWFAT)

$(BUILD)/fuzz_rbl_answer: $(FUZZ_RBL_OBJS)

fuzz-build:
	$(MAKE) BUILD=build-fuzz CC=clang SAN="$(FUZZ_SAN)" STATIC= fuzzers

fuzz: fuzz-build
	@for f in $(FUZZERS); do \
	  mkdir -p build-fuzz/corpus/$$f; \
	  echo "== $$f ($(FUZZ_SECONDS) s)"; \
	  build-fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    build-fuzz/corpus/$$f tests/fuzz/corpus/$$f 2>&1 | \
	    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|==[0-9]+==|SUMMARY|.*property failed)' || exit 1; \
	done
