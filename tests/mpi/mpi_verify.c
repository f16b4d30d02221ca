/* SPDX-License-Identifier: MIT */
/*
 * An MPI program that checks what it receives, byte for byte: point to
 * point (blocking, non-blocking rings, any-source, tags, 1 B to 4 MiB) and
 * collectives (barrier, bcast, reduce, allreduce, gather, allgather,
 * alltoall, at sizes up to 4 MiB). Every buffer is filled with a pattern
 * that depends on sender, receiver, round and offset, so that a message
 * delivered to the wrong rank, out of order, or short shows.
 *
 *   mpirun -np N mpi_verify [rounds]
 *
 * Prints one "mpi_verify: OK ..." line on rank 0 and exits 0 when every
 * check held; otherwise each failure is printed and the job aborts with 1.
 */
#include <inttypes.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, size;
static unsigned long checked_bytes;

static void die(const char *what, size_t off, unsigned got, unsigned want)
{
	fprintf(stderr, "mpi_verify: rank %d: %s: byte %zu is 0x%02x, want 0x%02x\n",
		rank, what, off, got, want);
	MPI_Abort(MPI_COMM_WORLD, 1);
}

/* The byte at @off of a message from @src to @dst in round @r. */
static unsigned char pat(int src, int dst, int r, size_t off)
{
	uint64_t x = (uint64_t)off * 0x9e3779b97f4a7c15ull ^
		     ((uint64_t)src << 40) ^ ((uint64_t)dst << 20) ^ (uint64_t)r;

	x ^= x >> 29;
	return (unsigned char)(x * 0xbf58476d1ce4e5b9ull >> 56);
}

static void fill(unsigned char *p, size_t len, int src, int dst, int r)
{
	for (size_t i = 0; i < len; i++)
		p[i] = pat(src, dst, r, i);
}

static void check(const char *what, const unsigned char *p, size_t len,
		  int src, int dst, int r)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != pat(src, dst, r, i))
			die(what, i, p[i], pat(src, dst, r, i));
	checked_bytes += len;
}

static void expect_count(const char *what, MPI_Status *st, int want)
{
	int n;

	MPI_Get_count(st, MPI_BYTE, &n);
	if (n != want) {
		fprintf(stderr, "mpi_verify: rank %d: %s: received %d bytes, want %d\n",
			rank, what, n, want);
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
}

static const size_t sizes[] = { 1, 8, 100, 4096, 8191, 65536, 200000,
				1 << 20, 4 << 20 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))
#define MAXSZ ((size_t)4 << 20)

/* Blocking exchange with every other rank, in a fixed pairing order. */
static void p2p_pairs(unsigned char *tx, unsigned char *rx, int r)
{
	for (size_t k = 0; k < NSIZES; k++)
		for (int d = 1; d < size; d++) {
			int to = (rank + d) % size, from = (rank - d + size) % size;
			MPI_Status st;

			fill(tx, sizes[k], rank, to, r + (int)k);
			MPI_Sendrecv(tx, (int)sizes[k], MPI_BYTE, to, 10 + (int)k,
				     rx, (int)MAXSZ, MPI_BYTE, from, 10 + (int)k,
				     MPI_COMM_WORLD, &st);
			expect_count("sendrecv", &st, (int)sizes[k]);
			check("sendrecv", rx, sizes[k], from, rank, r + (int)k);
		}
}

/* Non-blocking: several messages in flight to each neighbour, tags apart. */
static void p2p_ring(unsigned char *tx, unsigned char *rx, int r)
{
	enum { N = 8 };
	const size_t len = 300000;
	MPI_Request req[2 * N];
	MPI_Status st[2 * N];
	int right = (rank + 1) % size, left = (rank - 1 + size) % size;

	for (int i = 0; i < N; i++) {
		MPI_Irecv(rx + (size_t)i * len, (int)len, MPI_BYTE, left, 100 + i,
			  MPI_COMM_WORLD, &req[i]);
	}
	for (int i = 0; i < N; i++) {
		fill(tx + (size_t)i * len, len, rank, right, r * 100 + i);
		MPI_Isend(tx + (size_t)i * len, (int)len, MPI_BYTE, right, 100 + i,
			  MPI_COMM_WORLD, &req[N + i]);
	}
	MPI_Waitall(2 * N, req, st);
	for (int i = 0; i < N; i++) {
		expect_count("isend ring", &st[i], (int)len);
		check("isend ring", rx + (size_t)i * len, len, left, rank, r * 100 + i);
	}
}

/* Rank 0 receives from MPI_ANY_SOURCE and tells the senders apart. */
static void p2p_any_source(unsigned char *tx, unsigned char *rx, int r)
{
	const size_t len = 70000;

	if (rank == 0) {
		for (int i = 1; i < size; i++) {
			MPI_Status st;

			MPI_Recv(rx, (int)MAXSZ, MPI_BYTE, MPI_ANY_SOURCE, 7,
				 MPI_COMM_WORLD, &st);
			expect_count("any source", &st, (int)len);
			check("any source", rx, len, st.MPI_SOURCE, 0, r);
		}
	} else {
		fill(tx, len, rank, 0, r);
		MPI_Send(tx, (int)len, MPI_BYTE, 0, 7, MPI_COMM_WORLD);
	}
}

