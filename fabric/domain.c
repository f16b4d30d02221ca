/* SPDX-License-Identifier: MIT */
/* Domains (a pw_pd) and memory registration (pw_reg_mr). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pwf.h"

static int domain_close(struct fid *fid)
{
	struct pwf_domain *dom = pwf_container_of(fid, struct pwf_domain, domain_fid.fid);
	int ret;

	if (atomic_load_explicit(&dom->refs, memory_order_acquire))
		return -FI_EBUSY;
	if (dom->implicit) {
		ret = pw_dereg_mr(dom->implicit);
		if (ret)
			return pwf_errno(ret);
		dom->implicit = NULL;
	}
	ret = pw_dealloc_pd(dom->pd);
	if (ret)
		return pwf_errno(ret);
	atomic_fetch_sub_explicit(&dom->fab->refs, 1, memory_order_release);
	fi_freeinfo(dom->info);
	pthread_mutex_destroy(&dom->lock);
	free(dom);
	return 0;
}

int pwf_domain_implicit_lkey(struct pwf_domain *dom, uint32_t *lkey)
{
	int ret = 0;

	if (atomic_load_explicit(&dom->implicit_ready, memory_order_acquire)) {
		*lkey = atomic_load_explicit(&dom->implicit_lkey, memory_order_relaxed);
		return 0;
	}
	pthread_mutex_lock(&dom->lock);
	if (!dom->implicit) {
		/* local access only: never exposes the address space to a peer */
		dom->implicit = pw_reg_mr(dom->pd, NULL, SIZE_MAX,
					  PW_ACCESS_LOCAL_WRITE | PW_ACCESS_ON_DEMAND);
		if (!dom->implicit) {
			ret = pwf_errno(-errno);
			PWF_WARN(FI_LOG_MR, "implicit ODP region: %s\n", pw_last_error());
		} else {
			atomic_store_explicit(&dom->implicit_lkey, dom->implicit->lkey,
					      memory_order_relaxed);
			atomic_store_explicit(&dom->implicit_ready, true, memory_order_release);
		}
	}
	if (!ret)
		*lkey = dom->implicit->lkey;
	pthread_mutex_unlock(&dom->lock);
	return ret;
}

static struct fi_ops domain_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = domain_close,
	.bind = pwf_no_bind,
	.control = pwf_no_control,
	.ops_open = pwf_no_ops_open,
	.tostr = pwf_no_tostr,
	.ops_set = pwf_no_ops_set,
};

static int no_av_open(struct fid_domain *domain, struct fi_av_attr *attr,
		      struct fid_av **av, void *context)
{
	return -FI_ENOSYS;	/* MSG endpoints have no address vectors */
}

static int no_scalable_ep(struct fid_domain *domain, struct fi_info *info,
			  struct fid_ep **sep, void *context)
{
	return -FI_ENOSYS;
}

static int no_poll_open(struct fid_domain *domain, struct fi_poll_attr *attr,
			struct fid_poll **pollset)
{
	return -FI_ENOSYS;
}

static int no_stx_ctx(struct fid_domain *domain, struct fi_tx_attr *attr,
		      struct fid_stx **stx, void *context)
{
	return -FI_ENOSYS;
}

static int no_srx_ctx(struct fid_domain *domain, struct fi_rx_attr *attr,
		      struct fid_ep **rx_ep, void *context)
{
	return -FI_ENOSYS;	/* pagewire has no shared receive queues */
}

static int no_query_collective(struct fid_domain *domain, enum fi_collective_op coll,
			       struct fi_collective_attr *attr, uint64_t flags)
{
	return -FI_ENOSYS;
}

static int domain_endpoint2(struct fid_domain *domain, struct fi_info *info,
			    struct fid_ep **ep, uint64_t flags, void *context)
{
	if (flags)
		return -FI_EINVAL;
	return pwf_endpoint(domain, info, ep, context);
}

static struct fi_ops_domain domain_ops = {
	.size = sizeof(struct fi_ops_domain),
	.av_open = no_av_open,
	.cq_open = pwf_cq_open,
	.endpoint = pwf_endpoint,
	.scalable_ep = no_scalable_ep,
	.cntr_open = pwf_cntr_open,
	.poll_open = no_poll_open,
	.stx_ctx = no_stx_ctx,
	.srx_ctx = no_srx_ctx,
	.query_atomic = pwf_query_atomic,
	.query_collective = no_query_collective,
	.endpoint2 = domain_endpoint2,
};

static struct fi_ops_mr domain_mr_ops = {
	.size = sizeof(struct fi_ops_mr),
	.reg = pwf_mr_reg,
	.regv = pwf_mr_regv,
	.regattr = pwf_mr_regattr,
};

int pwf_domain_open(struct fid_fabric *fabric, struct fi_info *info,
		    struct fid_domain **domain, void *context)
{
	struct pwf_fabric *fab = to_pwf_fabric(fabric);
	struct pwf_domain *dom;
	int ret;

	if (!info || !info->domain_attr)
		return -FI_EINVAL;
	if (info->domain_attr->name && strcmp(info->domain_attr->name, PWF_NAME))
		return -FI_EINVAL;
	dom = calloc(1, sizeof(*dom));
	if (!dom)
		return -FI_ENOMEM;
	dom->info = fi_dupinfo(info);
	if (!dom->info) {
		ret = -FI_ENOMEM;
		goto err_free;
	}
	dom->pd = pw_alloc_pd(fab->ctx);
	if (!dom->pd) {
		ret = pwf_errno(-errno);
		goto err_info;
	}
	dom->fab = fab;
	dom->mr_mode = info->domain_attr->mr_mode;
	pthread_mutex_init(&dom->lock, NULL);
	atomic_init(&dom->refs, 0);
	atomic_init(&dom->implicit_ready, false);
	dom->domain_fid.fid.fclass = FI_CLASS_DOMAIN;
	dom->domain_fid.fid.context = context;
	dom->domain_fid.fid.ops = &domain_fi_ops;
	dom->domain_fid.ops = &domain_ops;
	dom->domain_fid.mr = &domain_mr_ops;
	atomic_fetch_add_explicit(&fab->refs, 1, memory_order_relaxed);
	*domain = &dom->domain_fid;
	return 0;

err_info:
	fi_freeinfo(dom->info);
err_free:
	free(dom);
	return ret;
}
