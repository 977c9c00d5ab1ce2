/*
** rotp_badmm.c -- ROTP-B-E / ROTP-B-Q: Bregman ADMM (Algorithm 2) for one set, forward and exact reverse mode.
**
** Iteration k with r = rho_k, ai = ai_k (golden README 1.2; P is N x D, lse_d over a row, lse_n over a column):
**   1  Yt  = (x - z + a0 M(s) - [Q] a1 s) / r + ls
**   2  lt  = Yt - R + leta,  R = lse_d(Yt),         t = exp(lt)
**   3  Ys  = E: (z + a0 M(t) + r lt) / c            Q: (z + a0 M(t) - a1 t) / r + lt      (c = a1 + r | r)
**   4  ls' = Ys - C + lmu,   C = lse_n(Ys),         s' = exp(ls')
**   5  z'  = z + r (t - s')
** then the marginals entering iteration k + 1. The authors' steps (compat = "reference", the paper's eqs. 26-28):
**   6  lmu'  = logsoftmax((r lmu + a2 lp0 - z1) / (r + a2))
**   7  leta' = logsoftmax((r leta + a3 lq0 - z2) / (r + a3))
**   8  z1' = z1 + r (exp(lmu') - colsum(s'))        9  z2' = z2 + r (exp(leta') - rowsum(t))
** never move the marginals: s' has column sums exp(lmu) and t row sums exp(leta) by construction, so z1, z2 stay 0
** and lmu, leta stay at the priors whatever a2 and a3 are (the layer behaves as a2 = a3 = infinity; max pooling,
** a3 = 0, is out of reach). The default takes each marginal as a variable of its block -- (t, leta) with the
** t-step, (s, mu) with the s-step -- and minimises the block's objective over it: with the mass kept at 1,
**   6' lmu'  = logsoftmax((c C + a2 lp0) / (c + a2))      7' leta' = logsoftmax((r R + a3 lq0) / (r + a3))
** (from a2 KL(mu | p0) + c <mu, log mu - C> and a3 KL(eta | q0) + r <eta, log eta - R>), used by the next
** iteration's steps 2 and 4 (one iteration late, so an iteration still makes two passes over the set). Its fixed
** points are those of the exact block updates: the plan minimises the regularised problem with both KL terms. The
** large-a2, a3 limit is the authors' iteration.
** Start: ls = lt = lq0 + lp0, lmu = lp0, leta = lq0, z = z1 = z2 = 0; the plan is t of the last iteration, so that
** iteration stops after step 2 (steps 3-9 would only feed an iteration T + 1: autograd of the reference gives them
** zero adjoints). M(.) is the structure term (absent when a0 = 0). The softmax of steps 2 and 4 reuses the exps of
** the log-sum-exp, so a forward iteration costs two exp passes over the set.
**
** Trace per iteration: lt_k and ls'_k (N x D each, log domain; no ls' for the last) and the vectors lmu, leta, z1,
** z2 entering it with its two log-sum-exps; this general path's backward recomputes t and s' from them (two exp
** passes per iteration; the fused a0 = 0 path keeps them: rotp_badmm_fused_voff) and never needs z: every quantity it
** uses is a function of (lt, ls', the vectors).
*/
#include <math.h>
#include <string.h>

#include "rotp_math.h"
#include "rotp_solver.h"

/* vector block per iteration: [lmu d][leta n][z1 d][z2 n][R n][C d] */
int64_t rotp_badmm_vblk(int64_t n, int64_t d) { return 3 * (n + d); }
#define vblk rotp_badmm_vblk

size_t rotp_badmm_trace_size(const rotp_opts *o, int64_t n, int64_t d) {
  int64_t T = o->iters;
  if (!o->structure) return (size_t)(rotp_badmm_fused_voff(T, n * d) + T * (vblk(n, d) + n + 2 * d));
  return (size_t)(rotp_badmm_voff(T, n * d) + T * vblk(n, d) + 2 * T * ROTP_STRUCT_KEEP(d));
}

/* The structure path's kept products (rotp_struct_apply): M(s) of iteration k in slot 2k, M(t) in slot 2k + 1. */
static real *struct_keep(const rotp_opts *o, const rotp_set *s, int64_t slot) {
  int64_t n = s->n, d = s->d, T = o->iters;
  if (!s->trace) return NULL;
  return s->trace + rotp_badmm_voff(T, n * d) + T * vblk(n, d) + slot * ROTP_STRUCT_KEEP(d);
}

