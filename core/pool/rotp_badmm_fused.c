/*
** rotp_badmm_fused.c -- BADMM without the structure term (a0 = 0), forward and reverse, fused so that an iteration
** makes two passes over the set, each a few row loops that stay in L1: the same arithmetic as rotp_badmm.c's
** general path, whose header gives the iteration and why the last iteration stops after its t-step; the trace
** layout is rotp_badmm_fused_voff's. Row loops run in lane chunks (RL_ROW_LOOP).
*/
#include <math.h>
#include <string.h>

#include "rotp_math.h"
#include "rotp_solver.h"

#define vblk rotp_badmm_vblk

/* A row or column log-sum-exp of the forward takes its exps at a stabiliser known before the pass -- the maximum of
** the same row or column one iteration earlier -- so that the exps fuse with the loop that computes the values. The
** sums stay exact whatever the stabiliser; it only has to keep the largest exp and the scales in range: while the
** maximum is within ROTP_STAB_WINDOW of it, exp(max - g) lies in [e^-30, e^30] (no overflow; the entries lost to
** underflow are below e^-57 of the largest) and the plan scale exp(g - lse + log mass) underflows only for a row or
** column of mass below e^-52. A row or column out of the window is redone at its maximum (a row at once, in L1;
** the columns by one more pass over the set). */
#define ROTP_STAB_WINDOW 30

static inline int stab_ok(real m, real g) { return m - g <= ROTP_STAB_WINDOW && m - g >= -ROTP_STAB_WINDOW; }

