/*
** softsort.c -- stable argsort (LSD radix on the IEEE bits) and the SoftSort / LapSum soft permutations applied
** to matrices by one-sided prefix sums (see softsort.h for the conventions).
**
** Both kernels are built from exp(-|a - b|): for a point set t (sorted) and queries q (sorted), the sums
**   Lo(q) = sum_{t_p <= q} e^{-(q - t_p)} W_p   and   Hi(q) = sum_{t_p > q} e^{-(t_p - q)} W_p
** are running sums rescaled by e^{-gap} between neighbours: all exponents are <= 0, so nothing overflows.
** Scalar quantities (keys, thresholds, normalisers) are kept in double; the c-wide sums in `real`.
*/
#include <math.h>
#include <string.h>

#include "softsort.h"

#define SOFTSORT_ALIGN 64
#define INSERTION_SORT_MAX 48 /* below this size insertion sort beats the radix passes */

static size_t align_up(size_t x) { return (x + SOFTSORT_ALIGN - 1) & ~(size_t)(SOFTSORT_ALIGN - 1); }

/* ------------------------------------------------------------------------------------------------ argsort */

size_t rl_argsort_bytes(int64_t n) {
  return 2 * align_up((size_t)n * sizeof(uint64_t)) + align_up((size_t)n * sizeof(int32_t));
}

/* Maps a double to an unsigned key with the same order (negative numbers flipped). */
static inline uint64_t order_key(double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof u);
  return (u >> 63) ? ~u : (u | 0x8000000000000000ULL);
}

void rl_argsort(const real *v, int64_t stride, int64_t n, int32_t *order, void *scratch) {
  if (n <= INSERTION_SORT_MAX) {
    for (int64_t i = 0; i < n; i++) {
      real x = v[i * stride];
      int64_t j = i;
      while (j > 0 && v[(int64_t)order[j - 1] * stride] > x) {
        order[j] = order[j - 1];
        j--;
      }
      order[j] = (int32_t)i;
    }
    return;
  }
  char *mem = scratch;
  uint64_t *key = (uint64_t *)mem;
  uint64_t *key2 = (uint64_t *)(mem + align_up((size_t)n * sizeof(uint64_t)));
  int32_t *idx2 = (int32_t *)(mem + 2 * align_up((size_t)n * sizeof(uint64_t)));
  uint32_t hist[8][256];
  memset(hist, 0, sizeof hist);
  for (int64_t i = 0; i < n; i++) {
    uint64_t k = order_key((double)v[i * stride]);
    key[i] = k;
    order[i] = (int32_t)i;
    for (int d = 0; d < 8; d++) hist[d][(k >> (8 * d)) & 0xff]++;
  }
  uint64_t *ks = key, *kd = key2;
  int32_t *is = order, *id = idx2;
  for (int d = 0; d < 8; d++) {
    uint32_t *h = hist[d];
    if (h[(ks[0] >> (8 * d)) & 0xff] == (uint32_t)n) continue; /* this byte is the same everywhere */
    uint32_t sum = 0;
    for (int b = 0; b < 256; b++) {
      uint32_t c = h[b];
      h[b] = sum;
      sum += c;
    }
    for (int64_t i = 0; i < n; i++) {
      uint32_t pos = h[(ks[i] >> (8 * d)) & 0xff]++;
      kd[pos] = ks[i];
      id[pos] = is[i];
    }
    uint64_t *tk = ks;
    ks = kd;
    kd = tk;
    int32_t *ti = is;
    is = id;
    id = ti;
  }
  if (is != order) memcpy(order, is, (size_t)n * sizeof(int32_t));
}

/* ------------------------------------------------------------------------------------------------ layout */

int rl_softperm_check(int method, double temperature) {
  if (method != RL_SOFT_SOFTSORT && method != RL_SOFT_LAPSUM)
    return rl_fail(RL_EINVAL, "soft permutation: unknown method %d", method);
  if (!(temperature > 0) || !isfinite(temperature))
    return rl_fail(RL_EINVAL, "soft permutation: temperature must be a positive finite number, got %g", temperature);
  return RL_OK;
}

size_t rl_softperm_bytes(int64_t n, int64_t c) {
  size_t N = (size_t)(n > 0 ? n : 1), C = (size_t)(c > 0 ? c : 1);
  return 3 * align_up(N * sizeof(int32_t)) + 5 * align_up(N * sizeof(double)) + 2 * align_up(N * C * sizeof(real)) +
         3 * align_up(N * (C + 1) * sizeof(real)) + align_up((C + 1) * sizeof(real)) + rl_argsort_bytes((int64_t)N);
}

