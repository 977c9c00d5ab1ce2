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

/* Kernels hold one row of a block (RL_SOFTPERM_BLOCK reals) as NVEC vectors (GCC vector extension), so running sums
** stay in registers; in the baseline x86-64 build a 32-byte vector is two SSE registers, in the AVX2 clone one. */
typedef real rl_vec __attribute__((vector_size(32)));
#define NVEC 4 /* NVEC * 32 bytes = RL_SOFTPERM_BLOCK reals */
#define LANES ((int)(32 / sizeof(real)))

/* vload/vstore are static inline: no vector crosses a real call boundary, so GCC's note about the AVX ABI of
** 32-byte vector arguments does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"
static inline rl_vec vload(const real *p) {
  rl_vec v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void vstore(real *p, rl_vec v) { memcpy(p, &v, sizeof v); }

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

/* float keys: one 64-bit item per value, (order key << 32) | index, sorted on its 4 upper bytes. */
static void argsort_float(const real *v, int64_t stride, int64_t n, int32_t *order, uint64_t *a, uint64_t *tmp) {
  uint32_t hist[4][256];
  memset(hist, 0, sizeof hist);
  for (int64_t i = 0; i < n; i++) {
    float f = (float)v[i * stride];
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u = (u >> 31) ? ~u : (u | 0x80000000u);
    a[i] = ((uint64_t)u << 32) | (uint64_t)i;
    hist[0][(u >> 0) & 0xff]++;
    hist[1][(u >> 8) & 0xff]++;
    hist[2][(u >> 16) & 0xff]++;
    hist[3][(u >> 24) & 0xff]++;
  }
  uint64_t *src = a, *dst = tmp;
  for (int d = 0; d < 4; d++) {
    int shift = 32 + 8 * d;
    uint32_t *h = hist[d];
    if (h[(src[0] >> shift) & 0xff] == (uint32_t)n) continue; /* this byte is the same everywhere */
    uint32_t sum = 0;
    for (int b = 0; b < 256; b++) {
      uint32_t c = h[b];
      h[b] = sum;
      sum += c;
    }
    for (int64_t i = 0; i < n; i++) dst[h[(src[i] >> shift) & 0xff]++] = src[i];
    uint64_t *t = src;
    src = dst;
    dst = t;
  }
  for (int64_t i = 0; i < n; i++) order[i] = (int32_t)(uint32_t)src[i];
}

/* double keys: 64-bit order keys and a separate index array, 8 byte passes (constant bytes skipped). */
static void argsort_double(const real *v, int64_t stride, int64_t n, int32_t *order, uint64_t *key, uint64_t *key2,
                           int32_t *idx2) {
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
    if (h[(ks[0] >> (8 * d)) & 0xff] == (uint32_t)n) continue;
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
  uint64_t *a = (uint64_t *)mem, *b = (uint64_t *)(mem + align_up((size_t)n * sizeof(uint64_t)));
  if (sizeof(real) == sizeof(float))
    argsort_float(v, stride, n, order, a, b);
  else
    argsort_double(v, stride, n, order, a, b, (int32_t *)(mem + 2 * align_up((size_t)n * sizeof(uint64_t))));
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
  (void)c; /* blocks are always RL_SOFTPERM_BLOCK wide (narrow ones are padded) */
  size_t N = (size_t)(n > 0 ? n : 1), C = (size_t)RL_SOFTPERM_BLOCK;
  return 3 * align_up(N * sizeof(int32_t)) + 11 * align_up(N * sizeof(double)) + 10 * align_up(N * sizeof(real)) +
         8 * align_up(N * C * sizeof(real)) + 3 * align_up(N * LANES * sizeof(real)) + rl_argsort_bytes((int64_t)N);
}

