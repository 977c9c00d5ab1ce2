/*
** dynamic.c -- dynamic pooling. Each set's routing is independent, so the whole routing of a set (forward) and its
** reverse pass (backward) run inside one iteration of a parallel loop over sets. Forward keeps the routing
** weights and the unsquashed z of every iteration; backward reuses them (no allocation once warm).
**
** Differences between the paper default and compat = "reference": only the per-set softmax, which adds
** RL_SOFTMAX_EPS (1e-16) to its denominator in compat mode (as the reference's graph softmax). The routing itself
** is the same in both modes (golden/README.md section 3 lists no other departure).
**
** Backward: with s_{i+1} = s_i + X zh_i, zh_i = c(E_i) z_i, c(E) = sqrt(E) / (1 + E), z_i = X^T softmax(s_i):
** dL/ds is carried unchanged from s_{i+1} to s_i; dL/dzh_i = X^T dL/ds_{i+1}, dx_n += dL/ds_n zh_i;
** dL/dz_i = c dzh + (z . dzh) (1 - E) / (sqrt(E) (1 + E)^2) z (taken as c dzh at E = 0, where the squash is not
** differentiable); then the softmax-weighted sum (setops) adds its part to dL/ds_i and to dx.
*/
#include <math.h>
#include <string.h>

#include "dynamic.h"
#include "setops.h"

typedef struct dynamic_pool {
  rl_module base;
  int64_t dim, k;
  int compat;
  rl_workspace att;     /* (k+1) x rows: routing weights of each iteration, the last one gives the output */
  rl_workspace z;       /* k x B x D: unsquashed z of each iteration */
  rl_workspace s;       /* rows: routing logits (forward), dL/ds (backward) */
  rl_workspace tmp;     /* rows: backward scratch */
  rl_workspace gz, gzh; /* B x D: backward scratch */
  int64_t cached_rows;
} dynamic_pool;

static int dynamic_out_cols(const rl_module *m, const rl_batch *in, int64_t *cols) {
  const dynamic_pool *p = (const dynamic_pool *)m;
  int rc = rl_expect_sets(in, p->dim, "dynamic");
  if (rc) return rc;
  *cols = rl_cols(&in->values);
  return RL_OK;
}

static double squash_factor(double E) { return sqrt(E) / (1 + E); }

static int dynamic_forward(rl_module *m, const rl_batch *in, rl_tensor *out) {
  dynamic_pool *p = (dynamic_pool *)m;
  int64_t R = rl_rows(&in->values), D = rl_cols(&in->values), B = in->count[0], K = p->k;
  p->cached_rows = 0;
  int rc = rl_workspace_reserve(&p->att, (size_t)((K + 1) * R) * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->z, (size_t)(K * B * D) * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->s, (size_t)R * sizeof(real));
  if (rc) return rc;
  const real *x = in->values.data;
  const int64_t *off = in->offsets[0];
  real *att = p->att.data, *zs = p->z.data, *sc = p->s.data;
  double eps = p->compat == RL_COMPAT_REFERENCE ? RL_SOFTMAX_EPS : 0;
  int big = R * D * (K + 1) >= RL_BASELINE_PARALLEL_MIN_WORK;

#pragma omp parallel for schedule(dynamic, 1) if (big)
  for (int64_t s = 0; s < B; s++) {
    int64_t lo = off[s], hi = off[s + 1];
    for (int64_t r = lo; r < hi; r++) sc[r] = 0;
    for (int64_t it = 0; it < K; it++) {
      real *z = zs + (it * B + s) * D;
      rl_setop_softmax_pool(x, D, lo, hi, sc, att + it * R, z, eps);
      double E = 0;
      for (int64_t d = 0; d < D; d++) E += (double)z[d] * z[d];
      double c = squash_factor(E);
      for (int64_t r = lo; r < hi; r++) {
        double dot = 0;
        for (int64_t d = 0; d < D; d++) dot += (double)x[r * D + d] * z[d];
        sc[r] = (real)(sc[r] + c * dot);
      }
    }
    rl_setop_softmax_pool(x, D, lo, hi, sc, att + K * R, out->data + s * D, eps);
  }
  p->cached_rows = R;
  return RL_OK;
}

