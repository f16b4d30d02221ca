/* SPDX-License-Identifier: MIT */
/* gcc driver of the engine-level fuzz harnesses (replay_inputs.h). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "replay_inputs.h"

#define RI_MAX_INPUT 65536

static int replay_file(const char *path, unsigned int mutations, uint32_t *seed)
{
	static uint8_t in[RI_MAX_INPUT], mut[RI_MAX_INPUT];
	FILE *f = fopen(path, "rb");
	size_t n;

	if (!f)
		return -1;
	n = fread(in, 1, sizeof(in), f);
	fclose(f);
	LLVMFuzzerTestOneInput(in, n);
	for (unsigned int m = 0; m < mutations && n; m++) {
		size_t len = n;

		memcpy(mut, in, n);
		for (int k = 0; k < 4; k++) {
			*seed = *seed * 1103515245u + 12345u;
			mut[(*seed >> 8) % n] ^= (uint8_t)(1u << ((*seed >> 4) & 7));
		}
		if ((*seed & 0xf) == 0)
			len = (*seed >> 12) % n;
		LLVMFuzzerTestOneInput(mut, len);
	}
	return 0;
}

int main(int argc, char **argv)
{
	unsigned int mutations = 50, files = 0;
	uint32_t seed = 1;

	for (int i = 1; i < argc; i++) {
		struct stat st;

		if (!strcmp(argv[i], "-n") && i + 1 < argc) {
			mutations = (unsigned int)strtoul(argv[++i], NULL, 10);
			continue;
		}
		if (stat(argv[i], &st))
			continue;
		if (S_ISDIR(st.st_mode)) {
			DIR *d = opendir(argv[i]);
			struct dirent *e;

			while (d && (e = readdir(d))) {
				char p[4096];

				if (e->d_name[0] == '.')
					continue;
				snprintf(p, sizeof(p), "%s/%s", argv[i], e->d_name);
				if (!replay_file(p, mutations, &seed))
					files++;
			}
			if (d)
				closedir(d);
		} else if (!replay_file(argv[i], mutations, &seed)) {
			files++;
		}
	}
	printf("%s: %u inputs and %u mutations each, no finding\n", argv[0],
	       files, mutations);
	if (!files) {
		fprintf(stderr, "%s: no input\n", argv[0]);
		return 1;
	}
	return fuzz_after_replay();
}
