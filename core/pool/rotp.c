/*
** rotp.c -- the ROTP module: parameters (raw vectors through softplus, per iteration or shared, fixed values),
** the priors p0 and q0 (uniform or learned), the structure matrices c1, c2, the pooled output, and the dispatch of
** every set to its solver (OpenMP across sets, per-thread scratch, per-set traces owned by the module).
**
** Conventions (golden/README.md 1.1 - 2, DESIGN.md 2):
**   - iteration k uses entry j_k = min(k, len(a1) - 1) of every family; a family longer than a1 has unused tail
**     entries (gradient 0); a shorter one is an error.
**   - structure "reference": c1 = G / max over the batch of G, c2 = K / max over the batch of K (G = X^T X,
**     K = X X^T); the maxima sit on the diagonals (Cauchy-Schwarz), max K = max_n |x_n|^2, max G = max_d |x_:d|^2,
**     and their gradient goes to the arg-max. "paper": the same with each set's own maxima, so a set's plan does
**     not depend on the other sets of the batch.
**   - output "paper" (eq. 5): f_d = sum_n x_nd P_nd / sum_m P_md; "reference": D sum_n x_nd P_nd.
**   - q0 "learn": q0 = softmax over the set of w tanh(V x_n), with 1e-16 added to the softmax denominator;
**     p0 "learn": p0 = softmax(U sum_n x_n).
**   - compat = "reference": log(q0 + 1e-8) in the solvers, the authors' Sinkhorn updates (rotp_sinkhorn.c).
*/
#include <math.h>
#include <omp.h>
#include <string.h>

#include "../blas.h"
#include "rotp_math.h"
#include "rotp_solver.h"

static const char *const alpha_names[RL_ROTP_NALPHA] = {"a0", "a1", "a2", "a3", "rho"};

typedef struct rotp_module {
  rl_module base;
  rl_rotp_config cfg;
  int pidx[RL_ROTP_NALPHA]; /* parameter index of each learnable family, -1 otherwise */
  int iV, iw, iU;           /* q0.V, q0.w, p0.U parameter indices (-1 if absent) */
  rotp_step *steps;         /* iters entries, refreshed at every forward */
  rotp_opts opts;
  /* state of the last forward */
  int has_trace;
  int64_t B, R, nmax;
  rl_workspace w_off, w_den, w_pscr, w_plan, w_lplan, w_lq0, w_q0, w_lp0, w_p0, w_c1, w_s, w_toff, w_trace, w_work, w_H, w_xsum, w_out;
  /* backward scratch and debug results */
  rl_workspace w_gplan, w_gx, w_gxs, w_glp0, w_glq0, w_gp0, w_gq0, w_gc1, w_sdot, w_gstep, w_gc2, w_c2off, w_xpart;
  int has_debug;
} rotp_module;

/* per-set structure scalars kept in w_s: s1, s2, argmax row of s2 (global index), argmax column of s1, its set */
typedef struct rotp_norm {
  double s1, s2;
  int64_t row2, col1, set1;
} rotp_norm;

static real *wsr(rl_workspace *w, size_t count, int *rc) {
  if (*rc) return NULL;
  if (rl_workspace_reserve(w, (count ? count : 1) * sizeof(real))) {
    *rc = RL_ENOMEM;
    return NULL;
  }
  return w->data;
}

static void *wsb(rl_workspace *w, size_t bytes, int *rc) {
  if (*rc) return NULL;
  if (rl_workspace_reserve(w, bytes ? bytes : 1)) {
    *rc = RL_ENOMEM;
    return NULL;
  }
  return w->data;
}

/* ---------------------------------------------------------------- configuration */

void rl_rotp_config_default(rl_rotp_config *c, int64_t dim) {
  memset(c, 0, sizeof *c);
  c->dim = dim;
  c->solver = RL_ROTP_SINKHORN;
  c->iters = RL_ROTP_DEFAULT_ITERS;
  c->inner = RL_ROTP_DEFAULT_INNER;
  c->structure = 0;
  c->output = RL_ROTP_OUT_PAPER;
  c->structure_norm = RL_ROTP_STRUCT_PAPER;
  c->grad = RL_ROTP_GRAD_UNROLLED;
  c->q0_hidden = 2 * dim;
  for (int a = 0; a < RL_ROTP_NALPHA; a++) {
    c->alpha[a].mode = RL_ROTP_LEARN;
    c->alpha[a].entries = 0; /* 0: iters */
    c->alpha[a].init = NAN;
  }
}

/* Which families a configuration reads at all. */
static int family_used(const rl_rotp_config *c, int a) {
  if (a == RL_ROTP_A0) return c->structure;
  if (a == RL_ROTP_RHO) return c->solver != RL_ROTP_SINKHORN;
  return 1;
}

