/*
** swe.c -- the sliced-Wasserstein embedding module (pool_swe) and the embedding half of pool_cswe: slicing
** directions through weight normalisation, sort-based embedding with quantile interpolation for ragged sets,
** the two output layouts, and the backward through the sorts (see swe.h).
**
** Layout: projections are computed slice-major (L x total), per set by a gemm or, for few directions, a direct
** kernel (project_set), so every (slice, set) segment is contiguous and sorts in place; sets x slices run in
** parallel (OpenMP). The backward scatters the gradient of each sorted position back through the permutation into a
** total x L matrix, then two gemms give the input and direction gradients.
*/
#include <math.h>
#include <omp.h>
#include <string.h>

#include "../blas.h"
#include "swe.h"

#define SWE_ALIGN 64
#define SWE_INIT_RETRIES 16 /* redraws of a direction that came out (numerically) dependent on the others */

static size_t align_up(size_t x) { return (x + SWE_ALIGN - 1) & ~(size_t)(SWE_ALIGN - 1); }

static const rl_module_ops swe_ops;

int rl_swe_is(const rl_module *m) { return m && (m->ops == &swe_ops || rl_cswe_is(m)); }

void *rl_swe_workspace(rl_swe *s, int k, size_t bytes) {
  if (rl_workspace_reserve(&s->ws[k], bytes ? bytes : 1)) return NULL;
  return s->ws[k].data;
}

/* ------------------------------------------------------------------------------------------------ config */

int rl_swe_config_check(const rl_swe_config *cfg, const char *kind) {
  if (cfg->dim < 1) return rl_fail(RL_EINVAL, "%s: dim must be >= 1, got %lld", kind, (long long)cfg->dim);
  if (cfg->slices < 1) return rl_fail(RL_EINVAL, "%s: slices must be >= 1, got %lld", kind, (long long)cfg->slices);
  if (cfg->refs < 1) return rl_fail(RL_EINVAL, "%s: refs must be >= 1, got %lld", kind, (long long)cfg->refs);
  if (cfg->refs > INT32_MAX || cfg->slices > INT32_MAX)
    return rl_fail(RL_EINVAL, "%s: slices and refs must be below 2^31", kind);
  if (cfg->output != RL_SWE_OUT_FLAT && cfg->output != RL_SWE_OUT_REFERENCE)
    return rl_fail(RL_EINVAL, "%s: unknown output layout %d", kind, cfg->output);
  if (!(cfg->tau > 0) || !isfinite(cfg->tau))
    return rl_fail(RL_EINVAL, "%s: tau must be a positive finite number, got %g", kind, cfg->tau);
  return RL_OK;
}

/* ------------------------------------------------------------------------------------------------ lifecycle */

static void swe_destroy(rl_module *m) {
  rl_swe *s = (rl_swe *)m;
  rl_free(s->theta_n);
  rl_free(s->vnorm);
  rl_free(s->omega);
  rl_free(s->lambda);
  rl_free(s->slack);
  rl_free(s->eps);
  rl_free(s->swgg_hard);
  rl_free(s->swgg_soft);
  rl_free(s->gtheta);
  for (size_t k = 0; k < sizeof s->ws / sizeof s->ws[0]; k++) rl_workspace_free(&s->ws[k]);
}

/* Orthogonal unit rows (blocks of dim rows when L > dim), from Gaussian draws by modified Gram-Schmidt. */
static void init_directions(real *v, int64_t L, int64_t d, rl_rng *rng, double *row) {
  for (int64_t l = 0; l < L; l++) {
    int64_t start = (l / d) * d;
    for (int attempt = 0; attempt < SWE_INIT_RETRIES; attempt++) {
      for (int64_t k = 0; k < d; k++) row[k] = rl_rng_normal(rng);
      for (int64_t q = start; q < l; q++) {
        double dot = 0;
        for (int64_t k = 0; k < d; k++) dot += row[k] * (double)v[q * d + k];
        for (int64_t k = 0; k < d; k++) row[k] -= dot * (double)v[q * d + k];
      }
      double nrm = 0;
      for (int64_t k = 0; k < d; k++) nrm += row[k] * row[k];
      nrm = sqrt(nrm);
      if (nrm > 1e-6) {
        for (int64_t k = 0; k < d; k++) v[l * d + k] = (real)(row[k] / nrm);
        break;
      }
    }
  }
}