static void collectives(unsigned char *tx, unsigned char *rx, int r)
{
	size_t per;

	MPI_Barrier(MPI_COMM_WORLD);
	/* bcast from each root, 4 MiB and small */
	for (int root = 0; root < size; root++)
		for (size_t k = 0; k < NSIZES; k += 4) {
			size_t len = k + 4 >= NSIZES ? MAXSZ : sizes[k];

			if (rank == root)
				fill(rx, len, root, -1, r + root);
			else
				memset(rx, 0, len);
			MPI_Bcast(rx, (int)len, MPI_BYTE, root, MPI_COMM_WORLD);
			check("bcast", rx, len, root, -1, r + root);
		}
	/* allreduce and reduce of 64-bit sums, 4 MiB of them */
	{
		size_t n = MAXSZ / sizeof(uint64_t);
		uint64_t *a = (uint64_t *)tx, *b = (uint64_t *)rx;

		for (size_t i = 0; i < n; i++)
			a[i] = (uint64_t)(rank + 1) * (i + (size_t)r);
		MPI_Allreduce(a, b, (int)n, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
		for (size_t i = 0; i < n; i++) {
			uint64_t want = (uint64_t)size * (size + 1) / 2 * (i + (size_t)r);

			if (b[i] != want) {
				fprintf(stderr, "mpi_verify: rank %d: allreduce[%zu] = %" PRIu64
					", want %" PRIu64 "\n", rank, i, b[i], want);
				MPI_Abort(MPI_COMM_WORLD, 1);
			}
		}
		checked_bytes += n * sizeof(uint64_t);
		memset(b, 0, n * sizeof(uint64_t));
		MPI_Reduce(a, b, (int)n, MPI_UINT64_T, MPI_MAX, size - 1, MPI_COMM_WORLD);
		if (rank == size - 1) {
			for (size_t i = 0; i < n; i++)
				if (b[i] != (uint64_t)size * (i + (size_t)r)) {
					fprintf(stderr, "mpi_verify: rank %d: reduce max[%zu] wrong\n",
						rank, i);
					MPI_Abort(MPI_COMM_WORLD, 1);
				}
			checked_bytes += n * sizeof(uint64_t);
		}
	}
	/* gather and allgather: each rank's block in its place */
	per = MAXSZ / (size_t)size;
	fill(tx, per, rank, -2, r);
	MPI_Allgather(tx, (int)per, MPI_BYTE, rx, (int)per, MPI_BYTE, MPI_COMM_WORLD);
	for (int i = 0; i < size; i++)
		check("allgather", rx + (size_t)i * per, per, i, -2, r);
	memset(rx, 0, MAXSZ);
	MPI_Gather(tx, (int)per, MPI_BYTE, rx, (int)per, MPI_BYTE, 0, MPI_COMM_WORLD);
	if (rank == 0)
		for (int i = 0; i < size; i++)
			check("gather", rx + (size_t)i * per, per, i, -2, r);
	/* alltoall: block j of rank i goes to rank j */
	for (int j = 0; j < size; j++)
		fill(tx + (size_t)j * per, per, rank, j, r + 5);
	MPI_Alltoall(tx, (int)per, MPI_BYTE, rx, (int)per, MPI_BYTE, MPI_COMM_WORLD);
	for (int i = 0; i < size; i++)
		check("alltoall", rx + (size_t)i * per, per, i, rank, r + 5);
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 3;
	unsigned long total = 0;
	unsigned char *tx, *rx;
	double t0;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	if (rounds < 1)
		rounds = 1;
	tx = malloc(MAXSZ);
	rx = malloc(MAXSZ);
	if (!tx || !rx) {
		fprintf(stderr, "mpi_verify: out of memory\n");
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	t0 = MPI_Wtime();
	for (int r = 0; r < rounds; r++) {
		p2p_pairs(tx, rx, r * 1000);
		p2p_ring(tx, rx, r);
		p2p_any_source(tx, rx, r);
		collectives(tx, rx, r);
	}
	MPI_Reduce(&checked_bytes, &total, 1, MPI_UNSIGNED_LONG, MPI_SUM, 0,
		   MPI_COMM_WORLD);
	{
		/* which hosts the ranks ran on, in rank order */
		char me[MPI_MAX_PROCESSOR_NAME] = "", *all = NULL;
		int len;

		MPI_Get_processor_name(me, &len);
		if (rank == 0)
			all = calloc((size_t)size, MPI_MAX_PROCESSOR_NAME);
		MPI_Gather(me, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all,
			   MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 0, MPI_COMM_WORLD);
		if (rank == 0) {
			printf("mpi_verify: OK: %d ranks, %d rounds, %lu bytes compared, %.2f s; hosts:",
			       size, rounds, total, MPI_Wtime() - t0);
			for (int i = 0; i < size && all; i++)
				printf(" %s", all + (size_t)i * MPI_MAX_PROCESSOR_NAME);
			printf("\n");
			free(all);
		}
	}
	free(tx);
	free(rx);
	MPI_Finalize();
	return 0;
}
