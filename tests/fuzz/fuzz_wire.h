/* SPDX-License-Identifier: MIT */
/*
 * Shared between the wire fuzz harness and its gcc replay driver. Under
 * libFuzzer only LLVMFuzzerTestOneInput is used; the rest lets the replay
 * driver check that its inputs actually reach every decoder outcome.
 */
#ifndef PW_TESTS_FUZZ_WIRE_H
#define PW_TESTS_FUZZ_WIRE_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Outcome classes counted per decoder. */
enum fuzz_rc {
	FRC_OK,
	FRC_ENODATA,
	FRC_EPROTO,
	FRC_EBADMSG,
	FRC_EMSGSIZE,
	FRC_N,
};

enum fuzz_dec {
	FDEC_HDR,
	FDEC_CONN,
	FDEC_TRAILER,
	FDEC_N,
};

/* How often each decoder returned each code, over the whole run. */
extern unsigned long fuzz_wire_counts[FDEC_N][FRC_N];

/*
 * Parse @data as a stream of messages as a receiver would. Return 0 when
 * every byte belongs to a complete, valid message; -ENODATA when the last
 * message is cut short; otherwise the first decoder error.
 */
int fuzz_wire_stream(const uint8_t *data, size_t size);

#endif /* PW_TESTS_FUZZ_WIRE_H */