rl_swe *rl_swe_alloc(const rl_swe_config *cfg, const rl_module_ops *ops, rl_rng *rng) {
  rl_swe *s = rl_calloc(1, sizeof *s);
  if (!s) return NULL;
  rl_module_init(&s->base, ops, 1);
  s->cfg = *cfg;
  int64_t L = cfg->slices, M = cfg->refs, d = cfg->dim;
  int64_t shape_theta[2] = {L, d}, shape_ref[2] = {M, d}, shape_w[2] = {1, M};
  rl_param *theta = rl_module_add_param(&s->base, "theta", 2, shape_theta);
  rl_param *ref = theta ? rl_module_add_param(&s->base, "reference", 2, shape_ref) : NULL;
  rl_param *w = NULL;
  if (ref && cfg->output == RL_SWE_OUT_REFERENCE) w = rl_module_add_param(&s->base, "weight", 2, shape_w);
  s->theta_n = rl_calloc((size_t)(L * d), sizeof(real));
  s->vnorm = rl_calloc((size_t)L, sizeof(double));
  s->omega = rl_calloc((size_t)L, sizeof(real));
  s->lambda = rl_calloc((size_t)L, sizeof(real));
  s->slack = rl_calloc((size_t)L, sizeof(real));
  s->eps = rl_calloc((size_t)L, sizeof(real));
  s->swgg_hard = rl_calloc((size_t)L, sizeof(real));
  s->swgg_soft = rl_calloc((size_t)L, sizeof(real));
  s->gtheta = rl_calloc((size_t)(L * d), sizeof(real));
  double *row = rl_calloc((size_t)d, sizeof(double));
  if (!ref || (cfg->output == RL_SWE_OUT_REFERENCE && !w) || !s->theta_n || !s->vnorm || !s->omega || !s->lambda ||
      !s->slack || !s->eps || !s->swgg_hard || !s->swgg_soft || !s->gtheta || !row) {
    rl_free(row);
    rl_module_free(&s->base);
    return NULL;
  }
  init_directions(theta->value.data, L, d, rng, row);
  rl_free(row);
  for (int64_t i = 0; i < M * d; i++) ref->value.data[i] = (real)rl_rng_normal(rng);
  if (w) {
    double bound = 1.0 / sqrt((double)M);
    for (int64_t i = 0; i < M; i++) w->value.data[i] = (real)(bound * (2 * rl_rng_uniform(rng) - 1));
  }
  return s;
}

rl_module *rl_swe_new(const rl_swe_config *cfg, rl_rng *rng) {
  if (rl_swe_config_check(cfg, "pool_swe")) return NULL;
  rl_swe *s = rl_swe_alloc(cfg, &swe_ops, rng);
  return s ? &s->base : NULL;
}

int rl_swe_directions(const rl_module *m, real *out) {
  if (!rl_swe_is(m)) return rl_fail(RL_EINVAL, "directions: not an SWE module");
  const rl_swe *s = (const rl_swe *)m;
  int64_t L = s->cfg.slices, d = s->cfg.dim;
  const real *v = m->params[0].value.data;
  for (int64_t l = 0; l < L; l++) {
    double nrm = 0;
    for (int64_t k = 0; k < d; k++) nrm += (double)v[l * d + k] * (double)v[l * d + k];
    nrm = sqrt(nrm);
    if (!(nrm > 0)) return rl_fail(RL_EINVAL, "directions: theta row %lld is zero", (long long)l + 1);
    for (int64_t k = 0; k < d; k++) out[l * d + k] = (real)((double)v[l * d + k] / nrm);
  }
  return RL_OK;
}

