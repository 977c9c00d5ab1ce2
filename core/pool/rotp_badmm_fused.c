/*
** rotp_badmm_fused.c -- BADMM without the structure term (a0 = 0), forward and reverse, fused into two passes over
** the set per iteration (instead of about eight): the same arithmetic as rotp_badmm.c's general path, whose header
** gives the iteration and the trace layout, reordered so that each pass touches a few rows at a time.
*/
#include <math.h>
#include <string.h>

#include "rotp_math.h"
#include "rotp_solver.h"

#define vblk rotp_badmm_vblk

/* Forward of one set without the structure term (a0 = 0), fused so that each iteration makes two passes over the
** set: a row pass [steps 4-5 of iteration k-1 (finishing ls', s', z), steps 1-2 of k, step 3 of k with its column
** maxima] and a column-sum exp pass [step 4's log-sum-exp]; the vector steps 6-9 run in between. Same arithmetic
** as the general path below. */
RL_HOT void rotp_badmm_forward_fused(const rotp_opts *o, const rotp_set *s) {
  int64_t n = s->n, d = s->d, nd = n * d, T = o->iters, vb = vblk(n, d);
  int quad = o->solver == RL_ROTP_BADMM_Q;
  real *w = s->work;
  real *S = w, *Z = S + nd, *Tt = Z + nd, *LS = Tt + nd, *LT = LS + nd;
  real *vec = w + 9 * nd;
  real *vx = vec + 2 * vb, *rowsum = vx, *colsum = vx + n, *cm = colsum + d, *Ymu = cm + d, *Yeta = Ymu + d,
       *scale = Yeta + n;
  real *tr = s->trace;
  for (int64_t i = 0; i < n; i++) {
    real *lsi = LS + i * d, *si = S + i * d, q = s->lq0[i];
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      lsi[j] = q + s->lp0[j];
      si[j] = rl_exp(lsi[j]);
    }
  }
  memset(Z, 0, (size_t)nd * sizeof(real));
  real *v0 = tr ? tr + T * 2 * nd : vec;
  memcpy(v0, s->lp0, (size_t)d * sizeof(real));
  memcpy(v0 + d, s->lq0, (size_t)n * sizeof(real));
  memset(v0 + d + n, 0, (size_t)(d + n) * sizeof(real));
  for (int64_t k = 0; k <= T; k++) {
    /* iteration k's pointers (k = T: only the finishing part of iteration T-1 runs, when recording) */
    int last = k == T;
    if (last && !tr) break;
    const rotp_step *st = &o->steps[last ? T - 1 : k];
    real r = st->rho, a1 = st->a1, ir = 1 / r, c = quad ? 1 / r : 1 / (a1 + r);
    real *vc = tr ? tr + T * 2 * nd + k * vb : vec + (k & 1) * vb;
    real *leta = vc + d, *R = vc + d + n + d + n, *lmu = vc;
    real *lt = tr ? (last ? NULL : tr + k * 2 * nd) : LT;
    real *lsn = tr ? (last ? NULL : tr + k * 2 * nd + nd) : LS;
    const real *ls = tr ? (k ? tr + (k - 1) * 2 * nd + nd : LS) : LS;
    /* the previous iteration's step 4 needs its lmu, C and scale; its step 5 its rho */
    real rp = k ? o->steps[k - 1].rho : 0;
    real *pv = k ? (tr ? tr + T * 2 * nd + (k - 1) * vb : vec + ((k - 1) & 1) * vb) : NULL;
    real *plmu = pv, *pC = pv ? pv + d + n + d + n + n : NULL;
    real *pls = k ? (tr ? tr + (k - 1) * 2 * nd + nd : LS) : NULL;
    for (int64_t j = 0; j < d; j++) cm[j] = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
      const real *xi = s->x + i * d;
      real *zi = Z + i * d, *si = S + i * d, *ti = Tt + i * d;
      if (k) { /* steps 4-5 of iteration k-1: ls' = Ys - C + lmu, s' = e * scale, z += r (t - s') */
        real *py = pls + i * d;
#pragma omp simd
        for (int64_t j = 0; j < d; j++) {
          py[j] += plmu[j] - pC[j];
          si[j] *= scale[j];
          zi[j] += rp * (ti[j] - si[j]);
        }
      }
      if (last) continue;
      /* steps 1-2 of iteration k */
      const real *li = ls + i * d;
      real *lti = lt + i * d, *ysi = lsn + i * d;
      if (quad) {
#pragma omp simd
        for (int64_t j = 0; j < d; j++) lti[j] = (xi[j] - zi[j] - a1 * si[j]) * ir + li[j];
      } else {
#pragma omp simd
        for (int64_t j = 0; j < d; j++) lti[j] = (xi[j] - zi[j]) * ir + li[j];
      }
      real m = rl_rowmax(d, lti, 1, NULL);
#pragma omp simd
      for (int64_t j = 0; j < d; j++) ti[j] = rl_exp(lti[j] - m);
      real acc = rl_rowsum(d, ti);
      real Ri = m + rl_log(acc), sh = leta[i] - Ri, sc = rl_exp(m - Ri + leta[i]);
      R[i] = Ri;
      rowsum[i] = sc * acc;
      /* step 3 of iteration k (Ys into the ls' slot) and its column maxima */
      if (quad) {
#pragma omp simd
        for (int64_t j = 0; j < d; j++) {
          lti[j] += sh;
          ti[j] *= sc;
          real y = (zi[j] - a1 * ti[j]) * c + lti[j];
          ysi[j] = y;
          cm[j] = y > cm[j] ? y : cm[j];
        }
      } else {
#pragma omp simd
        for (int64_t j = 0; j < d; j++) {
          lti[j] += sh;
          ti[j] *= sc;
          real y = (zi[j] + r * lti[j]) * c;
          ysi[j] = y;
          cm[j] = y > cm[j] ? y : cm[j];
        }
      }
    }
    if (last) break;
    /* step 4's column log-sum-exp: e = exp(Ys - max) into S */
    memset(colsum, 0, (size_t)d * sizeof(real));
    for (int64_t i = 0; i < n; i++) {
      const real *ysi = lsn + i * d;
      real *si = S + i * d;
#pragma omp simd
      for (int64_t j = 0; j < d; j++) {
        si[j] = rl_exp(ysi[j] - cm[j]);
        colsum[j] += si[j];
      }
    }
    real *C = vc + d + n + d + n + n;
    for (int64_t j = 0; j < d; j++) {
      C[j] = cm[j] + rl_log(colsum[j]);
      scale[j] = rl_exp(cm[j] - C[j] + lmu[j]);
      colsum[j] *= scale[j]; /* colsum(s') */
    }
    /* steps 6-9 */
    real *vn = tr ? tr + T * 2 * nd + (k + 1) * vb : vec + ((k + 1) & 1) * vb;
    real *z1 = leta + n, *z2 = z1 + d, *lmu2 = vn, *leta2 = lmu2 + d, *z1n = leta2 + n, *z2n = z1n + d;
    real a2 = st->a2, a3 = st->a3;
    for (int64_t j = 0; j < d; j++) Ymu[j] = (r * lmu[j] + a2 * s->lp0[j] - z1[j]) / (r + a2);
    rotp_log_softmax(d, Ymu, lmu2);
    for (int64_t i = 0; i < n; i++) Yeta[i] = (r * leta[i] + a3 * s->lq0[i] - z2[i]) / (r + a3);
    rotp_log_softmax(n, Yeta, leta2);
    for (int64_t j = 0; j < d; j++) z1n[j] = z1[j] + r * (rl_exp(lmu2[j]) - colsum[j]);
    for (int64_t i = 0; i < n; i++) z2n[i] = z2[i] + r * (rl_exp(leta2[i]) - rowsum[i]);
  }
  memcpy(s->plan, Tt, (size_t)nd * sizeof(real));
  memcpy(s->lplan, tr ? tr + (T - 1) * 2 * nd : LT, (size_t)nd * sizeof(real));
}


