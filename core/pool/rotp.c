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
#include "rotp_module.h"

static const char *const alpha_names[RL_ROTP_NALPHA] = {"a0", "a1", "a2", "a3", "rho"};

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
  if (c->q0_n < 0 || c->q0_n > RL_ROTP_Q0_FIXED_MAX)
    return rl_fail(RL_EINVAL, "rotp: option 'q0': a fixed prior has 1..%d entries, got %lld", RL_ROTP_Q0_FIXED_MAX,
                   (long long)c->q0_n);
  if (c->q0_n && c->q0_learn) return rl_fail(RL_EINVAL, "rotp: option 'q0': a fixed vector cannot also be learned");
  for (int64_t i = 0; i < c->q0_n; i++)
    if (!(c->q0_fixed[i] > 0) || !isfinite(c->q0_fixed[i]))
      return rl_fail(RL_EINVAL, "rotp: option 'q0': entry %lld must be a finite number > 0, got %g", (long long)i + 1,
                     c->q0_fixed[i]);
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

static int rotp_forward(rl_module *m, const rl_batch *in, rl_tensor *out) {
  rotp_module *r = (rotp_module *)m;
  const rl_rotp_config *c = &r->cfg;
  int64_t D = c->dim, B = in->count[0], R = rl_rows(&in->values);
  const int64_t *off = in->offsets[0];
  int rc = RL_OK;
  /* the input check runs per set in the solver loop (cache-hot) unless the priors or the structure read x first */
  int early = c->structure || c->p0_learn || c->q0_learn;
  if (early && !rl_all_finite(in->values.numel, in->values.data))
    return rl_expect_finite(in->values.data, in->values.numel, "rotp: input"); /* names the value */
  refresh_steps(r);
  r->B = B;
  r->R = R;
  r->has_debug = 0;
  r->has_trace = m->training;
  int64_t nmax = 0;
  for (int64_t b = 0; b < B; b++) nmax = off[b + 1] - off[b] > nmax ? off[b + 1] - off[b] : nmax;
  r->nmax = nmax;
  if ((rc = rotp_priors_forward(r, in))) return rc;
  if (c->structure && (rc = rotp_structure_forward(r, in))) return rc;
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
  int64_t *offc = wsb(&r->w_off, (size_t)(B + 1) * sizeof(int64_t), &rc);
  real *lden = wsr(&r->w_den, (size_t)(B * D), &rc), *pscr = wsr(&r->w_pscr, (size_t)(B * D), &rc);
  real *fout = wsr(&r->w_fout, (size_t)(B * D), &rc); /* the outputs again, for eq. 5's reverse */
  if (rc) return rc;
  memcpy(offc, off, (size_t)(B + 1) * sizeof(int64_t));
  const real *X = in->values.data, *P = r->w_plan.data, *LP = r->w_lplan.data;
  int bad = 0;
  if (c->structure) rl_blas_set_threads(1);
  /* each set's solver, then its pooled output while the plan is in cache */
#pragma omp parallel for schedule(dynamic, 1) reduction(|| : bad)
  for (int64_t b = 0; b < B; b++) {
    rotp_set s;
    set_of(r, in, b, work + wsz * (size_t)omp_get_thread_num(), &s);
    if (!early && !rl_all_finite(s.n * D, s.x)) {
      bad = 1;
      continue;
    }
    if (c->grad == RL_ROTP_GRAD_IMPLICIT && s.trace)
      rotp_sinkhorn_fixed_point(&r->opts, &s, s.trace + s.n, s.trace);
    else if (c->solver == RL_ROTP_SINKHORN)
      rotp_sinkhorn_forward(&r->opts, &s);
    else
      rotp_badmm_forward(&r->opts, &s);
    int64_t o = off[b];
    if (c->output == RL_ROTP_OUT_REFERENCE)
      rotp_pool_ref_forward(s.n, D, X + o * D, P + o * D, out->data + b * D);
    else {
      rotp_pool_eq5_forward(s.n, D, X + o * D, P + o * D, LP + o * D, out->data + b * D, lden + b * D, pscr + b * D);
      memcpy(fout + b * D, out->data + b * D, (size_t)D * sizeof(real));
    }
  }
  if (c->structure) rl_blas_set_threads(nth);
  if (bad) {
    r->has_trace = 0;
    return rl_expect_finite(in->values.data, in->values.numel, "rotp: input"); /* names the value */
  }
  return rl_expect_finite(out->data, out->numel, "rotp: output (the solver produced a non-finite plan)");
}