size_t rotp_badmm_work_size(const rotp_opts *o, int64_t n, int64_t d) {
  return (size_t)(9 * n * d + 2 * vblk(n, d) + 16 * (n + d)) +
         (o->structure ? rotp_struct_work_size(n, d, o->debug) : 0);
}

/* log-softmax of a vector (in place into out) */
RL_HOT void rotp_log_softmax(int64_t n, const real *y, real *out) {
  real m = rl_rowmax(n, y, 1, NULL);
  double acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; i++) acc += rl_exp(y[i] - m);
  real l = m + rl_log(acc);
#pragma omp simd
  for (int64_t i = 0; i < n; i++) out[i] = y[i] - l;
}

/* One default marginal step over m entries: l' = logsoftmax((c X + a lprior) / (c + a)), X the block's log-sum-exp.
** Y: m scratch. */
static void marginal_step(int64_t m, real c, real a, const real *X, const real *lprior, real *Y, real *l2) {
  for (int64_t i = 0; i < m; i++) Y[i] = (c * X[i] + a * lprior[i]) / (c + a);
  rotp_log_softmax(m, Y, l2);
}

/* Reverse of marginal_step: g = dL/dl' on entry, 0 on return; writes dX, adds to gprior (dL/dlprior), *gc (dL/dc)
** and *ga (dL/da). */
RL_HOT static void marginal_step_backward(int64_t m, real c, real a, const real *X, const real *lprior,
                                          const real *l2, real *g, real *dX, real *gprior, double *gc, double *ga) {
  double sum = 0, dc = 0, da = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < m; i++) sum += g[i];
  real im = 1 / (c + a);
#pragma omp simd reduction(+ : dc, da)
  for (int64_t i = 0; i < m; i++) {
    real Y = (c * X[i] + a * lprior[i]) * im;
    real gy = g[i] - rl_exp(l2[i]) * (real)sum;
    dX[i] = c * im * gy;
    gprior[i] += a * im * gy;
    dc += (double)gy * (X[i] - Y) * im;
    da += (double)gy * (lprior[i] - Y) * im;
    g[i] = 0;
  }
  *gc += dc;
  *ga += da;
}

/* The authors' steps 6-9 (compat): the marginals and duals entering the next iteration (vn) from those of this one
** (vc, both [lmu d][leta n][z1 d][z2 n]...), the column sums of s' and the row sums of t. tmp: n + d. */
void rotp_badmm_compat_marginals(const rotp_step *st, const rotp_set *s, const real *vc, real *vn, const real *rowsum,
                                 const real *colsum, real *tmp) {
  int64_t n = s->n, d = s->d;
  real r = st->rho, a2 = st->a2, a3 = st->a3;
  const real *lmu = vc, *leta = lmu + d, *z1 = leta + n, *z2 = z1 + d;
  real *lmu2 = vn, *leta2 = lmu2 + d, *z1n = leta2 + n, *z2n = z1n + d, *Ymu = tmp, *Yeta = tmp + d;
  for (int64_t j = 0; j < d; j++) Ymu[j] = (r * lmu[j] + a2 * s->lp0[j] - z1[j]) / (r + a2);
  rotp_log_softmax(d, Ymu, lmu2);
  for (int64_t i = 0; i < n; i++) Yeta[i] = (r * leta[i] + a3 * s->lq0[i] - z2[i]) / (r + a3);
  rotp_log_softmax(n, Yeta, leta2);
#pragma omp simd
  for (int64_t j = 0; j < d; j++) z1n[j] = z1[j] + r * (rl_exp(lmu2[j]) - colsum[j]);
#pragma omp simd
  for (int64_t i = 0; i < n; i++) z2n[i] = z2[i] + r * (rl_exp(leta2[i]) - rowsum[i]);
}

