/*
** cswe.c -- constrained SWE (pool_cswe): the per-slice SWGG of a training forward, the gradient of the Lagrangian
** term sum_l lambda_l (g_l - eps_l - u_l) (computed in the forward, added by the embedding's backward), the bounds,
** slack and duals, and the projected slack/dual step (see swe.h).
**
** Training forward, per slice l: the reference side's soft permutation P_r is applied once to the lifted reference
** rows (P_r Rt); the sets then run in parallel, each with its own operator P_x (swgg.h); the gradient w.r.t.
** P_r Rt is reduced over threads and finished on the reference side. Nothing here forms an n x m plan.
*/
#include <math.h>
#include <omp.h>
#include <string.h>

#include "../optim/primal_dual.h"
#include "swe.h"

#define CSWE_ALIGN 64

static size_t align_up(size_t x) { return (x + CSWE_ALIGN - 1) & ~(size_t)(CSWE_ALIGN - 1); }

static const rl_module_ops cswe_ops = {"pool_cswe", rl_swe_out_cols_impl, rl_swe_forward_impl, rl_swe_backward_impl,
                                       rl_swe_destroy_impl};

int rl_cswe_is(const rl_module *m) { return m && m->ops == &cswe_ops; }

/* ------------------------------------------------------------------------------------------------ construction */

static int check_rate(double v, const char *name) {
  if (!(v >= 0) || !isfinite(v))
    return rl_fail(RL_EINVAL, "pool_cswe: %s must be a finite number >= 0, got %g", name, v);
  return RL_OK;
}

int rl_cswe_config_check(const rl_swe_config *cfg, const rl_cswe_config *cc) {
  int rc = rl_swe_config_check(cfg, "pool_cswe");
  if (rc) return rc;
  if (cc->soft != RL_SOFT_SOFTSORT && cc->soft != RL_SOFT_LAPSUM)
    return rl_fail(RL_EINVAL, "pool_cswe: unknown soft permutation %d", cc->soft);
  if (!(cc->temperature > 0) || !isfinite(cc->temperature))
    return rl_fail(RL_EINVAL, "pool_cswe: temperature must be a positive finite number, got %g", cc->temperature);
  if (cc->eps) {
    for (int64_t l = 0; l < cfg->slices; l++)
      if (!((double)cc->eps[l] >= 0) || !isfinite((double)cc->eps[l]))
        return rl_fail(RL_EINVAL, "pool_cswe: eps[%lld] must be a finite bound >= 0, got %g", (long long)l + 1,
                       (double)cc->eps[l]);
  } else if (!(cc->eps_fraction > 0) || !isfinite(cc->eps_fraction)) {
    return rl_fail(RL_EINVAL, "pool_cswe: eps_fraction must be a positive finite number, got %g", cc->eps_fraction);
  }
  if ((rc = check_rate(cc->alpha, "alpha")) || (rc = check_rate(cc->lr_slack, "lr_slack")) ||
      (rc = check_rate(cc->lr_dual, "lr_dual")))
    return rc;
  if (cfg->compat && cc->slack)
    return rl_fail(RL_EINVAL, "pool_cswe: slack is not available with compat = \"reference\" (the authors' code has "
                              "none); use slack = false");
  return RL_OK;
}

rl_module *rl_cswe_new(const rl_swe_config *cfg, const rl_cswe_config *cc, rl_rng *rng) {
  if (rl_cswe_config_check(cfg, cc)) return NULL;
  rl_swe *s = rl_swe_alloc(cfg, &cswe_ops, rng);
  if (!s) return NULL;
  s->constrained = 1;
  s->ccfg = *cc;
  s->ccfg.eps = NULL;
  if (cc->eps) {
    memcpy(s->eps, cc->eps, (size_t)cfg->slices * sizeof(real));
    s->eps_ready = 1;
  }
  return &s->base;
}

/* ------------------------------------------------------------------------------------------------ forward */

typedef struct slice_scratch {
  rl_swgg_soft sw;
  rl_interp U;
  real *T; /* nmax rows in panel layout: the set's P_x^T U^T P_r Rt */
} slice_scratch;

static size_t slice_scratch_bytes(int64_t nmax, int64_t M, int64_t cp) {
  return align_up(rl_swgg_soft_bytes(nmax, M)) + align_up((size_t)M * sizeof(int32_t)) +
         align_up((size_t)M * sizeof(real)) + align_up((size_t)(nmax * cp) * sizeof(real));
}