static int validate(const rl_rotp_config *c) {
  if (c->dim < 1) return rl_fail(RL_EINVAL, "rotp: option 'dim' must be a positive width, got %lld", (long long)c->dim);
  if (c->solver < 0 || c->solver > RL_ROTP_BADMM_Q) return rl_fail(RL_EINVAL, "rotp: option 'solver': unknown solver");
  if (c->iters < 1) return rl_fail(RL_EINVAL, "rotp: option 'iters' must be >= 1, got %d", c->iters);
  if (c->inner < 0) return rl_fail(RL_EINVAL, "rotp: option 'inner' must be >= 0, got %d", c->inner);
  if (c->q0_learn && c->q0_hidden < 1)
    return rl_fail(RL_EINVAL, "rotp: option 'q0_hidden' must be >= 1, got %lld", (long long)c->q0_hidden);
  if (c->grad == RL_ROTP_GRAD_IMPLICIT && (c->structure || c->solver != RL_ROTP_SINKHORN || c->compat))
    return rl_fail(RL_EINVAL, "rotp: option 'grad' = \"implicit\" needs solver = \"sinkhorn\", alpha0 = 0 and no "
                              "compat (the fixed point of the unbalanced Sinkhorn map)");
  int64_t len_a1 = 0;
  const rl_rotp_alpha *a1 = &c->alpha[RL_ROTP_A1];
  if (a1->mode == RL_ROTP_LEARN) len_a1 = a1->entries ? a1->entries : c->iters;
  for (int a = 0; a < RL_ROTP_NALPHA; a++) {
    const rl_rotp_alpha *p = &c->alpha[a];
    if (!family_used(c, a)) continue;
    if (p->mode == RL_ROTP_FIXED) {
      if (!(p->value >= 0) || !isfinite(p->value))
        return rl_fail(RL_EINVAL, "rotp: fixed %s must be a finite value >= 0, got %g", alpha_names[a], p->value);
    } else if (p->mode == RL_ROTP_LEARN) {
      if (p->entries < 0)
        return rl_fail(RL_EINVAL, "rotp: %s: number of entries must be >= 1, got %lld", alpha_names[a],
                       (long long)p->entries);
      if (!isnan(p->init) && !(p->init > 0 && isfinite(p->init)))
        return rl_fail(RL_EINVAL, "rotp: option 'init': %s must be > 0 (it is a softplus value), got %g",
                       alpha_names[a], p->init);
      int64_t len = p->entries ? p->entries : c->iters;
      if (len_a1 && len < len_a1)
        return rl_fail(RL_EINVAL, "rotp: %s has %lld entries but a1 has %lld (iteration k reads entry "
                                  "min(k, len(a1) - 1) of every family)",
                       alpha_names[a], (long long)len, (long long)len_a1);
    }
  }
  if (c->solver == RL_ROTP_SINKHORN && !c->structure && a1->mode == RL_ROTP_FIXED && a1->value == 0)
    return rl_fail(RL_EINVAL, "rotp: fixed a1 = 0 is not allowed with solver = \"sinkhorn\" and alpha0 = 0 "
                              "(the entropic weight divides x)");
  if (c->solver != RL_ROTP_SINKHORN && c->alpha[RL_ROTP_RHO].mode == RL_ROTP_FIXED &&
      c->alpha[RL_ROTP_RHO].value == 0)
    return rl_fail(RL_EINVAL, "rotp: fixed rho must be > 0 (the ADMM step divides by it)");
  return RL_OK;
}

/* ---------------------------------------------------------------- parameters */

static int64_t len_a1(const rotp_module *r) {
  const rl_rotp_alpha *a1 = &r->cfg.alpha[RL_ROTP_A1];
  if (a1->mode != RL_ROTP_LEARN) return 1 << 30;
  return r->base.params[r->pidx[RL_ROTP_A1]].value.numel;
}

static int64_t entry_of(const rotp_module *r, int k) {
  int64_t L = len_a1(r);
  return k < L - 1 ? k : L - 1;
}

double rl_rotp_value(const rl_module *m, int a, int k) {
  const rotp_module *r = (const rotp_module *)m;
  const rl_rotp_alpha *p = &r->cfg.alpha[a];
  if (!family_used(&r->cfg, a) || p->mode == RL_ROTP_UNUSED) return 0;
  if (p->mode == RL_ROTP_FIXED) return p->value;
  const rl_param *q = &r->base.params[r->pidx[a]];
  int64_t j = entry_of(r, k);
  if (j >= q->value.numel) j = q->value.numel - 1;
  return rl_softplus(q->value.data[j]);
}

static void refresh_steps(rotp_module *r) {
  for (int k = 0; k < r->cfg.iters; k++) {
    rotp_step *st = &r->steps[k];
    st->a0 = (real)rl_rotp_value(&r->base, RL_ROTP_A0, k);
    st->a1 = (real)rl_rotp_value(&r->base, RL_ROTP_A1, k);
    st->a2 = (real)rl_rotp_value(&r->base, RL_ROTP_A2, k);
    st->a3 = (real)rl_rotp_value(&r->base, RL_ROTP_A3, k);
    st->rho = (real)rl_rotp_value(&r->base, RL_ROTP_RHO, k);
  }
}

/* ---------------------------------------------------------------- priors */

