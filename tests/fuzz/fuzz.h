/* Helpers shared by the libFuzzer harnesses: a failed property aborts, so
 * libFuzzer keeps the input that broke it. */
#ifndef FUZZ_H
#define FUZZ_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHECK(cond) \
  do { if (!(cond)) { fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* lib/log's program name: the proxy's parts a harness links may warn. */
__attribute__((weak)) const char *PROG = "fuzz";

/* data (at most FUZZ_GUARD_MAX bytes) copied to end where a PROT_NONE page
 * begins: code that is not instrumented (libowfat) faults on the first
 * byte it reads past the end. */
#define FUZZ_GUARD_MAX 65535
static inline const char *fuzz_guarded(const uint8_t *data, size_t len)
{
  static char *area;
  static size_t room;
  if (!area) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    room = (FUZZ_GUARD_MAX + page - 1) / page * page;
    area = mmap(0, room + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(area != MAP_FAILED);
    CHECK(mprotect(area + room, page, PROT_NONE) == 0);
  }
  CHECK(len <= FUZZ_GUARD_MAX);
  memcpy(area + room - len, data, len);
  return area + room - len;
}

#endif