/* ------------------------------------------------------------------------------------------------ shapes */

static int swe_out_cols(const rl_module *m, const rl_batch *in, int64_t *cols) {
  const rl_swe *s = (const rl_swe *)m;
  const char *kind = m->ops->kind;
  int rc = rl_expect_sets(in, s->cfg.dim, kind);
  if (rc) return rc;
  int64_t M = s->cfg.refs;
  for (int64_t b = 0; b < in->count[0]; b++) {
    int64_t n = rl_set_size(in, b);
    if (n > INT32_MAX) return rl_fail(RL_EINVAL, "%s: set %lld is too large (%lld rows)", kind, (long long)b + 1, (long long)n);
  }
  *cols = s->cfg.output == RL_SWE_OUT_FLAT ? s->cfg.slices * M : M + s->cfg.slices;
  return RL_OK;
}

/* ------------------------------------------------------------------------------------------------ scratch */

typedef struct emb_scratch {
  real *xs, *xi, *gxi, *gE;
  real *gsb; /* nmax x L: the gradient w.r.t. one set's projections (backward) */
  rl_interp U;
  void *sort;
} emb_scratch;

static size_t emb_scratch_bytes(int64_t nmax, int64_t M, int64_t L) {
  int64_t k = nmax > M ? nmax : M;
  return 4 * align_up((size_t)k * sizeof(real)) + align_up((size_t)(nmax * L) * sizeof(real)) +
         align_up((size_t)M * sizeof(int32_t)) +
         align_up((size_t)M * sizeof(real)) + align_up(rl_argsort_bytes(k));
}

static emb_scratch emb_scratch_at(rl_swe *s, int t) {
  emb_scratch e;
  int64_t M = s->cfg.refs, k = s->nmax > M ? s->nmax : M;
  char *p = s->thread_mem + (size_t)t * s->thread_bytes;
  e.xs = (real *)p;
  p += align_up((size_t)k * sizeof(real));
  e.xi = (real *)p;
  p += align_up((size_t)k * sizeof(real));
  e.gxi = (real *)p;
  p += align_up((size_t)k * sizeof(real));
  e.gE = (real *)p;
  p += align_up((size_t)k * sizeof(real));
  e.gsb = (real *)p;
  p += align_up((size_t)(s->nmax * s->cfg.slices) * sizeof(real));
  e.U.lo = (int32_t *)p;
  p += align_up((size_t)M * sizeof(int32_t));
  e.U.w = (real *)p;
  p += align_up((size_t)M * sizeof(real));
  e.sort = p;
  return e;
}