/* Reverse of one set without the structure term (a0 = 0), fused into two row passes per iteration: every step is
** row-local except the column sums of step 4 (colG), which the first pass accumulates. The arithmetic is the same
** as rotp_badmm_backward's general path (derivation there); the working set per pass is a few rows. */
RL_HOT void rotp_badmm_backward_fused(const rotp_opts *o, const rotp_set *s, rotp_grads *g) {
  int64_t n = s->n, d = s->d, nd = n * d, T = o->iters, vb = vblk(n, d);
  int quad = o->solver == RL_ROTP_BADMM_Q;
  real *w = s->work;
  real *Tt = w, *Sn = Tt + nd, *Si = Sn + nd, *Gz = Si + nd, *Gls = Gz + nd, *Gs = Gls + nd, *LS0 = Gs + nd;
  real *vx = w + 9 * nd + 2 * vb;
  real *rowsum = vx, *colsum = rowsum + n, *colG = colsum + d, *gmu = colG + d, *geta = gmu + d, *g1 = geta + n,
       *g2 = g1 + d, *cgmu = g2 + n, *cgeta = cgmu + d, *Ymu = cgeta + n, *row = Ymu + d;
  const real *tr = s->trace, *vtr = tr + T * 2 * nd;
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
  {
    const real *l = tr + (T - 1) * 2 * nd + nd;
#pragma omp simd
    for (int64_t i = 0; i < nd; i++) Sn[i] = rl_exp(l[i]);
  }
  int has_gs = 0; /* Gs is nonzero only after a BADMM-Q iteration */
  for (int64_t k = T - 1; k >= 0; k--) {
    const rotp_step *st = &o->steps[k];
    real r = st->rho, a1 = st->a1, a2 = st->a2, a3 = st->a3;
    const real *vc = vtr + k * vb, *vn = vtr + (k + 1) * vb;
    const real *lmu = vc, *leta = lmu + d, *z1 = leta + n, *z2 = z1 + d;
    const real *lmu2 = vn, *leta2 = lmu2 + d;
    const real *lt = tr + k * 2 * nd, *lsn = lt + nd, *ls = k ? tr + (k - 1) * 2 * nd + nd : LS0;
    double gr = 0, ga1 = 0, ga2 = 0, ga3 = 0;
    /* steps 9, 8 (vector part) and 7, 6 */
    {
      double sum = 0;
      for (int64_t i = 0; i < n; i++) {
        geta[i] += r * g2[i] * rl_exp(leta2[i]);
        sum += geta[i];
      }
      real c = 1 / (r + a3);
      for (int64_t i = 0; i < n; i++) {
        real Y = (r * leta[i] + a3 * s->lq0[i] - z2[i]) * c;
        real gy = geta[i] - rl_exp(leta2[i]) * (real)sum;
        gr += (double)gy * (leta[i] - Y) * c;
        ga3 += (double)gy * (s->lq0[i] - Y) * c;
        g->glq0[i] += a3 * c * gy;
        geta[i] = r * c * gy;
        cgeta[i] = gy * c;
      }
    }
    {
      double sum = 0;
      for (int64_t j = 0; j < d; j++) {
        gmu[j] += r * g1[j] * rl_exp(lmu2[j]);
        sum += gmu[j];
      }
      real c = 1 / (r + a2);
      for (int64_t j = 0; j < d; j++) {
        real Y = (r * lmu[j] + a2 * s->lp0[j] - z1[j]) * c;
        real gy = gmu[j] - rl_exp(lmu2[j]) * (real)sum;
        gr += (double)gy * (lmu[j] - Y) * c;
        ga2 += (double)gy * (s->lp0[j] - Y) * c;
        g->glp0[j] += a2 * c * gy;
        gmu[j] = r * c * gy;
        cgmu[j] = gy * c;
      }
    }
    /* pass 1: t = exp(lt), row/column sums, steps 5, 8, 9 (matrix part), dL/dls' total and its column sums */
    memset(colsum, 0, (size_t)d * sizeof(real));
    memset(colG, 0, (size_t)d * sizeof(real));
    double gz_dot = 0;
    for (int64_t i = 0; i < n; i++) {
      const real *l = lt + i * d, *sv = Sn + i * d, *gs = Gs + i * d, *gz = Gz + i * d;
      real *tv = Tt + i * d, *gl = Gls + i * d;
#pragma omp simd
      for (int64_t j = 0; j < d; j++) {
        tv[j] = rl_exp(l[j]);
        colsum[j] += sv[j];
        real gst = (has_gs ? gs[j] : 0) - r * gz[j] - r * g1[j];
        gl[j] += gst * sv[j];
        colG[j] += gl[j];
        row[j] = gz[j] * (tv[j] - sv[j]);
      }
      rowsum[i] = rl_rowsum(d, tv);
      gz_dot += rl_rowsum(d, row);
    }
    gr += gz_dot;
    for (int64_t j = 0; j < d; j++) gr += (double)g1[j] * (rl_exp(lmu2[j]) - colsum[j]);
    for (int64_t i = 0; i < n; i++) gr += (double)g2[i] * (rl_exp(leta2[i]) - rowsum[i]);
    for (int64_t j = 0; j < d; j++) {
      gmu[j] += colG[j];
      Ymu[j] = rl_exp(-lmu[j]) * colG[j];
    }
    /* pass 2: steps 4 (G_Ys), 3, 2 (G_Yt) and 1, row by row */
    real c = quad ? 1 / r : 1 / (a1 + r), ir = 1 / r, rc = r * c;
    double dz = 0, dy = 0, dyt = 0, ds = 0;
    for (int64_t i = 0; i < n; i++) {
      const real *sv = Sn + i * d, *tv = Tt + i * d, *l = lt + i * d, *ysr = lsn + i * d, *lsi = ls + i * d;
      const real *ext = k == T - 1 ? g->glog + i * d : NULL;
      real *gz = Gz + i * d, *gl = Gls + i * d, *si = Si + i * d, *gx = g->gx + i * d, *gs = Gs + i * d;
      real g2i = r * g2[i];
      /* G_Ys (into row), Gz, and Glt_tot (into gl); Ys is taken up to its column constant (columns of G_Ys sum
      ** to 0), so the rho / a1 sums stay accurate when rho is small */
      if (quad) {
#pragma omp simd
        for (int64_t j = 0; j < d; j++) {
          real gy = gl[j] - sv[j] * Ymu[j];
          real gt = r * gz[j] - g2i - a1 * c * gy;
          gz[j] += c * gy;
          row[j] = gy;
          gl[j] = gy + gt * tv[j] + (ext ? ext[j] : 0);
        }
      } else {
#pragma omp simd
        for (int64_t j = 0; j < d; j++) {
          real gy = gl[j] - sv[j] * Ymu[j];
          real gt = r * gz[j] - g2i;
          gz[j] += c * gy;
          row[j] = gy;
          gl[j] = rc * gy + gt * tv[j] + (ext ? ext[j] : 0);
        }
      }
      /* dot products of G_Ys for dL/da1 and dL/drho (row holds G_Ys) */
      real az = 0, ay = 0;
      if (quad) {
#pragma omp simd reduction(+ : az, ay)
        for (int64_t j = 0; j < d; j++) {
          az += row[j] * tv[j];
          ay += row[j] * (ysr[j] - l[j]);
        }
      } else {
#pragma omp simd reduction(+ : az, ay)
        for (int64_t j = 0; j < d; j++) {
          az += row[j] * ysr[j];
          ay += row[j] * (l[j] - ysr[j]);
        }
      }
      dz += az;
      dy += ay;
      real rG = rl_rowsum(d, gl);
      geta[i] += rG;
      real sc = rG * rl_exp(-leta[i]);
      real a_yt = 0, a_s = 0;
#pragma omp simd reduction(+ : a_yt, a_s)
      for (int64_t j = 0; j < d; j++) {
        real gy = gl[j] - tv[j] * sc; /* G_Yt */
        si[j] = rl_exp(lsi[j]);
        gx[j] += gy * ir;
        gz[j] -= gy * ir;
        a_yt += gy * (l[j] - lsi[j]); /* rows of G_Yt sum to 0: R - leta dropped */
        a_s += gy * si[j];
        gs[j] = quad ? -a1 * ir * gy : 0;
        gl[j] = gy;
      }
      dyt += a_yt;
      ds += a_s;
    }
    has_gs = quad;
    ga1 -= c * dz;
    gr += quad ? -c * dy : c * dy;
    gr -= ir * dyt;
    if (quad) ga1 -= ir * ds;
    for (int64_t j = 0; j < d; j++) g1[j] -= cgmu[j];
    for (int64_t i = 0; i < n; i++) g2[i] -= cgeta[i];
    double *gsr = g->gstep + k * RL_ROTP_NALPHA;
    gsr[ROTP_G_A1] += ga1;
    gsr[ROTP_G_A2] += ga2;
    gsr[ROTP_G_A3] += ga3;
    gsr[ROTP_G_RHO] += gr;
    real *sw = Sn;
    Sn = Si;
    Si = sw;
  }
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < d; j++) {
      real gl = Gls[i * d + j] + (has_gs ? Gs[i * d + j] * Sn[i * d + j] : 0);
      g->glq0[i] += gl;
      g->glp0[j] += gl;
    }
  for (int64_t j = 0; j < d; j++) g->glp0[j] += gmu[j];
  for (int64_t i = 0; i < n; i++) g->glq0[i] += geta[i];
}
