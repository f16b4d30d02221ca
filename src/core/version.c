/* SPDX-License-Identifier: MIT */
#include <pagewire/pagewire.h>

/*
 * PW_LIB_VERSION comes from the build (CMake's project version, which it
 * reads from the header), so a program sees the library it runs against,
 * not the header it was compiled with.
 */
#ifndef PW_LIB_VERSION
#define PW_LIB_VERSION PW_VERSION_STRING
#endif

_Static_assert(sizeof(PW_LIB_VERSION) > 1, "empty library version");

const char *pw_version(void)
{
	return PW_LIB_VERSION;
}