/* out[l ldo + i] = <theta_l, x_i> (l < L, i < n): one set's projections, two points by four directions per pass
** over the row (eight sums; theta stays in L1). For few directions this beats a gemm, which first copies the set
** into its packed layout: at L = 4 that copy cost as much as the products (the eval forward's bottleneck). Its
** clone for x86-64-v3 contracts the multiply-adds into FMAs (-std=c11 alone turns contraction off). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define SWE_PROJECT_KERNEL __attribute__((target_clones("arch=x86-64-v3", "default"), optimize("fp-contract=fast")))
#else
#define SWE_PROJECT_KERNEL
#endif
SWE_PROJECT_KERNEL static void project_set(int64_t n, int64_t d, const real *X, int64_t L, const real *th, real *out,
                                           int64_t ldo) {
  int64_t i = 0;
  for (; i + 2 <= n; i += 2) {
    const real *x0 = X + i * d, *x1 = x0 + d;
    int64_t l = 0;
    for (; l + 4 <= L; l += 4) {
      const real *t0 = th + l * d, *t1 = t0 + d, *t2 = t1 + d, *t3 = t2 + d;
      real a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3, b0, b1, b2, b3)
      for (int64_t j = 0; j < d; j++) {
        real u = x0[j], v = x1[j];
        a0 += u * t0[j];
        a1 += u * t1[j];
        a2 += u * t2[j];
        a3 += u * t3[j];
        b0 += v * t0[j];
        b1 += v * t1[j];
        b2 += v * t2[j];
        b3 += v * t3[j];
      }
      real *o = out + l * ldo + i;
      o[0] = a0, o[1] = b0, o[ldo] = a1, o[ldo + 1] = b1;
      o[2 * ldo] = a2, o[2 * ldo + 1] = b2, o[3 * ldo] = a3, o[3 * ldo + 1] = b3;
    }
    for (; l < L; l++) {
      const real *t0 = th + l * d;
      real a0 = 0, b0 = 0;
#pragma omp simd reduction(+ : a0, b0)
      for (int64_t j = 0; j < d; j++) {
        a0 += x0[j] * t0[j];
        b0 += x1[j] * t0[j];
      }
      out[l * ldo + i] = a0;
      out[l * ldo + i + 1] = b0;
    }
  }
  for (; i < n; i++) {
    const real *x0 = X + i * d;
    for (int64_t l = 0; l < L; l++) {
      const real *t0 = th + l * d;
      real a0 = 0;
#pragma omp simd reduction(+ : a0)
      for (int64_t j = 0; j < d; j++) a0 += x0[j] * t0[j];
      out[l * ldo + i] = a0;
    }
  }
}

/* Directions up to which project_set replaces the gemm (eval forward at 64 x 512 x 256: L = 4 4.3 -> 3.9 ms; at
** L = 16 the two were even, at 64 the gemm is faster). */
#define SWE_PROJECT_MAX_L 8

/* Normalises theta and sizes the per-batch caches; called at the start of forward. */
static int prepare_forward(rl_swe *s, const rl_batch *in) {
  int64_t L = s->cfg.slices, M = s->cfg.refs, d = s->cfg.dim;
  const real *v = s->base.params[0].value.data;
  for (int64_t l = 0; l < L; l++) {
    double nrm = 0;
    for (int64_t k = 0; k < d; k++) nrm += (double)v[l * d + k] * (double)v[l * d + k];
    nrm = sqrt(nrm);
    if (!(nrm > 0) || !isfinite(nrm))
      return rl_fail(RL_EINVAL, "%s: theta row %lld has norm %g; directions must be non-zero and finite",
                     s->base.ops->kind, (long long)l + 1, nrm);
    s->vnorm[l] = nrm;
    for (int64_t k = 0; k < d; k++) s->theta_n[l * d + k] = (real)((double)v[l * d + k] / nrm);
  }
  s->total = rl_rows(&in->values);
  s->nsets = in->count[0];
  s->nmax = 1;
  for (int64_t b = 0; b < s->nsets; b++)
    if (rl_set_size(in, b) > s->nmax) s->nmax = rl_set_size(in, b);
  int64_t T = s->total, B = s->nsets;
  s->proj = rl_swe_workspace(s, SWE_WS_PROJ, (size_t)(L * T) * sizeof(real));
  s->rproj = rl_swe_workspace(s, SWE_WS_RPROJ, (size_t)(L * M) * sizeof(real));
  s->perm = rl_swe_workspace(s, SWE_WS_PERM, (size_t)(L * T) * sizeof(int32_t));
  s->rorder = rl_swe_workspace(s, SWE_WS_RORDER, (size_t)(L * M) * sizeof(int32_t));
  s->pair = rl_swe_workspace(s, SWE_WS_PAIR, (size_t)(L * M) * sizeof(int32_t));
  s->emb = NULL;
  if (s->cfg.output == RL_SWE_OUT_REFERENCE) s->emb = rl_swe_workspace(s, SWE_WS_EMB, (size_t)(B * L * M) * sizeof(real));
  s->nthreads = omp_get_max_threads();
  s->thread_bytes = align_up(emb_scratch_bytes(s->nmax, M, L));
  s->thread_mem = rl_swe_workspace(s, SWE_WS_THREAD, s->thread_bytes * (size_t)s->nthreads);
  if (!s->proj || !s->rproj || !s->perm || !s->rorder || !s->pair || !s->thread_mem ||
      (s->cfg.output == RL_SWE_OUT_REFERENCE && !s->emb))
    return RL_ENOMEM;
  return RL_OK;
}