/* q0 / lq0 of every row; p0 / lp0 of every set. */
static int priors_forward(rotp_module *r, const rl_batch *in) {
  const rl_rotp_config *c = &r->cfg;
  int64_t D = c->dim, B = in->count[0], R = rl_rows(&in->values);
  const real *X = in->values.data;
  int rc = 0;
  real *q0 = wsr(&r->w_q0, (size_t)R, &rc), *lq0 = wsr(&r->w_lq0, (size_t)R, &rc);
  real *p0 = wsr(&r->w_p0, (size_t)(B * D), &rc), *lp0 = wsr(&r->w_lp0, (size_t)(B * D), &rc);
  if (rc) return rc;
  const int64_t *off = in->offsets[0];
  real *H = NULL;
  int64_t Hd = c->q0_hidden;
  if (c->q0_learn) {
    H = wsr(&r->w_H, (size_t)(R * (Hd + 1)), &rc);
    if (rc) return rc;
    const rl_param *V = &r->base.params[r->iV], *w = &r->base.params[r->iw];
    rl_gemm(0, 1, R, Hd, D, 1, X, D, V->value.data, D, 0, H, Hd); /* X V^T */
    for (int64_t i = 0; i < R * Hd; i++) H[i] = (real)tanh(H[i]);
    real *sc = H + R * Hd;
    rl_gemv(0, R, Hd, 1, H, Hd, w->value.data, 0, sc);
  }
  for (int64_t b = 0; b < B; b++) {
    int64_t n = off[b + 1] - off[b];
    if (c->q0_learn) {
      const real *sc = H + R * Hd + off[b];
      double m = -INFINITY, S = 0;
      for (int64_t i = 0; i < n; i++) m = sc[i] > m ? sc[i] : m;
      for (int64_t i = 0; i < n; i++) S += exp(sc[i] - m);
      double lS = log(S + RL_SOFTMAX_EPS);
      for (int64_t i = 0; i < n; i++) {
        double q = exp(sc[i] - m) / (S + RL_SOFTMAX_EPS);
        q0[off[b] + i] = (real)q;
        lq0[off[b] + i] = (real)(c->compat ? log(q + ROTP_REF_EPS) : sc[i] - m - lS);
      }
    } else {
      double q = 1.0 / ((double)n + RL_SOFTMAX_EPS);
      for (int64_t i = 0; i < n; i++) {
        q0[off[b] + i] = (real)q;
        lq0[off[b] + i] = (real)(c->compat ? log(q + ROTP_REF_EPS) : -log((double)n));
      }
    }
  }
  if (c->p0_learn) {
    real *xs = wsr(&r->w_xsum, (size_t)(B * D), &rc);
    if (rc) return rc;
    const rl_param *U = &r->base.params[r->iU];
    for (int64_t b = 0; b < B; b++) {
      real *s = xs + b * D;
      memset(s, 0, (size_t)D * sizeof(real));
      for (int64_t i = off[b]; i < off[b + 1]; i++)
        for (int64_t j = 0; j < D; j++) s[j] += X[i * D + j];
    }
    rl_gemm(0, 1, B, D, D, 1, xs, D, U->value.data, D, 0, lp0, D); /* logits = xsum U^T */
    for (int64_t b = 0; b < B; b++) {
      real *l = lp0 + b * D;
      double m = -INFINITY, S = 0;
      for (int64_t j = 0; j < D; j++) m = l[j] > m ? l[j] : m;
      for (int64_t j = 0; j < D; j++) S += exp(l[j] - m);
      double lS = m + log(S);
      for (int64_t j = 0; j < D; j++) {
        l[j] = (real)(l[j] - lS);
        p0[b * D + j] = (real)exp(l[j]);
      }
    }
  } else {
    for (int64_t i = 0; i < B * D; i++) {
      p0[i] = (real)(1.0 / (double)D);
      lp0[i] = (real)(-log((double)D));
    }
  }
  return RL_OK;
}

/* Reverse of the priors: gradients w.r.t. lq0 (+ plain q0) and lp0 (+ plain p0) to x and the prior params. */
static void priors_backward(rotp_module *r, const rl_batch *in, real *gx) {
  const rl_rotp_config *c = &r->cfg;
  int64_t D = c->dim, B = in->count[0], R = rl_rows(&in->values);
  const real *X = in->values.data;
  const int64_t *off = in->offsets[0];
  real *q0 = r->w_q0.data, *glq0 = r->w_glq0.data, *gq0 = r->w_gq0.data;
  real *p0 = r->w_p0.data, *glp0 = r->w_glp0.data, *gp0 = r->w_gp0.data;
  if (c->q0_learn) {
    int64_t Hd = c->q0_hidden;
    real *H = r->w_H.data;
    rl_param *V = &r->base.params[r->iV], *w = &r->base.params[r->iw];
    /* ds (score gradient) into gq0 */
    for (int64_t b = 0; b < B; b++) {
      double acc = 0;
      for (int64_t i = off[b]; i < off[b + 1]; i++) {
        double gq = c->compat ? glq0[i] / (q0[i] + ROTP_REF_EPS) + gq0[i] : gq0[i];
        gq0[i] = (real)gq;
        acc += c->compat ? q0[i] * gq : glq0[i] + q0[i] * gq;
      }
      for (int64_t i = off[b]; i < off[b + 1]; i++) {
        /* compat: q through softmax; default: lq0 = s - log S (+ any plain-q0 path through q = exp(lq0)) */
        double ds = c->compat ? q0[i] * (gq0[i] - acc) : glq0[i] + q0[i] * gq0[i] - q0[i] * acc;
        gq0[i] = (real)ds;
      }
    }
    /* w.grad += ds^T H; dpre = ds w (1 - H^2); V.grad += dpre^T X; gx += dpre V */
    rl_gemv(1, R, Hd, 1, H, Hd, gq0, 1, w->grad.data);
    for (int64_t i = 0; i < R; i++)
      for (int64_t h = 0; h < Hd; h++) {
        real hv = H[i * Hd + h];
        H[i * Hd + h] = gq0[i] * w->value.data[h] * (1 - hv * hv); /* H is recomputed at the next forward */
      }
    rl_gemm(1, 0, Hd, D, R, 1, H, Hd, X, D, 1, V->grad.data, D);
    rl_gemm(0, 0, R, D, Hd, 1, H, Hd, V->value.data, D, 1, gx, D);
  }
  if (c->p0_learn) {
    rl_param *U = &r->base.params[r->iU];
    real *xs = r->w_xsum.data;
    real *gl = glp0; /* logits gradient in place */
    for (int64_t b = 0; b < B; b++) {
      real *g = gl + b * D, *p = p0 + b * D, *gp = gp0 + b * D;
      double sg = 0, spg = 0;
      for (int64_t j = 0; j < D; j++) {
        sg += g[j];
        spg += p[j] * gp[j];
      }
      for (int64_t j = 0; j < D; j++) g[j] = (real)(g[j] - p[j] * sg + p[j] * (gp[j] - spg));
    }
    rl_gemm(1, 0, D, D, B, 1, gl, D, xs, D, 1, U->grad.data, D); /* U.grad += glogits^T xsum */
    /* gxsum = glogits U, added to every row of the set */
    for (int64_t b = 0; b < B; b++) {
      real *gxs = gp0 + b * D; /* reuse */
      rl_gemv(1, D, D, 1, U->value.data, D, gl + b * D, 0, gxs);
      for (int64_t i = off[b]; i < off[b + 1]; i++)
        for (int64_t j = 0; j < D; j++) gx[i * D + j] += gxs[j];
    }
  }
}