void rl_softperm_init(rl_softperm *sp, int method, double temperature, int descending, int64_t n, int64_t c,
                      void *mem) {
  size_t N = (size_t)(n > 0 ? n : 1), C = (size_t)(c > 0 ? c : 1);
  char *p = mem;
#define CARVE(field, type, count)          \
  sp->field = (type *)p;                   \
  p += align_up((count) * sizeof(type))
  CARVE(order, int32_t, N);
  CARVE(cnt, int32_t, N);
  CARVE(cntq, int32_t, N);
  CARVE(t, double, N);
  CARVE(b, double, N);
  CARVE(phi, double, N);
  CARVE(lo1, double, N);
  CARVE(hi1, double, N);
  CARVE(lo, real, N * C);
  CARVE(hi, real, N * C);
  CARVE(lo2, real, N * (C + 1));
  CARVE(hi2, real, N * (C + 1));
  CARVE(w, real, N * (C + 1));
  CARVE(acc, real, C + 1);
#undef CARVE
  sp->sort_scratch = p;
  sp->method = method;
  sp->temperature = temperature;
  sp->descending = descending;
  sp->cap_n = (int64_t)N;
  sp->cap_c = (int64_t)C;
  sp->n = 0;
  sp->c = 0;
}

/* ------------------------------------------------------------------------------------------------ sweeps */

/* Lo[q] = sum_{p < cnt[q]} e^{-(b[q] - t[p])} W(p),  Hi[q] = sum_{p >= cnt[q]} e^{-(t[p] - b[q])} W(p), with
** points t[0..np) ascending (row p of W is W + (map ? map[p] : p) * ldw), queries b[0..nq) ascending and cnt
** non-decreasing. Lo and Hi rows have stride ldo; c columns. */
static void sweep_merged(const double *t, int64_t np, const real *W, int64_t ldw, const int32_t *map, int64_t c,
                         const double *b, const int32_t *cnt, int64_t nq, real *Lo, real *Hi, int64_t ldo,
                         real *acc) {
  int64_t p = 0;
  for (int64_t q = 0; q < nq; q++) {
    for (; p < cnt[q]; p++) {
      const real *wp = W + (map ? (int64_t)map[p] : p) * ldw;
      if (p == 0) {
        memcpy(acc, wp, (size_t)c * sizeof(real));
      } else {
        real f = (real)exp(t[p - 1] - t[p]);
        for (int64_t k = 0; k < c; k++) acc[k] = acc[k] * f + wp[k];
      }
    }
    real *out = Lo + q * ldo;
    if (cnt[q] == 0) {
      memset(out, 0, (size_t)c * sizeof(real));
    } else {
      real f = (real)exp(t[cnt[q] - 1] - b[q]);
      for (int64_t k = 0; k < c; k++) out[k] = acc[k] * f;
    }
  }
  p = np - 1;
  for (int64_t q = nq - 1; q >= 0; q--) {
    for (; p >= cnt[q]; p--) {
      const real *wp = W + (map ? (int64_t)map[p] : p) * ldw;
      if (p == np - 1) {
        memcpy(acc, wp, (size_t)c * sizeof(real));
      } else {
        real f = (real)exp(t[p] - t[p + 1]);
        for (int64_t k = 0; k < c; k++) acc[k] = acc[k] * f + wp[k];
      }
    }
    real *out = Hi + q * ldo;
    if (cnt[q] == np) {
      memset(out, 0, (size_t)c * sizeof(real));
    } else {
      real f = (real)exp(b[q] - t[cnt[q]]);
      for (int64_t k = 0; k < c; k++) out[k] = acc[k] * f;
    }
  }
}

/* Strict sums over one sorted point set: Lo[p] = sum_{p' < p} e^{-(t_p - t_p')} W(p'), Hi[p] likewise over
** p' > p. Rows of W as in sweep_merged. */
static void sweep_self(const double *t, int64_t n, const real *W, int64_t ldw, const int32_t *map, int64_t c,
                       real *Lo, real *Hi, int64_t ldo) {
  memset(Lo, 0, (size_t)c * sizeof(real));
  for (int64_t p = 1; p < n; p++) {
    const real *wp = W + (map ? (int64_t)map[p - 1] : p - 1) * ldw;
    const real *prev = Lo + (p - 1) * ldo;
    real *out = Lo + p * ldo;
    real f = (real)exp(t[p - 1] - t[p]);
    for (int64_t k = 0; k < c; k++) out[k] = (prev[k] + wp[k]) * f;
  }
  memset(Hi + (n - 1) * ldo, 0, (size_t)c * sizeof(real));
  for (int64_t p = n - 2; p >= 0; p--) {
    const real *wp = W + (map ? (int64_t)map[p + 1] : p + 1) * ldw;
    const real *next = Hi + (p + 1) * ldo;
    real *out = Hi + p * ldo;
    real f = (real)exp(t[p] - t[p + 1]);
    for (int64_t k = 0; k < c; k++) out[k] = (next[k] + wp[k]) * f;
  }
}