static slice_scratch slice_scratch_at(char *mem, size_t bytes, int t, int method, double temperature, int64_t nmax,
                                      int64_t M, int64_t nb, int64_t cp) {
  (void)cp;
  slice_scratch ss;
  char *p = mem + (size_t)t * bytes;
  rl_swgg_soft_init(&ss.sw, method, temperature, nmax, M, nb, p);
  p += align_up(rl_swgg_soft_bytes(nmax, M));
  ss.U.lo = (int32_t *)p;
  p += align_up((size_t)M * sizeof(int32_t));
  ss.U.w = (real *)p;
  p += align_up((size_t)M * sizeof(real));
  ss.T = (real *)p;
  return ss;
}

/* Element (i, col) of a rows-row matrix in panel layout (swgg.h). */
static inline int64_t panel_index(int64_t rows, int64_t i, int64_t col) {
  return (col / RL_SOFTPERM_BLOCK) * rows * RL_SOFTPERM_BLOCK + i * RL_SOFTPERM_BLOCK + col % RL_SOFTPERM_BLOCK;
}

/* Training forward, three phases:
**   R (slices in parallel): P_r Rt for every slice;
**   X (sets in parallel, every slice for one set, so the set's lifted rows and their gradient stay in cache): hard
**     and soft SWGG^2 and, where lambda_l > 0, the soft cost's gradient; the gradient w.r.t. P_r Rt goes to the
**     thread's share Y[t, l] (zeroed on first use);
**   Y (slices in parallel): the shares are summed and finished through P_r on the reference side.
** Lifted matrices are in panel layout (swgg.h) around the reference mean mu:
**   xt = [x - mu, |x - mu|^2, 1],  rt = [-2 (r - mu), 1, |r - mu|^2]. */
int rl_cswe_train_forward(rl_swe *s, const rl_batch *in) {
  const int64_t L = s->cfg.slices, M = s->cfg.refs, d = s->cfg.dim, T = s->total, B = s->nsets, c = d + 2;
  const int64_t nb = rl_swgg_npanels(c), BW = RL_SOFTPERM_BLOCK, cp = nb * BW;
  const int64_t xps = T * BW, rps = M * BW; /* panel strides of the input-side and reference-side matrices */
  int compat = s->cfg.compat, method = s->ccfg.soft, nt = s->nthreads;
  double temp = s->ccfg.temperature;
  const real *X = in->values.data, *R = s->base.params[1].value.data;
  const int64_t *off = in->offsets[0];

  int need_grad = 0;
  for (int64_t l = 0; l < L; l++)
    if (s->lambda[l] > 0) need_grad = 1;

  size_t tbytes = align_up(slice_scratch_bytes(s->nmax, M, cp)), opbytes = align_up(rl_softperm_bytes(M, BW));
  size_t slab = (size_t)(M * cp);
  real *Xt = rl_swe_workspace(s, SWE_WS_XT, (size_t)(T * cp) * sizeof(real));
  real *Rt = rl_swe_workspace(s, SWE_WS_RT, slab * sizeof(real));
  real *PR = rl_swe_workspace(s, SWE_WS_PR, (size_t)L * slab * sizeof(real));
  char *tmem = rl_swe_workspace(s, SWE_WS_THREADSWGG, tbytes * (size_t)nt);
  char *refmem = rl_swe_workspace(s, SWE_WS_REFOP, opbytes * (size_t)nt);
  double *costs = rl_swe_workspace(s, SWE_WS_COSTS, (size_t)(2 * B * L + d + L) * sizeof(double));
  if (!Xt || !Rt || !PR || !tmem || !refmem || !costs) return RL_ENOMEM;
  double *hard = costs, *soft = costs + B * L, *mu = costs + 2 * B * L, *lam = mu + d;
  real *gXt = NULL, *gRt = NULL, *Y = NULL;
  char *touched = NULL;
  if (need_grad) {
    gXt = rl_swe_workspace(s, SWE_WS_GXT, (size_t)(T * cp) * sizeof(real));
    gRt = rl_swe_workspace(s, SWE_WS_GRT, (size_t)nt * slab * sizeof(real));
    Y = rl_swe_workspace(s, SWE_WS_Y, (size_t)nt * (size_t)L * slab * sizeof(real));
    touched = rl_swe_workspace(s, SWE_WS_TOUCHED, (size_t)(nt * L));
    s->gs_swgg = rl_swe_workspace(s, SWE_WS_GSSWGG, (size_t)(T * L) * sizeof(real));
    s->grp_swgg = rl_swe_workspace(s, SWE_WS_GRPSWGG, (size_t)(L * M) * sizeof(real));
    s->gx_swgg = rl_swe_workspace(s, SWE_WS_GXSWGG, (size_t)(T * d) * sizeof(real));
    s->gr_swgg = rl_swe_workspace(s, SWE_WS_GRSWGG, (size_t)(M * d) * sizeof(real));
    if (!gXt || !gRt || !Y || !touched || !s->gs_swgg || !s->grp_swgg || !s->gx_swgg || !s->gr_swgg)
      return RL_ENOMEM;
    memset(gRt, 0, (size_t)nt * slab * sizeof(real));
    memset(touched, 0, (size_t)(nt * L));
    memset(s->gs_swgg, 0, (size_t)(T * L) * sizeof(real));
    memset(s->grp_swgg, 0, (size_t)(L * M) * sizeof(real));
  }
  for (int64_t l = 0; l < L; l++) lam[l] = (double)s->lambda[l];

  for (int64_t k = 0; k < d; k++) mu[k] = 0;
  for (int64_t j = 0; j < M; j++)
    for (int64_t k = 0; k < d; k++) mu[k] += (double)R[j * d + k];
  for (int64_t k = 0; k < d; k++) mu[k] /= (double)M;
  memset(Rt, 0, slab * sizeof(real));
  for (int64_t j = 0; j < M; j++) {
    double nrm = 0;
    for (int64_t k = 0; k < d; k++) {
      double v = (double)R[j * d + k] - mu[k];
      Rt[panel_index(M, j, k)] = (real)(-2 * v);
      nrm += v * v;
    }
    Rt[panel_index(M, j, d)] = 1;
    Rt[panel_index(M, j, d + 1)] = (real)nrm;
  }
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < T; i++) { /* panel by panel: contiguous row pieces, no index arithmetic per element */
      const real *x = X + i * d;
      double nrm = 0;
      for (int64_t k0 = 0; k0 < d; k0 += BW) {
        real *dst = Xt + (k0 / BW) * xps + i * BW;
        const double *m0 = mu + k0;
        int64_t kn = d - k0 < BW ? d - k0 : BW;
#pragma omp simd reduction(+ : nrm)
        for (int64_t kk = 0; kk < kn; kk++) {
          double v = (double)x[k0 + kk] - m0[kk];
          dst[kk] = (real)v;
          nrm += v * v;
        }
      }
      Xt[panel_index(T, i, d)] = (real)nrm;
      Xt[panel_index(T, i, d + 1)] = 1;
      for (int64_t k = c; k < cp; k++) Xt[panel_index(T, i, k)] = 0;
    }
    if (gXt) {
#pragma omp for schedule(static)
      for (int64_t k = 0; k < nb; k++) memset(gXt + k * xps, 0, (size_t)xps * sizeof(real));
    }

    rl_softperm pr; /* phase R */
    rl_softperm_init(&pr, method, temp, 0, M, BW, refmem + (size_t)t * opbytes);