void rl_softperm_init(rl_softperm *sp, int method, double temperature, int descending, int64_t n, int64_t c,
                      void *mem) {
  (void)c;
  size_t N = (size_t)(n > 0 ? n : 1), C = (size_t)RL_SOFTPERM_BLOCK;
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
  CARVE(sa, double, N);
  CARVE(sb, double, N);
  CARVE(grt, double, N);
  CARVE(sw, double, N);
  CARVE(slo, double, N);
  CARVE(shi, double, N);
  CARVE(fgap, real, N);
  CARVE(flo, real, N);
  CARVE(fhi, real, N);
  CARVE(flos, real, N);
  CARVE(fhis, real, N);
  CARVE(fbgap, real, N);
  CARVE(fblo, real, N);
  CARVE(fbhi, real, N);
  CARVE(rowfac, real, N);
  CARVE(midcoef, real, N);
  CARVE(lo, real, N * C);
  CARVE(lo2, real, N * C);
  CARVE(xpad, real, N * C);
  CARVE(gpad, real, N * C);
  CARVE(pxpad, real, N * C);
  CARVE(ypad, real, N * C);
  CARVE(gxpad, real, N * C);
  CARVE(tpad, real, N * C);
  CARVE(vsa, real, N * LANES);
  CARVE(vsb, real, N * LANES);
  CARVE(vgrt, real, N * LANES);
#undef CARVE
  sp->sort_scratch = p;
  sp->method = method;
  sp->temperature = temperature;
  sp->descending = descending;
  sp->cap_n = (int64_t)N;
  sp->n = 0;
}

/* ------------------------------------------------------------------------------------------------ sweeps */

/* For points t[0..np) ascending and queries b[0..nq) ascending with cnt[q] = number of points <= b[q]
** (non-decreasing), a sweep computes
**   Lo[q] = sum_{p < cnt[q]} e^{-(b[q] - t[p])} W(p),  Hi[q] = sum_{p >= cnt[q]} e^{-(t[p] - b[q])} W(p)
** from precomputed factors gap[p] = e^{t[p-1] - t[p]} (gap[0] = 0), flo[q] = e^{t[cnt[q]-1] - b[q]} and
** fhi[q] = e^{b[q] - t[cnt[q]]} (0 where that point does not exist); row p of W is W + (map ? map[p] : p) * ldw. */


RL_KERNEL /* The scalar versions (double weights): one column, used for the normalisers and the scalar parts of gradients. */
static void ssweep_merged(const double *t, int64_t np, const double *W, const double *b, const int32_t *cnt,
                          int64_t nq, double *Lo, double *Hi) {
  int64_t p = 0;
  double acc = 0;
  for (int64_t q = 0; q < nq; q++) {
    for (; p < cnt[q]; p++) acc = p == 0 ? W[0] : acc * exp(t[p - 1] - t[p]) + W[p];
    Lo[q] = cnt[q] == 0 ? 0.0 : acc * exp(t[cnt[q] - 1] - b[q]);
  }
  p = np - 1;
  acc = 0;
  for (int64_t q = nq - 1; q >= 0; q--) {
    for (; p >= cnt[q]; p--) acc = p == np - 1 ? W[p] : acc * exp(t[p] - t[p + 1]) + W[p];
    Hi[q] = cnt[q] == np ? 0.0 : acc * exp(b[q] - t[cnt[q]]);
  }
}

static void ssweep_self(const double *t, int64_t n, const double *W, double *Lo, double *Hi) {
  Lo[0] = 0;
  for (int64_t p = 1; p < n; p++) Lo[p] = (Lo[p - 1] + W[p - 1]) * exp(t[p - 1] - t[p]);
  Hi[n - 1] = 0;
  for (int64_t p = n - 2; p >= 0; p--) Hi[p] = (Hi[p + 1] + W[p + 1]) * exp(t[p] - t[p + 1]);
}

