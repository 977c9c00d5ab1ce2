/*
** rotp_sinkhorn.c -- ROTP-S: log-domain Sinkhorn scaling for one set, forward and exact reverse mode.
**
** Without structure (a0 = 0, unbalanced OT) each unrolled iteration k is one scaling step with e = a1_k:
**   default (the derivation, DESIGN section 2; alternating, a then b):
**     A = lse_n(x/e + v),  u = a2/(a2+e) (lp0 - A)      [= a2/(a2+e) (u + lp0 - lse_n(x/e + u + v))]
**     B = lse_d(x/e + u),  v = a3/(a3+e) (lq0 - B)      (Y refreshed between the two updates)
**   compat (the authors' code, golden README 1.2; Jacobi from one y, previous duals divided by e):
**     y = x/e_prev + u + v;  P = lse_n(y), Q = lse_d(y)
**     u = a2/(a2+e) (u/e + lp0 - P),  v = a3/(a3+e) (v/e + lq0 - Q)
**   and P = exp(x/e_last + u + v).
** With structure (Algorithm 1) each outer step t builds -C = x + a0 M(P_t / |P_t|_1) + tau log P_t: the default
** takes the structure term of the plan normalised to mass 1, because without a mass constraint -a0 <M(P), P> is a
** concave quadratic in the mass that no entropy or KL term bounds, and the unnormalised iteration diverges (the
** paper's NaNs); compat (the authors' code) keeps -C = x + a0 M(P_t) + log(P_t + eps).
** e = a1 + tau, and runs `inner` scaling steps of the same form on F = -C (u, v restarted at 0):
**   log P_{t+1} = F/e + u + v  (inner = 0: F/e). Default P_0 = q0 p0^T in the log domain.
** The backward recomputes the softmaxes of each step from the recorded vectors (2 exp passes per step); steps in
** kernel form (below) keep their kernel in the trace instead (one N x D slot per step, read by the reverse: no exp);
** the structured solver also records P_t and F per outer step.
*/
#include <math.h>
#include <string.h>

#include "../blas.h"
#include "rotp_math.h"
#include "rotp_solver.h"

/* ---------------------------------------------------------------- sizes */

static int64_t outer_vec(const rotp_opts *o, int64_t n, int64_t d) { return (o->inner + 1) * 2 * (n + d); }

size_t rotp_sinkhorn_trace_size(const rotp_opts *o, int64_t n, int64_t d) {
  if (!o->structure) return (size_t)((o->iters + 1) * 2 * (n + d) + (o->compat ? 0 : o->iters * n * d));
  return (size_t)(o->iters * (2 * n * d + outer_vec(o, n, d) + ROTP_STRUCT_KEEP(d)));
}

/* The structured reverse's low-rank factors of dL/dF (kstep_bwd): two rank-one terms per inner step. */
static int64_t lowrank_size(const rotp_opts *o, int64_t n, int64_t d) { return 2 * o->inner * (n + d); }

size_t rotp_sinkhorn_work_size(const rotp_opts *o, int64_t n, int64_t d) {
  size_t w = (size_t)(8 * (n + d));
  if (o->structure) /* ... + the kernel K, + the low-rank factors */
    w += (size_t)(5 * n * d) + rotp_struct_work_size(n, d, o->debug) + (size_t)lowrank_size(o, n, d);
  else
    w += (size_t)(n * d); /* the kernel K of the default update */
  return w;
}

/* ---------------------------------------------------------------- one default step */

/* u = r2 (lp0 - lse_n(F ie + vin)), vout = r3 (lq0 - lse_d(F ie + u)); records A, B. cm, cs: d scratch. */
RL_HOT static void step_fwd(int64_t n, int64_t d, const real *F, real ie, real r2, real r3, const real *lp0,
                            const real *lq0, const real *vin, real *A, real *u, real *B, real *vout, real *cm,
                            real *cs) {
  for (int64_t j = 0; j < d; j++) {
    cm[j] = -INFINITY;
    cs[j] = 0;
  }
  for (int64_t i = 0; i < n; i++) {
    const real *f = F + i * d;
    real vi = vin[i];
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      real y = f[j] * ie + vi;
      cm[j] = y > cm[j] ? y : cm[j];
    }
  }
  for (int64_t i = 0; i < n; i++) {
    const real *f = F + i * d;
    real vi = vin[i];
#pragma omp simd
    for (int64_t j = 0; j < d; j++) cs[j] += rl_exp(f[j] * ie + vi - cm[j]);
  }
  for (int64_t j = 0; j < d; j++) {
    A[j] = cm[j] + rl_log(cs[j]);
    u[j] = r2 * (lp0[j] - A[j]);
  }
  for (int64_t i = 0; i < n; i++) {
    const real *f = F + i * d;
    real m = rl_rowmax(d, f, ie, u);
    real acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < d; j++) acc += rl_exp(f[j] * ie + u[j] - m);
    B[i] = m + rl_log(acc);
    vout[i] = r3 * (lq0[i] - B[i]);
  }
}