/* ---------------------------------------------------------------- structure matrices */

static int structure_forward(rotp_module *r, const rl_batch *in) {
  int64_t D = r->cfg.dim, B = in->count[0];
  const real *X = in->values.data;
  const int64_t *off = in->offsets[0];
  int rc = 0;
  real *c1 = wsr(&r->w_c1, (size_t)(B * D * D), &rc);
  rotp_norm *nm = wsb(&r->w_s, (size_t)B * sizeof(rotp_norm), &rc);
  if (rc) return rc;
  for (int64_t b = 0; b < B; b++) {
    int64_t n = off[b + 1] - off[b];
    real *G = c1 + b * D * D;
    const real *xb = X + off[b] * D;
    rl_gemm(1, 0, D, D, n, 1, xb, D, xb, D, 0, G, D);
    rotp_norm *q = &nm[b];
    q->s1 = -INFINITY;
    q->s2 = -INFINITY;
    for (int64_t j = 0; j < D; j++)
      if (G[j * D + j] > q->s1) {
        q->s1 = G[j * D + j];
        q->col1 = j;
      }
    q->set1 = b;
    for (int64_t i = 0; i < n; i++) {
      double s = 0;
      for (int64_t j = 0; j < D; j++) s += (double)xb[i * D + j] * xb[i * D + j];
      if (s > q->s2) {
        q->s2 = s;
        q->row2 = off[b] + i;
      }
    }
  }
  if (r->cfg.structure_norm == RL_ROTP_STRUCT_REFERENCE) {
    rotp_norm g = nm[0];
    for (int64_t b = 1; b < B; b++) {
      if (nm[b].s1 > g.s1) {
        g.s1 = nm[b].s1;
        g.col1 = nm[b].col1;
        g.set1 = nm[b].set1;
      }
      if (nm[b].s2 > g.s2) {
        g.s2 = nm[b].s2;
        g.row2 = nm[b].row2;
      }
    }
    for (int64_t b = 0; b < B; b++) nm[b] = g;
  }
  for (int64_t b = 0; b < B; b++) {
    /* an all-zero set has G = 0: any normaliser gives c1 = 0 */
    if (!(nm[b].s1 > 0)) nm[b].s1 = 1;
    if (!(nm[b].s2 > 0)) nm[b].s2 = 1;
    real *G = c1 + b * D * D;
    real inv = (real)(1 / nm[b].s1);
    for (int64_t i = 0; i < D * D; i++) G[i] *= inv;
  }
  return RL_OK;
}

/* gxs += X (gc1 + gc1^T) / s1 per set, then the normalisers' gradients to their arg-max rows / columns. */
static void structure_backward(rotp_module *r, const rl_batch *in, real *gxs) {
  int64_t D = r->cfg.dim, B = in->count[0];
  const real *X = in->values.data;
  const int64_t *off = in->offsets[0];
  real *c1 = r->w_c1.data, *gc1 = r->w_gc1.data;
  double *sdot = r->w_sdot.data;
  rotp_norm *nm = r->w_s.data;
  double gs1_global = 0, gs2_global = 0;
  for (int64_t b = 0; b < B; b++) {
    int64_t n = off[b + 1] - off[b];
    real *gc = gc1 + b * D * D, *c = c1 + b * D * D;
    double dot = 0;
    for (int64_t i = 0; i < D * D; i++) dot += (double)gc[i] * c[i];
    double inv1 = 1 / nm[b].s1;
    /* symmetric part: dG = gc1 / s1, dX = X (dG + dG^T) */
    rl_gemm(0, 0, n, D, D, (real)inv1, X + off[b] * D, D, gc, D, 1, gxs + off[b] * D, D);
    rl_gemm(0, 1, n, D, D, (real)inv1, X + off[b] * D, D, gc, D, 1, gxs + off[b] * D, D);
    double gs1 = -dot * inv1, gs2 = -sdot[b] / nm[b].s2;
    if (r->cfg.structure_norm == RL_ROTP_STRUCT_REFERENCE) {
      gs1_global += gs1;
      gs2_global += gs2;
    } else {
      /* s1 = sum_n x_{n,col1}^2 over this set, s2 = |x_row2|^2 */
      int64_t j = nm[b].col1;
      for (int64_t i = off[b]; i < off[b + 1]; i++) gxs[i * D + j] += (real)(2 * gs1 * X[i * D + j]);
      int64_t i2 = nm[b].row2;
      for (int64_t jj = 0; jj < D; jj++) gxs[i2 * D + jj] += (real)(2 * gs2 * X[i2 * D + jj]);
    }
  }
  if (r->cfg.structure_norm == RL_ROTP_STRUCT_REFERENCE) {
    const rotp_norm *g = &nm[0];
    int64_t j = g->col1, b = g->set1;
    for (int64_t i = off[b]; i < off[b + 1]; i++) gxs[i * D + j] += (real)(2 * gs1_global * X[i * D + j]);
    for (int64_t jj = 0; jj < D; jj++) gxs[g->row2 * D + jj] += (real)(2 * gs2_global * X[g->row2 * D + jj]);
  }
}

/* ---------------------------------------------------------------- solver dispatch */

static size_t trace_size(const rotp_module *r, int64_t n) {
  const rotp_opts *o = &r->opts;
  int64_t D = r->cfg.dim;
  if (r->cfg.grad == RL_ROTP_GRAD_IMPLICIT) return rotp_implicit_trace_size(n, D);
  return o->solver == RL_ROTP_SINKHORN ? rotp_sinkhorn_trace_size(o, n, D) : rotp_badmm_trace_size(o, n, D);
}

