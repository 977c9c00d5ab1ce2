/*
** attention.c -- attention pooling. The hidden activations tanh(X V^T) of all rows come from one rl_gemm; the
** per-set softmax and weighted sums run in parallel across sets. Forward caches tanh(V x_n) and a_n in module
** workspaces; backward reuses them (no allocation once the workspaces are big enough).
**
** Backward, per set, with g = grad of the output row: g_a_n = g . x_n; g_s_n = a_n (g_a_n - sum_k a_k g_a_k)
** (the max shift of the softmax is treated as a constant, as the reference's detached max does; with the eps
** term this drops a relative contribution of order RL_SOFTMAX_EPS); g_w += sum_n g_s_n h_n;
** g_u_n = g_s_n w * (1 - h_n^2); g_V += G_u^T X; g_x_n = a_n g + V^T g_u_n.
*/
#include <math.h>

#include "../blas.h"
#include "../nn/linear.h"
#include "attention.h"
#include "basic.h"

typedef struct attention_pool {
  rl_module base;
  int64_t dim, hidden;
  rl_workspace h;      /* rows x hidden: tanh(V x_n) of the last forward */
  rl_workspace a;      /* rows: attention weights of the last forward */
  rl_workspace gu;     /* rows x hidden: gradient w.r.t. V x_n (backward) */
  rl_workspace gs;     /* rows: gradient w.r.t. the scores (backward) */
  int64_t cached_rows; /* rows of the last forward (0 = none) */
} attention_pool;

static int attention_out_cols(const rl_module *m, const rl_batch *in, int64_t *cols) {
  const attention_pool *p = (const attention_pool *)m;
  int rc = rl_expect_sets(in, p->dim, "attention");
  if (rc) return rc;
  *cols = p->dim;
  return RL_OK;
}

static int attention_forward(rl_module *m, const rl_batch *in, rl_tensor *out) {
  attention_pool *p = (attention_pool *)m;
  int64_t R = rl_rows(&in->values), D = p->dim, Hd = p->hidden, B = in->count[0];
  p->cached_rows = 0;
  int rc = rl_workspace_reserve(&p->h, (size_t)(R * Hd) * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->a, (size_t)R * sizeof(real));
  if (rc) return rc;
  const real *x = in->values.data, *V = m->params[0].value.data, *w = m->params[1].value.data;
  real *h = p->h.data, *a = p->a.data;
  int big = R * (D + Hd) >= RL_POOL_PARALLEL_MIN_WORK;

  rl_gemm(0, 1, R, Hd, D, 1, x, D, V, D, 0, h, Hd); /* h = X V^T */
#pragma omp parallel for schedule(static) if (big)
  for (int64_t i = 0; i < R * Hd; i++) h[i] = (real)tanh((double)h[i]);
  rl_gemv(0, R, Hd, 1, h, Hd, w, 0, a); /* scores, replaced by the weights below */

  const int64_t *off = in->offsets[0];
#pragma omp parallel for schedule(static) if (big)
  for (int64_t s = 0; s < B; s++) {
    int64_t lo = off[s], hi = off[s + 1];
    double mx = a[lo], sum = 0;
    for (int64_t r = lo + 1; r < hi; r++) mx = a[r] > mx ? a[r] : mx;
    for (int64_t r = lo; r < hi; r++) sum += exp((double)a[r] - mx);
    double denom = sum + RL_SOFTMAX_EPS;
    for (int64_t r = lo; r < hi; r++) a[r] = (real)(exp((double)a[r] - mx) / denom);
    real *y = out->data + s * D;
    for (int64_t d = 0; d < D; d++) {
      double acc = 0;
      for (int64_t r = lo; r < hi; r++) acc += (double)a[r] * x[r * D + d];
      y[d] = (real)acc;
    }
  }
  p->cached_rows = R;
  return RL_OK;
}