#pragma omp for schedule(dynamic, 1)
    for (int64_t l = 0; l < L; l++) {
      rl_softperm_prepare(&pr, M, s->rproj + l * M, 1, s->rorder + l * M);
      rl_swgg_panels_apply(&pr, nb, Rt, rps, PR + (size_t)l * slab, rps);
    }

    slice_scratch ss = slice_scratch_at(tmem, tbytes, t, method, temp, s->nmax, M, nb, cp); /* phase X */
    /* static round-robin (not dynamic): each thread sums its sets' gradients into its own Y, so a fixed set-to-
    ** thread assignment is what makes a run bitwise reproducible for a given thread count */
#pragma omp for schedule(static, 1)
    for (int64_t b = 0; b < B; b++) {
      int64_t n = off[b + 1] - off[b];
      const real *xt = Xt + off[b] * BW;
      rl_interp_build(&ss.U, n, M, compat);
      for (int64_t l = 0; l < L; l++) {
        const int32_t *pp = s->perm + l * T + off[b];
        const real *prl = PR + (size_t)l * slab;
        hard[b * L + l] = rl_swgg_hard(&ss.U, d, X + off[b] * d, d, pp, R, s->rorder + l * M);
        int grad_l = lam[l] > 0, tps = (int)(n * BW); /* T: the set's panels, n x BW each */
        double sc = rl_swgg_soft_cost(&ss.sw, &ss.U, s->proj + l * T + off[b], 1, pp, xt, xps, prl, rps,
                                      grad_l ? ss.T : NULL, tps);
        soft[b * L + l] = sc;
        if (grad_l && sc > 0) {
          real *y = Y + ((size_t)t * (size_t)L + (size_t)l) * slab;
          if (!touched[t * L + l]) {
            memset(y, 0, slab * sizeof(real));
            touched[t * L + l] = 1;
          }
          real coef = (real)(lam[l] / ((double)B * 2 * sqrt(sc)));
          rl_swgg_soft_grad(&ss.sw, &ss.U, xt, xps, prl, rps, ss.T, tps, coef, s->gs_swgg + off[b] * L + l, L,
                            gXt + off[b] * BW, xps, y, rps);
        }
      }
    }

    if (need_grad) { /* phase Y (static: gRt of thread t sums its slices; see phase X) */
#pragma omp for schedule(static, 1)
      for (int64_t l = 0; l < L; l++) {
        real *sum = NULL;
        for (int u = 0; u < nt; u++) {
          if (!touched[u * L + l]) continue;
          real *y = Y + ((size_t)u * (size_t)L + (size_t)l) * slab;
          if (!sum)
            sum = y;
          else
            rl_axpy((int64_t)slab, 1, y, sum);
        }
        if (!sum) continue;
        rl_softperm_prepare(&pr, M, s->rproj + l * M, 1, s->rorder + l * M);
        rl_swgg_panels_backward(&pr, nb, Rt, rps, sum, rps, s->grp_swgg + l * M, 1, gRt + (size_t)t * slab, rps);
      }
    }
  }

  for (int64_t l = 0; l < L; l++) {
    double h = 0, so = 0;
    for (int64_t b = 0; b < B; b++) {
      h += sqrt(fmax(0.0, hard[b * L + l]));
      so += sqrt(fmax(0.0, soft[b * L + l]));
    }
    s->swgg_hard[l] = (real)(h / (double)B);
    s->swgg_soft[l] = (real)(so / (double)B);
  }
  if (!s->eps_ready) { /* eps_fraction: bounds measured on the first training batch */
    for (int64_t l = 0; l < L; l++) s->eps[l] = (real)(s->ccfg.eps_fraction * (double)s->swgg_hard[l]);
    s->eps_ready = 1;
  }
  double lag = 0, uu = 0;
  for (int64_t l = 0; l < L; l++) {
    double u = s->ccfg.slack ? (double)s->slack[l] : 0.0;
    lag += lam[l] * ((double)s->swgg_soft[l] - (double)s->eps[l] - u);
    uu += u * u;
  }
  s->lagrangian = lag + (s->ccfg.slack ? 0.5 * s->ccfg.alpha * uu : 0.0);

  if (need_grad) { /* lifted-row gradients back to the inputs and the reference (mu is a constant: the cost does not
                      depend on the centre) */
    for (int u = 1; u < nt; u++) rl_axpy((int64_t)slab, 1, gRt + (size_t)u * slab, gRt);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < T; i++) {
      real gn = 2 * gXt[panel_index(T, i, d)];
      real *gx = s->gx_swgg + i * d;
      for (int64_t k0 = 0; k0 < d; k0 += BW) {
        const real *g = gXt + (k0 / BW) * xps + i * BW, *xt = Xt + (k0 / BW) * xps + i * BW;
        int64_t kn = d - k0 < BW ? d - k0 : BW;
        real *o = gx + k0;
#pragma omp simd
        for (int64_t kk = 0; kk < kn; kk++) o[kk] = g[kk] + xt[kk] * gn;
      }
    }
    for (int64_t j = 0; j < M; j++) {
      real gn = gRt[panel_index(M, j, d + 1)];
      real *gr = s->gr_swgg + j * d;
      for (int64_t k = 0; k < d; k++)
        gr[k] = -2 * gRt[panel_index(M, j, k)] + (real)(2 * ((double)R[j * d + k] - mu[k])) * gn;
    }
    s->swgg_grad = 1;
  }
  s->has_swgg = 1;
  if (compat) /* the authors' code: lambda <- [lambda + dual_lr (hard - eps)]_+ inside the forward, no slack */
    return rl_dual_step(s->lambda, s->swgg_hard, s->eps, NULL, L, s->ccfg.lr_dual);
  return RL_OK;
}

