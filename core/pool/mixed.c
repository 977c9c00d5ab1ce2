/*
** mixed.c -- mixed (learned scalar) and gated (learned per-set gate) mean-max pooling.
**
** Differences between the paper default and compat = "reference" (golden/README.md section 6, item 10):
**   mixed        none: y = sigmoid(alpha) mean + (1 - sigmoid(alpha)) max in both modes.
**   gated_mixed  the gate logit. Lee et al. gate a pooling region with w . x over the region; for a set of any
**                size the size-free analogue is w . mean(X) (default). The reference gates on the SUM over the
**                set, sum_n w . x_n = N w . mean(X), so its gate saturates as sets grow (compat).
**   Lee et al. write the gate on the max branch, sigma max + (1 - sigma) avg; we keep the reference's
**   g mean + (1 - g) max in both modes (the same family, with w replaced by -w), so golden parameters map as is.
**
** Backward, per set with N rows, g the mixing weight and gy the output gradient:
**   dL/dg = sum_d gy_d (mean_d - max_d); mixed: dL/dalpha += dL/dg g (1 - g);
**   gated: with t = g (1 - g) dL/dg and c = 1/N (default) or 1 (reference): dL/dw += t c sum_n x_n and
**   dL/dx_n = g gy / N + t c w, plus (1 - g) gy_d on the arg-max row of feature d.
*/
#include <math.h>

#include "mixed.h"
#include "setops.h"

typedef struct mixed_pool {
  rl_module base;
  int64_t dim;   /* -1: any width (mixed only) */
  int gated;     /* 0: mixed, 1: gated_mixed */
  int compat;
  rl_workspace sum, max, arg; /* B x D: per-set sums, maxima, arg-max rows of the last forward */
  rl_workspace gate, dgate;   /* B: mixing weight of each set; backward scratch */
} mixed_pool;

static const char *mixed_name(const mixed_pool *p) { return p->gated ? "gated_mixed" : "mixed"; }

static int mixed_out_cols(const rl_module *m, const rl_batch *in, int64_t *cols) {
  const mixed_pool *p = (const mixed_pool *)m;
  int rc = rl_expect_sets(in, p->dim, mixed_name(p));
  if (rc) return rc;
  *cols = rl_cols(&in->values);
  return RL_OK;
}

static int mixed_forward(rl_module *m, const rl_batch *in, rl_tensor *out) {
  mixed_pool *p = (mixed_pool *)m;
  int64_t R = rl_rows(&in->values), D = rl_cols(&in->values), B = in->count[0];
  size_t bd = (size_t)(B * D);
  int rc = rl_workspace_reserve(&p->sum, bd * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->max, bd * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->arg, bd * sizeof(int64_t));
  if (!rc) rc = rl_workspace_reserve(&p->gate, (size_t)B * sizeof(real));
  if (rc) return rc;
  const real *x = in->values.data;
  const int64_t *off = in->offsets[0];
  real *sum = p->sum.data, *mx = p->max.data, *gate = p->gate.data, *y = out->data;
  int64_t *arg = p->arg.data;
  const real *w = p->gated ? m->params[0].value.data : NULL;
  double alpha = p->gated ? 0 : rl_setop_sigmoid(m->params[0].value.data[0]);
  int big = R * D >= RL_BASELINE_PARALLEL_MIN_WORK;

#pragma omp parallel for schedule(dynamic, 1) if (big)
  for (int64_t s = 0; s < B; s++) {
    int64_t lo = off[s], hi = off[s + 1];
    double n = (double)(hi - lo);
    real *su = sum + s * D, *ma = mx + s * D;
    rl_setop_sum_max(x, D, lo, hi, su, ma, arg + s * D);
    double g = alpha;
    if (p->gated) {
      double t = 0;
      for (int64_t d = 0; d < D; d++) t += (double)w[d] * su[d];
      g = rl_setop_sigmoid(p->compat == RL_COMPAT_REFERENCE ? t : t / n);
    }
    gate[s] = (real)g;
    for (int64_t d = 0; d < D; d++) y[s * D + d] = (real)(g * su[d] / n + (1 - g) * ma[d]);
  }
  return RL_OK;
}

