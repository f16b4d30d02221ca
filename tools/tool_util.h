/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by pagewire-perf and pagewire-demo: argument
 * parsing, clocks, explicit little-endian encoding for the private data
 * both tools exchange, and process statistics.
 */
#ifndef PAGEWIRE_TOOL_UTIL_H
#define PAGEWIRE_TOOL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * tool_parse_size() - parse "SIZE" with an optional K/M/G suffix (powers of 2)
 * @s:   the text, e.g. "64", "4K", "1M", "2g"
 * @out: the value in bytes
 *
 * Return: 0, or -EINVAL when @s is not a number, has an unknown suffix,
 * trailing garbage, or overflows 64 bits.
 */
int tool_parse_size(const char *s, uint64_t *out);

/**
 * tool_parse_u64() - parse a plain decimal number in [@min, @max]
 *
 * Return: 0, or -EINVAL (not a number) / -ERANGE (out of bounds).
 */
int tool_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Monotonic clock in nanoseconds. */
uint64_t tool_now_ns(void);

/*
 * --version: "PROG X.Y.Z" as GNU tools print it; the library's version
 * follows when it differs from the one the tool was built with (a newer
 * libpagewire.so.0 under an older tool).
 */
void tool_print_version(const char *prog);

/* Resident set size of the calling process in bytes (/proc/self/statm). */
uint64_t tool_rss_bytes(void);

/* "1.50 GiB" style rendering of @bytes into @buf (at least 32 bytes). */
const char *tool_fmt_bytes(uint64_t bytes, char *buf, size_t len);

/*
 * Fixed-width little-endian codec. Private data crosses process (and in
 * principle machine) boundaries, so it is encoded field by field instead
 * of by copying a C struct whose layout and byte order are the compiler's.
 */
static inline void tool_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void tool_put32(uint8_t *p, uint32_t v)
{
	tool_put16(p, (uint16_t)v);
	tool_put16(p + 2, (uint16_t)(v >> 16));
}

static inline void tool_put64(uint8_t *p, uint64_t v)
{
	tool_put32(p, (uint32_t)v);
	tool_put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t tool_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t tool_get32(const uint8_t *p)
{
	return (uint32_t)tool_get16(p) | ((uint32_t)tool_get16(p + 2) << 16);
}

static inline uint64_t tool_get64(const uint8_t *p)
{
	return (uint64_t)tool_get32(p) | ((uint64_t)tool_get32(p + 4) << 32);
}

#endif /* PAGEWIRE_TOOL_UTIL_H */