/* ------------------------------------------------------------------------------------------------ prepare */

/* LapSum thresholds: for k = 1..n-1 solve sum_i F(t_i - beta) = k in closed form on the bracketing interval
** [t_{j-1}, t_j] (j = number of keys <= beta), referenced at the nearer end so no exponential overflows. */
static void lapsum_thresholds(rl_softperm *sp) {
  int64_t n = sp->n;
  const double *t = sp->t, *lo1 = sp->lo1, *hi1 = sp->hi1;
  int64_t j = 0;
  for (int64_t k = n - 1; k >= 1; k--) {
    /* f(t_p) = sum_i F(t_i - t_p) decreases with p; j = #{p : f(t_p) >= k} */
    while (j < n && 0.5 * lo1[j] + (double)(n - 1 - j) - 0.5 * (hi1[j] - 1.0) >= (double)k) j++;
    double A = j >= 1 ? lo1[j - 1] : 0.0, Bu = j <= n - 1 ? hi1[j] : 0.0;
    double g = (j >= 1 && j <= n - 1) ? t[j] - t[j - 1] : 0.0;
    double ab = (j >= 1 && j <= n - 1) ? A * Bu * exp(-g) : 0.0;
    double D = (double)(n - j - k), beta;
    if (D < 0)
      beta = t[j - 1] + log(A) - log(sqrt(D * D + ab) - D);
    else if (D > 0)
      beta = t[j] - log(Bu) + log(D + sqrt(D * D + ab));
    else
      beta = t[j - 1] + 0.5 * (log(A) - log(Bu) + g);
    int64_t q = n - 1 - k;
    sp->b[q] = beta;
    sp->cnt[q] = (int32_t)j;
    double phi = 0;
    if (j >= 1) phi += A * exp(t[j - 1] - beta);
    if (j <= n - 1) phi += Bu * exp(beta - t[j]);
    sp->phi[q] = 0.5 * phi;
  }
  /* cntq[p] = number of thresholds q with cnt[q] <= p (thresholds at or below key p) */
  int64_t q = 0;
  for (int64_t p = 0; p < n; p++) {
    while (q < n - 1 && sp->cnt[q] <= p) q++;
    sp->cntq[p] = (int32_t)q;
  }
}

void rl_softperm_prepare(rl_softperm *sp, int64_t n, const real *r, int64_t stride, const int32_t *order_asc) {
  sp->n = n;
  if (order_asc)
    memcpy(sp->order, order_asc, (size_t)n * sizeof(int32_t));
  else
    rl_argsort(r, stride, n, sp->order, sp->sort_scratch);
  if (sp->descending) { /* keys -r: ascending order of the keys is the reversed order of r */
    for (int64_t i = 0, j = n - 1; i < j; i++, j--) {
      int32_t tmp = sp->order[i];
      sp->order[i] = sp->order[j];
      sp->order[j] = tmp;
    }
  }
  double sign = sp->descending ? -1.0 : 1.0, inv = sign / sp->temperature;
  for (int64_t p = 0; p < n; p++) sp->t[p] = inv * (double)r[(int64_t)sp->order[p] * stride];
  const double *t = sp->t;
  sp->lo1[0] = 1.0;
  for (int64_t p = 1; p < n; p++) sp->lo1[p] = 1.0 + exp(t[p - 1] - t[p]) * sp->lo1[p - 1];
  sp->hi1[n - 1] = 1.0;
  for (int64_t p = n - 2; p >= 0; p--) sp->hi1[p] = 1.0 + exp(t[p] - t[p + 1]) * sp->hi1[p + 1];
  if (sp->method == RL_SOFT_LAPSUM)
    lapsum_thresholds(sp);
  else
    for (int64_t p = 0; p < n; p++) sp->phi[p] = sp->lo1[p] + sp->hi1[p] - 1.0;
}