/* ------------------------------------------------------------------------------------------------ state */

static rl_swe *as_cswe(const rl_module *m) { return rl_cswe_is(m) ? (rl_swe *)m : NULL; }

int rl_cswe_swgg(const rl_module *m, const real **hard, const real **soft) {
  rl_swe *s = as_cswe(m);
  if (!s) return rl_fail(RL_EINVAL, "swgg: not a pool_cswe module");
  if (!s->has_swgg) return rl_fail(RL_ESTATE, "pool_cswe: no SWGG yet (it is measured by a forward in training mode)");
  *hard = s->swgg_hard;
  *soft = s->swgg_soft;
  return RL_OK;
}

const real *rl_cswe_dual(const rl_module *m) { return as_cswe(m) ? as_cswe(m)->lambda : NULL; }
const real *rl_cswe_slack(const rl_module *m) { return as_cswe(m) ? as_cswe(m)->slack : NULL; }

int rl_cswe_eps(const rl_module *m, const real **eps) {
  rl_swe *s = as_cswe(m);
  if (!s) return rl_fail(RL_EINVAL, "eps: not a pool_cswe module");
  if (!s->eps_ready)
    return rl_fail(RL_ESTATE, "pool_cswe: eps is measured on the first training batch (eps_fraction); none yet");
  *eps = s->eps;
  return RL_OK;
}

