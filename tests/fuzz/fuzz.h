/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Shared by the libFuzzer targets. An invariant that does not hold aborts,
 * so libFuzzer saves the input as a crash and the run fails.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(expr)                                                                       \
        do {                                                                                    \
                if (!(expr)) {                                                                  \
                        fprintf(stderr, "%s:%d: invariant does not hold: %s\n", __FILE__,       \
                                __LINE__, #expr);                                               \
                        abort();                                                                \
                }                                                                               \
        } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);