/* Reverse of one of the authors' marginal steps 6, 7 over m entries: l' = logsoftmax((r l + a lprior - zd) / (r + a)).
** g = dL/dl' on entry (with the z-dual's r g_zd exp(l') already added), dL/dl on return; cg = c gy with c = 1/(r + a)
** (the caller takes dL/dzd -= cg); adds to gprior, *gr and *ga. */
void rotp_badmm_compat_marginal_backward(int64_t m, real r, real a, const real *l, const real *lprior, const real *zd,
                                         const real *l2, real *g, real *cg, real *gprior, double *gr, double *ga) {
  double sum = 0, dr = 0, da = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < m; i++) sum += g[i];
  real c = 1 / (r + a);
#pragma omp simd reduction(+ : dr, da)
  for (int64_t i = 0; i < m; i++) {
    real Y = (r * l[i] + a * lprior[i] - zd[i]) * c;
    real gy = g[i] - rl_exp(l2[i]) * (real)sum;
    dr += (double)gy * (l[i] - Y) * c;
    da += (double)gy * (lprior[i] - Y) * c;
    gprior[i] += a * c * gy;
    g[i] = r * c * gy;
    cg[i] = gy * c;
  }
  *gr += dr;
  *ga += da;
}

/* Steps 6'-7' (default): the marginals entering the next iteration from this iteration's log-sum-exps C (d) and R (n);
** c = a1 + r (BADMM-E) or r (BADMM-Q) weighs the s-step's log-sum-exp, r the t-step's. tmp: n + d. */
void rotp_badmm_marginals(const rotp_step *st, int quad, const rotp_set *s, const real *C, const real *R, real *lmu2,
                          real *leta2, real *tmp) {
  real r = st->rho, c = quad ? r : st->a1 + r;
  marginal_step(s->d, c, st->a2, C, s->lp0, tmp, lmu2);
  marginal_step(s->n, r, st->a3, R, s->lq0, tmp, leta2);
}

/* Reverse of rotp_badmm_marginals. gmu (d), geta (n): dL/dlmu', dL/dleta' on entry, 0 on return (lmu', leta' do
** not depend on the marginals entering the iteration). Writes dC (d) and dR (n), accumulates the priors' and the
** parameters' gradients. */
void rotp_badmm_marginals_backward(const rotp_step *st, int quad, const rotp_set *s, const real *C, const real *R,
                                   const real *lmu2, const real *leta2, real *gmu, real *geta, real *dC, real *dR,
                                   real *glp0, real *glq0, double *gr, double *ga1, double *ga2, double *ga3) {
  real r = st->rho, c = quad ? r : st->a1 + r;
  double gc = 0;
  marginal_step_backward(s->d, c, st->a2, C, s->lp0, lmu2, gmu, dC, glp0, &gc, ga2);
  marginal_step_backward(s->n, r, st->a3, R, s->lq0, leta2, geta, dR, glq0, gr, ga3);
  *gr += gc;
  if (!quad) *ga1 += gc;
}

/* sum_m g_m (a_m - b_m) in double: the row constants R - leta of Yt - ls and the column constants C - lmu of
** Ys - ls' that the reverse passes drop from their parameter dots (their rows / columns of G_Yt / G_Ys sum to dR / dC,
** which are 0 under compat). */
double rotp_badmm_shift_dot(int64_t m, const real *g, const real *a, const real *b) {
  double acc = 0;
  for (int64_t i = 0; i < m; i++) acc += (double)g[i] * ((double)a[i] - b[i]);
  return acc;
}