/* ------------------------------------------------------------------------------------------------ apply */

static void lapsum_apply(rl_softperm *sp, int64_t c, const real *X, int64_t ldx, real *PX, int64_t ldp) {
  int64_t n = sp->n;
  const double *t = sp->t, *b = sp->b;
  if (n > 1)
    sweep_merged(t, n, X, ldx, sp->order, c, b, sp->cnt, n - 1, sp->lo, sp->hi, c, sp->acc);
  for (int64_t jr = 0; jr < n; jr++) { /* row jr = p_{jr+1} - p_{jr}: thresholds beta_{jr+1} (below), beta_jr */
    int has_lo = jr <= n - 2, has_hi = jr >= 1;
    int64_t q_lo = n - 2 - jr, q_hi = n - 1 - jr;
    real *out = PX + jr * ldp;
    double fac = 0.5;
    if (has_lo && has_hi) fac = -0.5 * expm1(b[q_lo] - b[q_hi]);
    const real *L = has_lo ? sp->lo + q_lo * c : NULL, *H = has_hi ? sp->hi + q_hi * c : NULL;
    real f = (real)fac;
    if (L && H)
      for (int64_t k = 0; k < c; k++) out[k] = f * (L[k] + H[k]);
    else if (L)
      for (int64_t k = 0; k < c; k++) out[k] = f * L[k];
    else if (H)
      for (int64_t k = 0; k < c; k++) out[k] = f * H[k];
    else
      memset(out, 0, (size_t)c * sizeof(real));
    int64_t p0 = has_lo ? sp->cnt[q_lo] : 0, p1 = has_hi ? sp->cnt[q_hi] : n;
    for (int64_t p = p0; p < p1; p++) { /* keys between the two thresholds */
      double coef = 1.0;
      if (has_lo) coef -= 0.5 * exp(b[q_lo] - t[p]);
      if (has_hi) coef -= 0.5 * exp(t[p] - b[q_hi]);
      const real *xp = X + (int64_t)sp->order[p] * ldx;
      real cf = (real)coef;
      for (int64_t k = 0; k < c; k++) out[k] += cf * xp[k];
    }
  }
}

static void softsort_apply(rl_softperm *sp, int64_t c, const real *X, int64_t ldx, real *PX, int64_t ldp) {
  int64_t n = sp->n;
  sweep_self(sp->t, n, X, ldx, sp->order, c, sp->lo, sp->hi, c);
  for (int64_t p = 0; p < n; p++) {
    const real *xp = X + (int64_t)sp->order[p] * ldx, *L = sp->lo + p * c, *H = sp->hi + p * c;
    real *out = PX + p * ldp, inv = (real)(1.0 / sp->phi[p]);
    for (int64_t k = 0; k < c; k++) out[k] = (xp[k] + L[k] + H[k]) * inv;
  }
}

void rl_softperm_apply(rl_softperm *sp, int64_t c, const real *X, int64_t ldx, real *PX, int64_t ldp) {
  sp->c = c;
  if (sp->method == RL_SOFT_LAPSUM)
    lapsum_apply(sp, c, X, ldx, PX, ldp);
  else
    softsort_apply(sp, c, X, ldx, PX, ldp);
}

/* ------------------------------------------------------------------------------------------------ backward */

static void lapsum_backward(rl_softperm *sp, const real *X, int64_t ldx, const real *G, int64_t ldg, real scale,
                            real *grad_r, int64_t gstride, real *grad_X, int64_t ldgx) {
  int64_t n = sp->n, c = sp->c, cw = c + 1;
  const double *t = sp->t;
  if (n == 1) {
    if (grad_X) {
      real *gx = grad_X + (int64_t)sp->order[0] * ldgx;
      for (int64_t k = 0; k < c; k++) gx[k] += scale * G[k];
    }
    return;
  }
  /* weights at threshold q (k = n-1-q): H_k = G_{k-1} - G_k and c_k / phi_k, c_k = <H_k, sum_i f_{k,i} x_i> */
  for (int64_t q = 0; q < n - 1; q++) {
    int64_t k = n - 1 - q;
    const real *g0 = G + (k - 1) * ldg, *g1 = G + k * ldg, *L = sp->lo + q * c, *H = sp->hi + q * c;
    real *wq = sp->w + q * cw;
    double ck = 0;
    for (int64_t m = 0; m < c; m++) {
      wq[m] = g0[m] - g1[m];
      ck += (double)wq[m] * 0.5 * ((double)L[m] + (double)H[m]);
    }
    wq[c] = (real)(ck / sp->phi[q]);
  }
  sweep_merged(sp->b, n - 1, sp->w, cw, NULL, cw, t, sp->cntq, n, sp->lo2, sp->hi2, cw, sp->acc);
  double rs = (double)scale * (sp->descending ? -1.0 : 1.0) / sp->temperature;
  for (int64_t p = 0; p < n; p++) {
    const real *L = sp->lo2 + p * cw, *H = sp->hi2 + p * cw;
    int64_t i = sp->order[p];
    if (grad_r) {
      const real *xp = X + i * ldx;
      double g = 0;
      for (int64_t m = 0; m < c; m++) g += (double)xp[m] * 0.5 * ((double)L[m] + (double)H[m]);
      g -= 0.5 * ((double)L[c] + (double)H[c]);
      grad_r[i * gstride] += (real)(rs * g);
    }
    if (grad_X) {
      const real *gk = G + (n - 1 - (int64_t)sp->cntq[p]) * ldg;
      real *gx = grad_X + i * ldgx, h = (real)0.5;
      for (int64_t m = 0; m < c; m++) gx[m] += scale * (gk[m] + h * (H[m] - L[m]));
    }
  }
}