static int attention_backward(rl_module *m, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in) {
  attention_pool *p = (attention_pool *)m;
  int64_t R = rl_rows(&in->values), D = p->dim, Hd = p->hidden, B = in->count[0];
  int rc = rl_workspace_reserve(&p->gu, (size_t)(R * Hd) * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->gs, (size_t)R * sizeof(real));
  if (rc) return rc;
  const real *x = in->values.data, *V = m->params[0].value.data, *w = m->params[1].value.data;
  const real *h = p->h.data, *a = p->a.data, *gy = grad_out->data;
  real *gu = p->gu.data, *gs = p->gs.data;
  const int64_t *off = in->offsets[0];
  int big = R * (D + Hd) >= RL_POOL_PARALLEL_MIN_WORK;

#pragma omp parallel for schedule(static) if (big)
  for (int64_t s = 0; s < B; s++) {
    int64_t lo = off[s], hi = off[s + 1];
    const real *g = gy + s * D;
    double avg = 0;
    for (int64_t r = lo; r < hi; r++) {
      double ga = 0;
      for (int64_t d = 0; d < D; d++) ga += (double)g[d] * x[r * D + d];
      gs[r] = (real)ga;
      avg += a[r] * ga;
    }
    for (int64_t r = lo; r < hi; r++) gs[r] = (real)(a[r] * (gs[r] - avg));
  }
  rl_gemv(1, R, Hd, 1, h, Hd, gs, 1, m->params[1].grad.data); /* g_w += H^T g_s */
#pragma omp parallel for schedule(static) if (big)
  for (int64_t r = 0; r < R; r++)
    for (int64_t j = 0; j < Hd; j++) {
      real hv = h[r * Hd + j];
      gu[r * Hd + j] = gs[r] * w[j] * (1 - hv * hv);
    }
  rl_gemm(1, 0, Hd, D, R, 1, gu, Hd, x, D, 1, m->params[0].grad.data, D); /* g_V += G_u^T X */
  if (grad_in) {
    real *gx = grad_in->data;
    rl_gemm(0, 0, R, D, Hd, 1, gu, Hd, V, D, 0, gx, D); /* g_X = G_u V */
#pragma omp parallel for schedule(static) if (big)
    for (int64_t s = 0; s < B; s++) {
      const real *g = gy + s * D;
      for (int64_t r = off[s]; r < off[s + 1]; r++) rl_axpy(D, a[r], g, gx + r * D);
    }
  }
  return RL_OK;
}

static void attention_destroy(rl_module *m) {
  attention_pool *p = (attention_pool *)m;
  rl_workspace_free(&p->h);
  rl_workspace_free(&p->a);
  rl_workspace_free(&p->gu);
  rl_workspace_free(&p->gs);
}

static const rl_module_ops attention_ops = {"attention", attention_out_cols, attention_forward, attention_backward,
                                            attention_destroy};

rl_module *rl_pool_attention_new(int64_t dim, int64_t hidden, rl_rng *g) {
  if (dim < 1) {
    rl_fail(RL_EINVAL, "attention: expected a positive input width, got %lld", (long long)dim);
    return NULL;
  }
  if (hidden < 1) {
    rl_fail(RL_EINVAL, "attention: expected a positive hidden width, got %lld", (long long)hidden);
    return NULL;
  }
  attention_pool *p = rl_calloc(1, sizeof *p);
  if (!p) return NULL;
  rl_module_init(&p->base, &attention_ops, 1);
  p->dim = dim;
  p->hidden = hidden;
  int64_t vshape[2] = {hidden, dim}, wshape[2] = {1, hidden};
  rl_param *V = rl_module_add_param(&p->base, "V", 2, vshape);
  rl_param *w = V ? rl_module_add_param(&p->base, "w", 2, wshape) : NULL;
  if (!w) {
    rl_module_free(&p->base);
    return NULL;
  }
  rl_init_uniform(V->value.data, V->value.numel, 1.0 / sqrt((double)dim), g);
  rl_init_uniform(w->value.data, w->value.numel, 1.0 / sqrt((double)hidden), g);
  return &p->base;
}

const real *rl_pool_attention_weights(const rl_module *m, int64_t *rows) {
  if (m->ops != &attention_ops) return NULL;
  const attention_pool *p = (const attention_pool *)m;
  *rows = p->cached_rows;
  return p->cached_rows ? p->a.data : NULL;
}
