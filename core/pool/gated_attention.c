/*
** gated_attention.c -- gated attention pooling. The hidden branches of all rows come from two rl_gemm calls; the
** per-set softmax and weighted sums run in parallel across sets. Forward caches tanh(W1 x_n), the gate and the
** attention weights; backward reuses them (no allocation once the workspaces are big enough).
**
** Differences between the paper default and compat = "reference" (golden/README.md section 6, item 10):
**   the gate. Ilse et al. (eq. 9) gate with the elementwise sigmoid, v_n = sigm(W2 x_n) (default). The authors'
**   code applies a softmax across the hidden units, v_n = softmax_j((W2 x_n)_j) (compat), which makes the gates
**   of one row compete and sum to 1.
**   The per-set softmax adds RL_SOFTMAX_EPS to its denominator in compat mode only (1e-16 relative).
**
** Backward, with g the output gradient of the set: dL/ds_n from setops; dL/dw3 += sum_n dL/ds_n (u_n * v_n);
** du = dL/ds_n w3 * v_n, dv = dL/ds_n w3 * u_n; through tanh: dp1 = du (1 - u^2); through the gate:
** dp2 = dv v (1 - v) (sigmoid) or v (dv - sum_j v_j dv_j) (softmax); dW1 += dP1^T X, dW2 += dP2^T X,
** dX = dP1 W1 + dP2 W2 + a_n g.
*/
#include <math.h>

#include "../blas.h"
#include "gated_attention.h"
#include "setops.h"

enum { W1, W2, W3 };

typedef struct gated_attention_pool {
  rl_module base;
  int64_t dim, hidden;
  int compat;
  rl_workspace u, v;     /* rows x hidden: tanh(W1 x_n), gate(W2 x_n) of the last forward */
  rl_workspace a;        /* rows: attention weights of the last forward */
  rl_workspace p1, p2;   /* rows x hidden: backward, gradients w.r.t. W1 x_n and W2 x_n */
  rl_workspace gs;       /* rows: backward, gradient w.r.t. the scores */
  int64_t cached_rows;   /* rows of the last forward (0 = none) */
} gated_attention_pool;

static int gated_attention_out_cols(const rl_module *m, const rl_batch *in, int64_t *cols) {
  const gated_attention_pool *p = (const gated_attention_pool *)m;
  int rc = rl_expect_sets(in, p->dim, "gated_attention");
  if (rc) return rc;
  *cols = p->dim;
  return RL_OK;
}

static int gated_attention_forward(rl_module *m, const rl_batch *in, rl_tensor *out) {
  gated_attention_pool *p = (gated_attention_pool *)m;
  int64_t R = rl_rows(&in->values), D = p->dim, H = p->hidden, B = in->count[0];
  p->cached_rows = 0;
  int rc = rl_workspace_reserve(&p->u, (size_t)(R * H) * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->v, (size_t)(R * H) * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->a, (size_t)R * sizeof(real));
  if (rc) return rc;
  const real *x = in->values.data, *w3 = m->params[W3].value.data;
  real *u = p->u.data, *v = p->v.data, *a = p->a.data;
  const int64_t *off = in->offsets[0];
  int reference = p->compat == RL_COMPAT_REFERENCE;
  int big = R * (D + H) >= RL_BASELINE_PARALLEL_MIN_WORK;

  rl_gemm(0, 1, R, H, D, 1, x, D, m->params[W1].value.data, D, 0, u, H);
  rl_gemm(0, 1, R, H, D, 1, x, D, m->params[W2].value.data, D, 0, v, H);
#pragma omp parallel for schedule(static) if (big)
  for (int64_t r = 0; r < R; r++) {
    real *ur = u + r * H, *vr = v + r * H;
    if (reference) {
      double mx = vr[0], total = 0;
      for (int64_t j = 1; j < H; j++) mx = vr[j] > mx ? vr[j] : mx;
      for (int64_t j = 0; j < H; j++) total += exp((double)vr[j] - mx);
      for (int64_t j = 0; j < H; j++) vr[j] = (real)(exp((double)vr[j] - mx) / total);
    } else {
      for (int64_t j = 0; j < H; j++) vr[j] = (real)rl_setop_sigmoid(vr[j]);
    }
    double s = 0;
    for (int64_t j = 0; j < H; j++) {
      ur[j] = (real)tanh((double)ur[j]);
      s += (double)w3[j] * ur[j] * vr[j];
    }
    a[r] = (real)s;
  }
  double eps = reference ? RL_SOFTMAX_EPS : 0;
#pragma omp parallel for schedule(dynamic, 1) if (big)
  for (int64_t s = 0; s < B; s++) rl_setop_softmax_pool(x, D, off[s], off[s + 1], a, a, out->data + s * D, eps);
  p->cached_rows = R;
  return RL_OK;
}