/* Shared backward. gy (B x D): the gradient of the output, whose reverse (dL/dlog P and the direct dL/dx) runs per
** set in the solver loop; NULL: dL/dlog P is already in r->w_gplan. gx_out (rows x D) receives dL/dx when not
** NULL. Without debug, the solvers, the structure and the priors all add into one array (gx_out itself when
** given); debug keeps the parts apart for rl_rotp_debug_xpartial. */
static int backward_from_plan(rotp_module *r, const rl_batch *in, real *gx_out, const real *gy) {
  const rl_rotp_config *c = &r->cfg;
  int64_t D = c->dim, B = in->count[0], R = rl_rows(&in->values), T = c->iters;
  const int64_t *off = in->offsets[0];
  if (!r->has_trace)
    return rl_fail(RL_ESTATE, "rotp: backward needs a forward in training mode (the last forward ran in eval mode "
                              "and kept no iteration state)");
  int rc = 0, one = !c->debug;
  /* without an input gradient (gx_out NULL, no debug) every path to x alone is skipped: the structure's (through c1,
  ** c2 and the normalisers: about a third of learned alpha0's matrix products), the output's direct one, the priors'
  ** and the solvers' dL/dx streams */
  int xgrad = gx_out || c->debug;
  real *gx = one && gx_out ? gx_out : xgrad ? wsr(&r->w_gx, (size_t)(R * D), &rc) : NULL;
  real *gxs = one ? gx : wsr(&r->w_gxs, (size_t)(R * D), &rc);
  real *gxo = !one && gy ? wsr(&r->w_out, (size_t)(R * D), &rc) : NULL;
  real *gP = wsr(&r->w_gplan, (size_t)(R * D), &rc);
  real *glp0 = wsr(&r->w_glp0, (size_t)(B * D), &rc), *gp0 = wsr(&r->w_gp0, (size_t)(B * D), &rc);
  real *glq0 = wsr(&r->w_glq0, (size_t)R, &rc), *gq0 = wsr(&r->w_gq0, (size_t)R, &rc);
  real *gc1 = c->structure && xgrad ? wsr(&r->w_gc1, (size_t)(B * D * D), &rc) : NULL;
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
  const real *X = in->values.data, *P = r->w_plan.data, *LP = r->w_lplan.data, *lden = r->w_den.data;
  const real *fout = r->w_fout.data;
  real *pscr = r->w_pscr.data;
  if (c->structure) rl_blas_set_threads(1);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t b = 0; b < B; b++) {
    int64_t o = off[b], n = off[b + 1] - o;
    real *gxb = gx ? gx + o * D : NULL;
    /* the output's reverse (its direct dL/dx, when wanted, initialises this set's rows), or zeros; without an input
    ** gradient gxb is NULL and the solver skips its dL/dx too */
    real *direct = gxo ? gxo + o * D : gxb;
    if (gy) {
      if (c->output == RL_ROTP_OUT_REFERENCE)
        rotp_pool_ref_backward(n, D, X + o * D, P + o * D, gy + b * D, gP + o * D, direct);
      else
        rotp_pool_eq5_backward(n, D, X + o * D, P + o * D, LP + o * D, gy + b * D, lden + b * D, fout + b * D,
                               pscr + b * D, gP + o * D, direct);
    }
    if (gxb && (!gy || direct != gxb)) memset(gxb, 0, (size_t)(n * D) * sizeof(real));
    if (!one) memset(gxs + o * D, 0, (size_t)(n * D) * sizeof(real));
    rotp_set s;
    set_of(r, in, b, work + wsz * (size_t)omp_get_thread_num(), &s);
    rotp_grads g;
    g.glog = gP + o * D;
    g.gx = gxb;
    g.gxs = xgrad ? gxs + o * D : NULL;
    g.glp0 = glp0 + b * D;
    g.gp0 = gp0 + b * D;
    g.glq0 = glq0 + o;
    g.gq0 = gq0 + o;
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
  if (c->structure && xgrad) rotp_structure_backward(r, in, gxs);
  rotp_priors_backward(r, in, gx);
  /* parameters: raw[j_k] += sum over sets of dL/dvalue_k * softplus'(raw[j_k]) */
  for (int a = 0; a < RL_ROTP_NALPHA; a++) {
    if (r->pidx[a] < 0) continue;
    rl_param *p = &r->base.params[r->pidx[a]];
    for (int k = 0; k < T; k++) {
      double sum = 0;
      for (int64_t b = 0; b < B; b++) sum += gstep[(b * T + k) * RL_ROTP_NALPHA + a];
      int64_t j = entry_of(r, k);
      if (j >= p->value.numel) j = p->value.numel - 1;
      p->grad.data[j] += (real)(sum * rl_softplus_grad(p->value.data[j]));
    }
  }
  if (!one) {
    real *xp = wsr(&r->w_xpart, (size_t)(R * D), &rc);
    if (rc) return rc;
    for (int64_t i = 0; i < R * D; i++) xp[i] = gx[i] + (gxo ? gxo[i] : 0);
    r->has_debug = 1;
    if (gx_out)
      for (int64_t i = 0; i < R * D; i++) gx_out[i] = gx[i] + gxs[i] + (gxo ? gxo[i] : 0);
  }
  return RL_OK;
}

static int rotp_backward(rl_module *m, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in) {
  return backward_from_plan((rotp_module *)m, in, grad_in ? grad_in->data : NULL, grad_out->data);
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
  rl_workspace *ws[] = {&r->w_off, &r->w_den, &r->w_pscr, &r->w_fout, &r->w_plan, &r->w_lplan, &r->w_lq0, &r->w_q0,
                        &r->w_lp0, &r->w_p0, &r->w_c1, &r->w_s, &r->w_toff, &r->w_trace, &r->w_work, &r->w_H,
                        &r->w_xsum, &r->w_out, &r->w_gplan, &r->w_gx, &r->w_gxs, &r->w_glp0, &r->w_glq0, &r->w_gp0,
                        &r->w_gq0, &r->w_gc1, &r->w_sdot, &r->w_gstep, &r->w_gc2, &r->w_c2off, &r->w_xpart};
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