/* Reverse of step_fwd. gu (d): dL/du (consumed); gv (n): dL/dvout (consumed); writes gvin (n). Accumulates
** gF += ie * dZ, *g_ie += <dZ, F>, *gr2, *gr3, glp0, glq0. gF's rows are gsd apart in every reverse here (gsd = 0:
** dL/dF is not wanted, one row takes every row's sum). */
RL_HOT static void step_bwd(int64_t n, int64_t d, const real *F, real ie, real r2, real r3, const real *lp0,
                            const real *lq0, const real *vin, const real *A, const real *u, const real *B, real *gu,
                            const real *gv, real *gvin, real *gF, int64_t gsd, double *g_ie, double *gr2, double *gr3,
                            real *glp0, real *glq0) {
  double gie = 0, g2 = 0, g3 = 0;
  /* v = r3 (lq0 - B); B_i = lse_d(F ie + u) */
  for (int64_t i = 0; i < n; i++) {
    g3 += (double)gv[i] * (lq0[i] - B[i]);
    glq0[i] += r3 * gv[i];
    real dB = -r3 * gv[i];
    if (dB == 0) continue;
    const real *f = F + i * d;
    real *gf = gF + i * gsd;
    real Bi = B[i], acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < d; j++) {
      real w = dB * rl_exp(f[j] * ie + u[j] - Bi);
      gf[j] += ie * w;
      acc += w * f[j];
      gu[j] += w;
    }
    gie += acc;
  }
  /* u = r2 (lp0 - A); A_j = lse_n(F ie + vin) */
  real *dA = gu; /* reuse: dA = -r2 gu */
  for (int64_t j = 0; j < d; j++) {
    g2 += (double)gu[j] * (lp0[j] - A[j]);
    glp0[j] += r2 * gu[j];
    dA[j] = -r2 * gu[j];
  }
  for (int64_t i = 0; i < n; i++) {
    const real *f = F + i * d;
    real *gf = gF + i * gsd;
    real vi = vin[i], acc = 0, rs = 0;
#pragma omp simd reduction(+ : acc, rs)
    for (int64_t j = 0; j < d; j++) {
      real w = dA[j] * rl_exp(f[j] * ie + vi - A[j]);
      gf[j] += ie * w;
      acc += w * f[j];
      rs += w;
    }
    gie += acc;
    gvin[i] = rs;
  }
  *g_ie += gie;
  *gr2 += g2;
  *gr3 += g3;
}

/* ---------------------------------------------------------------- one default step in kernel form */

/* When the range of F/e over the set is below ROTP_KERNEL_RANGE, K = exp(F/e - max F/e) lies in (e^-R, 1] and
** lse_n(F/e + v)_d = mK + vmax + log sum_n K_nd exp(v_n - vmax): every column (and row) sum keeps a term >= e^-R
** (the one at the largest v), so terms that underflow are negligible. The step then costs one exp pass for K (none
** while e is unchanged) and two matrix-vector products, and its reverse uses S1 = K exp(v) / colsum,
** S2 = K exp(u) / rowsum without exps. Scaled exponentials below e^-45 are dropped (negligible next to e^-R, and
** they would create denormals). */
#ifdef RL_DOUBLE
#define ROTP_KERNEL_RANGE 300.0
#else
#define ROTP_KERNEL_RANGE 40.0
#endif
#define ROTP_KERNEL_DROP (-45.0)

/* K = exp(F ie - mK), mK = max(F) ie (ie > 0) */
RL_HOT static void kernel_fill(int64_t n, int64_t d, const real *F, real ie, real fmax, real *K, real *mK) {
  real m = fmax * ie;
#pragma omp simd
  for (int64_t i = 0; i < n * d; i++) K[i] = rl_exp(F[i] * ie - m);
  *mK = m;
}

/* e_j = exp(v_j - max v), 0 below ROTP_KERNEL_DROP; returns max v */
RL_HOT static inline real scaled_exp(int64_t n, const real *v, real *e) {
  real m = rl_rowmax(n, v, 1, NULL);
#pragma omp simd
  for (int64_t i = 0; i < n; i++) e[i] = v[i] - m < (real)ROTP_KERNEL_DROP ? 0 : rl_exp(v[i] - m);
  return m;
}

/* The default step of step_fwd from K: same outputs. With fill, K = exp(F ie - mK) is written on the way (the
** first pass reads every row anyway). ev (n), eu (d), cs (d) scratch. */
RL_HOT static void kstep_fwd(int64_t n, int64_t d, const real *F, real ie, int fill, real *K, real mK, real r2,
                             real r3, const real *lp0, const real *lq0, const real *vin, real *A, real *u, real *B,
                             real *vout, real *ev, real *eu, real *cs) {
  real vmax = scaled_exp(n, vin, ev);
  for (int64_t j = 0; j < d; j++) cs[j] = 0;
  for (int64_t i = 0; i < n; i++) {
    real *k = K + i * d;
    real e = ev[i];
    if (fill) {
      const real *f = F + i * d;
      RL_ROW_LOOP(d, {
        real kv = rl_exp(f[j] * ie - mK);
        k[j] = kv;
        cs[j] += kv * e;
      });
    } else if (e != 0) {
      RL_ROW_LOOP(d, { cs[j] += k[j] * e; });
    }
  }
#pragma omp simd
  for (int64_t j = 0; j < d; j++) {
    A[j] = mK + vmax + rl_logv(cs[j]);
    u[j] = r2 * (lp0[j] - A[j]);
  }
  real umax = scaled_exp(d, u, eu);
  for (int64_t i = 0; i < n; i++) {
    const real *k = K + i * d;
    real acc[RL_LANES];
    rl_lanes_fill(acc, 0);
    RL_ROW_LOOP(d, { acc[ln] += k[j] * eu[j]; });
    B[i] = rl_lanes_sum(acc);
  }
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    B[i] = mK + umax + rl_logv(B[i]);
    vout[i] = r3 * (lq0[i] - B[i]);
  }
}

