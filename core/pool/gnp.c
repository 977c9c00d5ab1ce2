/*
** gnp.c -- generalized norm pooling: per-set, per-feature power means of |x| with learned exponents, then a
** Linear layer (rl_gemm over the B pooled rows). The power sums run in the log domain with max subtraction,
** (sum_n u^p)^(1/p) = exp(logsumexp_n(p log u_n) / p), so no exponent overflows.
**
** Differences between the paper default and compat = "reference" (golden/README.md section 6, item 10):
**   split     default: block 1 = the first floor(dim/2) features. Reference: floor(R/2) features, capped at dim,
**             with R the total number of rows in the BATCH (it takes shape[0] of the row matrix), so the
**             pooling of a set depends on the batch it comes in.
**   q         default: block i divides by N^q_i. Reference: q_0 for both blocks, qs[1] is never used
**             (its gradient is 0).
**   p cap     the reference's threshold (nn.Threshold(-50, 50) on -softplus) was meant to cap p at 50 but maps
**             every p >= 50 to -50 (compat), turning an L50 norm into an L-50 "norm" that favours the smallest
**             |x|. Default: p = min(softplus(ps), 50). Either way the gradient w.r.t. a capped ps is 0.
**
** Backward, for one set and feature with L = logsumexp_n(p log u_n), w_n = exp(p log u_n - L) and
** z = exp(L/p - q log N): dz/dlog u_n = z w_n (so dx_n = dz z w_n sign(x_n) / u_n, sign(0) = 0 as torch.abs),
** dz/dp = z (sum_n w_n log u_n - L/p) / p, dz/dq = -z log N; then dp/dps = sigmoid(ps) unless capped,
** dq/dqs = 1 - q^2.
*/
#include <math.h>

#include "../blas.h"
#include "gnp.h"
#include "setops.h"

enum { PS, QS, LIN_W, LIN_B };

typedef struct gnp_pool {
  rl_module base;
  int64_t dim;
  int compat;
  int64_t split;         /* first feature of block 2 in the last forward */
  double p[2], q[2];     /* effective exponents and powers of the last forward */
  double dpdraw[2];      /* dp/dps (0 when capped) */
  rl_workspace L, z;     /* B x dim: log power sums and pooled values */
  rl_workspace gz;       /* B x dim: backward scratch */
  rl_workspace acc;      /* B x 4: per-set dL/dp_0, dL/dp_1, dL/dq_0, dL/dq_1 */
} gnp_pool;

static int gnp_out_cols(const rl_module *m, const rl_batch *in, int64_t *cols) {
  const gnp_pool *p = (const gnp_pool *)m;
  int rc = rl_expect_sets(in, p->dim, "gnp");
  if (rc) return rc;
  *cols = p->dim;
  return RL_OK;
}

/* Effective exponents p, their derivatives dp/dps, powers q and the split column for a batch of R rows
** (R < 0: unknown batch; the reference split is then reported as -1). */
static void gnp_effective(const gnp_pool *p, int64_t R, double pe[2], double dpdraw[2], double q[2],
                          int64_t *split) {
  const real *ps = p->base.params[PS].value.data, *qs = p->base.params[QS].value.data;
  int reference = p->compat == RL_COMPAT_REFERENCE;
  for (int i = 0; i < 2; i++) {
    double sp = rl_setop_softplus(ps[i]);
    int capped = sp >= RL_GNP_P_MAX;
    pe[i] = capped ? (reference ? -RL_GNP_P_MAX : RL_GNP_P_MAX) : sp;
    dpdraw[i] = capped ? 0 : rl_setop_softplus_grad(ps[i]);
    q[i] = tanh((double)qs[i]);
  }
  if (reference) {
    *split = R < 0 ? -1 : R / 2 < p->dim ? R / 2 : p->dim;
    q[1] = q[0];
  } else {
    *split = p->dim / 2;
  }
}

static int gnp_forward(rl_module *m, const rl_batch *in, rl_tensor *out) {
  gnp_pool *p = (gnp_pool *)m;
  int64_t R = rl_rows(&in->values), D = p->dim, B = in->count[0];
  int rc = rl_workspace_reserve(&p->L, (size_t)(B * D) * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->z, (size_t)(B * D) * sizeof(real));
  if (rc) return rc;
  gnp_effective(p, R, p->p, p->dpdraw, p->q, &p->split);
  const real *x = in->values.data;
  const int64_t *off = in->offsets[0];
  real *Ls = p->L.data, *zs = p->z.data;
  int big = R * D >= RL_BASELINE_PARALLEL_MIN_WORK;

#pragma omp parallel for schedule(dynamic, 1) if (big)
  for (int64_t s = 0; s < B; s++) {
    int64_t lo = off[s], hi = off[s + 1];
    double logn = log((double)(hi - lo));
    for (int64_t d = 0; d < D; d++) {
      int blk = d >= p->split;
      double pe = p->p[blk], mx = -INFINITY, total = 0;
      for (int64_t r = lo; r < hi; r++) {
        double v = pe * log(fabs((double)x[r * D + d]) + RL_GNP_EPS);
        mx = v > mx ? v : mx;
      }
      for (int64_t r = lo; r < hi; r++) total += exp(pe * log(fabs((double)x[r * D + d]) + RL_GNP_EPS) - mx);
      double L = mx + log(total);
      Ls[s * D + d] = (real)L;
      zs[s * D + d] = (real)exp(L / pe - p->q[blk] * logn);
    }
  }
  const real *bias = m->params[LIN_B].value.data;
  for (int64_t s = 0; s < B; s++)
    for (int64_t j = 0; j < D; j++) out->data[s * D + j] = bias[j];
  rl_gemm(0, 1, B, D, D, 1, zs, D, m->params[LIN_W].value.data, D, 1, out->data, D);
  return RL_OK;
}

