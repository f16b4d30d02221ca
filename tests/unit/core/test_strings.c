/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the status and opcode names (src/core/strings.c).
 *
 * Tools and logs print these names, and scripts grep for them, so every
 * value must have its own non-empty name, and a value outside the enum
 * (a corrupt completion, a newer peer) must read "unknown", never crash.
 */
#include <pagewire/pagewire.h>

#include "unit.h"

static void check_names(const char *what, const char *const *names, int n)
{
	for (int i = 0; i < n; i++) {
		if (!names[i] || !names[i][0]) {
			UNIT_FAIL("%s %d: empty name", what, i);
			continue;
		}
		if (strcmp(names[i], "unknown") == 0)
			UNIT_FAIL("%s %d: named \"unknown\"", what, i);
		for (int j = 0; j < i; j++)
			if (names[j] && strcmp(names[i], names[j]) == 0)
				UNIT_FAIL("%s %d and %d share the name \"%s\"",
					  what, j, i, names[i]);
	}
}

static void test_wc_status(void)
{
	enum { N = PW_WC_GENERAL_ERR + 1 };
	const char *names[N];

	for (int s = PW_WC_SUCCESS; s <= PW_WC_GENERAL_ERR; s++)
		names[s] = pw_wc_status_str((enum pw_wc_status)s);
	check_names("pw_wc_status", names, N);
	/* ibverbs wording, which people search for */
	CHECK(strcmp(pw_wc_status_str(PW_WC_SUCCESS), "success") == 0);
	CHECK(strcmp(pw_wc_status_str(PW_WC_REM_ACCESS_ERR),
		     "remote access error") == 0);
	CHECK(strcmp(pw_wc_status_str((enum pw_wc_status)N), "unknown") == 0);
	CHECK(strcmp(pw_wc_status_str((enum pw_wc_status)1000), "unknown") == 0);
	CHECK(strcmp(pw_wc_status_str((enum pw_wc_status)-1), "unknown") == 0);
}

static void test_wr_opcode(void)
{
	enum { N = PW_WR_ATOMIC_FETCH_AND_ADD + 1 };
	const char *names[N];

	for (int o = PW_WR_RDMA_WRITE; o <= PW_WR_ATOMIC_FETCH_AND_ADD; o++)
		names[o] = pw_wr_opcode_str((enum pw_wr_opcode)o);
	check_names("pw_wr_opcode", names, N);
	CHECK(strcmp(pw_wr_opcode_str(PW_WR_RDMA_WRITE), "RDMA_WRITE") == 0);
	CHECK(strcmp(pw_wr_opcode_str((enum pw_wr_opcode)N), "unknown") == 0);
	CHECK(strcmp(pw_wr_opcode_str((enum pw_wr_opcode)255), "unknown") == 0);
	CHECK(strcmp(pw_wr_opcode_str((enum pw_wr_opcode)-1), "unknown") == 0);
}

static const struct unit_test tests[] = {
	{ "wc_status", test_wc_status },
	{ "wr_opcode", test_wr_opcode },
};

UNIT_MAIN(tests)