/* Forward of one set. Iteration k's row pass finishes the s-step of k-1 (ls' = Ys - C + lmu, s' = e scale,
** z += r (t - s')) and runs the t-step of k: Yt into the lt slot with u = exp(Yt - g) and the row sums; then, for
** all rows at once, the row log-sum-exps R and scales exp(g - R + leta) (t = u scale, kept as u and the scale).
** But for the last iteration, the column pass then makes lt = Yt - R + leta, Ys with e = exp(Ys - g) and the column
** sums (iteration 0, which has no stabilisers yet: the row maxima before the row's exps, the column maxima before
** the column exps in a pass of their own), and the vector steps 6-9 follow. Exps: one per entry in each pass, plus
** those of redone rows and columns. */
RL_HOT void rotp_badmm_forward_fused(const rotp_opts *o, const rotp_set *s) {
  int64_t n = s->n, d = s->d, nd = n * d, T = o->iters, vb = vblk(n, d);
  int quad = o->solver == RL_ROTP_BADMM_Q;
  real *w = s->work;
  real *E = w, *Z = E + nd, *U = Z + nd, *LS = U + nd, *LT = LS + nd; /* E = exp(Ys - g), U = exp(Yt - g) */
  real *vec = w + 9 * nd;
  real *vx = vec + 2 * vb, *rowsum = vx, *colsum = rowsum + n, *cg = colsum + d, *rg = cg + d, *scb = rg + n,
       *shift = scb + d, *rsb = shift + d, *cmx = rsb + n, *gu = cmx + d, *icb = gu + n,
       *Ymu = icb + d; /* Ymu: n + d scratch */
  real *tr = s->trace, *vtr = tr ? tr + rotp_badmm_fused_voff(T, nd) : NULL, *xsc = tr ? vtr + T * vb : NULL;
  real *v0 = tr ? vtr : vec;
  memcpy(v0, s->lp0, (size_t)d * sizeof(real));
  memcpy(v0 + d, s->lq0, (size_t)n * sizeof(real));
  memset(v0 + d + n, 0, (size_t)(d + n) * sizeof(real));
  real *ep = Ymu;
  if (quad)
#pragma omp simd
    for (int64_t j = 0; j < d; j++) ep[j] = rl_exp(s->lp0[j]);
  for (int64_t k = 0; k < T; k++) {
    int last = k == T - 1;
    const rotp_step *st = &o->steps[k];
    real r = st->rho, a1 = st->a1, ir = 1 / r, c = quad ? 1 / r : 1 / (a1 + r), a1q = quad ? a1 : 0;
    real *vc = tr ? vtr + k * vb : vec + (k & 1) * vb;
    real *lmu = vc, *leta = lmu + d, *R = leta + 2 * n + d, *C = R + n; /* [lmu][leta][z1][z2][R][C] */
    /* the trace's slots of iteration k (rotp_badmm_fused_voff; in place in the work buffers when not recording):
    ** lt (the last iteration's: lplan), Ys made ls'_k by the next row pass, U and E (t_k = U_k rsc_k, the last
    ** iteration's in plan; s'_k = E_k scale_k), the row and column scales */
    real *slk = tr && !last ? tr + 4 * k * nd : NULL, *slp = tr && k ? tr + 4 * (k - 1) * nd : NULL;
    real *lt = last ? s->lplan : slk ? slk : LT, *ys = last ? NULL : slk ? slk + nd : LS;
    real *yp = k ? (slp ? slp + nd : LS) : NULL, rp = k ? o->steps[k - 1].rho : 0;
    real *Uc = last ? s->plan : slk ? slk + 2 * nd : U, *Up = slp ? slp + 2 * nd : U;
    real *Ec = last ? NULL : slk ? slk + 3 * nd : E, *Ep = slp ? slp + 3 * nd : E;
    real *rsc = tr ? xsc + k * (n + 2 * d) : rsb, *rscp = tr && k ? rsc - (n + 2 * d) : rsb;
    real *scale = tr ? rsc + n : scb, *scalep = tr && k ? rscp + n : scb, *ics = tr ? scale + d : icb;
    /* the row pass */
    for (int64_t i = 0; i < n; i++) {
      const real *xi = s->x + i * d;
      real *zi = Z + i * d, *ui = Uc + i * d, *lti = lt + i * d;
      real mm[RL_LANES], acc[RL_LANES];
      rl_lanes_fill(mm, -INFINITY);
      rl_lanes_fill(acc, 0);
      real g = k ? rg[i] : 0;
      if (k) { /* steps 4-5 of k-1, 1 of k and 2's exps at g: Yt = (x - z - [Q] a1 s)/r + ls */
        real *yi = yp + i * d, scp = rscp[i];
        const real *ei = Ep + i * d, *upi = Up + i * d;
        RL_ROW_LOOP(d, {
          real lsv = yi[j] + shift[j];
          real sp = ei[j] * scalep[j];
          real zv = zi[j] + rp * (upi[j] * scp - sp);
          real yt = (xi[j] - zv - a1q * sp) * ir + lsv;
          real u = rl_exp(yt - g);
          yi[j] = lsv;
          zi[j] = zv;
          lti[j] = yt;
          ui[j] = u;
          acc[ln] += u;
          mm[ln] = yt > mm[ln] ? yt : mm[ln];
        });
      } else {
        real q = s->lq0[i], eq = rl_exp(q);
        if (quad) /* s_0 = exp(lq0) exp(lp0) (ep: exp(lp0), in the Ymu scratch until the first column pass) */
          RL_ROW_LOOP(d, {
            real lsv = q + s->lp0[j];
            real yt = (xi[j] - a1 * (eq * ep[j])) * ir + lsv;
            zi[j] = 0;
            lti[j] = yt;
            mm[ln] = yt > mm[ln] ? yt : mm[ln];
          });
        else
          RL_ROW_LOOP(d, {
            real yt = xi[j] * ir + (q + s->lp0[j]);
            zi[j] = 0;
            lti[j] = yt;
            mm[ln] = yt > mm[ln] ? yt : mm[ln];
          });
      }
      real m = rl_lanes_max(mm);
      if (!k || !stab_ok(m, g)) { /* iteration 0, or a row out of the window: step 2's exps at the maximum */
        g = m;
        rl_lanes_fill(acc, 0);
        RL_ROW_LOOP(d, {
          real u = rl_exp(lti[j] - g);
          ui[j] = u;
          acc[ln] += u;
        });
      }
      rg[i] = m;
      gu[i] = g;
      rowsum[i] = rl_lanes_sum(acc);
    }
    /* the row log-sum-exps and scales, over all rows at once (per row, their log and exp were a latency chain
    ** between two row loops) */
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
      real Ri = gu[i] + rl_logv(rowsum[i]), sc = rl_exp(gu[i] - Ri + leta[i]);
      R[i] = Ri;
      rsc[i] = sc;
      rowsum[i] *= sc;
    }
    if (last) {
      for (int64_t i = 0; i < n; i++) {
        real sh = leta[i] - R[i], sc = rsc[i], *lti = lt + i * d, *ui = Uc + i * d; /* the plan's rows */
        RL_ROW_LOOP(d, {
          lti[j] += sh;
          ui[j] *= sc;
        });
      }
      break;
    }
    /* the column pass: step 2's lt = Yt - R + leta, step 3's Ys (into the ls' slot), step 4's exps at the column
    ** stabilisers with their sums (iteration 0: the column maxima only, the exps in a second pass below) */
    int exact = !k;
    for (int64_t j = 0; j < d; j++) {
      cmx[j] = -INFINITY;
      colsum[j] = 0;
    }
    for (int64_t i = 0; i < n; i++) {
      real *lti = lt + i * d, *ysi = ys + i * d, *ei = Ec + i * d;
      const real *zi = Z + i * d, *ui = Uc + i * d;
      real sh = leta[i] - R[i], sc = rsc[i];
      if (exact) {
        if (quad)
          RL_ROW_LOOP(d, {
            real l = lti[j] + sh;
            real y = (zi[j] - a1 * ui[j] * sc) * c + l;
            lti[j] = l;
            ysi[j] = y;
            cmx[j] = y > cmx[j] ? y : cmx[j];
          });
        else
          RL_ROW_LOOP(d, {
            real l = lti[j] + sh;
            real y = (zi[j] + r * l) * c;
            lti[j] = l;
            ysi[j] = y;
            cmx[j] = y > cmx[j] ? y : cmx[j];
          });
      } else if (quad) {
        RL_ROW_LOOP(d, {
          real l = lti[j] + sh;
          real y = (zi[j] - a1 * ui[j] * sc) * c + l;
          real e = rl_exp(y - cg[j]);
          lti[j] = l;
          ysi[j] = y;
          ei[j] = e;
          colsum[j] += e;
          cmx[j] = y > cmx[j] ? y : cmx[j];
        });
      } else {
        RL_ROW_LOOP(d, {
          real l = lti[j] + sh;
          real y = (zi[j] + r * l) * c;
          real e = rl_exp(y - cg[j]);
          lti[j] = l;
          ysi[j] = y;
          ei[j] = e;
          colsum[j] += e;
          cmx[j] = y > cmx[j] ? y : cmx[j];
        });
      }
    }
    for (int64_t j = 0; j < d && !exact; j++) exact = !stab_ok(cmx[j], cg[j]);
    if (exact) { /* iteration 0, or a column out of the window: step 4's exps at the column maxima */
      memcpy(cg, cmx, (size_t)d * sizeof(real));
      memset(colsum, 0, (size_t)d * sizeof(real));
      for (int64_t i = 0; i < n; i++) {
        const real *ysi = ys + i * d;
        real *ei = Ec + i * d;
        RL_ROW_LOOP(d, {
          real e = rl_exp(ysi[j] - cg[j]);
          ei[j] = e;
          colsum[j] += e;
        });
      }
    }
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      C[j] = cg[j] + rl_logv(colsum[j]);
      ics[j] = 1 / colsum[j]; /* exp(cg - C): softmax_n(Ys) = E ics, for the reverse */
      scale[j] = rl_exp(cg[j] - C[j] + lmu[j]);
      shift[j] = lmu[j] - C[j];
      colsum[j] *= scale[j]; /* colsum(s') */
      cg[j] = cmx[j];        /* the next iteration's stabiliser */
    }
    /* the marginals of the next iteration: steps 6'-7', or the authors' 6-9 */
    real *vn = tr ? vtr + (k + 1) * vb : vec + ((k + 1) & 1) * vb;
    if (o->compat)
      rotp_badmm_compat_marginals(st, s, vc, vn, rowsum, colsum, Ymu);
    else
      rotp_badmm_marginals(st, quad, s, C, R, vn, vn + d, Ymu);
  }
}