static size_t work_size(const rotp_module *r, int64_t n) {
  const rotp_opts *o = &r->opts;
  int64_t D = r->cfg.dim;
  size_t w = o->solver == RL_ROTP_SINKHORN ? rotp_sinkhorn_work_size(o, n, D) : rotp_badmm_work_size(o, n, D);
  if (r->cfg.grad == RL_ROTP_GRAD_IMPLICIT) {
    size_t wi = rotp_implicit_work_size(n, D);
    w = wi > w ? wi : w;
  }
  return w + 16; /* keeps the thread slabs apart by a cache line */
}

static void set_of(const rotp_module *r, const rl_batch *in, int64_t b, real *work, rotp_set *s) {
  int64_t D = r->cfg.dim;
  const int64_t *off = in->offsets[0];
  const int64_t *toff = r->w_toff.data;
  s->n = off[b + 1] - off[b];
  s->d = D;
  s->x = in->values.data + off[b] * D;
  s->lp0 = (real *)r->w_lp0.data + b * D;
  s->p0 = (real *)r->w_p0.data + b * D;
  s->lq0 = (real *)r->w_lq0.data + off[b];
  s->q0 = (real *)r->w_q0.data + off[b];
  s->c1 = r->opts.structure ? (real *)r->w_c1.data + b * D * D : NULL;
  s->inv_s2 = r->opts.structure ? (real)(1 / ((rotp_norm *)r->w_s.data)[b].s2) : 0;
  s->plan = (real *)r->w_plan.data + off[b] * D;
  s->lplan = (real *)r->w_lplan.data + off[b] * D;
  s->trace = r->has_trace ? (real *)r->w_trace.data + toff[b] : NULL;
  s->work = work;
}

/* ---------------------------------------------------------------- pooled output of one set */

/* f = D sum_n x_n .* P_n */
RL_HOT static void pool_ref_forward(int64_t n, int64_t d, const real *x, const real *P, real *f) {
  for (int64_t j = 0; j < d; j++) f[j] = 0;
  for (int64_t i = 0; i < n; i++) {
    const real *xi = x + i * d, *pi = P + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) f[j] += xi[j] * pi[j];
  }
  for (int64_t j = 0; j < d; j++) f[j] *= (real)d;
}

/* dL/dlogP = D g x P, dL/dx = D g P */
RL_HOT static void pool_ref_backward(int64_t n, int64_t d, const real *x, const real *P, const real *g, real *glog,
                                     real *gx) {
  for (int64_t i = 0; i < n; i++) {
    const real *xi = x + i * d, *pi = P + i * d;
    real *gl = glog + i * d, *gxi = gx + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      gxi[j] = (real)d * g[j] * pi[j];
      gl[j] = gxi[j] * xi[j];
    }
  }
}

/* Eq. 5 as a column softmax of log P: f_d = sum_n x_nd exp(lP_nd - lden_d), lden_d = log sum_n P_nd (kept for the
** backward), so a column that underflows in float stays defined. den: d scratch. */
RL_HOT static void pool_eq5_forward(int64_t n, int64_t d, const real *x, const real *LP, real *f, real *lden,
                                    real *den) {
  for (int64_t j = 0; j < d; j++) {
    lden[j] = -INFINITY;
    f[j] = 0;
    den[j] = 0;
  }
  for (int64_t i = 0; i < n; i++) {
    const real *l = LP + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) lden[j] = l[j] > lden[j] ? l[j] : lden[j];
  }
  for (int64_t i = 0; i < n; i++) {
    const real *l = LP + i * d, *xi = x + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      real w = rl_exp(l[j] - lden[j]);
      f[j] += xi[j] * w;
      den[j] += w;
    }
  }
  for (int64_t j = 0; j < d; j++) {
    f[j] /= den[j];
    lden[j] += (real)log(den[j]);
  }
}

/* a = softmax_n(log P): dL/dlogP_nd = g_d a_nd (x_nd - f_d), dL/dx_nd = g_d a_nd. f: d scratch. */
RL_HOT static void pool_eq5_backward(int64_t n, int64_t d, const real *x, const real *LP, const real *g,
                                     const real *lden, real *glog, real *gx, real *f) {
  for (int64_t j = 0; j < d; j++) f[j] = 0;
  for (int64_t i = 0; i < n; i++) {
    const real *l = LP + i * d, *xi = x + i * d;
    real *gxi = gx + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      gxi[j] = rl_exp(l[j] - lden[j]); /* a */
      f[j] += gxi[j] * xi[j];
    }
  }
  for (int64_t i = 0; i < n; i++) {
    const real *xi = x + i * d;
    real *gxi = gx + i * d, *gl = glog + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      real ga = g[j] * gxi[j];
      gl[j] = ga * (xi[j] - f[j]);
      gxi[j] = ga;
    }
  }
}

