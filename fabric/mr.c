/* SPDX-License-Identifier: MIT */
/*
 * fi_mr_reg: every region is an on-demand pagewire MR unless
 * FI_PAGEWIRE_MR=pinned, so registering costs O(1) whatever the length,
 * pins nothing and needs no RLIMIT_MEMLOCK (the 2008 proposal: demand
 * paging). Keys are pagewire's rkeys (FI_MR_PROV_KEY) and remote
 * addresses are virtual addresses (FI_MR_VIRT_ADDR).
 */
#include <errno.h>
#include <stdlib.h>

#include "pwf.h"

static int mr_close(struct fid *fid)
{
	struct pwf_mr *mr = pwf_container_of(fid, struct pwf_mr, mr_fid.fid);
	int ret;

	if (mr->mr) {
		ret = pw_dereg_mr(mr->mr);
		if (ret)
			return pwf_errno(ret);
	}
	atomic_fetch_sub_explicit(&mr->dom->refs, 1, memory_order_release);
	free(mr);
	return 0;
}

static struct fi_ops mr_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = mr_close,
	.bind = pwf_no_bind,
	.control = pwf_no_control,
	.ops_open = pwf_no_ops_open,
	.tostr = pwf_no_tostr,
	.ops_set = pwf_no_ops_set,
};

/* libfabric access bits -> pagewire's (IBA: remote write needs local write). */
static unsigned int pw_access(uint64_t access)
{
	unsigned int a = PW_ACCESS_LOCAL_WRITE;

	if (!access)
		access = FI_SEND | FI_RECV | FI_READ | FI_WRITE |
			 FI_REMOTE_READ | FI_REMOTE_WRITE;
	if (access & FI_REMOTE_READ)
		a |= PW_ACCESS_REMOTE_READ;
	if (access & FI_REMOTE_WRITE)
		a |= PW_ACCESS_REMOTE_WRITE | PW_ACCESS_REMOTE_ATOMIC;
	if (!pwf_params.mr_pinned)
		a |= PW_ACCESS_ON_DEMAND;
	return a;
}

static int do_reg(struct pwf_domain *dom, const void *buf, size_t len,
		  uint64_t access, uint64_t offset, uint64_t flags,
		  struct fid_mr **out, void *context)
{
	struct pwf_mr *mr;

	/*
	 * Registration flags select device memory or are utility
	 * providers' own (ofi_rxm passes one): none changes what an
	 * on-demand region of host memory is, so they are accepted.
	 */
	if (flags)
		PWF_DBG(FI_LOG_MR, "fi_mr_reg: flags 0x%llx ignored\n",
			(unsigned long long)flags);
	if (access & ~(uint64_t)(FI_SEND | FI_RECV | FI_READ | FI_WRITE |
				 FI_REMOTE_READ | FI_REMOTE_WRITE))
		return -FI_EINVAL;
	if (len && !buf)
		return -FI_EINVAL;
	mr = calloc(1, sizeof(*mr));
	if (!mr)
		return -FI_ENOMEM;
	if (len) {
		unsigned int pa = pw_access(access);

		mr->mr = pw_reg_mr(dom->pd, (void *)buf, len, pa);
		/*
		 * Memory userfaultfd cannot watch (a program's static data,
		 * which shares pages with its file mapping; a file's mapping)
		 * is registered to follow the address, as hardware ODP
		 * regions do: a libfabric region names addresses, and an
		 * application that unmaps registered memory owns the result.
		 */
		if (!mr->mr && errno == EOPNOTSUPP && (pa & PW_ACCESS_ON_DEMAND)) {
			PWF_DBG(FI_LOG_MR, "pw_reg_mr(%p, %zu): %s; following the address\n",
				buf, len, pw_last_error());
			mr->mr = pw_reg_mr(dom->pd, (void *)buf, len,
					   pa | PW_ACCESS_ODP_FOLLOW_VA);
		}
		if (!mr->mr) {
			int e = errno;

			PWF_WARN(FI_LOG_MR, "pw_reg_mr(%p, %zu): %s\n", buf, len,
				 pw_last_error());
			free(mr);
			return pwf_errno(-e);
		}
		mr->mr_fid.key = mr->mr->rkey;
	}
	mr->dom = dom;
	mr->mr_fid.fid.fclass = FI_CLASS_MR;
	mr->mr_fid.fid.context = context;
	mr->mr_fid.fid.ops = &mr_fi_ops;
	mr->mr_fid.mem_desc = mr;
	atomic_fetch_add_explicit(&dom->refs, 1, memory_order_relaxed);
	*out = &mr->mr_fid;
	(void)offset;	/* FI_MR_VIRT_ADDR: addresses are virtual, offset unused */
	return 0;
}

int pwf_mr_reg(struct fid *fid, const void *buf, size_t len, uint64_t access,
	       uint64_t offset, uint64_t requested_key, uint64_t flags,
	       struct fid_mr **mr, void *context)
{
	if (fid->fclass != FI_CLASS_DOMAIN)
		return -FI_EINVAL;
	return do_reg(pwf_container_of(fid, struct pwf_domain, domain_fid.fid),
		      buf, len, access, offset, flags, mr, context);
}

int pwf_mr_regv(struct fid *fid, const struct iovec *iov, size_t count,
		uint64_t access, uint64_t offset, uint64_t requested_key,
		uint64_t flags, struct fid_mr **mr, void *context)
{
	if (count > 1)
		return -FI_EINVAL;	/* mr_iov_limit is 1 */
	return pwf_mr_reg(fid, count ? iov[0].iov_base : NULL,
			  count ? iov[0].iov_len : 0, access, offset,
			  requested_key, flags, mr, context);
}

int pwf_mr_regattr(struct fid *fid, const struct fi_mr_attr *attr,
		   uint64_t flags, struct fid_mr **mr)
{
	if (!attr)
		return -FI_EINVAL;
	if (attr->iface != FI_HMEM_SYSTEM)
		return -FI_EOPNOTSUPP;
	return pwf_mr_regv(fid, attr->mr_iov, attr->iov_count, attr->access,
			   attr->offset, attr->requested_key, flags, mr,
			   attr->context);
}