/* Reverse of kstep_fwd (the same contract as step_bwd) from the kernel K of the forward. ev (n), eu (d), f1 (d)
** scratch; gvin is scratch until its final pass. dZ = K .* (f2 eu^T + ev f1^T) is a rank-two matrix times K: with
** la (2 x n) and lb (2 x d) given, its two factors are written there instead of adding ie dZ to gF and <dZ, F> to
** g_ie (lowrank_fold does both for all the inner steps of an outer step at once), and the pass over K makes the
** adjoints gu, gvin alone. */
RL_HOT static void kstep_bwd(int64_t n, int64_t d, const real *F, const real *K, real mK, real ie, real r2, real r3,
                             const real *lp0, const real *lq0, const real *vin, const real *A, const real *u,
                             const real *B, real *gu, const real *gv, real *gvin, real *gF, int64_t gsd, double *g_ie,
                             double *gr2, double *gr3, real *glp0, real *glq0, real *ev, real *eu, real *f1, real *la,
                             real *lb) {
  double gie = 0, g2 = 0, g3 = 0;
  real umax = scaled_exp(d, u, eu), vmax = scaled_exp(n, vin, ev);
  double Gie[RL_LANES];
  for (int l = 0; l < RL_LANES; l++) Gie[l] = 0;
  /* v = r3 (lq0 - B): dZ2 = dB_n S2, S2 = K eu exp(mK + umax - B_n) */
  real *f2v = gvin;
  for (int64_t i = 0; i < n; i++) {
    g3 += (double)gv[i] * (lq0[i] - B[i]);
    glq0[i] += r3 * gv[i];
  }
#pragma omp simd
  for (int64_t i = 0; i < n; i++) f2v[i] = -r3 * gv[i] * rl_exp(mK + umax - B[i]);
  if (la) { /* gu += eu .* (K^T f2) */
    memcpy(la, f2v, (size_t)n * sizeof(real));
    memcpy(lb, eu, (size_t)d * sizeof(real));
    for (int64_t j = 0; j < d; j++) f1[j] = 0;
    for (int64_t i = 0; i < n; i++) {
      real f2 = f2v[i];
      const real *k = K + i * d;
      if (f2 != 0) RL_ROW_LOOP(d, { f1[j] += f2 * k[j]; });
    }
    for (int64_t j = 0; j < d; j++) gu[j] += eu[j] * f1[j];
  } else {
    for (int64_t i = 0; i < n; i++) {
      real f2 = f2v[i];
      const real *f = F + i * d, *k = K + i * d;
      real *gf = gF + i * gsd, acc[RL_LANES];
      if (f2 == 0) continue;
      rl_lanes_fill(acc, 0);
      RL_ROW_LOOP(d, {
        real w = f2 * k[j] * eu[j];
        gf[j] += ie * w;
        acc[ln] += w * f[j];
        gu[j] += w;
      });
      rl_lanes_fold(Gie, acc, 1);
    }
  }
  /* u = r2 (lp0 - A): dZ1 = dA_d S1, S1 = K ev exp(mK + vmax - A_d) */
  for (int64_t j = 0; j < d; j++) {
    g2 += (double)gu[j] * (lp0[j] - A[j]);
    glp0[j] += r2 * gu[j];
  }
#pragma omp simd
  for (int64_t j = 0; j < d; j++) f1[j] = -r2 * gu[j] * rl_exp(mK + vmax - A[j]);
  if (la) { /* gvin = ev .* (K f1) */
    memcpy(la + n, ev, (size_t)n * sizeof(real));
    memcpy(lb + d, f1, (size_t)d * sizeof(real));
    for (int64_t i = 0; i < n; i++) {
      real e = ev[i], rs[RL_LANES];
      const real *k = K + i * d;
      if (e == 0) {
        gvin[i] = 0;
        continue;
      }
      rl_lanes_fill(rs, 0);
      RL_ROW_LOOP(d, { rs[ln] += f1[j] * k[j]; });
      gvin[i] = e * rl_lanes_sum(rs);
    }
  } else {
    for (int64_t i = 0; i < n; i++) {
      real e = ev[i];
      if (e == 0) {
        gvin[i] = 0;
        continue;
      }
      const real *f = F + i * d, *k = K + i * d;
      real *gf = gF + i * gsd, acc[RL_LANES], rs[RL_LANES];
      rl_lanes_fill(acc, 0);
      rl_lanes_fill(rs, 0);
      RL_ROW_LOOP(d, {
        real w = f1[j] * k[j] * e;
        gf[j] += ie * w;
        acc[ln] += w * f[j];
        rs[ln] += w;
      });
      rl_lanes_fold(Gie, acc, 1);
      gvin[i] = rl_lanes_sum(rs);
    }
  }
  gie = rl_lanes_dsum(Gie);
  *g_ie += gie;
  *gr2 += g2;
  *gr3 += g3;
}

/* The inner steps' dL/dF of an outer step from their low-rank factors (kstep_bwd): with S = la^T lb (la: R x n,
** lb: R x d; one matrix product into S, n x d scratch), gF += ie K .* S and *g_ie += <K .* S, F>: one pass over K
** instead of two heavier ones per inner step. */
RL_HOT static void lowrank_fold(int64_t n, int64_t d, const real *F, const real *K, real ie, int64_t R, const real *la,
                                const real *lb, real *gF, double *g_ie, real *S) {
  rl_gemm(1, 0, n, d, R, 1, la, n, lb, d, 0, S, d);
  double G[RL_LANES];
  for (int l = 0; l < RL_LANES; l++) G[l] = 0;
  for (int64_t i = 0; i < n; i++) {
    const real *f = F + i * d, *k = K + i * d, *si = S + i * d;
    real *gf = gF + i * d, acc[RL_LANES];
    rl_lanes_fill(acc, 0);
    RL_ROW_LOOP(d, {
      real w = k[j] * si[j];
      gf[j] += ie * w;
      acc[ln] += w * f[j];
    });
    rl_lanes_fold(G, acc, 1);
  }
  *g_ie += rl_lanes_dsum(G);
}