static int rotp_forward(rl_module *m, const rl_batch *in, rl_tensor *out) {
  rotp_module *r = (rotp_module *)m;
  const rl_rotp_config *c = &r->cfg;
  int64_t D = c->dim, B = in->count[0], R = rl_rows(&in->values);
  const int64_t *off = in->offsets[0];
  int rc = RL_OK;
  if (!rl_all_finite(in->values.numel, in->values.data))
    return rl_expect_finite(in->values.data, in->values.numel, "rotp: input"); /* names the value */
  refresh_steps(r);
  r->B = B;
  r->R = R;
  r->has_debug = 0;
  r->has_trace = m->training;
  int64_t nmax = 0;
  for (int64_t b = 0; b < B; b++) nmax = off[b + 1] - off[b] > nmax ? off[b + 1] - off[b] : nmax;
  r->nmax = nmax;
  if ((rc = priors_forward(r, in))) return rc;
  if (c->structure && (rc = structure_forward(r, in))) return rc;
  int64_t *toff = wsb(&r->w_toff, (size_t)(B + 1) * sizeof(int64_t), &rc);
  wsr(&r->w_plan, (size_t)(R * D), &rc);
  wsr(&r->w_lplan, (size_t)(R * D), &rc);
  if (rc) return rc;
  toff[0] = 0;
  for (int64_t b = 0; b < B; b++) toff[b + 1] = toff[b] + (int64_t)(r->has_trace ? trace_size(r, off[b + 1] - off[b]) : 0);
  if (r->has_trace) wsr(&r->w_trace, (size_t)toff[B], &rc);
  int nth = omp_get_max_threads();
  size_t wsz = work_size(r, nmax);
  real *work = wsr(&r->w_work, wsz * (size_t)nth, &rc);
  if (rc) return rc;
  if (c->structure) rl_blas_set_threads(1);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t b = 0; b < B; b++) {
    rotp_set s;
    set_of(r, in, b, work + wsz * (size_t)omp_get_thread_num(), &s);
    if (c->grad == RL_ROTP_GRAD_IMPLICIT && s.trace)
      rotp_sinkhorn_fixed_point(&r->opts, &s, s.trace + s.n, s.trace);
    else if (c->solver == RL_ROTP_SINKHORN)
      rotp_sinkhorn_forward(&r->opts, &s);
    else
      rotp_badmm_forward(&r->opts, &s);
  }
  if (c->structure) rl_blas_set_threads(nth);
  /* pooled output (per set, in parallel) */
  int64_t *offc = wsb(&r->w_off, (size_t)(B + 1) * sizeof(int64_t), &rc);
  real *lden = wsr(&r->w_den, (size_t)(B * D), &rc), *pscr = wsr(&r->w_pscr, (size_t)(B * D), &rc);
  if (rc) return rc;
  memcpy(offc, off, (size_t)(B + 1) * sizeof(int64_t));
  const real *X = in->values.data, *P = r->w_plan.data, *LP = r->w_lplan.data;
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t b = 0; b < B; b++) {
    int64_t o = off[b], n = off[b + 1] - o;
    if (c->output == RL_ROTP_OUT_REFERENCE)
      pool_ref_forward(n, D, X + o * D, P + o * D, out->data + b * D);
    else
      pool_eq5_forward(n, D, X + o * D, LP + o * D, out->data + b * D, lden + b * D, pscr + b * D);
  }
  return rl_expect_finite(out->data, out->numel, "rotp: output (the solver produced a non-finite plan)");
}

/* Shared backward given dL/dlog P in r->w_gplan (rows x D); gx (rows x D) receives dL/dx when not NULL. */
static int backward_from_plan(rotp_module *r, const rl_batch *in, real *gx_out, real *gx_extra) {
  const rl_rotp_config *c = &r->cfg;
  int64_t D = c->dim, B = in->count[0], R = rl_rows(&in->values), T = c->iters;
  const int64_t *off = in->offsets[0];
  if (!r->has_trace)
    return rl_fail(RL_ESTATE, "rotp: backward needs a forward in training mode (the last forward ran in eval mode "
                              "and kept no iteration state)");
  int rc = 0;
  real *gx = wsr(&r->w_gx, (size_t)(R * D), &rc), *gxs = wsr(&r->w_gxs, (size_t)(R * D), &rc);
  real *glp0 = wsr(&r->w_glp0, (size_t)(B * D), &rc), *gp0 = wsr(&r->w_gp0, (size_t)(B * D), &rc);
  real *glq0 = wsr(&r->w_glq0, (size_t)R, &rc), *gq0 = wsr(&r->w_gq0, (size_t)R, &rc);
  real *gc1 = c->structure ? wsr(&r->w_gc1, (size_t)(B * D * D), &rc) : NULL;
  double *sdot = wsb(&r->w_sdot, (size_t)B * sizeof(double), &rc);
  double *gstep = wsb(&r->w_gstep, (size_t)(B * T * RL_ROTP_NALPHA) * sizeof(double), &rc);
  int64_t *c2off = NULL;
  real *gc2 = NULL;
  if (c->debug && c->structure) {
    c2off = wsb(&r->w_c2off, (size_t)(B + 1) * sizeof(int64_t), &rc);
    if (rc) return rc;
    c2off[0] = 0;
    for (int64_t b = 0; b < B; b++) c2off[b + 1] = c2off[b] + (off[b + 1] - off[b]) * (off[b + 1] - off[b]);
    gc2 = wsr(&r->w_gc2, (size_t)c2off[B], &rc);
    if (gc2) memset(gc2, 0, (size_t)c2off[B] * sizeof(real));
  }
  if (rc) return rc;
  memset(gx, 0, (size_t)(R * D) * sizeof(real));
  memset(gxs, 0, (size_t)(R * D) * sizeof(real));
  memset(glp0, 0, (size_t)(B * D) * sizeof(real));
  memset(gp0, 0, (size_t)(B * D) * sizeof(real));
  memset(glq0, 0, (size_t)R * sizeof(real));
  memset(gq0, 0, (size_t)R * sizeof(real));
  if (gc1) memset(gc1, 0, (size_t)(B * D * D) * sizeof(real));
  memset(sdot, 0, (size_t)B * sizeof(double));
  memset(gstep, 0, (size_t)(B * T * RL_ROTP_NALPHA) * sizeof(double));
  int nth = omp_get_max_threads();
  size_t wsz = work_size(r, r->nmax);
  real *work = wsr(&r->w_work, wsz * (size_t)nth, &rc);
  if (rc) return rc;
  if (c->structure) rl_blas_set_threads(1);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t b = 0; b < B; b++) {
    rotp_set s;
    set_of(r, in, b, work + wsz * (size_t)omp_get_thread_num(), &s);
    rotp_grads g;
    g.glog = (real *)r->w_gplan.data + off[b] * D;
    g.gx = gx + off[b] * D;
    g.gxs = gxs + off[b] * D;
    g.glp0 = glp0 + b * D;
    g.gp0 = gp0 + b * D;
    g.glq0 = glq0 + off[b];
    g.gq0 = gq0 + off[b];
    g.gc1 = gc1 ? gc1 + b * D * D : NULL;
    g.gc2 = gc2 ? gc2 + c2off[b] : NULL;
    g.sdot = 0;
    g.gstep = gstep + b * T * RL_ROTP_NALPHA;
    if (c->grad == RL_ROTP_GRAD_IMPLICIT)
      rotp_implicit_backward(&r->opts, &s, &g);
    else if (c->solver == RL_ROTP_SINKHORN)
      rotp_sinkhorn_backward(&r->opts, &s, &g);
    else
      rotp_badmm_backward(&r->opts, &s, &g);
    sdot[b] = g.sdot;
  }
  if (c->structure) rl_blas_set_threads(nth);
  if (c->structure) structure_backward(r, in, gxs);
  priors_backward(r, in, gx);
  /* parameters: raw[j_k] += sum over sets of dL/dvalue_k * softplus'(raw[j_k]) */
  for (int a = 0; a < RL_ROTP_NALPHA; a++) {
    if (r->pidx[a] < 0) continue;
    rl_param *p = &r->base.params[r->pidx[a]];
    for (int k = 0; k < T; k++) {
      double s = 0;
      for (int64_t b = 0; b < B; b++) s += gstep[(b * T + k) * RL_ROTP_NALPHA + a];
      int64_t j = entry_of(r, k);
      if (j >= p->value.numel) j = p->value.numel - 1;
      p->grad.data[j] += (real)(s * rl_softplus_grad(p->value.data[j]));
    }
  }
  if (c->debug) {
    real *xp = wsr(&r->w_xpart, (size_t)(R * D), &rc);
    if (rc) return rc;
    for (int64_t i = 0; i < R * D; i++) xp[i] = gx[i] + (gx_extra ? gx_extra[i] : 0);
    r->has_debug = 1;
  }
  if (gx_out) {
    for (int64_t i = 0; i < R * D; i++) gx_out[i] = gx[i] + gxs[i] + (gx_extra ? gx_extra[i] : 0);
  }
  return RL_OK;
}

