/* SPDX-License-Identifier: MIT */
/*
 * The gcc driver of the engine-level harnesses (replay_inputs.c): replays
 * every input file (or every file of the directories) given, then -n N
 * deterministic mutations of each (bit flips, truncations), through the
 * harness's LLVMFuzzerTestOneInput. Then fuzz_after_replay(), the
 * harness's own check that the run reached what it should (0 = good).
 */
#ifndef PW_TESTS_FUZZ_REPLAY_INPUTS_H
#define PW_TESTS_FUZZ_REPLAY_INPUTS_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int fuzz_after_replay(void);

#endif