/* Reverse of one set. Per iteration (but the last, which has only its t-step): the vector steps 9-6, then one pass,
** row by row: steps 4 (G_Ys), 3, 2 (G_Yt) in one row loop, step 1 and the previous iteration's steps 5, 8 on s' (the
** total adjoint of its ls' with the column sums that its step 4 needs) in a second. t and s' are the forward's (U
** and E of the trace with their scales), so the reverse takes no exp per entry: with 2 threads, reading them costs
** less than recomputing them (BADMM-E f+b -10%, though the trace doubles: 4 N x D per iteration). The adjoint of s
** (BADMM-Q) is folded into that of ls at once (s = exp(ls)). */
RL_HOT void rotp_badmm_backward_fused(const rotp_opts *o, const rotp_set *s, rotp_grads *g) {
  int64_t n = s->n, d = s->d, nd = n * d, T = o->iters, vb = vblk(n, d);
  int quad = o->solver == RL_ROTP_BADMM_Q;
  real *w = s->work;
  real *Gz = w, *Gls = Gz + nd;
  real *vx = w + 9 * nd + 2 * vb;
  real *colG = vx, *gmu = colG + d, *geta = gmu + d, *g1 = geta + n, *g2 = g1 + d,
       *cgmu = g2 + n, *cgeta = cgmu + d, *Ymu = cgeta + n, *trow = Ymu + d, *grow = trow + d, *zrow = grow + d,
       *eml = zrow + d, *dC = eml + n, *dR = dC + d, *ep = dR + n, *gsink = ep + d;
  const real *tr = s->trace, *vtr = tr + rotp_badmm_fused_voff(T, nd), *xsc = vtr + T * vb;
  memset(gmu, 0, (size_t)d * sizeof(real));
  memset(geta, 0, (size_t)n * sizeof(real));
  memset(g1, 0, (size_t)d * sizeof(real));
  memset(g2, 0, (size_t)n * sizeof(real));
  memset(cgmu, 0, (size_t)d * sizeof(real));
  memset(cgeta, 0, (size_t)n * sizeof(real));
  memset(dC, 0, (size_t)d * sizeof(real));
  memset(dR, 0, (size_t)n * sizeof(real));
  memset(gsink, 0, (size_t)d * sizeof(real)); /* dL/dx when it is not wanted (g->gx NULL): every row adds into it */
  if (quad)
#pragma omp simd
    for (int64_t j = 0; j < d; j++) ep[j] = rl_exp(s->lp0[j]);
  for (int64_t k = T - 1; k >= 0; k--) {
    int tail = k == T - 1; /* only the t-step reaches the plan: every other adjoint is still 0 */
    const rotp_step *st = &o->steps[k];
    real r = st->rho, a1 = st->a1, a2 = st->a2, a3 = st->a3;
    const real *vc = vtr + k * vb;
    const real *lmu = vc, *leta = lmu + d, *z1 = leta + n, *z2 = z1 + d, *R = z2 + n, *C = R + n;
    /* the forward's slots (rotp_badmm_fused_voff): lt_k, ls'_k, t_k = U_k rsc_k, s'_k = E_k scale_k, and ls', s' of
    ** iteration k - 1; the last iteration's lt and t are lplan and plan */
    const real *slk = tail ? NULL : tr + 4 * k * nd, *slp = k ? tr + 4 * (k - 1) * nd : NULL;
    const real *lt = tail ? s->lplan : slk, *lsn = tail ? NULL : slk + nd, *ls = k ? slp + nd : NULL;
    const real *Uk = tail ? s->plan : slk + 2 * nd, *Ek = tail ? NULL : slk + 3 * nd, *Ep = k ? slp + 3 * nd : NULL;
    const real *rsc = xsc + k * (n + 2 * d), *scale = rsc + n, *ics = scale + d;
    const real *scalep = k ? scale - (n + 2 * d) : NULL, *leta2 = NULL;
    double gr = 0, ga1 = 0, ga2 = 0, ga3 = 0;
    if (!tail) {
      const real *vn = vtr + (k + 1) * vb, *lmu2 = vn;
      leta2 = lmu2 + d;
      if (!o->compat) { /* steps 7', 6': the adjoints of R and C (g1, g2, cgmu, cgeta stay 0) */
        rotp_badmm_marginals_backward(st, quad, s, C, R, lmu2, leta2, gmu, geta, dC, dR, g->glp0, g->glq0, &gr,
                                      &ga1, &ga2, &ga3);
      } else { /* the authors' steps 9, 8 (vector part) and 7, 6 */
#pragma omp simd
        for (int64_t i = 0; i < n; i++) geta[i] += r * g2[i] * rl_exp(leta2[i]);
#pragma omp simd
        for (int64_t j = 0; j < d; j++) gmu[j] += r * g1[j] * rl_exp(lmu2[j]);
        rotp_badmm_compat_marginal_backward(n, r, a3, leta, s->lq0, z2, leta2, geta, cgeta, g->glq0, &gr, &ga3);
        rotp_badmm_compat_marginal_backward(d, r, a2, lmu, s->lp0, z1, lmu2, gmu, cgmu, g->glp0, &gr, &ga2);
      }
      /* steps 5, 8 on s' and step 4's total adjoint of ls' with its column sums colG: made by iteration k + 1's
      ** last row loop (below) */
#pragma omp simd reduction(+ : gr)
      for (int64_t j = 0; j < d; j++) {
        gr += (double)g1[j] * (rl_exp(lmu2[j]) - rl_exp(lmu[j])); /* colsum(s') = exp(lmu) by step 4 */
        gmu[j] += colG[j];
        g1[j] -= cgmu[j]; /* the z1 adjoint entering iteration k - 1 (pass 2 does not read it) */
        /* softmax_n(Ys) = E ics (ics = exp(cg - C), in range whatever the column's mass) */
        Ymu[j] = ics[j] * (colG[j] - dC[j]);
      }
    }
    /* pass 2 */
    real c = quad ? 1 / r : 1 / (a1 + r), ir = 1 / r, rc = r * c, a1ir = a1 * ir;
    /* set-wide dots: float lanes summed over blocks of 8 rows, folded into double lanes (no horizontal sum) */
    double Dz[RL_LANES], Dy[RL_LANES], Dzt[RL_LANES], Dyt[RL_LANES], Ds[RL_LANES];
    for (int l = 0; l < RL_LANES; l++) Dz[l] = Dy[l] = Dzt[l] = Dyt[l] = Ds[l] = 0;
    real a_z[RL_LANES], a_y[RL_LANES], a_zt[RL_LANES], a_yt[RL_LANES], a_s[RL_LANES];
    rl_lanes_fill(a_z, 0);
    rl_lanes_fill(a_y, 0);
    rl_lanes_fill(a_zt, 0);
    rl_lanes_fill(a_yt, 0);
    rl_lanes_fill(a_s, 0);
    double drs = 0; /* step 9's sum_i g2_i (exp(leta2_i) - rowsum(t)_i), rowsum(t) = exp(leta) by step 2 */
#pragma omp simd
    for (int64_t i = 0; i < n; i++) eml[i] = rl_exp(-leta[i]); /* softmax_d(Yt) = t exp(-leta) (see below) */
    real rp = k ? o->steps[k - 1].rho : 0; /* iteration k - 1's, for its steps 5 and 8 done here */
    if (k) memset(colG, 0, (size_t)d * sizeof(real));
    if (!tail)
#pragma omp simd reduction(+ : drs)
      for (int64_t i = 0; i < n; i++) drs += (double)g2[i] * (rl_exp(leta2[i]) - rl_exp(leta[i]));
    for (int64_t i = 0; i < n; i++) {
      const real *lti = lt + i * d, *ui = Uk + i * d;
      const real *ei = tail ? NULL : Ek + i * d;
      real *gz = Gz + i * d, *gl = Gls + i * d, *gx = g->gx ? g->gx + i * d : gsink,
           rsci = tail ? 1 : rsc[i]; /* plan = t */
      real a_g[RL_LANES];
      rl_lanes_fill(a_g, 0);
      /* steps 4 (G_Ys), 3 and 2 up to the row sum: t, Gz + dYs/dz G_Ys and Glt_tot into the row buffers */
      if (tail) {
        const real *ext = g->glog + i * d;
        RL_ROW_LOOP(d, {
          trow[j] = ui[j] * rsci;
          grow[j] = ext[j];
          zrow[j] = 0;
          a_g[ln] += ext[j];
        });
      } else {
        const real *ysr = lsn + i * d;
        real g2i = r * g2[i];
        /* Ys enters the dots up to its column constant C - lmu (added back below: columns of G_Ys sum to dC), so
        ** the rho / a1 sums stay accurate when rho is small */
        if (quad)
          RL_ROW_LOOP(d, {
            real t = ui[j] * rsci;
            real e = ei[j];
            real gy = gl[j] - e * Ymu[j];
            real gt = r * gz[j] - g2i - a1 * c * gy;
            real glt = gy + gt * t;
            trow[j] = t;
            zrow[j] = gz[j] + c * gy;
            grow[j] = glt;
            a_g[ln] += glt;
            a_z[ln] += gy * t;
            a_y[ln] += gy * (ysr[j] - lti[j]);
            a_zt[ln] += gz[j] * (t - e * scale[j]);
          });
        else
          RL_ROW_LOOP(d, {
            real t = ui[j] * rsci;
            real e = ei[j];
            real gy = gl[j] - e * Ymu[j];
            real gt = r * gz[j] - g2i;
            real glt = rc * gy + gt * t;
            trow[j] = t;
            zrow[j] = gz[j] + c * gy;
            grow[j] = glt;
            a_g[ln] += glt;
            a_z[ln] += gy * ysr[j];
            a_y[ln] += gy * (lti[j] - ysr[j]);
            a_zt[ln] += gz[j] * (t - e * scale[j]);
          });
      }
      real rG = rl_lanes_sum(a_g);
      geta[i] += rG;
      /* the adjoint of R: -rG, + dR through step 7'; a row whose mass is too small for exp(-leta) takes its softmax
      ** as exp(lt - leta) (into trow: t has no further use) */
      real sc = (rG - dR[i]) * eml[i];
      if (leta[i] < (real)ROTP_LOG_MARGIN_FLOOR) {
#pragma omp simd
        for (int64_t j = 0; j < d; j++) trow[j] = rl_exp(lti[j] - leta[i]);
        sc = rG - dR[i];
      }
      /* step 2's G_Yt and step 1: gx, Gz, the adjoint of ls (+ BADMM-Q: of s = exp(ls)); the row constant R - leta
      ** of Yt - ls is dropped from the rho dot (added back below: rows of G_Yt sum to dR). ls is ls'_{k-1}:
      ** iteration k - 1's steps 5 and 8 (on s'_{k-1}) follow at once, giving the total adjoint of ls'_{k-1} and its
      ** column sums */
      if (k) {
        const real *lsi = ls + i * d, *epi = Ep + i * d;
        if (quad)
          RL_ROW_LOOP(d, {
            real gyt = grow[j] - trow[j] * sc, sv2 = epi[j] * scalep[j];
            real gzv = zrow[j] - gyt * ir;
            real gv = gyt - a1ir * gyt * sv2 - rp * (gzv + g1[j]) * sv2;
            gx[j] += gyt * ir;
            gz[j] = gzv;
            gl[j] = gv;
            colG[j] += gv;
            a_yt[ln] += gyt * (lti[j] - lsi[j]);
            a_s[ln] += gyt * sv2;
          });
        else
          RL_ROW_LOOP(d, {
            real gyt = grow[j] - trow[j] * sc;
            real gzv = zrow[j] - gyt * ir;
            real gv = gyt - rp * (gzv + g1[j]) * (epi[j] * scalep[j]);
            gx[j] += gyt * ir;
            gz[j] = gzv;
            gl[j] = gv;
            colG[j] += gv;
            a_yt[ln] += gyt * (lti[j] - lsi[j]);
          });
      } else {
        /* ls_0 = lq0 + lp0: its adjoint goes to the priors at once (BADMM-Q: with the s_0 = exp(ls_0) term) */
        real q = s->lq0[i], eq = rl_exp(q), a_l[RL_LANES], *glp0 = g->glp0;
        const real *lp0 = s->lp0;
        rl_lanes_fill(a_l, 0);
        if (quad)
          RL_ROW_LOOP(d, {
            real lsv = q + lp0[j];
            real gyt = grow[j] - trow[j] * sc, sv2 = eq * ep[j]; /* s_0 = exp(lq0 + lp0) */
            real glv = gyt - a1ir * gyt * sv2;
            gx[j] += gyt * ir;
            glp0[j] += glv;
            a_l[ln] += glv;
            a_yt[ln] += gyt * (lti[j] - lsv);
            a_s[ln] += gyt * sv2;
          });
        else
          RL_ROW_LOOP(d, {
            real lsv = q + lp0[j];
            real gyt = grow[j] - trow[j] * sc;
            gx[j] += gyt * ir;
            glp0[j] += gyt;
            a_l[ln] += gyt;
            a_yt[ln] += gyt * (lti[j] - lsv);
          });
        g->glq0[i] += rl_lanes_sum(a_l);
      }
      if ((i & 7) == 7 || i == n - 1) { /* fold the float lane sums of 8 rows into the double ones */
        rl_lanes_fold(Dz, a_z, 1);
        rl_lanes_fold(Dy, a_y, 1);
        rl_lanes_fold(Dzt, a_zt, 1);
        rl_lanes_fold(Dyt, a_yt, 1);
        if (quad) rl_lanes_fold(Ds, a_s, 1);
        rl_lanes_fill(a_z, 0);
        rl_lanes_fill(a_y, 0);
        rl_lanes_fill(a_zt, 0);
        rl_lanes_fill(a_yt, 0);
        rl_lanes_fill(a_s, 0);
      }
    }
    double dz = rl_lanes_dsum(Dz), dy = rl_lanes_dsum(Dy), dzt = rl_lanes_dsum(Dzt), dyt = rl_lanes_dsum(Dyt),
           ds = rl_lanes_dsum(Ds);
    if (!tail) {
      gr += dzt + drs;
      double kc = rotp_badmm_shift_dot(d, dC, C, lmu); /* Ys = ls' + C - lmu */
      ga1 -= c * (quad ? dz : dz + kc);
      gr += quad ? -c * (dy + kc) : c * (dy - kc);
      for (int64_t i = 0; i < n; i++) g2[i] -= cgeta[i];
    }
    gr -= ir * (dyt + rotp_badmm_shift_dot(n, dR, R, leta)); /* Yt - ls = lt - ls + R - leta */
    if (quad) ga1 -= ir * ds;
    double *gsr = g->gstep + k * RL_ROTP_NALPHA;
    gsr[ROTP_G_A1] += ga1;
    gsr[ROTP_G_A2] += ga2;
    gsr[ROTP_G_A3] += ga3;
    gsr[ROTP_G_RHO] += gr;
  }
  for (int64_t j = 0; j < d; j++) g->glp0[j] += gmu[j];
  for (int64_t i = 0; i < n; i++) g->glq0[i] += geta[i];
}