/* max and min of a block */
RL_HOT static void block_range(int64_t m, const real *F, real *fmax, real *fmin) {
  *fmax = rl_rowmax(m, F, 1, NULL);
  *fmin = -rl_rowmax(m, F, -1, NULL);
}

/* Whether a step with scale ie runs in kernel form for a block of range [fmin, fmax]. */
static int kernel_ok(real fmax, real fmin, real ie) { return (fmax - fmin) * ie < (real)ROTP_KERNEL_RANGE; }

/* ---------------------------------------------------------------- one compat (reference) step */

/* y = F ie_y + uin + vin; P = lse_n(y), Q = lse_d(y); uout = r2 (uin ie + lp0 - P), vout = r3 (vin ie + lq0 - Q). */
RL_HOT static void cstep_fwd(int64_t n, int64_t d, const real *F, real ie_y, real ie, real r2, real r3,
                             const real *lp0, const real *lq0, const real *uin, const real *vin, real *P, real *Q,
                             real *uout, real *vout, real *cm, real *cs) {
  for (int64_t j = 0; j < d; j++) {
    cm[j] = -INFINITY;
    cs[j] = 0;
  }
  for (int64_t i = 0; i < n; i++) {
    const real *f = F + i * d;
    real vi = vin[i];
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      real y = f[j] * ie_y + uin[j] + vi;
      cm[j] = y > cm[j] ? y : cm[j];
    }
    real m = rl_rowmax(d, f, ie_y, uin) + vi;
    real acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < d; j++) acc += rl_exp(f[j] * ie_y + uin[j] + vi - m);
    Q[i] = m + rl_log(acc);
  }
  for (int64_t i = 0; i < n; i++) {
    const real *f = F + i * d;
    real vi = vin[i];
#pragma omp simd
    for (int64_t j = 0; j < d; j++) cs[j] += rl_exp(f[j] * ie_y + uin[j] + vi - cm[j]);
  }
  for (int64_t j = 0; j < d; j++) {
    P[j] = cm[j] + rl_log(cs[j]);
    uout[j] = r2 * (uin[j] * ie + lp0[j] - P[j]);
  }
  for (int64_t i = 0; i < n; i++) vout[i] = r3 * (vin[i] * ie + lq0[i] - Q[i]);
}

/* Reverse of cstep_fwd: gu, gv are dL/duout, dL/dvout; writes guin, gvin (distinct arrays). */
RL_HOT static void cstep_bwd(int64_t n, int64_t d, const real *F, real ie_y, real ie, real r2, real r3, const real *lp0,
                             const real *lq0, const real *uin, const real *vin, const real *P, const real *Q,
                             const real *gu, const real *gv, real *guin, real *gvin, real *gF, int64_t gsd,
                             double *g_iey, double *g_ie, double *gr2, double *gr3, real *glp0, real *glq0,
                             real *gP /* d scratch */) {
  double gie = 0, giey = 0, g2 = 0, g3 = 0;
  for (int64_t j = 0; j < d; j++) {
    g2 += (double)gu[j] * (uin[j] * ie + lp0[j] - P[j]);
    gie += (double)r2 * gu[j] * uin[j];
    glp0[j] += r2 * gu[j];
    gP[j] = -r2 * gu[j];
    guin[j] = r2 * ie * gu[j];
  }
  for (int64_t i = 0; i < n; i++) {
    g3 += (double)gv[i] * (vin[i] * ie + lq0[i] - Q[i]);
    gie += (double)r3 * gv[i] * vin[i];
    glq0[i] += r3 * gv[i];
    gvin[i] = r3 * ie * gv[i];
  }
  for (int64_t i = 0; i < n; i++) {
    const real *f = F + i * d;
    real *gf = gF + i * gsd;
    real vi = vin[i], gQ = -r3 * gv[i], Qi = Q[i], acc = 0, rs = 0;
#pragma omp simd reduction(+ : acc, rs)
    for (int64_t j = 0; j < d; j++) {
      real y = f[j] * ie_y + uin[j] + vi;
      real w = gP[j] * rl_exp(y - P[j]) + gQ * rl_exp(y - Qi);
      gf[j] += ie_y * w;
      acc += w * f[j];
      rs += w;
      guin[j] += w;
    }
    giey += acc;
    gvin[i] += rs;
  }
  *g_iey += giey;
  *g_ie += gie;
  *gr2 += g2;
  *gr3 += g3;
}

/* ---------------------------------------------------------------- shared pieces */

/* lout = F ie + u_j + v_i, out = exp(lout) */
RL_HOT static void plan_fill(int64_t n, int64_t d, const real *F, real ie, const real *u, const real *v, real *out,
                             real *lout) {
  for (int64_t i = 0; i < n; i++) {
    const real *f = F + i * d;
    real *o = out + i * d, *lo = lout + i * d, vi = v[i];
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      lo[j] = f[j] * ie + u[j] + vi;
      o[j] = rl_exp(lo[j]);
    }
  }
}