/* Steps 1-2 over rows: Y = (x - z + a0 Ms - q1 S)/r + ls (Ms, S may be NULL), R = lse_d(Y), lt = Y - R + leta,
** t = exp(lt), rowsum(t). */
RL_HOT static void t_step(int64_t n, int64_t d, const real *x, const real *z, const real *Ms, real a0, const real *S,
                          real q1, real r, const real *ls, const real *leta, real *R, real *lt, real *t,
                          real *rowsum) {
  real ir = 1 / r;
  for (int64_t i = 0; i < n; i++) {
    const real *xi = x + i * d, *zi = z + i * d, *li = ls + i * d;
    real *lti = lt + i * d, *ti = t + i * d, m = -INFINITY;
    if (Ms && S) {
      const real *mi = Ms + i * d, *si = S + i * d;
#pragma omp simd
      for (int64_t j = 0; j < d; j++) lti[j] = (xi[j] - zi[j] + a0 * mi[j] - q1 * si[j]) * ir + li[j];
    } else if (Ms) {
      const real *mi = Ms + i * d;
#pragma omp simd
      for (int64_t j = 0; j < d; j++) lti[j] = (xi[j] - zi[j] + a0 * mi[j]) * ir + li[j];
    } else if (S) {
      const real *si = S + i * d;
#pragma omp simd
      for (int64_t j = 0; j < d; j++) lti[j] = (xi[j] - zi[j] - q1 * si[j]) * ir + li[j];
    } else {
#pragma omp simd
      for (int64_t j = 0; j < d; j++) lti[j] = (xi[j] - zi[j]) * ir + li[j];
    }
    m = rl_rowmax(d, lti, 1, NULL);
#pragma omp simd
    for (int64_t j = 0; j < d; j++) ti[j] = rl_exp(lti[j] - m);
    real acc = rl_rowsum(d, ti);
    real Ri = m + rl_log(acc), sh = leta[i] - Ri, sc = rl_exp(m - Ri + leta[i]);
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      lti[j] += sh;
      ti[j] *= sc;
    }
    R[i] = Ri;
    rowsum[i] = sc * acc;
  }
}

/* Steps 3-5 over columns: Ys into ls (n x d), C = lse_n(Ys), ls = Ys - C + lmu, s = exp(ls), z += r (t - s),
** colsum(s). cm: d scratch. */
RL_HOT static void s_step(int64_t n, int64_t d, int quad, const real *z_in, const real *Mt, real a0, real a1, real r,
                          const real *lt, const real *t, const real *lmu, real *z, real *ls, real *s, real *C,
                          real *colsum, real *cm) {
  real c = quad ? 1 / r : 1 / (a1 + r);
  for (int64_t j = 0; j < d; j++) {
    cm[j] = -INFINITY;
    colsum[j] = 0;
  }
  for (int64_t i = 0; i < n; i++) {
    const real *zi = z_in + i * d, *lti = lt + i * d, *ti = t + i * d, *mi = Mt ? Mt + i * d : NULL;
    real *yi = ls + i * d;
    if (quad) {
#pragma omp simd
      for (int64_t j = 0; j < d; j++) yi[j] = (zi[j] + (mi ? a0 * mi[j] : 0) - a1 * ti[j]) * c + lti[j];
    } else {
#pragma omp simd
      for (int64_t j = 0; j < d; j++) yi[j] = (zi[j] + (mi ? a0 * mi[j] : 0) + r * lti[j]) * c;
    }
#pragma omp simd
    for (int64_t j = 0; j < d; j++) cm[j] = yi[j] > cm[j] ? yi[j] : cm[j];
  }
  for (int64_t i = 0; i < n; i++) {
    const real *yi = ls + i * d;
    real *si = s + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      si[j] = rl_exp(yi[j] - cm[j]);
      colsum[j] += si[j];
    }
  }
  /* ls' = Ys - C + lmu, s' = e * exp(m - C + lmu) per column, and colsum(s') = that scale times sum(e) */
  for (int64_t j = 0; j < d; j++) {
    C[j] = cm[j] + rl_log(colsum[j]);
    cm[j] = rl_exp(cm[j] - C[j] + lmu[j]); /* scale of column j */
    colsum[j] *= cm[j];
  }
  for (int64_t i = 0; i < n; i++) {
    real *yi = ls + i * d, *si = s + i * d, *zi = z + i * d;
    const real *ti = t + i * d, *z0 = z_in + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      yi[j] += lmu[j] - C[j];
      si[j] *= cm[j];
      zi[j] = z0[j] + r * (ti[j] - si[j]);
    }
  }
}