static int mixed_backward(rl_module *m, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in) {
  mixed_pool *p = (mixed_pool *)m;
  int64_t R = rl_rows(&in->values), D = rl_cols(&in->values), B = in->count[0];
  int rc = rl_workspace_reserve(&p->dgate, (size_t)B * sizeof(real));
  if (rc) return rc;
  const int64_t *off = in->offsets[0];
  const real *sum = p->sum.data, *mx = p->max.data, *gate = p->gate.data, *gy = grad_out->data;
  const int64_t *arg = p->arg.data;
  const real *w = p->gated ? m->params[0].value.data : NULL;
  real *dgate = p->dgate.data;
  real *gx = grad_in ? grad_in->data : NULL;
  int reference = p->compat == RL_COMPAT_REFERENCE;
  int big = R * D >= RL_BASELINE_PARALLEL_MIN_WORK;

#pragma omp parallel for schedule(dynamic, 1) if (big)
  for (int64_t s = 0; s < B; s++) {
    int64_t lo = off[s], hi = off[s + 1];
    double n = (double)(hi - lo), g = gate[s];
    const real *gys = gy + s * D;
    double dg = 0;
    for (int64_t d = 0; d < D; d++) dg += (double)gys[d] * (sum[s * D + d] / n - mx[s * D + d]);
    double t = dg * g * (1 - g);
    dgate[s] = (real)t;
    if (!gx) continue;
    double c = p->gated ? (reference ? t : t / n) : 0;
    for (int64_t r = lo; r < hi; r++)
      for (int64_t d = 0; d < D; d++) gx[r * D + d] = (real)(g * gys[d] / n + (w ? c * w[d] : 0));
    for (int64_t d = 0; d < D; d++) gx[arg[s * D + d] * D + d] += (real)((1 - g) * gys[d]);
  }
  real *pg = m->params[0].grad.data;
  if (!p->gated) {
    double acc = 0;
    for (int64_t s = 0; s < B; s++) acc += dgate[s];
    pg[0] += (real)acc;
  } else {
    for (int64_t d = 0; d < D; d++) {
      double acc = 0;
      for (int64_t s = 0; s < B; s++) {
        double n = (double)(off[s + 1] - off[s]);
        acc += (double)dgate[s] * sum[s * D + d] / (reference ? 1.0 : n);
      }
      pg[d] += (real)acc;
    }
  }
  return RL_OK;
}

static void mixed_destroy(rl_module *m) {
  mixed_pool *p = (mixed_pool *)m;
  rl_workspace_free(&p->sum);
  rl_workspace_free(&p->max);
  rl_workspace_free(&p->arg);
  rl_workspace_free(&p->gate);
  rl_workspace_free(&p->dgate);
}

static const rl_module_ops mixed_ops = {"mixed", mixed_out_cols, mixed_forward, mixed_backward, mixed_destroy};
static const rl_module_ops gated_mixed_ops = {"gated_mixed", mixed_out_cols, mixed_forward, mixed_backward,
                                              mixed_destroy};

static rl_module *mixed_new(int64_t dim, int gated, int compat, rl_rng *g) {
  const char *name = gated ? "gated_mixed" : "mixed";
  if (gated ? dim < 1 : (dim < 1 && dim != -1)) {
    rl_fail(RL_EINVAL, "%s: expected a positive input width%s, got %lld", name, gated ? "" : " (or -1 for any)",
            (long long)dim);
    return NULL;
  }
  if (compat != RL_COMPAT_PAPER && compat != RL_COMPAT_REFERENCE) {
    rl_fail(RL_EINVAL, "%s: unknown compat mode %d", name, compat);
    return NULL;
  }
  mixed_pool *p = rl_calloc(1, sizeof *p);
  if (!p) return NULL;
  rl_module_init(&p->base, gated ? &gated_mixed_ops : &mixed_ops, 1);
  p->dim = dim;
  p->gated = gated;
  p->compat = compat;
  rl_param *w;
  if (gated) {
    int64_t shape[2] = {1, dim};
    w = rl_module_add_param(&p->base, "linear.weight", 2, shape);
    if (w) rl_setop_init_uniform(w->value.data, w->value.numel, 1.0 / sqrt((double)dim), g);
  } else {
    int64_t shape[1] = {1};
    w = rl_module_add_param(&p->base, "alpha", 1, shape);
    if (w) rl_setop_init_normal(w->value.data, 1, g);
  }
  if (!w) {
    rl_module_free(&p->base);
    return NULL;
  }
  return &p->base;
}

rl_module *rl_pool_mixed_new(int64_t dim, int compat, rl_rng *g) { return mixed_new(dim, 0, compat, g); }

rl_module *rl_pool_gated_mixed_new(int64_t dim, int compat, rl_rng *g) { return mixed_new(dim, 1, compat, g); }