/* Reverse of L = F ie + u + v with dL/dL = a: gF += ie a, *g_ie += <a, F>, gu = colsum(a), gv = rowsum(a) (gu, gv
** written when not NULL; both or neither). */
RL_HOT static void lin_bwd(int64_t n, int64_t d, const real *F, real ie, const real *a, real *gF, int64_t gsd,
                           double *g_ie, real *gu, real *gv) {
  if (gu)
    for (int64_t j = 0; j < d; j++) gu[j] = 0;
  double G[RL_LANES];
  for (int l = 0; l < RL_LANES; l++) G[l] = 0;
  for (int64_t i = 0; i < n; i++) {
    const real *f = F + i * d, *ai = a + i * d;
    real *gf = gF + i * gsd, acc[RL_LANES], rs[RL_LANES];
    rl_lanes_fill(acc, 0);
    rl_lanes_fill(rs, 0);
    if (gu)
      RL_ROW_LOOP(d, {
        real z = ai[j];
        gf[j] += ie * z;
        acc[ln] += z * f[j];
        rs[ln] += z;
        gu[j] += z;
      });
    else
      RL_ROW_LOOP(d, {
        real z = ai[j];
        gf[j] += ie * z;
        acc[ln] += z * f[j];
      });
    rl_lanes_fold(G, acc, 1);
    if (gv) gv[i] = rl_lanes_sum(rs);
  }
  *g_ie += rl_lanes_dsum(G);
}

/* dL/d(a1, a2, a3) of one step from dL/d(1/e), dL/dr2, dL/dr3, with e = a1 + tau and r = a/(a+e). */
static void step_param_grads(const rotp_step *st, double tau, double g_ie, double gr2, double gr3, double *gs) {
  double e = st->a1 + tau, a2 = st->a2, a3 = st->a3;
  double d2 = (a2 + e) * (a2 + e), d3 = (a3 + e) * (a3 + e);
  gs[ROTP_G_A1] += -g_ie / (e * e) - gr2 * a2 / d2 - gr3 * a3 / d3;
  gs[ROTP_G_A2] += gr2 * e / d2;
  gs[ROTP_G_A3] += gr3 * e / d3;
}

static real ratio(real a, real e) { return a / (a + e); }

/* ---------------------------------------------------------------- unbalanced OT (no structure) */

/* The kernel of step k (default update) is the one filled at step kernel_slot(k): a kernel step refills unless the
** step before it had the same e (a non-kernel step has a larger 1/e range, so equal e means the same mode). */
static int64_t kernel_slot(const rotp_opts *o, int64_t k) {
  int64_t j = k;
  while (j > 0 && o->steps[j - 1].a1 == o->steps[k].a1) j--;
  return j;
}

/* Trace: per step k, default: [vin n][A d][u d][B n]; compat: [uin d][vin n][P d][Q n]; then the final (u, v);
** default: then one n x d kernel slot per step (the reverse reads the kernels instead of refilling them). */
static void uot_forward(const rotp_opts *o, const rotp_set *s) {
  int64_t n = s->n, d = s->d, nd = n * d, T = o->iters, blk = 2 * (n + d);
  real *w = s->work, *cm = w, *cs = w + d, *tmp = w + 2 * d; /* tmp: one trace block when not recording */
  real *tr = s->trace, *Ktr = tr && !o->compat ? tr + (T + 1) * blk : NULL;
  real e_prev = o->steps[0].a1;
  real *K = w + 8 * (n + d), *ev = w + 6 * (n + d), *eu = ev + n, mK = 0, xmax = 0, xmin = 0;
  if (!o->compat) block_range(n * d, s->x, &xmax, &xmin);
  for (int64_t k = 0; k < T; k++) {
    const rotp_step *st = &o->steps[k];
    real e = st->a1, ie = 1 / e, r2 = ratio(st->a2, e), r3 = ratio(st->a3, e);
    real *cur = tr ? tr + k * blk : tmp, *next = tr ? tr + (k + 1) * blk : tmp + blk;
    if (k == 0) memset(cur, 0, (size_t)blk * sizeof(real));
    if (!o->compat) {
      real *vin = cur, *A = vin + n, *u = A + d, *B = u + d, *vout = next;
      if (kernel_ok(xmax, xmin, ie)) {
        int64_t slot = kernel_slot(o, k);
        int fill = slot == k;
        real *Kk = Ktr ? Ktr + slot * nd : K;
        mK = xmax * ie;
        kstep_fwd(n, d, s->x, ie, fill, Kk, mK, r2, r3, s->lp0, s->lq0, vin, A, u, B, vout, ev, eu, cs);
      } else {
        step_fwd(n, d, s->x, ie, r2, r3, s->lp0, s->lq0, vin, A, u, B, vout, cm, cs);
      }
      memcpy(next + n + d, u, (size_t)d * sizeof(real)); /* the next block's "u" slot holds the latest u */
    } else {
      real *uin = cur, *vin = uin + d, *P = vin + n, *Q = P + d, *uout = next, *vout = next + d;
      cstep_fwd(n, d, s->x, 1 / e_prev, ie, r2, r3, s->lp0, s->lq0, uin, vin, P, Q, uout, vout, cm, cs);
    }
    if (!tr && k + 1 < T) memcpy(tmp, tmp + blk, (size_t)blk * sizeof(real));
    e_prev = e;
  }
  real *fin = tr ? tr + T * blk : tmp + blk;
  real ie = 1 / o->steps[T - 1].a1;
  if (!o->compat)
    plan_fill(n, d, s->x, ie, fin + n + d, fin, s->plan, s->lplan);
  else
    plan_fill(n, d, s->x, ie, fin, fin + d, s->plan, s->lplan);
}