static void softsort_backward(rl_softperm *sp, const real *X, int64_t ldx, const real *G, int64_t ldg, real scale,
                              real *grad_r, int64_t gstride, real *grad_X, int64_t ldgx) {
  int64_t n = sp->n, c = sp->c, cw = c + 1;
  double *sorted_term = sp->b; /* thresholds are LapSum-only: b holds the d/d s_hat_p term here */
  /* weights [G_p / Z_p, a_p / Z_p] with a_p = <G_p, (P X)_p>; the strict sums of the forward give (P X)_p */
  for (int64_t p = 0; p < n; p++) {
    const real *xp = X + (int64_t)sp->order[p] * ldx, *L = sp->lo + p * c, *H = sp->hi + p * c, *gp = G + p * ldg;
    double invz = 1.0 / sp->phi[p], a = 0, s = 0;
    real *wp = sp->w + p * cw;
    for (int64_t m = 0; m < c; m++) {
      a += (double)gp[m] * ((double)xp[m] + (double)L[m] + (double)H[m]);
      s += (double)gp[m] * ((double)L[m] - (double)H[m]);
      wp[m] = (real)((double)gp[m] * invz);
    }
    a *= invz;
    wp[c] = (real)(a * invz);
    /* key p as the sorted value s_hat_p: -(1/Z_p) (<G_p, Lo_p - Hi_p> - a_p (lo_p - hi_p)), strict ones-sums */
    double ones = (sp->lo1[p] - 1.0) - (sp->hi1[p] - 1.0);
    sorted_term[p] = -(s - a * ones) * invz;
  }
  sweep_self(sp->t, n, sp->w, cw, NULL, cw, sp->lo2, sp->hi2, cw);
  double rs = (double)scale * (sp->descending ? -1.0 : 1.0) / sp->temperature;
  for (int64_t p = 0; p < n; p++) {
    const real *L = sp->lo2 + p * cw, *H = sp->hi2 + p * cw;
    int64_t i = sp->order[p];
    if (grad_r) { /* key p as a column s_i: sum_k sgn(s_hat_k - s_i) K (g_ki - a_k) / Z_k */
      const real *xp = X + i * ldx;
      double g = 0;
      for (int64_t m = 0; m < c; m++) g += (double)xp[m] * ((double)H[m] - (double)L[m]);
      g -= (double)H[c] - (double)L[c];
      grad_r[i * gstride] += (real)(rs * (g + sorted_term[p]));
    }
    if (grad_X) {
      const real *gp = G + p * ldg;
      real *gx = grad_X + i * ldgx, invz = (real)(1.0 / sp->phi[p]);
      for (int64_t m = 0; m < c; m++) gx[m] += scale * (gp[m] * invz + L[m] + H[m]);
    }
  }
}

void rl_softperm_backward(rl_softperm *sp, const real *X, int64_t ldx, const real *G, int64_t ldg, real scale,
                          real *grad_r, int64_t gstride, real *grad_X, int64_t ldgx) {
  if (sp->method == RL_SOFT_LAPSUM)
    lapsum_backward(sp, X, ldx, G, ldg, scale, grad_r, gstride, grad_X, ldgx);
  else
    softsort_backward(sp, X, ldx, G, ldg, scale, grad_r, gstride, grad_X, ldgx);
}