static void lapsum_thresholds(rl_softperm *sp, const double *dgap) {
  int64_t n = sp->n;
  const double *t = sp->t, *lo1 = sp->lo1, *hi1 = sp->hi1;
  int64_t j = 0;
  for (int64_t k = n - 1; k >= 1; k--) {
    /* f(t_p) = sum_i F(t_i - t_p) decreases with p; j = #{p : f(t_p) >= k} */
    while (j < n && 0.5 * lo1[j] + (double)(n - 1 - j) - 0.5 * (hi1[j] - 1.0) >= (double)k) j++;
    double A = j >= 1 ? lo1[j - 1] : 0.0, Bu = j <= n - 1 ? hi1[j] : 0.0;
    double g = (j >= 1 && j <= n - 1) ? t[j] - t[j - 1] : 0.0;
    double ab = (j >= 1 && j <= n - 1) ? A * Bu * dgap[j] : 0.0; /* dgap[j] = e^{-g} */
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
    /* sweep factors of the keys at this threshold, and phi_k = sum_i f(t_i - beta), all also scaled by e^{dist},
    ** dist = distance from beta to the nearest key: in a wide gap every f underflows, but the ratios the backward
    ** needs (c_k / phi_k) stay finite in the scaled form */
    double dlo = j >= 1 ? beta - t[j - 1] : INFINITY, dhi = j <= n - 1 ? t[j] - beta : INFINITY;
    double dist = fmin(dlo, dhi);
    sp->flo[q] = (real)(j >= 1 ? exp(-dlo) : 0.0);
    sp->fhi[q] = (real)(j <= n - 1 ? exp(-dhi) : 0.0);
    double slo = j >= 1 ? exp(dist - dlo) : 0.0, shi = j <= n - 1 ? exp(dist - dhi) : 0.0;
    sp->flos[q] = (real)slo;
    sp->fhis[q] = (real)shi;
    sp->phi[q] = 0.5 * (A * slo + Bu * shi); /* phi_k e^{dist} */
  }
  /* cntq[p] = number of thresholds q with cnt[q] <= p (thresholds at or below key p) */
  int64_t q = 0;
  for (int64_t p = 0; p < n; p++) {
    while (q < n - 1 && sp->cnt[q] <= p) q++;
    sp->cntq[p] = (int32_t)q;
  }
}

