/*
** deepset.c -- DeepSet pooling: a sigmoid-weighted mix of a per-set average and the per-set maximum, followed by
** a four-layer ELU MLP. The pooling runs in parallel across sets; the MLP runs on all B pooled rows at once
** through rl_gemm.
**
** Differences between the paper default and compat = "reference" (golden/README.md section 6, item 10):
**   the averaging branch. The mixed pooling that DeepSet's invariant form is built on mixes mean and max, which
**   keeps both branches on the same scale for any set size (default). The authors' code mixes the SUM with the
**   max (compat), so the first branch grows with the set size.
**
** Backward: the MLP by the chain rule (elu'(v) = 1 for v > 0, e^v otherwise), giving dL/dz; then with
** alpha = sigmoid(raw): dL/draw += alpha (1 - alpha) sum_{b,d} dL/dz (pool - max), and
** dL/dx_n = alpha dL/dz c + (1 - alpha) dL/dz on the arg-max row of each feature, c = 1/N (mean) or 1 (sum).
*/
#include <math.h>
#include <stdio.h>

#include "../blas.h"
#include "deepset.h"
#include "setops.h"

#define DEEPSET_LAYERS 4 /* regressor.0, .2, .4, .6 */

typedef struct deepset_pool {
  rl_module base;
  int64_t dim, hidden;
  int compat;
  rl_workspace sum, max, arg, z; /* B x dim: per-set sums, maxima, arg-max rows, mixed pooling */
  rl_workspace pre, act;         /* 3 x B x hidden: hidden pre-activations and their elu */
  rl_workspace g1, g2, gz;       /* backward scratch: B x hidden (two), B x dim */
  rl_workspace dmix;             /* B: per-set contribution to dL/dalpha */
} deepset_pool;

static int deepset_out_cols(const rl_module *m, const rl_batch *in, int64_t *cols) {
  const deepset_pool *p = (const deepset_pool *)m;
  int rc = rl_expect_sets(in, p->dim, "deepset");
  if (rc) return rc;
  *cols = p->dim;
  return RL_OK;
}

static double elu(double v) { return v > 0 ? v : expm1(v); }

/* y (rows x out) = x (rows x in) W^T + b */
static void linear_rows(const real *x, int64_t rows, int64_t in, const rl_param *W, const rl_param *b, real *y) {
  int64_t out = W->value.shape[0];
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < out; j++) y[r * out + j] = b->value.data[j];
  rl_gemm(0, 1, rows, out, in, 1, x, in, W->value.data, in, 1, y, out);
}

static int deepset_forward(rl_module *m, const rl_batch *in, rl_tensor *out) {
  deepset_pool *p = (deepset_pool *)m;
  int64_t R = rl_rows(&in->values), D = p->dim, H = p->hidden, B = in->count[0];
  size_t bd = (size_t)(B * D), bh = (size_t)(B * H);
  int rc = rl_workspace_reserve(&p->sum, bd * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->max, bd * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->arg, bd * sizeof(int64_t));
  if (!rc) rc = rl_workspace_reserve(&p->z, bd * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->pre, 3 * bh * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->act, 3 * bh * sizeof(real));
  if (rc) return rc;
  const real *x = in->values.data;
  const int64_t *off = in->offsets[0];
  real *sum = p->sum.data, *mx = p->max.data, *z = p->z.data, *pre = p->pre.data, *act = p->act.data;
  int64_t *arg = p->arg.data;
  double alpha = rl_setop_sigmoid(m->params[0].value.data[0]);
  int reference = p->compat == RL_COMPAT_REFERENCE;
  int big = R * D >= RL_BASELINE_PARALLEL_MIN_WORK;

#pragma omp parallel for schedule(dynamic, 1) if (big)
  for (int64_t s = 0; s < B; s++) {
    int64_t lo = off[s], hi = off[s + 1];
    double c = reference ? 1.0 : 1.0 / (double)(hi - lo);
    rl_setop_sum_max(x, D, lo, hi, sum + s * D, mx + s * D, arg + s * D);
    for (int64_t d = 0; d < D; d++)
      z[s * D + d] = (real)(alpha * c * sum[s * D + d] + (1 - alpha) * mx[s * D + d]);
  }
  const real *layer_in = z;
  int64_t width = D;
  for (int l = 0; l < DEEPSET_LAYERS - 1; l++) {
    real *pl = pre + l * bh, *al = act + l * bh;
    linear_rows(layer_in, B, width, &m->params[1 + 2 * l], &m->params[2 + 2 * l], pl);
    for (size_t i = 0; i < bh; i++) al[i] = (real)elu(pl[i]);
    layer_in = al;
    width = H;
  }
  linear_rows(layer_in, B, H, &m->params[7], &m->params[8], out->data);
  return RL_OK;
}