static int gnp_backward(rl_module *m, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in) {
  gnp_pool *p = (gnp_pool *)m;
  int64_t R = rl_rows(&in->values), D = p->dim, B = in->count[0];
  int rc = rl_workspace_reserve(&p->gz, (size_t)(B * D) * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->acc, (size_t)(B * 4) * sizeof(double));
  if (rc) return rc;
  const real *x = in->values.data, *gy = grad_out->data, *Ls = p->L.data, *zs = p->z.data;
  const int64_t *off = in->offsets[0];
  real *gz = p->gz.data, *gx = grad_in ? grad_in->data : NULL;
  double *acc = p->acc.data;
  int reference = p->compat == RL_COMPAT_REFERENCE;
  int big = R * D >= RL_BASELINE_PARALLEL_MIN_WORK;

  rl_gemm(1, 0, D, D, B, 1, gy, D, zs, D, 1, m->params[LIN_W].grad.data, D);
  rl_setop_add_colsum(gy, B, D, m->params[LIN_B].grad.data);
  rl_gemm(0, 0, B, D, D, 1, gy, D, m->params[LIN_W].value.data, D, 0, gz, D);

#pragma omp parallel for schedule(dynamic, 1) if (big)
  for (int64_t s = 0; s < B; s++) {
    int64_t lo = off[s], hi = off[s + 1];
    double logn = log((double)(hi - lo));
    double *a = acc + s * 4;
    a[0] = a[1] = a[2] = a[3] = 0;
    for (int64_t d = 0; d < D; d++) {
      int blk = d >= p->split;
      double pe = p->p[blk], L = Ls[s * D + d], gzz = (double)gz[s * D + d] * zs[s * D + d];
      double wlog = 0;
      for (int64_t r = lo; r < hi; r++) {
        double xv = x[r * D + d], u = fabs(xv) + RL_GNP_EPS, lu = log(u), w = exp(pe * lu - L);
        wlog += w * lu;
        if (gx) gx[r * D + d] = (real)(gzz * w * (xv > 0 ? 1 : xv < 0 ? -1 : 0) / u);
      }
      a[blk] += gzz * (wlog - L / pe) / pe;
      a[2 + (reference ? 0 : blk)] -= gzz * logn;
    }
  }
  real *gps = m->params[PS].grad.data, *gqs = m->params[QS].grad.data;
  for (int i = 0; i < 2; i++) {
    double dp = 0, dq = 0;
    for (int64_t s = 0; s < B; s++) {
      dp += acc[s * 4 + i];
      dq += acc[s * 4 + 2 + i];
    }
    gps[i] += (real)(dp * p->dpdraw[i]);
    gqs[i] += (real)(dq * (1 - p->q[i] * p->q[i]));
  }
  return RL_OK;
}

static void gnp_destroy(rl_module *m) {
  gnp_pool *p = (gnp_pool *)m;
  rl_workspace_free(&p->L);
  rl_workspace_free(&p->z);
  rl_workspace_free(&p->gz);
  rl_workspace_free(&p->acc);
}

static const rl_module_ops gnp_ops = {"gnp", gnp_out_cols, gnp_forward, gnp_backward, gnp_destroy};

rl_module *rl_pool_gnp_new(int64_t dim, int compat, rl_rng *g) {
  if (dim < 1) {
    rl_fail(RL_EINVAL, "gnp: expected a positive input width, got %lld", (long long)dim);
    return NULL;
  }
  if (compat != RL_COMPAT_PAPER && compat != RL_COMPAT_REFERENCE) {
    rl_fail(RL_EINVAL, "gnp: unknown compat mode %d", compat);
    return NULL;
  }
  gnp_pool *p = rl_calloc(1, sizeof *p);
  if (!p) return NULL;
  rl_module_init(&p->base, &gnp_ops, 1);
  p->dim = dim;
  p->compat = compat;
  int64_t two[1] = {2}, wshape[2] = {dim, dim}, bshape[1] = {dim};
  rl_param *ps = rl_module_add_param(&p->base, "ps", 1, two);
  rl_param *qs = ps ? rl_module_add_param(&p->base, "qs", 1, two) : NULL;
  rl_param *W = qs ? rl_module_add_param(&p->base, "linear.weight", 2, wshape) : NULL;
  rl_param *b = W ? rl_module_add_param(&p->base, "linear.bias", 1, bshape) : NULL;
  if (!b) {
    rl_module_free(&p->base);
    return NULL;
  }
  rl_setop_init_normal(ps->value.data, 2, g);
  rl_setop_init_normal(qs->value.data, 2, g);
  rl_setop_init_uniform(W->value.data, W->value.numel, 1.0 / sqrt((double)dim), g);
  rl_setop_init_uniform(b->value.data, b->value.numel, 1.0 / sqrt((double)dim), g);
  return &p->base;
}

int rl_pool_gnp_values(const rl_module *m, int64_t rows, double p[2], double q[2], int64_t *split) {
  if (m->ops != &gnp_ops) return rl_fail(RL_EINVAL, "gnp values: not a gnp module (%s)", m->ops->kind);
  double dpdraw[2];
  gnp_effective((const gnp_pool *)m, rows, p, dpdraw, q, split);
  return RL_OK;
}