/* Factors of the threshold sweeps and of the rows of P X. Row j of P X is
**   fac_j (Lo(beta_{j+1}) + Hi(beta_j)) + sum over the keys p between the two thresholds of mid_p x_p,
** fac_j = (1 - e^{-(beta_j - beta_{j+1})}) / 2 and mid_p = 1 - e^{beta_{j+1} - t_p} / 2 - e^{t_p - beta_j} / 2
** (beta_0 = +inf, beta_n = -inf): the two exponentials of mid_p are the factors of key p in the threshold sweep. */
static void lapsum_factors(rl_softperm *sp) {
  int64_t n = sp->n, nb = n - 1;
  const double *t = sp->t, *b = sp->b;
  sp->fbgap[0] = 0;
  sp->rowfac[n - 1] = (real)0.5; /* row n-1 has no lower threshold */
  sp->rowfac[0] = (real)0.5;     /* row 0 has no upper threshold */
  for (int64_t q = 1; q < nb; q++) {
    double em = expm1(b[q - 1] - b[q]);
    sp->fbgap[q] = (real)(1.0 + em);
    sp->rowfac[n - 1 - q] = (real)(-0.5 * em); /* row with thresholds b[q-1] (below) and b[q] (above) */
  }
  for (int64_t p = 0; p < n; p++) {
    int64_t c = sp->cntq[p];
    double elo = c >= 1 ? exp(b[c - 1] - t[p]) : 0.0, ehi = c <= nb - 1 ? exp(t[p] - b[c]) : 0.0;
    sp->fblo[p] = (real)elo;
    sp->fbhi[p] = (real)ehi;
    sp->midcoef[p] = (real)(1.0 - 0.5 * elo - 0.5 * ehi);
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
  double *dgap = sp->slo; /* scratch until a backward needs it: dgap[p] = e^{t[p-1] - t[p]} */
  dgap[0] = 0;
  for (int64_t p = 1; p < n; p++) dgap[p] = exp(t[p - 1] - t[p]);
  for (int64_t p = 0; p < n; p++) sp->fgap[p] = (real)dgap[p];
  sp->lo1[0] = 1.0;
  for (int64_t p = 1; p < n; p++) sp->lo1[p] = 1.0 + dgap[p] * sp->lo1[p - 1];
  sp->hi1[n - 1] = 1.0;
  for (int64_t p = n - 2; p >= 0; p--) sp->hi1[p] = 1.0 + dgap[p + 1] * sp->hi1[p + 1];
  if (sp->method == RL_SOFT_LAPSUM) {
    lapsum_thresholds(sp, dgap);
    lapsum_factors(sp);
  } else {
    for (int64_t p = 0; p < n; p++) sp->phi[p] = sp->lo1[p] + sp->hi1[p] - 1.0;
  }
}

/* ------------------------------------------------------------------------------------------------ block kernels */

/* The kernels work on exactly RL_SOFTPERM_BLOCK columns held as NVEC vectors (narrower blocks are zero-padded by
** rl_softperm_block). Each does at most four passes over the keys:
**   1 (ascending)  one-sided sums from below, stored (lo);
**   2 (descending) sums from above kept in registers, combined at once into the rows of P X, which go straight to
**                  their consumers (PX, Y, the dot with G) together with the backward's per-row scalars;
**   3, 4 (backward only) the same two passes over the upstream gradient G. */

static inline real vsum(rl_vec v) {
  real s = 0;
  for (int k = 0; k < LANES; k++) s += v[k];
  return s;
}

typedef struct block_io {
  const real *X, *G;
  int64_t ldx, ldg;
  real *PX, *Y, *gX, *T;
  int64_t ldp, ldy, ldgx, ldt;
  real yscale, scale;
  double *dot, *tdot;
  int fwd, scalars, bwd;
} block_io;

#define VLOOP _Pragma("GCC unroll 4") for (int v = 0; v < NVEC; v++)
#define AT(ptr, v) ((ptr) + (v) * LANES)

/* Row outputs of the forward passes: PX, Y += yscale row, dot += <row, G_row>. */
static inline void emit_row(const block_io *io, int64_t row, const rl_vec *o) {
  if (io->PX) {
    real *d = io->PX + row * io->ldp;
    VLOOP vstore(AT(d, v), o[v]);
  }
  if (io->Y) {
    real *d = io->Y + row * io->ldy;
    VLOOP vstore(AT(d, v), vload(AT(d, v)) + io->yscale * o[v]);
  }
  if (io->dot) {
    const real *g = io->G + row * io->ldg;
    rl_vec acc = {0};
    VLOOP acc += o[v] * vload(AT(g, v));
    *io->dot += (double)vsum(acc);
  }
}

/* Outputs of the backward passes for key p (row i of X): the key-gradient part <x_p, kx> (grt), P^T G row pt:
** grad_X += scale pt, T = pt, tdot += <x_p, pt>. */
static inline void emit_back(rl_softperm *sp, const block_io *io, int64_t p, const rl_vec *kx, const rl_vec *pt,
                             rl_vec *tdot) {
  int64_t i = sp->order[p];
  const real *x = io->X + i * io->ldx;
  real *g = sp->vgrt + p * LANES;
  rl_vec acc = vload(g);
  VLOOP {
    rl_vec xv = vload(AT(x, v));
    acc += xv * kx[v];
    *tdot += xv * pt[v];
  }
  vstore(g, acc);
  if (io->gX) {
    real *gx = io->gX + i * io->ldgx, sc = io->scale;
    VLOOP vstore(AT(gx, v), vload(AT(gx, v)) + sc * pt[v]);
  }
  if (io->T) {
    real *d = io->T + i * io->ldt;
    VLOOP vstore(AT(d, v), pt[v]);
  }
}

RL_KERNEL static void lapsum_kernel(rl_softperm *sp, const block_io *io) {
  const int64_t n = sp->n, B = RL_SOFTPERM_BLOCK, ldx = io->ldx, ldg = io->ldg;
  const real *X = io->X, *G = io->G;
  const int32_t *order = sp->order, *cnt = sp->cnt, *cntq = sp->cntq;
  rl_vec a[NVEC];
  if (io->fwd) {
    /* pass 1: lo_q = sum over keys p < cnt[q] of e^{-(b_q - t_p)} x_p, kept as e^{b_q - t_{cnt[q]-1}} lo_q */
    VLOOP a[v] = (rl_vec){0};
    int64_t p = 0;
    for (int64_t q = 0; q < n - 1; q++) {
      for (; p < cnt[q]; p++) {
        const real *x = X + (int64_t)order[p] * ldx;
        real f = sp->fgap[p];
        VLOOP a[v] = a[v] * f + vload(AT(x, v));
      }
      real *d = sp->lo + q * B; /* the running sum at the last key below b_q: lo_q = flo[q] * this */
      VLOOP vstore(AT(d, v), a[v]);
    }
    /* pass 2: thresholds from the top (q = n-1 stands for beta_0 = +inf); row jr = n-1-q of P X is
    ** rowfac (lo[q-1] + hi[q]) + sum of midcoef_p x_p over the keys between thresholds q-1 and q */
    VLOOP a[v] = (rl_vec){0};
    p = n - 1;
    for (int64_t q = n - 1; q >= 0; q--) {
      int64_t jr = n - 1 - q;
      rl_vec hv[NVEC], o[NVEC], ah[NVEC];
      real fh = q <= n - 2 ? sp->fhi[q] : 0;
      VLOOP {
        ah[v] = a[v]; /* the running sum at the first key above b_q (for the scaled c_k) */
        hv[v] = a[v] * fh;
        o[v] = (rl_vec){0};
      }
      int64_t lo_end = q >= 1 ? cnt[q - 1] : 0;
      for (; p >= lo_end; p--) {
        const real *x = X + (int64_t)order[p] * ldx;
        real f = p == n - 1 ? 0 : sp->fgap[p + 1], mc = sp->midcoef[p];
        VLOOP {
          rl_vec xv = vload(AT(x, v));
          o[v] += mc * xv;
          a[v] = a[v] * f + xv;
        }
      }
      real rf = sp->rowfac[jr];
      if (q >= 1) {
        const real *L = sp->lo + (q - 1) * B;
        real fl = sp->flo[q - 1];
        VLOOP o[v] += rf * (fl * vload(AT(L, v)) + hv[v]);
      } else {
        VLOOP o[v] += rf * hv[v];
      }
      emit_row(io, jr, o);
      if (io->scalars && q <= n - 2) { /* c_k (x2, scaled by e^{dist_q}) = <G_{k-1} - G_k, lo_q + hi_q>, k = jr */
        const real *L = sp->lo + q * B, *g0 = G + (jr - 1) * ldg, *g1 = G + jr * ldg;
        real *acc = sp->vsa + q * LANES, sl = sp->flos[q], sh = sp->fhis[q];
        rl_vec ck = vload(acc);
        VLOOP ck += (vload(AT(g0, v)) - vload(AT(g1, v))) * (sl * vload(AT(L, v)) + sh * ah[v]);
        vstore(acc, ck);
      }
    }
  }
  if (!io->bwd) return;
  /* pass 3: thresholds as points with weights H_q = G_{jr-1} - G_jr (jr = n-1-q), keys as queries:
  ** lo2[p] = sum over thresholds below key p */
  VLOOP a[v] = (rl_vec){0};
  int64_t q = 0;
  for (int64_t p = 0; p < n; p++) {
    for (; q < cntq[p]; q++) {
      int64_t jr = n - 1 - q;
      const real *g0 = G + (jr - 1) * ldg, *g1 = G + jr * ldg;
      real f = sp->fbgap[q];
      VLOOP a[v] = a[v] * f + (vload(AT(g0, v)) - vload(AT(g1, v)));
    }
    real *d = sp->lo2 + p * B, f = sp->fblo[p];
    VLOOP vstore(AT(d, v), a[v] * f);
  }
  /* pass 4: sums from above; key-gradient part <x_p, lo2 + hi2> and P^T G = G_{K-1} + (hi2 - lo2) / 2 */
  VLOOP a[v] = (rl_vec){0};
  rl_vec tdot = {0};
  q = n - 2;
  real half = (real)0.5;
  for (int64_t p = n - 1; p >= 0; p--) {
    for (; q >= cntq[p]; q--) {
      int64_t jr = n - 1 - q;
      const real *g0 = G + (jr - 1) * ldg, *g1 = G + jr * ldg;
      real f = q == n - 2 ? 0 : sp->fbgap[q + 1];
      VLOOP a[v] = a[v] * f + (vload(AT(g0, v)) - vload(AT(g1, v)));
    }
    const real *L2 = sp->lo2 + p * B, *gk = G + (n - 1 - (int64_t)cntq[p]) * ldg;
    real fh = sp->fbhi[p];
    rl_vec kx[NVEC], pt[NVEC];
    VLOOP {
      rl_vec h2 = a[v] * fh, l2 = vload(AT(L2, v));
      kx[v] = l2 + h2;
      pt[v] = vload(AT(gk, v)) + half * (h2 - l2);
    }
    emit_back(sp, io, p, kx, pt, &tdot);
  }
  if (io->tdot) *io->tdot += (double)vsum(tdot);
}

RL_KERNEL static void softsort_kernel(rl_softperm *sp, const block_io *io) {
  const int64_t n = sp->n, B = RL_SOFTPERM_BLOCK, ldx = io->ldx, ldg = io->ldg;
  const real *X = io->X, *G = io->G;
  const int32_t *order = sp->order;
  rl_vec a[NVEC];
  if (io->fwd) {
    /* pass 1: lo[p] = sum over keys p' < p of e^{-(t_p - t_p')} x_p' */
    VLOOP a[v] = (rl_vec){0};
    VLOOP vstore(AT(sp->lo, v), a[v]);
    for (int64_t p = 1; p < n; p++) {
      const real *x = X + (int64_t)order[p - 1] * ldx;
      real *d = sp->lo + p * B, f = sp->fgap[p];
      VLOOP vstore(AT(d, v), a[v] = (a[v] + vload(AT(x, v))) * f);
    }
    /* pass 2: rows (x_p + lo_p + hi_p) / Z_p with hi in registers; backward scalars a_p Z_p, s_p */
    VLOOP a[v] = (rl_vec){0};
    for (int64_t p = n - 1; p >= 0; p--) {
      const real *x = X + (int64_t)order[p] * ldx, *L = sp->lo + p * B;
      real invz = (real)(1.0 / sp->phi[p]);
      rl_vec o[NVEC], xs[NVEC];
      VLOOP {
        xs[v] = vload(AT(x, v));
        o[v] = (xs[v] + vload(AT(L, v)) + a[v]) * invz;
      }
      emit_row(io, p, o);
      if (io->scalars) {
        const real *g = G + p * ldg;
        real *pa = sp->vsa + p * LANES, *pb = sp->vsb + p * LANES;
        rl_vec ra = vload(pa), rs = vload(pb);
        VLOOP {
          rl_vec gv = vload(AT(g, v)), l = vload(AT(L, v));
          ra += gv * (xs[v] + l + a[v]);
          rs += gv * (l - a[v]);
        }
        vstore(pa, ra);
        vstore(pb, rs);
      }
      real f = p >= 1 ? sp->fgap[p] : 0;
      VLOOP a[v] = (a[v] + xs[v]) * f;
    }
  }
  if (!io->bwd) return;
  /* passes 3, 4: the strict sums of W_p = G_p / Z_p; key-gradient part <x_p, hi2 - lo2>, P^T G = W + lo2 + hi2 */
  VLOOP a[v] = (rl_vec){0};
  VLOOP vstore(AT(sp->lo2, v), a[v]);
  for (int64_t p = 1; p < n; p++) {
    const real *g = G + (p - 1) * ldg;
    real *d = sp->lo2 + p * B, f = sp->fgap[p], iz = (real)(1.0 / sp->phi[p - 1]);
    VLOOP vstore(AT(d, v), a[v] = (a[v] + iz * vload(AT(g, v))) * f);
  }
  VLOOP a[v] = (rl_vec){0};
  rl_vec tdot = {0};
  for (int64_t p = n - 1; p >= 0; p--) {
    const real *L2 = sp->lo2 + p * B, *g = G + p * ldg;
    real iz = (real)(1.0 / sp->phi[p]);
    rl_vec w[NVEC], kx[NVEC], pt[NVEC];
    VLOOP {
      rl_vec l2 = vload(AT(L2, v));
      w[v] = iz * vload(AT(g, v));
      kx[v] = a[v] - l2;
      pt[v] = w[v] + l2 + a[v];
    }
    emit_back(sp, io, p, kx, pt, &tdot);
    real f = p >= 1 ? sp->fgap[p] : 0;
    VLOOP a[v] = (a[v] + w[v]) * f;
  }
  if (io->tdot) *io->tdot += (double)vsum(tdot);
}

/* Copies columns [0, cb) of n rows (stride lda) into the zero-padded n x RL_SOFTPERM_BLOCK pad. */
static void pad_in(int64_t n, int64_t cb, const real *A, int64_t lda, real *pad) {
  for (int64_t i = 0; i < n; i++) {
    real *d = pad + i * RL_SOFTPERM_BLOCK;
    memcpy(d, A + i * lda, (size_t)cb * sizeof(real));
    memset(d + cb, 0, (size_t)(RL_SOFTPERM_BLOCK - cb) * sizeof(real));
  }
}

static void pad_add(int64_t n, int64_t cb, const real *pad, real *A, int64_t lda) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t k = 0; k < cb; k++) A[i * lda + k] += pad[i * RL_SOFTPERM_BLOCK + k];
}