static int deepset_backward(rl_module *m, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in) {
  deepset_pool *p = (deepset_pool *)m;
  int64_t R = rl_rows(&in->values), D = p->dim, H = p->hidden, B = in->count[0];
  size_t bh = (size_t)(B * H);
  int rc = rl_workspace_reserve(&p->g1, bh * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->g2, bh * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->gz, (size_t)(B * D) * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->dmix, (size_t)B * sizeof(real));
  if (rc) return rc;
  const int64_t *off = in->offsets[0];
  const real *sum = p->sum.data, *mx = p->max.data, *z = p->z.data, *pre = p->pre.data, *act = p->act.data;
  const int64_t *arg = p->arg.data;
  real *ga = p->g1.data, *gpre = p->g2.data, *gz = p->gz.data, *dmix = p->dmix.data;

  /* last layer: y = a2 W6^T + b6 */
  const real *gy = grad_out->data;
  rl_param *W = &m->params[7], *b = &m->params[8];
  rl_gemm(1, 0, D, H, B, 1, gy, D, act + 2 * bh, H, 1, W->grad.data, H);
  rl_setop_add_colsum(gy, B, D, b->grad.data);
  rl_gemm(0, 0, B, H, D, 1, gy, D, W->value.data, H, 0, ga, H);
  /* hidden layers, last to first: a_l = elu(pre_l), pre_l = in_l W^T + b */
  for (int l = DEEPSET_LAYERS - 2; l >= 0; l--) {
    const real *pl = pre + l * bh, *al = act + l * bh;
    for (size_t i = 0; i < bh; i++) gpre[i] = pl[i] > 0 ? ga[i] : ga[i] * (al[i] + 1);
    const real *layer_in = l ? act + (l - 1) * bh : z;
    int64_t width = l ? H : D;
    W = &m->params[1 + 2 * l];
    b = &m->params[2 + 2 * l];
    rl_gemm(1, 0, H, width, B, 1, gpre, H, layer_in, width, 1, W->grad.data, width);
    rl_setop_add_colsum(gpre, B, H, b->grad.data);
    rl_gemm(0, 0, B, width, H, 1, gpre, H, W->value.data, width, 0, l ? ga : gz, width);
  }

  double alpha = rl_setop_sigmoid(m->params[0].value.data[0]);
  int reference = p->compat == RL_COMPAT_REFERENCE;
  real *gx = grad_in ? grad_in->data : NULL;
  int big = R * D >= RL_BASELINE_PARALLEL_MIN_WORK;
#pragma omp parallel for schedule(dynamic, 1) if (big)
  for (int64_t s = 0; s < B; s++) {
    int64_t lo = off[s], hi = off[s + 1];
    double c = reference ? 1.0 : 1.0 / (double)(hi - lo);
    const real *g = gz + s * D;
    double acc = 0;
    for (int64_t d = 0; d < D; d++) acc += (double)g[d] * (c * sum[s * D + d] - mx[s * D + d]);
    dmix[s] = (real)acc;
    if (!gx) continue;
    for (int64_t r = lo; r < hi; r++)
      for (int64_t d = 0; d < D; d++) gx[r * D + d] = (real)(alpha * c * g[d]);
    for (int64_t d = 0; d < D; d++) gx[arg[s * D + d] * D + d] += (real)((1 - alpha) * g[d]);
  }
  double acc = 0;
  for (int64_t s = 0; s < B; s++) acc += dmix[s];
  m->params[0].grad.data[0] += (real)(acc * alpha * (1 - alpha));
  return RL_OK;
}

static void deepset_destroy(rl_module *m) {
  deepset_pool *p = (deepset_pool *)m;
  rl_workspace *ws[] = {&p->sum, &p->max, &p->arg, &p->z, &p->pre, &p->act, &p->g1, &p->g2, &p->gz, &p->dmix};
  for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) rl_workspace_free(ws[i]);
}

static const rl_module_ops deepset_ops = {"deepset", deepset_out_cols, deepset_forward, deepset_backward,
                                          deepset_destroy};

rl_module *rl_pool_deepset_new(int64_t dim, int64_t hidden, int compat, rl_rng *g) {
  if (dim < 1) {
    rl_fail(RL_EINVAL, "deepset: expected a positive input width, got %lld", (long long)dim);
    return NULL;
  }
  if (hidden < 1) {
    rl_fail(RL_EINVAL, "deepset: expected a positive hidden width, got %lld", (long long)hidden);
    return NULL;
  }
  if (compat != RL_COMPAT_PAPER && compat != RL_COMPAT_REFERENCE) {
    rl_fail(RL_EINVAL, "deepset: unknown compat mode %d", compat);
    return NULL;
  }
  deepset_pool *p = rl_calloc(1, sizeof *p);
  if (!p) return NULL;
  rl_module_init(&p->base, &deepset_ops, 1);
  p->dim = dim;
  p->hidden = hidden;
  p->compat = compat;
  int64_t one[1] = {1};
  rl_param *a = rl_module_add_param(&p->base, "alpha", 1, one);
  if (!a) goto fail;
  rl_setop_init_normal(a->value.data, 1, g);
  for (int l = 0; l < DEEPSET_LAYERS; l++) {
    int64_t fan_in = l ? hidden : dim, fan_out = l == DEEPSET_LAYERS - 1 ? dim : hidden;
    int64_t wshape[2] = {fan_out, fan_in}, bshape[1] = {fan_out};
    char wname[RL_PARAM_NAME_LEN], bname[RL_PARAM_NAME_LEN];
    snprintf(wname, sizeof wname, "regressor.%d.weight", 2 * l);
    snprintf(bname, sizeof bname, "regressor.%d.bias", 2 * l);
    rl_param *W = rl_module_add_param(&p->base, wname, 2, wshape);
    if (!W) goto fail;
    rl_setop_init_uniform(W->value.data, W->value.numel, 1.0 / sqrt((double)fan_in), g);
    rl_param *b = rl_module_add_param(&p->base, bname, 1, bshape);
    if (!b) goto fail;
    rl_setop_init_uniform(b->value.data, b->value.numel, 1.0 / sqrt((double)fan_in), g);
  }
  return &p->base;
fail:
  rl_module_free(&p->base);
  return NULL;
}