static void uot_backward(const rotp_opts *o, const rotp_set *s, rotp_grads *g) {
  int64_t n = s->n, d = s->d, T = o->iters, blk = 2 * (n + d);
  real *w = s->work, *gu = w, *gv = gu + d, *gu2 = gv + n, *gv2 = gu2 + d, *sc = gv2 + n;
  const real *tr = s->trace;
  const real *Ktr = o->compat ? NULL : tr + (T + 1) * blk; /* the forward's kernels */
  real *ev = w + 6 * (n + d), *eu = ev + n, mK = 0, xmax = 0, xmin = 0;
  /* dL/dx; not wanted (g->gx NULL): one row that every row adds into (row stride 0) */
  real *gxr = g->gx ? g->gx : eu + d;
  int64_t gsd = g->gx ? d : 0;
  if (!g->gx) memset(gxr, 0, (size_t)d * sizeof(real));
  if (!o->compat) block_range(n * d, s->x, &xmax, &xmin);
  double g_ie_last = 0;
  real ie_last = 1 / o->steps[T - 1].a1;
  lin_bwd(n, d, s->x, ie_last, g->glog, gxr, gsd, &g_ie_last, gu, gv);
  /* per-step dL/d(1/e), dL/dr2, dL/dr3 accumulate in gstep through step_param_grads at the end of each step;
  ** the compat y of step k uses 1/e_{k-1}, whose gradient is folded into step k-1 (or 0) */
  double carry_ie = g_ie_last; /* dL/d(1/e_k) pending for the current k */
  for (int64_t k = T - 1; k >= 0; k--) {
    const rotp_step *st = &o->steps[k];
    real e = st->a1, ie = 1 / e, r2 = ratio(st->a2, e), r3 = ratio(st->a3, e);
    const real *cur = tr + k * blk;
    double g_ie = carry_ie, g_iey = 0, gr2 = 0, gr3 = 0;
    if (!o->compat) {
      const real *vin = cur, *A = vin + n, *u = A + d, *B = u + d;
      if (k < T - 1)
        for (int64_t j = 0; j < d; j++) gu[j] = 0; /* u_k is not used after step k */
      if (kernel_ok(xmax, xmin, ie)) {
        mK = xmax * ie;
        kstep_bwd(n, d, s->x, Ktr + kernel_slot(o, k) * n * d, mK, ie, r2, r3, s->lp0, s->lq0, vin, A, u, B, gu,
                  gv, gv2, gxr, gsd, &g_ie, &gr2, &gr3, g->glp0, g->glq0, ev, eu, sc, NULL, NULL);
      } else {
        step_bwd(n, d, s->x, ie, r2, r3, s->lp0, s->lq0, vin, A, u, B, gu, gv, gv2, gxr, gsd, &g_ie, &gr2, &gr3,
                 g->glp0, g->glq0);
      }
      memcpy(gv, gv2, (size_t)n * sizeof(real));
      carry_ie = 0;
    } else {
      const real *uin = cur, *vin = uin + d, *P = vin + n, *Q = P + d;
      real e_prev = k ? o->steps[k - 1].a1 : o->steps[0].a1;
      cstep_bwd(n, d, s->x, 1 / e_prev, ie, r2, r3, s->lp0, s->lq0, uin, vin, P, Q, gu, gv, gu2, gv2, gxr, gsd, &g_iey,
                &g_ie, &gr2, &gr3, g->glp0, g->glq0, sc);
      memcpy(gu, gu2, (size_t)d * sizeof(real));
      memcpy(gv, gv2, (size_t)n * sizeof(real));
      if (k) {
        carry_ie = g_iey;
      } else {
        g_ie += g_iey; /* e_{-1} = e_0 */
        carry_ie = 0;
      }
    }
    step_param_grads(st, 0, g_ie, gr2, gr3, g->gstep + k * RL_ROTP_NALPHA);
  }
  /* v_0 = 0 (and u_0 = 0): no prior path */
}

/* ---------------------------------------------------------------- structured (a0 term), Algorithm 1 */