RL_HOT void rotp_badmm_forward(const rotp_opts *o, const rotp_set *s) {
  if (!o->structure) {
    rotp_badmm_forward_fused(o, s);
    return;
  }
  int64_t n = s->n, d = s->d, nd = n * d, T = o->iters, vb = vblk(n, d);
  int quad = o->solver == RL_ROTP_BADMM_Q;
  real *w = s->work;
  real *S = w, *Z = S + nd, *Tt = Z + nd, *LS = Tt + nd, *LT = LS + nd, *Ms = LT + nd, *Mt = Ms + nd;
  real *vec = w + 9 * nd; /* two vector blocks when not recording */
  real *vx = vec + 2 * vb, *rowsum = vx, *colsum = vx + n, *cm = colsum + d, *mtmp = cm + d; /* mtmp: n + d */
  real *stw = w + 9 * nd + 2 * vb + 16 * (n + d);
  real *tr = s->trace;
  /* initial state */
  real *ls = LS; /* ls_0 lives in LS */
  for (int64_t i = 0; i < n; i++) {
    real *lsi = LS + i * d, *si = S + i * d, q = s->lq0[i];
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      lsi[j] = q + s->lp0[j];
      si[j] = rl_exp(lsi[j]);
    }
  }
  memset(Z, 0, (size_t)nd * sizeof(real));
  real *v0 = tr ? tr + rotp_badmm_voff(T, nd) : vec;
  memcpy(v0, s->lp0, (size_t)d * sizeof(real));
  memcpy(v0 + d, s->lq0, (size_t)n * sizeof(real));
  memset(v0 + d + n, 0, (size_t)(d + n) * sizeof(real));
  for (int64_t k = 0; k < T; k++) {
    const rotp_step *st = &o->steps[k];
    real r = st->rho, a0 = st->a0, a1 = st->a1;
    real *vc = tr ? tr + rotp_badmm_voff(T, nd) + k * vb : vec + (k & 1) * vb;
    real *vn = tr ? tr + rotp_badmm_voff(T, nd) + (k + 1) * vb : vec + ((k + 1) & 1) * vb;
    real *lmu = vc, *leta = lmu + d, *R = vc + 2 * (n + d), *C = R + n; /* [lmu][leta][z1][z2][R][C] */
    real *lt = tr ? tr + 2 * k * nd : LT, *lsn = tr ? tr + (2 * k + 1) * nd : LS;
    if (o->structure) rotp_struct_apply(s, S, Ms, stw, struct_keep(o, s, 2 * k));
    t_step(n, d, s->x, Z, o->structure ? Ms : NULL, a0, quad ? S : NULL, a1, r, ls, leta, R, lt, Tt, rowsum);
    if (k == T - 1) break; /* the plan is this t */
    if (o->structure) rotp_struct_apply(s, Tt, Mt, stw, struct_keep(o, s, 2 * k + 1));
    s_step(n, d, quad, Z, o->structure ? Mt : NULL, a0, a1, r, lt, Tt, lmu, Z, lsn, S, C, colsum, cm);
    if (o->compat)
      rotp_badmm_compat_marginals(st, s, vc, vn, rowsum, colsum, mtmp);
    else
      rotp_badmm_marginals(st, quad, s, C, R, vn, vn + d, mtmp);
    ls = lsn;
  }
  memcpy(s->plan, Tt, (size_t)nd * sizeof(real));
  memcpy(s->lplan, tr ? tr + 2 * (T - 1) * nd : LT, (size_t)nd * sizeof(real));
}