static void pad_copy(int64_t n, int64_t cb, const real *pad, real *A, int64_t lda) {
  for (int64_t i = 0; i < n; i++) memcpy(A + i * lda, pad + i * RL_SOFTPERM_BLOCK, (size_t)cb * sizeof(real));
}

void rl_softperm_block(rl_softperm *sp, int64_t cb, const rl_softperm_io *in) {
  int64_t n = sp->n, B = RL_SOFTPERM_BLOCK;
  block_io io = {in->X, in->G, in->ldx, in->ldg, in->PX, in->Y, in->grad_X, in->PtG, in->ldp, in->ldy, in->ldgx,
                 in->ldt, in->yscale, in->scale, in->dot, in->tdot, 0, in->scalars, in->backward};
  if (!io.G) io.dot = NULL, io.scalars = 0, io.bwd = 0;
  if (!io.bwd) io.gX = NULL, io.T = NULL, io.tdot = NULL;
  io.fwd = io.PX || io.Y || io.dot || io.scalars;
  if (cb < B) { /* narrow block: zero-padded copies in, padded outputs copied or added back */
    pad_in(n, cb, io.X, io.ldx, sp->xpad);
    io.X = sp->xpad;
    io.ldx = B;
    if (io.G) {
      pad_in(n, cb, io.G, io.ldg, sp->gpad);
      io.G = sp->gpad;
      io.ldg = B;
    }
    if (io.PX) io.PX = sp->pxpad, io.ldp = B;
    if (io.Y) memset(sp->ypad, 0, (size_t)(n * B) * sizeof(real)), io.Y = sp->ypad, io.ldy = B;
    if (io.gX) memset(sp->gxpad, 0, (size_t)(n * B) * sizeof(real)), io.gX = sp->gxpad, io.ldgx = B;
    if (io.T) io.T = sp->tpad, io.ldt = B;
  }
  if (sp->method == RL_SOFT_LAPSUM)
    lapsum_kernel(sp, &io);
  else
    softsort_kernel(sp, &io);
  if (cb < B) {
    if (io.PX) pad_copy(n, cb, sp->pxpad, in->PX, in->ldp);
    if (io.Y) pad_add(n, cb, sp->ypad, in->Y, in->ldy);
    if (io.gX) pad_add(n, cb, sp->gxpad, in->grad_X, in->ldgx);
    if (io.T) pad_copy(n, cb, sp->tpad, in->PtG, in->ldt);
  }
}