/* Trace per outer step t: [P_t n d][F n d][inner vectors: inner blocks + the final (u, v) block]; then per step the
** structure term's kept products (rotp_struct_apply). */
RL_HOT static void rot_forward(const rotp_opts *o, const rotp_set *s) {
  int64_t n = s->n, d = s->d, nd = n * d, T = o->iters, K = o->inner, blk = 2 * (n + d);
  real *w = s->work, *cm = w, *cs = w + d, *vtmp = w + 2 * d; /* vtmp: 2 blocks */
  real *Lcur = w + 8 * (n + d), *M = Lcur + nd, *Pw = M + nd, *Fw = Pw + nd, *Kw = Fw + nd, *stw = Kw + nd;
  real *ev = w + 6 * (n + d), *eu = ev + n, mK = 0;
  const real tau = (real)ROTP_TAU;
  const real eps = (real)ROTP_REF_EPS;
  /* initial plan: default log P_0 = lq0 + lp0; compat t_0 = q0 p0^T */
  for (int64_t i = 0; i < n; i++) {
    real *lc = Lcur + i * d, q = o->compat ? s->q0[i] : s->lq0[i];
    if (o->compat)
#pragma omp simd
      for (int64_t j = 0; j < d; j++) lc[j] = q * s->p0[j];
    else
#pragma omp simd
      for (int64_t j = 0; j < d; j++) lc[j] = q + s->lp0[j];
  }
  for (int64_t t = 0; t < T; t++) {
    const rotp_step *st = &o->steps[t];
    real e = st->a1 + tau, ie = 1 / e, r2 = ratio(st->a2, e), r3 = ratio(st->a3, e);
    real *base = s->trace ? s->trace + t * (2 * nd + outer_vec(o, n, d)) : NULL;
    real *P = base ? base : Pw, *F = base ? base + nd : Fw, *vec = base ? base + 2 * nd : NULL;
    if (o->compat) {
      memcpy(P, Lcur, (size_t)nd * sizeof(real)); /* compat keeps the plan itself in Lcur */
    } else {
      /* the structure term sees the plan normalised to mass 1 (see the header): exp(L - max L) / its sum */
      real lmax = rl_rowmax(nd, Lcur, 1, NULL);
      double sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < nd; i++) {
        P[i] = rl_exp(Lcur[i] - lmax);
        sum += P[i];
      }
      real isum = (real)(1 / sum);
#pragma omp simd
      for (int64_t i = 0; i < nd; i++) P[i] *= isum;
    }
    real *keep = s->trace ? s->trace + T * (2 * nd + outer_vec(o, n, d)) + t * ROTP_STRUCT_KEEP(d) : NULL;
    rotp_struct_apply(s, P, M, stw, keep);
    real a0 = st->a0;
    if (o->compat)
      for (int64_t i = 0; i < nd; i++) F[i] = s->x[i] + a0 * M[i] + rl_log(P[i] + eps);
    else
#pragma omp simd
      for (int64_t i = 0; i < nd; i++) F[i] = s->x[i] + a0 * M[i] + tau * Lcur[i];
    /* inner scaling on F: blocks k = 0..K-1, block K = final (u, v); one kernel serves every inner step */
    real *u = NULL, *v = NULL;
    int kern = 0;
    if (K > 0 && !o->compat) {
      real fmax, fmin;
      block_range(nd, F, &fmax, &fmin);
      kern = kernel_ok(fmax, fmin, ie);
      if (kern) kernel_fill(n, d, F, ie, fmax, Kw, &mK);
    }
    if (K > 0) {
      for (int64_t k = 0; k < K; k++) {
        real *cur = vec ? vec + k * blk : vtmp, *next = vec ? vec + (k + 1) * blk : vtmp + blk;
        if (k == 0) memset(cur, 0, (size_t)blk * sizeof(real));
        if (!o->compat) {
          real *vin = cur, *A = vin + n, *uu = A + d, *B = uu + d;
          if (kern)
            kstep_fwd(n, d, F, ie, 0, Kw, mK, r2, r3, s->lp0, s->lq0, vin, A, uu, B, next, ev, eu, cs);
          else
            step_fwd(n, d, F, ie, r2, r3, s->lp0, s->lq0, vin, A, uu, B, next, cm, cs);
          memcpy(next + n + d, uu, (size_t)d * sizeof(real));
        } else {
          real *uin = cur, *vin = uin + d, *Pc = vin + n, *Q = Pc + d;
          cstep_fwd(n, d, F, ie, ie, r2, r3, s->lp0, s->lq0, uin, vin, Pc, Q, next, next + d, cm, cs);
        }
        if (!vec && k + 1 < K) memcpy(vtmp, vtmp + blk, (size_t)blk * sizeof(real));
      }
      real *fin = vec ? vec + K * blk : vtmp + blk;
      if (!o->compat) {
        v = fin;
        u = fin + n + d;
      } else {
        u = fin;
        v = fin + d;
      }
    }
    /* log P_{t+1} = F/e + u + v (compat keeps P itself in Lcur) */
    real *lout = t == T - 1 ? s->lplan : Lcur;
    for (int64_t i = 0; i < n; i++) {
      const real *f = F + i * d;
      real *lo = lout + i * d, *lc = Lcur + i * d, vi = u ? v[i] : 0;
      if (u)
#pragma omp simd
        for (int64_t j = 0; j < d; j++) lo[j] = f[j] * ie + u[j] + vi;
      else
#pragma omp simd
        for (int64_t j = 0; j < d; j++) lo[j] = f[j] * ie;
      if (o->compat)
#pragma omp simd
        for (int64_t j = 0; j < d; j++) lc[j] = rl_exp(lo[j]);
      else if (lo != lc)
        memcpy(lc, lo, (size_t)d * sizeof(real));
    }
  }
  if (o->compat)
    memcpy(s->plan, Lcur, (size_t)nd * sizeof(real));
  else
#pragma omp simd
    for (int64_t i = 0; i < nd; i++) s->plan[i] = rl_exp(Lcur[i]);
}