static int rotp_backward(rl_module *m, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in) {
  rotp_module *r = (rotp_module *)m;
  const rl_rotp_config *c = &r->cfg;
  int64_t D = c->dim, B = in->count[0], R = rl_rows(&in->values);
  const int64_t *off = in->offsets[0];
  int rc = 0;
  real *gP = wsr(&r->w_gplan, (size_t)(R * D), &rc), *gxo = wsr(&r->w_out, (size_t)(R * D), &rc);
  if (rc) return rc;
  const real *X = in->values.data, *P = r->w_plan.data, *LP = r->w_lplan.data, *gy = grad_out->data;
  const real *lden = r->w_den.data;
  real *pscr = r->w_pscr.data;
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t b = 0; b < B; b++) {
    int64_t o = off[b], n = off[b + 1] - o;
    if (c->output == RL_ROTP_OUT_REFERENCE)
      pool_ref_backward(n, D, X + o * D, P + o * D, gy + b * D, gP + o * D, gxo + o * D);
    else
      pool_eq5_backward(n, D, X + o * D, LP + o * D, gy + b * D, lden + b * D, gP + o * D, gxo + o * D, pscr + b * D);
  }
  return backward_from_plan(r, in, grad_in ? grad_in->data : NULL, gxo);
}

int rl_rotp_backward_plan(rl_module *m, const rl_batch *in, const rl_tensor *grad_plan, rl_tensor *grad_in) {
  if (!rl_rotp_config_of(m)) return rl_fail(RL_EINVAL, "backward_plan: not a rotp module");
  rotp_module *r = (rotp_module *)m;
  if (!m->has_forward) return rl_fail(RL_ESTATE, "rotp: backward_plan called before forward");
  if (rl_rows(&in->values) != m->forward_rows || in->nlevels < 1 || in->count[0] != m->forward_sets)
    return rl_fail(RL_ESTATE, "rotp: backward_plan input is not the batch of the last forward");
  int rc = rl_expect_matrix(grad_plan, rl_rows(&in->values), r->cfg.dim, "rotp: gradient of the plan");
  if (rc) return rc;
  int64_t n = rl_rows(&in->values) * r->cfg.dim;
  real *gP = wsr(&r->w_gplan, (size_t)n, &rc);
  if (rc) return rc;
  const real *P = r->w_plan.data;
  for (int64_t i = 0; i < n; i++) gP[i] = grad_plan->data[i] * P[i]; /* dL/dlogP */
  return backward_from_plan(r, in, grad_in ? grad_in->data : NULL, NULL);
}

/* ---------------------------------------------------------------- module plumbing */

static int rotp_out_cols(const rl_module *m, const rl_batch *in, int64_t *cols) {
  const rotp_module *r = (const rotp_module *)m;
  int rc = rl_expect_sets(in, r->cfg.dim, "rotp: input (the option 'dim' must equal the input width)");
  if (rc) return rc;
  *cols = r->cfg.dim;
  return RL_OK;
}

static void rotp_destroy(rl_module *m) {
  rotp_module *r = (rotp_module *)m;
  rl_free(r->steps);
  rl_workspace *ws[] = {&r->w_off, &r->w_den, &r->w_pscr, &r->w_plan, &r->w_lplan, &r->w_lq0,  &r->w_q0,   &r->w_lp0,  &r->w_p0,   &r->w_c1,   &r->w_s,
                        &r->w_toff, &r->w_trace, &r->w_work, &r->w_H,    &r->w_xsum, &r->w_out,  &r->w_gplan,
                        &r->w_gx,   &r->w_gxs,  &r->w_glp0, &r->w_glq0, &r->w_gp0,  &r->w_gq0,  &r->w_gc1,
                        &r->w_sdot, &r->w_gstep, &r->w_gc2, &r->w_c2off, &r->w_xpart};
  for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) rl_workspace_free(ws[i]);
}

static const rl_module_ops rotp_ops = {"rotp", rotp_out_cols, rotp_forward, rotp_backward, rotp_destroy};