/* ------------------------------------------------------------------------------------------------ forward */

static int swe_forward(rl_module *m, const rl_batch *in, rl_tensor *out) {
  rl_swe *s = (rl_swe *)m;
  int rc = prepare_forward(s, in);
  if (rc) return rc;
  int64_t L = s->cfg.slices, M = s->cfg.refs, d = s->cfg.dim, T = s->total, B = s->nsets;
  int64_t ldo = rl_cols(out);
  int flat = s->cfg.output == RL_SWE_OUT_FLAT, compat = s->cfg.compat, nt = s->nthreads;
  const real *X = in->values.data, *R = m->params[1].value.data;
  const int64_t *off = in->offsets[0];
  s->swgg_grad = 0;

  /* slice weights omega = softmax(-lambda / tau) (lambda = 0 for plain SWE: uniform) */
  double mx = -INFINITY, z = 0;
  for (int64_t l = 0; l < L; l++) mx = fmax(mx, -(double)s->lambda[l] / s->cfg.tau);
  for (int64_t l = 0; l < L; l++) z += exp(-(double)s->lambda[l] / s->cfg.tau - mx);
  for (int64_t l = 0; l < L; l++) s->omega[l] = (real)(exp(-(double)s->lambda[l] / s->cfg.tau - mx) / z);

  /* One pass over the input: each set is projected by its own single-threaded gemm (L x d times d x n, written
  ** slice-major; the set's projections stay in cache for its sorts), sets in parallel. One gemm over the whole
  ** batch packs (copies) all of X and wakes the BLAS threads, which then spin against ours. */
  rl_blas_set_threads(1);
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num(), nth = omp_get_num_threads();
    emb_scratch e = emb_scratch_at(s, t);
    /* reference side: a block of slices per thread */
    int64_t l0 = L * t / nth, l1 = L * (t + 1) / nth;
    if (l1 > l0) rl_gemm(0, 1, l1 - l0, M, d, 1, s->theta_n + l0 * d, d, R, d, 0, s->rproj + l0 * M, M);
    for (int64_t l = l0; l < l1; l++) {
      int32_t *ro = s->rorder + l * M, *pr = s->pair + l * M;
      rl_argsort(s->rproj + l * M, 1, M, ro, e.sort);
      if (compat) /* the authors' code pairs r_m with sorted position argsort(R)[m] */
        memcpy(pr, ro, (size_t)M * sizeof(int32_t));
      else /* the paper: the position of r_m's rank */
        for (int64_t k = 0; k < M; k++) pr[ro[k]] = (int32_t)k;
    }
#pragma omp barrier
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++) {
      int64_t n = off[b + 1] - off[b];
      if (L <= SWE_PROJECT_MAX_L)
        project_set(n, d, X + off[b] * d, L, s->theta_n, s->proj + off[b], T);
      else
        rl_gemm(0, 1, L, n, d, 1, s->theta_n, d, X + off[b] * d, d, 0, s->proj + off[b], T);
      if (n != M) rl_interp_build(&e.U, n, M, compat);
      for (int64_t l = 0; l < L; l++) {
        const real *seg = s->proj + l * T + off[b];
        int32_t *pp = s->perm + l * T + off[b];
        rl_argsort(seg, 1, n, pp, e.sort);
        for (int64_t p = 0; p < n; p++) e.xs[p] = seg[pp[p]];
        const real *xi = e.xs;
        if (n != M) {
          rl_interp_apply(&e.U, 0, 1, e.xs, 1, e.xi, 1);
          xi = e.xi;
        }
        const real *rp = s->rproj + l * M;
        const int32_t *pr = s->pair + l * M;
        real *E = flat ? out->data + b * ldo + l * M : s->emb + (b * L + l) * M;
        for (int64_t k = 0; k < M; k++) E[k] = rp[k] - xi[pr[k]];
      }
    }
  }
  rl_blas_set_threads(nt);

  if (!flat) {
    const real *w = m->params[2].value.data;
#pragma omp parallel for schedule(static) num_threads(s->nthreads)
    for (int64_t b = 0; b < B; b++) {
      real *o = out->data + b * ldo;
      const real *E = s->emb + b * L * M;
      for (int64_t k = 0; k < M; k++) o[k] = 0;
      for (int64_t l = 0; l < L; l++) {
        real om = s->omega[l];
        double acc = 0;
        for (int64_t k = 0; k < M; k++) {
          o[k] += om * E[l * M + k];
          acc += (double)w[k] * (double)E[l * M + k];
        }
        o[M + l] = (real)acc;
      }
    }
  }

  if (s->constrained && m->training) return rl_cswe_train_forward(s, in);
  return RL_OK;
}