RL_HOT void rotp_badmm_backward(const rotp_opts *o, const rotp_set *s, rotp_grads *g) {
  if (!o->structure) {
    rotp_badmm_backward_fused(o, s, g);
    return;
  }
  int64_t n = s->n, d = s->d, nd = n * d, T = o->iters, vb = vblk(n, d);
  int quad = o->solver == RL_ROTP_BADMM_Q;
  real *w = s->work;
  real *Tt = w, *Sn = Tt + nd, *Si = Sn + nd, *Gz = Si + nd, *Gls = Gz + nd, *Gs = Gls + nd, *Gt = Gs + nd;
  real *G1 = Gt + nd, *LS0 = G1 + nd;
  real *vx = w + 9 * nd + 2 * vb;
  real *rowsum = vx, *colsum = rowsum + n, *colG = colsum + d, *rowG = colG + d, *gmu = rowG + n, *geta = gmu + d,
       *g1 = geta + n, *g2 = g1 + d, *Ymu = g2 + n, *Yeta = Ymu + d, *dC = Yeta + n, *dR = dC + d,
       *gsink = dR + n; /* dL/dx when it is not wanted (g->gx NULL): every row adds into it */
  real *stw = w + 9 * nd + 2 * vb + 16 * (n + d);
  const real *tr = s->trace, *vtr = tr + rotp_badmm_voff(T, nd);
  for (int64_t i = 0; i < n; i++) {
    real *l0 = LS0 + i * d, q = s->lq0[i];
#pragma omp simd
    for (int64_t j = 0; j < d; j++) l0[j] = q + s->lp0[j];
  }
  memset(Gz, 0, (size_t)nd * sizeof(real));
  memset(Gls, 0, (size_t)nd * sizeof(real));
  memset(Gs, 0, (size_t)nd * sizeof(real));
  memset(gmu, 0, (size_t)d * sizeof(real));
  memset(geta, 0, (size_t)n * sizeof(real));
  memset(g1, 0, (size_t)d * sizeof(real));
  memset(g2, 0, (size_t)n * sizeof(real));
  memset(gsink, 0, (size_t)d * sizeof(real));
  memset(dC, 0, (size_t)d * sizeof(real));
  memset(dR, 0, (size_t)n * sizeof(real));
  for (int64_t k = T - 1; k >= 0; k--) {
    int tail = k == T - 1; /* only the t-step reaches the plan: every other adjoint is still 0 */
    const rotp_step *st = &o->steps[k];
    real r = st->rho, a0 = st->a0, a1 = st->a1, a2 = st->a2, a3 = st->a3;
    const real *vc = vtr + k * vb, *vn = vtr + (k + 1) * vb;
    const real *lmu = vc, *leta = lmu + d, *z1 = leta + n, *z2 = z1 + d, *R = z2 + n, *C = R + n;
    const real *lmu2 = vn, *leta2 = lmu2 + d;
    const real *lt = tr + 2 * k * nd, *lsn = tr + (2 * k + 1) * nd, *ls = k ? tr + (2 * k - 1) * nd : LS0;
    double gr = 0, ga0 = 0, ga1 = 0, ga2 = 0, ga3 = 0;
    /* a) t = exp(lt); s' = Sn (cached); row / column sums */
    memset(colsum, 0, (size_t)d * sizeof(real));
    for (int64_t i = 0; i < n; i++) {
      const real *l = lt + i * d, *sv = Sn + i * d;
      real *tv = Tt + i * d, rs = 0;
#pragma omp simd reduction(+ : rs)
      for (int64_t j = 0; j < d; j++) {
        tv[j] = rl_exp(l[j]);
        rs += tv[j];
      }
      rowsum[i] = rs;
      if (!tail)
#pragma omp simd
        for (int64_t j = 0; j < d; j++) colsum[j] += sv[j];
    }
    if (tail) {
      /* G1 = dL/dYs = 0, Gt = 0: step 2 starts from dL/dlog P alone */
      memset(G1, 0, (size_t)nd * sizeof(real));
      memset(Gt, 0, (size_t)nd * sizeof(real));
    } else {
      if (o->compat) {
        /* b) steps 9, 8 (vector part), then 7, 6 */
        for (int64_t j = 0; j < d; j++) {
          real em = rl_exp(lmu2[j]);
          gr += (double)g1[j] * (em - colsum[j]);
          gmu[j] += r * g1[j] * em;
        }
        for (int64_t i = 0; i < n; i++) {
          real ee = rl_exp(leta2[i]);
          gr += (double)g2[i] * (ee - rowsum[i]);
          geta[i] += r * g2[i] * ee;
        }
        /* c gY kept in Yeta, Ymu for g2_in = g2 - c gY, g1_in likewise (after the pass below: g2 still feeds it) */
        rotp_badmm_compat_marginal_backward(n, r, a3, leta, s->lq0, z2, leta2, geta, Yeta, g->glq0, &gr, &ga3);
        rotp_badmm_compat_marginal_backward(d, r, a2, lmu, s->lp0, z1, lmu2, gmu, Ymu, g->glp0, &gr, &ga2);
      } else {
        /* b) steps 7', 6': the adjoints of R and C (g1, g2 stay 0) */
        rotp_badmm_marginals_backward(st, quad, s, C, R, lmu2, leta2, gmu, geta, dC, dR, g->glp0, g->glq0, &gr, &ga1,
                                      &ga2, &ga3);
        for (int64_t j = 0; j < d; j++) Ymu[j] = 0;
        for (int64_t i = 0; i < n; i++) Yeta[i] = 0;
      }
      /* c) steps 5, 8, 9 (matrix part) and step 4's total adjoint of ls' */
      memset(colG, 0, (size_t)d * sizeof(real));
      for (int64_t i = 0; i < n; i++) {
        real *gt = Gt + i * d, *gz = Gz + i * d, *gl = Gls + i * d;
        const real *gs = Gs + i * d, *tv = Tt + i * d, *sv = Sn + i * d;
        real g2i = r * g2[i], acc = 0;
  #pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < d; j++) {
          gt[j] = r * gz[j] - g2i;
          real gst = gs[j] - r * gz[j] - r * g1[j];
          acc += gz[j] * (tv[j] - sv[j]);
          gl[j] += gst * sv[j];
          colG[j] += gl[j];
        }
        gr += acc;
      }
      for (int64_t j = 0; j < d; j++) gmu[j] += colG[j];
      for (int64_t j = 0; j < d; j++) g1[j] -= Ymu[j];
      for (int64_t i = 0; i < n; i++) g2[i] -= Yeta[i];
      /* d) G_Ys = Gls_tot - softmax_n(Ys) (colG - dC), softmax_n(Ys) = s' exp(-lmu_in), or exp(ls' - lmu) when a
      ** column's mass is too small for exp(-lmu) */
      int tiny = 0;
      for (int64_t j = 0; j < d; j++) tiny |= lmu[j] < (real)ROTP_LOG_MARGIN_FLOOR;
#pragma omp simd
      for (int64_t j = 0; j < d; j++) Ymu[j] = (tiny ? 1 : rl_exp(-lmu[j])) * (colG[j] - dC[j]);
      for (int64_t i = 0; i < n; i++) {
        const real *gl = Gls + i * d, *sv = Sn + i * d, *lsr = lsn + i * d;
        real *g1r = G1 + i * d;
        if (tiny)
#pragma omp simd
          for (int64_t j = 0; j < d; j++) g1r[j] = gl[j] - rl_exp(lsr[j] - lmu[j]) * Ymu[j];
        else
#pragma omp simd
          for (int64_t j = 0; j < d; j++) g1r[j] = gl[j] - sv[j] * Ymu[j];
      }
      /* e) step 3 */
      real c = quad ? 1 / r : 1 / (a1 + r);
      if (o->structure) {
        double dot = rotp_struct_backward(s, Tt, G1, a0 * c, Gt, g->gxs, g->gc1, g->gc2, stw,
                                          struct_keep(o, s, 2 * k + 1));
        ga0 += c * dot;
        g->sdot += a0 * c * dot;
      }
      double dz = 0, dy = 0;
      for (int64_t i = 0; i < n; i++) {
        real *gyr = G1 + i * d, *gz = Gz + i * d, *gt = Gt + i * d;
        const real *tv = Tt + i * d, *l = lt + i * d, *ysr = lsn + i * d;
        real az = 0, ay = 0;
        /* Ys up to the column constant C - lmu: every column of G_Ys sums to 0, so the constant only adds rounding
        ** (the rho and a1 gradients are cancellations when rho is small) */
        if (quad) {
  #pragma omp simd reduction(+ : az, ay)
          for (int64_t j = 0; j < d; j++) {
            real gy = gyr[j];
            gz[j] += c * gy;
            gt[j] -= a1 * c * gy;
            az += gy * tv[j];
            ay += gy * (ysr[j] - l[j]);
          }
        } else {
          real rc = r * c;
  #pragma omp simd reduction(+ : az, ay)
          for (int64_t j = 0; j < d; j++) {
            real gy = gyr[j];
            gz[j] += c * gy;
            az += gy * ysr[j];
            ay += gy * (l[j] - ysr[j]);
            gyr[j] = rc * gy; /* Glt */
          }
        }
        dz += az;
        dy += ay;
      }
      double kc = rotp_badmm_shift_dot(d, dC, C, lmu); /* Ys = ls' + C - lmu */
      if (quad) {
        ga1 -= c * dz;
        gr -= c * (dy + kc);
      } else {
        ga1 -= c * (dz + kc);
        gr += c * (dy - kc);
      }
      /* f) step 2: Glt_tot = Glt + Gt t (+ dL/dlogP at the last iteration);
      ** G_Yt = Glt_tot - t exp(-leta_in) (rowG - dR) */
    }
    for (int64_t i = 0; i < n; i++) {
      real *g1r = G1 + i * d;
      const real *gt = Gt + i * d, *tv = Tt + i * d, *ext = k == T - 1 ? g->glog + i * d : NULL;
      real rs = 0;
      if (ext) {
#pragma omp simd reduction(+ : rs)
        for (int64_t j = 0; j < d; j++) {
          g1r[j] += gt[j] * tv[j] + ext[j];
          rs += g1r[j];
        }
      } else {
#pragma omp simd reduction(+ : rs)
        for (int64_t j = 0; j < d; j++) {
          g1r[j] += gt[j] * tv[j];
          rs += g1r[j];
        }
      }
      rowG[i] = rs;
      geta[i] += rs;
      real sc = rs - dR[i]; /* the adjoint of R: -rowG, + dR through step 7' */
      if (leta[i] < (real)ROTP_LOG_MARGIN_FLOOR) { /* too small a row mass for exp(-leta): exp(lt - leta) */
        const real *l = lt + i * d;
#pragma omp simd
        for (int64_t j = 0; j < d; j++) g1r[j] -= rl_exp(l[j] - leta[i]) * sc;
      } else {
        sc *= rl_exp(-leta[i]);
#pragma omp simd
        for (int64_t j = 0; j < d; j++) g1r[j] -= tv[j] * sc;
      }
    }
    /* g) step 1: s_in = exp(ls_in) (cached as the next s'), x, z, ls, s adjoints */
    real ir = 1 / r;
#pragma omp simd
    for (int64_t i = 0; i < nd; i++) Si[i] = rl_exp(ls[i]);
    memset(Gs, 0, (size_t)nd * sizeof(real));
    if (o->structure) {
      double dot = rotp_struct_backward(s, Si, G1, a0 * ir, Gs, g->gxs, g->gc1, g->gc2, stw, struct_keep(o, s, 2 * k));
      ga0 += ir * dot;
      g->sdot += a0 * ir * dot;
    }
    double dyt = 0, ds = 0;
    for (int64_t i = 0; i < n; i++) {
      const real *gyr = G1 + i * d, *l = lt + i * d, *lsi = ls + i * d, *si = Si + i * d;
      real *gx = g->gx ? g->gx + i * d : gsink, *gz = Gz + i * d, *gs = Gs + i * d, *gl = Gls + i * d;
      real ay = 0, as = 0;
      /* rows of G_Yt sum to 0: the row constant R - leta of Yt - ls is dropped */
#pragma omp simd reduction(+ : ay, as)
      for (int64_t j = 0; j < d; j++) {
        real gy = gyr[j];
        gx[j] += gy * ir;
        gz[j] -= gy * ir;
        ay += gy * (l[j] - lsi[j]);
        gs[j] -= quad ? a1 * ir * gy : 0;
        as += gy * si[j];
        gl[j] = gy;
      }
      dyt += ay;
      ds += as;
    }
    gr -= ir * (dyt + rotp_badmm_shift_dot(n, dR, R, leta)); /* Yt - ls = lt - ls + R - leta */
    if (quad) ga1 -= ir * ds;
    double *gs = g->gstep + k * RL_ROTP_NALPHA;
    gs[ROTP_G_A0] += ga0;
    gs[ROTP_G_A1] += ga1;
    gs[ROTP_G_A2] += ga2;
    gs[ROTP_G_A3] += ga3;
    gs[ROTP_G_RHO] += gr;
    real *sw = Sn;
    Sn = Si;
    Si = sw;
  }
  /* initial state: ls_0 = lq0 + lp0 (s_0 = exp(ls_0) = Sn now), lmu_0 = lp0, leta_0 = lq0 */
  for (int64_t i = 0; i < n; i++) {
    const real *gli = Gls + i * d, *gsi = Gs + i * d, *si = Sn + i * d;
    real *glp0 = g->glp0, acc[RL_LANES];
    rl_lanes_fill(acc, 0);
    RL_ROW_LOOP(d, {
      real gl = gli[j] + gsi[j] * si[j];
      acc[ln] += gl;
      glp0[j] += gl;
    });
    g->glq0[i] += rl_lanes_sum(acc);
  }
  for (int64_t j = 0; j < d; j++) g->glp0[j] += gmu[j];
  for (int64_t i = 0; i < n; i++) g->glq0[i] += geta[i];
}