const rl_rotp_config *rl_rotp_config_of(const rl_module *m) {
  return m && m->ops == &rotp_ops ? &((const rotp_module *)m)->cfg : NULL;
}

static void uniform_init(real *v, int64_t n, double bound, rl_rng *g) {
  for (int64_t i = 0; i < n; i++) v[i] = (real)((2 * rl_rng_uniform(g) - 1) * bound);
}

rl_module *rl_pool_rotp_new(const rl_rotp_config *cfg, rl_rng *g) {
  if (validate(cfg)) return NULL;
  rotp_module *r = rl_calloc(1, sizeof *r);
  if (!r) return NULL;
  rl_module_init(&r->base, &rotp_ops, 1);
  r->cfg = *cfg;
  rl_rotp_config *c = &r->cfg;
  for (int a = 0; a < RL_ROTP_NALPHA; a++) {
    r->pidx[a] = -1;
    if (!family_used(c, a)) c->alpha[a].mode = RL_ROTP_UNUSED;
  }
  r->iV = r->iw = r->iU = -1;
  r->steps = rl_calloc((size_t)c->iters, sizeof(rotp_step));
  if (!r->steps) goto fail;
  for (int a = 0; a < RL_ROTP_NALPHA; a++) {
    rl_rotp_alpha *p = &c->alpha[a];
    if (p->mode != RL_ROTP_LEARN) continue;
    int64_t len = p->entries ? p->entries : c->iters;
    rl_param *q = rl_module_add_param(&r->base, alpha_names[a], 1, &len);
    if (!q) goto fail;
    r->pidx[a] = r->base.nparams - 1;
    for (int64_t i = 0; i < len; i++)
      q->value.data[i] = (real)(isnan(p->init) ? 0.1 * rl_rng_normal(g) : rl_softplus_inv(p->init));
  }
  if (c->q0_learn) {
    int64_t sV[2] = {c->q0_hidden, c->dim}, sw[2] = {1, c->q0_hidden};
    rl_param *V = rl_module_add_param(&r->base, "q0.V", 2, sV);
    if (!V) goto fail;
    r->iV = r->base.nparams - 1;
    uniform_init(V->value.data, V->value.numel, 1 / sqrt((double)c->dim), g);
    rl_param *w = rl_module_add_param(&r->base, "q0.w", 2, sw);
    if (!w) goto fail;
    r->iw = r->base.nparams - 1;
    uniform_init(w->value.data, w->value.numel, 1 / sqrt((double)c->q0_hidden), g);
  }
  if (c->p0_learn) {
    int64_t sU[2] = {c->dim, c->dim};
    rl_param *U = rl_module_add_param(&r->base, "p0.U", 2, sU);
    if (!U) goto fail;
    r->iU = r->base.nparams - 1;
    uniform_init(U->value.data, U->value.numel, 1 / sqrt((double)c->dim), g);
  }
  r->opts.solver = c->solver;
  r->opts.iters = c->iters;
  r->opts.inner = c->inner;
  r->opts.structure = c->structure;
  r->opts.compat = c->compat;
  r->opts.debug = c->debug;
  r->opts.steps = r->steps;
  return &r->base;
fail:
  rl_module_free(&r->base);
  return NULL;
}

/* ---------------------------------------------------------------- inspection */

const real *rl_rotp_plan(const rl_module *m, int64_t s, int64_t *n, int64_t *d) {
  const rotp_module *r = (const rotp_module *)m;
  if (!rl_rotp_config_of(m) || !m->has_forward || s < 0 || s >= r->B) return NULL;
  const int64_t *off = r->w_off.data;
  *n = off[s + 1] - off[s];
  *d = r->cfg.dim;
  return (const real *)r->w_plan.data + off[s] * r->cfg.dim;
}

const real *rl_rotp_c1(const rl_module *m, int64_t s) {
  const rotp_module *r = (const rotp_module *)m;
  if (!rl_rotp_config_of(m) || !m->has_forward || !r->cfg.structure || s < 0 || s >= r->B) return NULL;
  return (const real *)r->w_c1.data + s * r->cfg.dim * r->cfg.dim;
}

int rl_rotp_c2(const rl_module *m, const rl_batch *in, int64_t s, real *out) {
  const rotp_module *r = (const rotp_module *)m;
  if (!rl_rotp_config_of(m) || !m->has_forward || !r->cfg.structure || s < 0 || s >= r->B)
    return rl_fail(RL_ESTATE, "rotp: c2 needs a forward with alpha0 learned");
  int64_t D = r->cfg.dim, o = in->offsets[0][s], n = in->offsets[0][s + 1] - o;
  const rotp_norm *nm = r->w_s.data;
  rl_gemm(0, 1, n, n, D, (real)(1 / nm[s].s2), in->values.data + o * D, D, in->values.data + o * D, D, 0, out, n);
  return RL_OK;
}

const real *rl_rotp_debug_gc1(const rl_module *m, int64_t s) {
  const rotp_module *r = (const rotp_module *)m;
  if (!rl_rotp_config_of(m) || !r->has_debug || !r->cfg.structure || s < 0 || s >= r->B) return NULL;
  return (const real *)r->w_gc1.data + s * r->cfg.dim * r->cfg.dim;
}

const real *rl_rotp_debug_gc2(const rl_module *m, int64_t s) {
  const rotp_module *r = (const rotp_module *)m;
  if (!rl_rotp_config_of(m) || !r->has_debug || !r->cfg.structure || s < 0 || s >= r->B) return NULL;
  return (const real *)r->w_gc2.data + ((const int64_t *)r->w_c2off.data)[s];
}

const real *rl_rotp_debug_xpartial(const rl_module *m) {
  const rotp_module *r = (const rotp_module *)m;
  if (!rl_rotp_config_of(m) || !r->has_debug) return NULL;
  return r->w_xpart.data;
}