RL_HOT static void rot_backward(const rotp_opts *o, const rotp_set *s, rotp_grads *g) {
  int64_t n = s->n, d = s->d, nd = n * d, T = o->iters, K = o->inner, blk = 2 * (n + d);
  real *w = s->work, *gu = w, *gv = gu + d, *gu2 = gv + n, *gv2 = gu2 + d, *sc = gv2 + n;
  real *gL = w + 8 * (n + d), *gF = gL + nd, *gP = gF + nd, *Kw = gP + nd, *stw = Kw + nd;
  real *la = stw + rotp_struct_work_size(n, d, o->debug), *lb = la + 2 * K * n;
  real *ev = w + 6 * (n + d), *eu = ev + n, mK = 0;
  const real tau = (real)ROTP_TAU;
  const real eps = (real)ROTP_REF_EPS;
  /* dL/d(log P_T) */
  memcpy(gL, g->glog, (size_t)nd * sizeof(real));
  for (int64_t t = T - 1; t >= 0; t--) {
    const rotp_step *st = &o->steps[t];
    real e = st->a1 + tau, ie = 1 / e, r2 = ratio(st->a2, e), r3 = ratio(st->a3, e);
    const real *base = s->trace + t * (2 * nd + outer_vec(o, n, d));
    const real *P = base, *F = base + nd, *vec = base + 2 * nd;
    double g_ie = 0, gr2 = 0, gr3 = 0;
    memset(gF, 0, (size_t)nd * sizeof(real));
    int kern = 0;
    if (K > 0 && !o->compat) {
      real fmax, fmin;
      block_range(nd, F, &fmax, &fmin);
      kern = kernel_ok(fmax, fmin, ie);
      if (kern) kernel_fill(n, d, F, ie, fmax, Kw, &mK);
    }
    if (K > 0) {
      lin_bwd(n, d, F, ie, gL, gF, d, &g_ie, gu, gv);
      for (int64_t k = K - 1; k >= 0; k--) {
        const real *cur = vec + k * blk;
        if (!o->compat) {
          const real *vin = cur, *A = vin + n, *uu = A + d, *B = uu + d;
          if (k < K - 1) memset(gu, 0, (size_t)d * sizeof(real));
          if (kern)
            kstep_bwd(n, d, F, Kw, mK, ie, r2, r3, s->lp0, s->lq0, vin, A, uu, B, gu, gv, gv2, gF, d, &g_ie, &gr2, &gr3,
                      g->glp0, g->glq0, ev, eu, sc, la + 2 * k * n, lb + 2 * k * d);
          else
            step_bwd(n, d, F, ie, r2, r3, s->lp0, s->lq0, vin, A, uu, B, gu, gv, gv2, gF, d, &g_ie, &gr2, &gr3, g->glp0,
                     g->glq0);
          memcpy(gv, gv2, (size_t)n * sizeof(real));
        } else {
          const real *uin = cur, *vin = uin + d, *Pc = vin + n, *Q = Pc + d;
          cstep_bwd(n, d, F, ie, ie, r2, r3, s->lp0, s->lq0, uin, vin, Pc, Q, gu, gv, gu2, gv2, gF, d, &g_ie, &g_ie,
                    &gr2, &gr3, g->glp0, g->glq0, sc);
          memcpy(gu, gu2, (size_t)d * sizeof(real));
          memcpy(gv, gv2, (size_t)n * sizeof(real));
        }
      }
      if (kern) lowrank_fold(n, d, F, Kw, ie, 2 * K, la, lb, gF, &g_ie, gP); /* gP: scratch until below */
    } else {
      lin_bwd(n, d, F, ie, gL, gF, d, &g_ie, NULL, NULL);
    }
    /* F = x + a0 M(P) + tau log P   (compat: + log(P + eps)) */
    if (g->gx)
      for (int64_t i = 0; i < nd; i++) g->gx[i] += gF[i];
    memset(gP, 0, (size_t)nd * sizeof(real));
    const real *kept = s->trace + T * (2 * nd + outer_vec(o, n, d)) + t * ROTP_STRUCT_KEEP(d);
    double dot = rotp_struct_backward(s, P, gF, st->a0, gP, g->gxs, g->gc1, g->gc2, stw, kept);
    g->sdot += st->a0 * dot;
    double *gs = g->gstep + t * RL_ROTP_NALPHA;
    gs[ROTP_G_A0] += dot;
    step_param_grads(st, tau, g_ie, gr2, gr3, gs);
    /* gradient w.r.t. log P_t; default: P holds the normalised plan Pn = exp(L - lse(L)), whose Jacobian is
    ** diag(Pn) - Pn Pn^T, and <gP, Pn> = a0 <gF, M(Pn)> = a0 dot */
    if (o->compat) {
      for (int64_t i = 0; i < nd; i++) {
        gP[i] += gF[i] / (P[i] + eps); /* keep dL/dP_t for the initial plan */
        gL[i] = gP[i] * P[i];
      }
    } else {
      real centre = (real)(st->a0 * dot);
#pragma omp simd
      for (int64_t i = 0; i < nd; i++) gL[i] = tau * gF[i] + (gP[i] - centre) * P[i];
    }
    if (t == 0) {
      if (!o->compat) {
        for (int64_t i = 0; i < n; i++) {
          const real *gl = gL + i * d;
          real *glp0 = g->glp0, acc[RL_LANES];
          rl_lanes_fill(acc, 0);
          RL_ROW_LOOP(d, {
            acc[ln] += gl[j];
            glp0[j] += gl[j];
          });
          g->glq0[i] += rl_lanes_sum(acc);
        }
      } else {
        for (int64_t i = 0; i < n; i++)
          for (int64_t j = 0; j < d; j++) {
            g->gq0[i] += gP[i * d + j] * s->p0[j];
            g->gp0[j] += gP[i * d + j] * s->q0[i];
          }
      }
    }
  }
}

/* ---------------------------------------------------------------- entry points */

void rotp_sinkhorn_forward(const rotp_opts *o, const rotp_set *s) {
  if (o->structure)
    rot_forward(o, s);
  else
    uot_forward(o, s);
}

void rotp_sinkhorn_backward(const rotp_opts *o, const rotp_set *s, rotp_grads *g) {
  if (o->structure)
    rot_backward(o, s, g);
  else
    uot_backward(o, s, g);
}

/* Runs the forward without a trace and returns the final scalings (default update, no structure): the state the
** implicit backward linearises around. u: d, v: n. */
void rotp_sinkhorn_fixed_point(const rotp_opts *o, const rotp_set *s, real *u, real *v) {
  rotp_set t = *s;
  t.trace = NULL;
  uot_forward(o, &t);
  int64_t n = s->n, d = s->d, blk = 2 * (n + d);
  const real *fin = s->work + 2 * d + blk; /* uot_forward's second scratch block */
  memcpy(v, fin, (size_t)n * sizeof(real));
  memcpy(u, fin + n + d, (size_t)d * sizeof(real));
}