static int set_values(rl_swe *s, const real *v, real *dst, const char *what) {
  for (int64_t l = 0; l < s->cfg.slices; l++)
    if (!((double)v[l] >= 0) || !isfinite((double)v[l]))
      return rl_fail(RL_EINVAL, "pool_cswe: %s[%lld] must be a finite number >= 0, got %g", what, (long long)l + 1,
                     (double)v[l]);
  memcpy(dst, v, (size_t)s->cfg.slices * sizeof(real));
  return RL_OK;
}

int rl_cswe_set_dual(rl_module *m, const real *v) {
  rl_swe *s = as_cswe(m);
  if (!s) return rl_fail(RL_EINVAL, "set_dual: not a pool_cswe module");
  return set_values(s, v, s->lambda, "dual");
}

int rl_cswe_set_slack(rl_module *m, const real *v) {
  rl_swe *s = as_cswe(m);
  if (!s) return rl_fail(RL_EINVAL, "set_slack: not a pool_cswe module");
  if (!s->ccfg.slack) return rl_fail(RL_EINVAL, "pool_cswe: this layer has no slack (slack = false)");
  return set_values(s, v, s->slack, "slack");
}

int rl_cswe_set_eps(rl_module *m, const real *v) {
  rl_swe *s = as_cswe(m);
  if (!s) return rl_fail(RL_EINVAL, "set_eps: not a pool_cswe module");
  int rc = set_values(s, v, s->eps, "eps");
  if (!rc) s->eps_ready = 1;
  return rc;
}

int rl_cswe_lagrangian(const rl_module *m, double *value) {
  rl_swe *s = as_cswe(m);
  if (!s) return rl_fail(RL_EINVAL, "lagrangian: not a pool_cswe module");
  if (!s->has_swgg) return rl_fail(RL_ESTATE, "pool_cswe: no Lagrangian yet (it is measured by a training forward)");
  *value = s->lagrangian;
  return RL_OK;
}

int rl_cswe_dual_step(rl_module *m, int *applied) {
  rl_swe *s = as_cswe(m);
  *applied = 0;
  if (!s) return rl_fail(RL_EINVAL, "dual_step: not a pool_cswe module");
  if (s->cfg.compat) return RL_OK; /* the forward already updated the duals */
  if (!s->has_swgg)
    return rl_fail(RL_ESTATE, "pool_cswe: dual_step needs the SWGG of a training forward (none yet)");
  int64_t L = s->cfg.slices;
  int rc;
  if (s->ccfg.slack && (rc = rl_slack_step(s->slack, s->lambda, L, s->ccfg.alpha, s->ccfg.lr_slack))) return rc;
  rc = rl_dual_step(s->lambda, s->swgg_hard, s->eps, s->ccfg.slack ? s->slack : NULL, L, s->ccfg.lr_dual);
  if (!rc) *applied = 1;
  return rc;
}