static int gated_attention_backward(rl_module *m, const rl_batch *in, const rl_tensor *grad_out,
                                    rl_tensor *grad_in) {
  gated_attention_pool *p = (gated_attention_pool *)m;
  int64_t R = rl_rows(&in->values), D = p->dim, H = p->hidden, B = in->count[0];
  int rc = rl_workspace_reserve(&p->p1, (size_t)(R * H) * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->p2, (size_t)(R * H) * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->gs, (size_t)R * sizeof(real));
  if (rc) return rc;
  const real *x = in->values.data, *w3 = m->params[W3].value.data, *gy = grad_out->data;
  const real *u = p->u.data, *v = p->v.data, *a = p->a.data;
  real *p1 = p->p1.data, *p2 = p->p2.data, *gs = p->gs.data, *gw3 = m->params[W3].grad.data;
  const int64_t *off = in->offsets[0];
  int reference = p->compat == RL_COMPAT_REFERENCE;
  int big = R * (D + H) >= RL_BASELINE_PARALLEL_MIN_WORK;

#pragma omp parallel for schedule(dynamic, 1) if (big)
  for (int64_t s = 0; s < B; s++) rl_setop_softmax_pool_backward(x, D, off[s], off[s + 1], a, gy + s * D, gs, NULL);
  for (int64_t j = 0; j < H; j++) {
    double acc = 0;
    for (int64_t r = 0; r < R; r++) acc += (double)gs[r] * u[r * H + j] * v[r * H + j];
    gw3[j] += (real)acc;
  }
#pragma omp parallel for schedule(static) if (big)
  for (int64_t r = 0; r < R; r++) {
    const real *ur = u + r * H, *vr = v + r * H;
    real *d1 = p1 + r * H, *d2 = p2 + r * H;
    double dot = 0;
    for (int64_t j = 0; j < H; j++) {
      double c = (double)gs[r] * w3[j];
      d1[j] = (real)(c * vr[j] * (1 - (double)ur[j] * ur[j]));
      d2[j] = (real)(c * ur[j]); /* dL/dv, turned into dL/d(W2 x) below */
      dot += (double)vr[j] * d2[j];
    }
    for (int64_t j = 0; j < H; j++)
      d2[j] = reference ? (real)(vr[j] * ((double)d2[j] - dot)) : (real)(d2[j] * vr[j] * (1 - (double)vr[j]));
  }
  rl_gemm(1, 0, H, D, R, 1, p1, H, x, D, 1, m->params[W1].grad.data, D);
  rl_gemm(1, 0, H, D, R, 1, p2, H, x, D, 1, m->params[W2].grad.data, D);
  if (grad_in) {
    real *gx = grad_in->data;
    rl_gemm(0, 0, R, D, H, 1, p1, H, m->params[W1].value.data, D, 0, gx, D);
    rl_gemm(0, 0, R, D, H, 1, p2, H, m->params[W2].value.data, D, 1, gx, D);
#pragma omp parallel for schedule(dynamic, 1) if (big)
    for (int64_t s = 0; s < B; s++)
      for (int64_t r = off[s]; r < off[s + 1]; r++) rl_axpy(D, a[r], gy + s * D, gx + r * D);
  }
  return RL_OK;
}

static void gated_attention_destroy(rl_module *m) {
  gated_attention_pool *p = (gated_attention_pool *)m;
  rl_workspace *ws[] = {&p->u, &p->v, &p->a, &p->p1, &p->p2, &p->gs};
  for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) rl_workspace_free(ws[i]);
}

static const rl_module_ops gated_attention_ops = {"gated_attention", gated_attention_out_cols,
                                                  gated_attention_forward, gated_attention_backward,
                                                  gated_attention_destroy};

rl_module *rl_pool_gated_attention_new(int64_t dim, int64_t hidden, int compat, rl_rng *g) {
  if (dim < 1) {
    rl_fail(RL_EINVAL, "gated_attention: expected a positive input width, got %lld", (long long)dim);
    return NULL;
  }
  if (hidden < 1) {
    rl_fail(RL_EINVAL, "gated_attention: expected a positive hidden width, got %lld", (long long)hidden);
    return NULL;
  }
  if (compat != RL_COMPAT_PAPER && compat != RL_COMPAT_REFERENCE) {
    rl_fail(RL_EINVAL, "gated_attention: unknown compat mode %d", compat);
    return NULL;
  }
  gated_attention_pool *p = rl_calloc(1, sizeof *p);
  if (!p) return NULL;
  rl_module_init(&p->base, &gated_attention_ops, 1);
  p->dim = dim;
  p->hidden = hidden;
  p->compat = compat;
  int64_t wshape[2] = {hidden, dim}, w3shape[2] = {1, hidden};
  const char *names[3] = {"linear_r1.weight", "linear_r2.weight", "linear_r3.weight"};
  for (int i = 0; i < 3; i++) {
    rl_param *q = rl_module_add_param(&p->base, names[i], 2, i < 2 ? wshape : w3shape);
    if (!q) {
      rl_module_free(&p->base);
      return NULL;
    }
    rl_setop_init_uniform(q->value.data, q->value.numel, 1.0 / sqrt((double)(i < 2 ? dim : hidden)), g);
  }
  return &p->base;
}

const real *rl_pool_gated_attention_weights(const rl_module *m, int64_t *rows) {
  if (m->ops != &gated_attention_ops) return NULL;
  const gated_attention_pool *p = (const gated_attention_pool *)m;
  *rows = p->cached_rows;
  return p->cached_rows ? p->a.data : NULL;
}