static int dynamic_backward(rl_module *m, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in) {
  dynamic_pool *p = (dynamic_pool *)m;
  int64_t R = rl_rows(&in->values), D = rl_cols(&in->values), B = in->count[0], K = p->k;
  if (!grad_in) return RL_OK; /* no parameters: nothing else to compute */
  int rc = rl_workspace_reserve(&p->tmp, (size_t)R * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->gz, (size_t)(B * D) * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->gzh, (size_t)(B * D) * sizeof(real));
  if (rc) return rc;
  const real *x = in->values.data, *att = p->att.data, *zs = p->z.data, *gy = grad_out->data;
  const int64_t *off = in->offsets[0];
  real *gs = p->s.data, *tmp = p->tmp.data, *gx = grad_in->data;
  int big = R * D * (K + 1) >= RL_BASELINE_PARALLEL_MIN_WORK;

  memset(gx, 0, (size_t)(R * D) * sizeof(real));
#pragma omp parallel for schedule(dynamic, 1) if (big)
  for (int64_t s = 0; s < B; s++) {
    int64_t lo = off[s], hi = off[s + 1];
    real *gz = (real *)p->gz.data + s * D, *gzh = (real *)p->gzh.data + s * D;
    rl_setop_softmax_pool_backward(x, D, lo, hi, att + K * R, gy + s * D, gs, gx);
    for (int64_t it = K - 1; it >= 0; it--) {
      const real *z = zs + (it * B + s) * D;
      double E = 0;
      for (int64_t d = 0; d < D; d++) E += (double)z[d] * z[d];
      double c = squash_factor(E);
      /* s_{it+1} = s_it + X (c z) */
      double zdot = 0;
      for (int64_t d = 0; d < D; d++) {
        double acc = 0;
        for (int64_t r = lo; r < hi; r++) acc += (double)gs[r] * x[r * D + d];
        gzh[d] = (real)acc;
        zdot += acc * z[d];
      }
      for (int64_t r = lo; r < hi; r++) rl_axpy(D, (real)(c * gs[r]), z, gx + r * D);
      /* zh = c(E) z */
      double dc = E > 0 ? zdot * (1 - E) / (sqrt(E) * (1 + E) * (1 + E)) : 0;
      for (int64_t d = 0; d < D; d++) gz[d] = (real)(c * gzh[d] + dc * z[d]);
      /* z = X^T softmax(s_it) */
      rl_setop_softmax_pool_backward(x, D, lo, hi, att + it * R, gz, tmp, gx);
      for (int64_t r = lo; r < hi; r++) gs[r] += tmp[r];
    }
  }
  return RL_OK;
}

static void dynamic_destroy(rl_module *m) {
  dynamic_pool *p = (dynamic_pool *)m;
  rl_workspace *ws[] = {&p->att, &p->z, &p->s, &p->tmp, &p->gz, &p->gzh};
  for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) rl_workspace_free(ws[i]);
}

static const rl_module_ops dynamic_ops = {"dynamic", dynamic_out_cols, dynamic_forward, dynamic_backward,
                                          dynamic_destroy};

rl_module *rl_pool_dynamic_new(int64_t dim, int64_t k, int compat) {
  if (dim < 1 && dim != -1) {
    rl_fail(RL_EINVAL, "dynamic: expected a positive input width (or -1 for any), got %lld", (long long)dim);
    return NULL;
  }
  if (k < 1 || k > RL_BASELINE_MAX_STEPS) {
    rl_fail(RL_EINVAL, "dynamic: expected 1..%d routing iterations k, got %lld", RL_BASELINE_MAX_STEPS,
            (long long)k);
    return NULL;
  }
  if (compat != RL_COMPAT_PAPER && compat != RL_COMPAT_REFERENCE) {
    rl_fail(RL_EINVAL, "dynamic: unknown compat mode %d", compat);
    return NULL;
  }
  dynamic_pool *p = rl_calloc(1, sizeof *p);
  if (!p) return NULL;
  rl_module_init(&p->base, &dynamic_ops, 1);
  p->dim = dim;
  p->k = k;
  p->compat = compat;
  return &p->base;
}

const real *rl_pool_dynamic_weights(const rl_module *m, int64_t *rows) {
  if (m->ops != &dynamic_ops) return NULL;
  const dynamic_pool *p = (const dynamic_pool *)m;
  *rows = p->cached_rows;
  return p->cached_rows ? (const real *)p->att.data + p->k * p->cached_rows : NULL;
}
