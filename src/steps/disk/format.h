/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * A size in binary units for messages: "100 GiB", "1.5 TiB", "512 MiB",
 * "4 KiB", "17 B". One decimal only when it is not a whole number.
 */
char *format_bytes(char *buf, size_t size, uint64_t bytes);
#define FORMAT_BYTES_MAX 32
