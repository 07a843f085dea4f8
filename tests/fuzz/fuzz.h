/* Helpers shared by the libFuzzer harnesses: a failed property aborts, so
 * libFuzzer keeps the input that broke it. */
#ifndef FUZZ_H
#define FUZZ_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond) \
  do { if (!(cond)) { fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