/* ------------------------------------------------------------------------------------------------ whole matrices */

void rl_softperm_apply(rl_softperm *sp, int64_t c, const real *X, int64_t ldx, real *PX, int64_t ldp) {
  for (int64_t c0 = 0; c0 < c; c0 += RL_SOFTPERM_BLOCK) {
    int64_t cb = c - c0 < RL_SOFTPERM_BLOCK ? c - c0 : RL_SOFTPERM_BLOCK;
    rl_softperm_io io = {0};
    io.X = X + c0;
    io.ldx = ldx;
    io.PX = PX + c0;
    io.ldp = ldp;
    rl_softperm_block(sp, cb, &io);
  }
}

void rl_softperm_backward_begin(rl_softperm *sp) {
  size_t bytes = (size_t)(sp->n * LANES) * sizeof(real);
  memset(sp->vsa, 0, bytes);
  memset(sp->vsb, 0, bytes);
  memset(sp->vgrt, 0, bytes);
}

/* The per-key (per-threshold) partial sums of the blocks, accumulated lane-wise, to doubles. */
static void reduce_lanes(int64_t n, const real *v, double *out) {
  for (int64_t p = 0; p < n; p++) {
    double s = 0;
    for (int k = 0; k < LANES; k++) s += (double)v[p * LANES + k];
    out[p] = s;
  }
}