/* ------------------------------------------------------------------------------------------------ backward */

/* Gradient w.r.t. E[b, l, :] into gE (M values). */
static const real *grad_embedding(const rl_swe *s, const rl_tensor *gout, int64_t b, int64_t l, real *gE) {
  int64_t L = s->cfg.slices, M = s->cfg.refs, ldg = rl_cols(gout);
  const real *g = gout->data + b * ldg;
  if (s->cfg.output == RL_SWE_OUT_FLAT) return g + l * M;
  const real *w = s->base.params[2].value.data;
  real om = s->omega[l], g2 = g[M + l];
  (void)L;
  for (int64_t k = 0; k < M; k++) gE[k] = om * g[k] + w[k] * g2;
  return gE;
}

static int swe_backward(rl_module *m, const rl_batch *in, const rl_tensor *gout, rl_tensor *gin) {
  rl_swe *s = (rl_swe *)m;
  int64_t L = s->cfg.slices, M = s->cfg.refs, d = s->cfg.dim, B = s->nsets, T = s->total;
  int compat = s->cfg.compat, nt = s->nthreads;
  const real *X = in->values.data, *R = m->params[1].value.data;
  const int64_t *off = in->offsets[0];
  real *gth = rl_swe_workspace(s, SWE_WS_GTHETA, (size_t)nt * (size_t)(L * d) * sizeof(real));
  s->grp = rl_swe_workspace(s, SWE_WS_GRP, (size_t)(L * M) * sizeof(real));
  if (!gth || !s->grp) return RL_ENOMEM;

  /* Per set (in parallel, single-threaded BLAS as in the forward): the gradient w.r.t. its projections
  ** gsb[i, l] = d/d proj[l, i] (back through the pairing, the interpolation and the sort), then its input gradient
  ** gsb theta and its share gsb^T X_b of the direction gradient (summed per thread). */
  rl_blas_set_threads(1);
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num();
    emb_scratch e = emb_scratch_at(s, t);
    real *gt = gth + (size_t)t * (size_t)(L * d);
    memset(gt, 0, (size_t)(L * d) * sizeof(real));
    /* static round-robin: gt sums this thread's sets, so a fixed assignment keeps the sum's order reproducible */
#pragma omp for schedule(static, 1)
    for (int64_t b = 0; b < B; b++) {
      int64_t n = off[b + 1] - off[b];
      if (n != M) rl_interp_build(&e.U, n, M, compat);
      for (int64_t l = 0; l < L; l++) {
        const real *gE = grad_embedding(s, gout, b, l, e.gE);
        const int32_t *pr = s->pair + l * M, *pp = s->perm + l * T + off[b];
        memset(e.gxi, 0, (size_t)M * sizeof(real));
        for (int64_t k = 0; k < M; k++) e.gxi[pr[k]] -= gE[k];
        const real *gxs = e.gxi;
        if (n != M) {
          memset(e.xs, 0, (size_t)n * sizeof(real));
          rl_interp_apply_t(&e.U, 0, 1, e.gxi, 1, e.xs, 1);
          gxs = e.xs;
        }
        for (int64_t p = 0; p < n; p++) e.gsb[(int64_t)pp[p] * L + l] = gxs[p];
      }
      if (s->swgg_grad) rl_axpy(n * L, 1, s->gs_swgg + off[b] * L, e.gsb); /* the Lagrangian term's share */
      if (gin) {
        rl_gemm(0, 0, n, d, L, 1, e.gsb, L, s->theta_n, d, 0, gin->data + off[b] * d, d);
        if (s->swgg_grad) rl_axpy(n * d, 1, s->gx_swgg + off[b] * d, gin->data + off[b] * d);
      }
      rl_gemm(1, 0, L, d, n, 1, e.gsb, L, X + off[b] * d, d, 1, gt, d);
    }
    /* reference projections: grp[l, m] = sum_b gE[b, l, m] */
#pragma omp for schedule(static)
    for (int64_t l = 0; l < L; l++) {
      real *g = s->grp + l * M;
      memset(g, 0, (size_t)M * sizeof(real));
      for (int64_t b = 0; b < B; b++) {
        const real *gE = grad_embedding(s, gout, b, l, e.gE);
        for (int64_t k = 0; k < M; k++) g[k] += gE[k];
      }
      if (s->swgg_grad) rl_axpy(M, 1, s->grp_swgg + l * M, g);
    }
  }
  if (s->cfg.output == RL_SWE_OUT_REFERENCE) { /* weight: d/dw_m = sum_{b,l} g2[b, l] E[b, l, m] */
    real *gw = m->params[2].grad.data;
    int64_t ldg = rl_cols(gout);
    for (int64_t b = 0; b < B; b++)
      for (int64_t l = 0; l < L; l++) {
        real g2 = gout->data[b * ldg + M + l];
        const real *E = s->emb + (b * L + l) * M;
        for (int64_t k = 0; k < M; k++) gw[k] += g2 * E[k];
      }
  }
  for (int u = 1; u < nt; u++) rl_axpy(L * d, 1, gth + (size_t)u * (size_t)(L * d), gth);
  memcpy(s->gtheta, gth, (size_t)(L * d) * sizeof(real));
  real *gref = m->params[1].grad.data, *gv = m->params[0].grad.data;
  rl_gemm(1, 0, M, d, L, 1, s->grp, M, s->theta_n, d, 1, gref, d);
  if (s->swgg_grad) rl_axpy(M * d, 1, s->gr_swgg, gref);
  rl_gemm(0, 0, L, d, M, 1, s->grp, M, R, d, 1, s->gtheta, d);
  rl_blas_set_threads(nt);
  /* through theta = v / |v|: dv = (dtheta - theta (theta . dtheta)) / |v| */
  for (int64_t l = 0; l < L; l++) {
    const real *th = s->theta_n + l * d, *gt = s->gtheta + l * d;
    double dot = 0;
    for (int64_t k = 0; k < d; k++) dot += (double)th[k] * (double)gt[k];
    double inv = 1.0 / s->vnorm[l];
    for (int64_t k = 0; k < d; k++) gv[l * d + k] += (real)(((double)gt[k] - (double)th[k] * dot) * inv);
  }
  return RL_OK;
}

static const rl_module_ops swe_ops = {"pool_swe", swe_out_cols, swe_forward, swe_backward, swe_destroy};

int rl_swe_out_cols_impl(const rl_module *m, const rl_batch *in, int64_t *cols) { return swe_out_cols(m, in, cols); }
int rl_swe_forward_impl(rl_module *m, const rl_batch *in, rl_tensor *out) { return swe_forward(m, in, out); }
int rl_swe_backward_impl(rl_module *m, const rl_batch *in, const rl_tensor *gout, rl_tensor *gin) {
  return swe_backward(m, in, gout, gin);
}
void rl_swe_destroy_impl(rl_module *m) { swe_destroy(m); }