void rl_softperm_backward_end(rl_softperm *sp, real scale, real *grad_r, int64_t gstride) {
  if (!grad_r) return;
  int64_t n = sp->n;
  reduce_lanes(n, sp->vsa, sp->sa);
  reduce_lanes(n, sp->vsb, sp->sb);
  reduce_lanes(n, sp->vgrt, sp->grt);
  double rs = (double)scale * (sp->descending ? -1.0 : 1.0) / sp->temperature;
  if (sp->method == RL_SOFT_LAPSUM) {
    if (n == 1) return;
    /* d/ds_p = <x_p, sum_k f_{k,p} H_k> - sum_k f_{k,p} c_k / phi_k (c_k doubled; c_k and phi_k both scaled) */
    for (int64_t q = 0; q < n - 1; q++) sp->sw[q] = 0.5 * sp->sa[q] / sp->phi[q];
    ssweep_merged(sp->b, n - 1, sp->sw, sp->t, sp->cntq, n, sp->slo, sp->shi);
    for (int64_t p = 0; p < n; p++)
      grad_r[(int64_t)sp->order[p] * gstride] += (real)(rs * 0.5 * (sp->grt[p] - sp->slo[p] - sp->shi[p]));
    return;
  }
  /* d/ds_i = sum_k sgn(s_hat_k - s_i) K_ki (g_ki - a_k) / Z_k  (s_i as a column)
  **        - (1/Z_p) (s_p - a_p (lo_p - hi_p))                  (s_i as the sorted value s_hat_p) */
  for (int64_t p = 0; p < n; p++) sp->sw[p] = sp->sa[p] / (sp->phi[p] * sp->phi[p]);
  ssweep_self(sp->t, n, sp->sw, sp->slo, sp->shi);
  for (int64_t p = 0; p < n; p++) {
    double a = sp->sa[p] / sp->phi[p], ones = sp->lo1[p] - sp->hi1[p];
    double sorted = -(sp->sb[p] - a * ones) / sp->phi[p];
    double g = sp->grt[p] - (sp->shi[p] - sp->slo[p]) + sorted;
    grad_r[(int64_t)sp->order[p] * gstride] += (real)(rs * g);
  }
}

void rl_softperm_backward(rl_softperm *sp, int64_t c, const real *X, int64_t ldx, const real *G, int64_t ldg,
                          real scale, real *grad_r, int64_t gstride, real *grad_X, int64_t ldgx) {
  rl_softperm_backward_begin(sp);
  for (int64_t c0 = 0; c0 < c; c0 += RL_SOFTPERM_BLOCK) {
    int64_t cb = c - c0 < RL_SOFTPERM_BLOCK ? c - c0 : RL_SOFTPERM_BLOCK;
    rl_softperm_io io = {0};
    io.X = X + c0;
    io.ldx = ldx;
    io.G = G + c0;
    io.ldg = ldg;
    io.scalars = 1;
    io.backward = 1;
    io.scale = scale;
    io.grad_X = grad_X ? grad_X + c0 : NULL;
    io.ldgx = ldgx;
    rl_softperm_block(sp, cb, &io);
  }
  rl_softperm_backward_end(sp, scale, grad_r, gstride);
}
