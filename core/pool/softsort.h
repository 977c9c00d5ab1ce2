/*
** softsort.h -- sorting helpers and soft permutation operators (SoftSort and LapSum) applied to matrices without
** forming the n x n matrix: both kernels are Laplace kernels, separable on each side of a point, so after one sort
** every product P X, P^T G and the gradient w.r.t. the sorted values are one-sided prefix sums (O(n c) for an
** n x c matrix instead of O(n^2 c)).
**
** Conventions (golden/README.md section 5 for LapSum):
**   LapSum:   s = r / T (s = -r / T if descending); thresholds beta_k solve sum_i F(s_i - beta_k) = k, F the Laplace
**             CDF; P[j, i] = F(s_i - beta_{j+1}) - F(s_i - beta_j). Doubly stochastic; row 0 concentrates on the
**             LARGEST r (rows in descending order of value; ascending when descending = 1).
**   SoftSort: s = r / T (or -r / T); P[k, i] = exp(-|sort(s)_k - s_i|) / Z_k. Row-stochastic; row 0 concentrates
**             on the SMALLEST r (rows in ascending order; descending when descending = 1).
** Usage: reserve rl_softperm_bytes(n, c) bytes, rl_softperm_init, then per problem rl_softperm_prepare (sorts,
** thresholds), rl_softperm_apply (P X; keeps the sums the backward needs) and optionally rl_softperm_backward for
** the gradients of <G, P X> w.r.t. r and X. Nothing allocates after init: the operator lives in caller memory.
*/
#ifndef RL_SOFTSORT_H
#define RL_SOFTSORT_H

#include "../rl.h"

enum { RL_SOFT_SOFTSORT = 0, RL_SOFT_LAPSUM = 1 };

/* Hot kernels get an AVX2 clone chosen at load time when the CPU has it (the build targets baseline x86-64, where a
** 32-byte vector is two SSE registers). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define RL_KERNEL __attribute__((target_clones("avx2", "default")))
#else
#define RL_KERNEL
#endif

/* Scratch bytes rl_argsort needs for n values. */
size_t rl_argsort_bytes(int64_t n);
/* Stable ascending argsort of v[0], v[stride], ..., v[(n-1) stride]: order[p] is the index of the p-th smallest.
** n < 2^31. Does not modify v. */
void rl_argsort(const real *v, int64_t stride, int64_t n, int32_t *order, void *scratch);

/* Columns per block: the sums of one block of columns stay in cache (operators process matrices block by block);
** the block kernels hold one row of a block in registers. */
#define RL_SOFTPERM_BLOCK ((int)(128 / sizeof(real))) /* 32 floats, 16 doubles */

typedef struct rl_softperm {
  int method;          /* RL_SOFT_SOFTSORT or RL_SOFT_LAPSUM */
  int descending;      /* 1: sort keys are -r / T */
  double temperature;  /* T > 0 (LapSum's alpha, SoftSort's tau) */
  int64_t cap_n;       /* the memory holds problems up to cap_n values (any number of columns) */
  int64_t n;           /* size of the prepared problem */
  int32_t *order;      /* order[p]: index (into r) of the p-th smallest key */
  int32_t *cnt;        /* LapSum: cnt[q] = number of keys <= threshold q */
  int32_t *cntq;       /* LapSum: cntq[p] = number of thresholds <= key p */
  double *t;           /* sorted keys, ascending */
  double *b;           /* LapSum thresholds, ascending (b[q] = beta_{n-1-q}) */
  double *phi;         /* LapSum: sum_i f(s_i - b_q) e^{dist_q} per threshold (dist_q: b_q to its nearest key);
                          SoftSort: row normaliser Z_p */
  double *lo1, *hi1;   /* inclusive one-sided sums of exp(-|t_p - t_i|) over i <= p and i >= p */
  double *sa, *sb, *grt, *sw, *slo, *shi; /* backward: scalar accumulators and scalar sweeps */
  real *fgap, *flo, *fhi;    /* exponential factors of the key sweeps (computed once in prepare) */
  real *flos, *fhis;         /* LapSum: flo, fhi scaled by e^{dist_q} */
  real *fbgap, *fblo, *fbhi; /* LapSum: factors of the threshold sweeps */
  real *rowfac, *midcoef;    /* LapSum: row factors of P X */
  real *lo, *lo2;            /* one-sided running sums of one block (cap_n x RL_SOFTPERM_BLOCK) */
  real *xpad, *gpad, *pxpad, *ypad, *gxpad, *tpad; /* zero-padded copies for blocks narrower than the block */
  real *vsa, *vsb, *vgrt; /* backward partial sums per key, kept lane-wise across blocks (n x vector width) */
  void *sort_scratch;
} rl_softperm;

/* Checks a method / temperature pair (RL_EINVAL with a message on a bad one). */
int rl_softperm_check(int method, double temperature);

/* Bytes of caller memory for an operator of up to n values, applied to matrices of any width (c is unused: the
** operator works on blocks of RL_SOFTPERM_BLOCK columns). */
size_t rl_softperm_bytes(int64_t n, int64_t c);
/* Lays the operator out in mem (rl_softperm_bytes(n, c) bytes, 8-byte aligned or better). */
void rl_softperm_init(rl_softperm *sp, int method, double temperature, int descending, int64_t n, int64_t c,
                      void *mem);

/* Sorts the n values r[0], r[stride], ... (n <= cap_n), computes the thresholds and every exponential factor.
** order_asc, if not NULL, is a precomputed stable ascending argsort of r (saves the sort). */
void rl_softperm_prepare(rl_softperm *sp, int64_t n, const real *r, int64_t stride, const int32_t *order_asc);

/* PX (n x c, rows in P's order) = P X, X n x c in r's order. */
void rl_softperm_apply(rl_softperm *sp, int64_t c, const real *X, int64_t ldx, real *PX, int64_t ldp);

/* Gradients of scale * <G, P X> (G n x c in P's row order): grad_r[i * gstride] += d/dr_i (may be NULL) and
** grad_X += scale * P^T G (may be NULL). */
void rl_softperm_backward(rl_softperm *sp, int64_t c, const real *X, int64_t ldx, const real *G, int64_t ldg,
                          real scale, real *grad_r, int64_t gstride, real *grad_X, int64_t ldgx);

/* One block of columns in one go (every pointer at the block's first column; all but X optional). Forward outputs
** (rows of P X, in P's order): PX = P X; Y += yscale P X; *dot += <P X, G>; scalars = 1 accumulates the row
** scalars of the key gradient of <G, P X>. Backward outputs (rows of P^T G, in r's order), computed when
** backward = 1: grad_X += scale P^T G; PtG = P^T G; *tdot += <X, P^T G> (= <P X, G>); the column part of the key
** gradient. The key gradient of <G, P X> needs scalars and backward over every block, between backward_begin and
** backward_end (they may come in separate calls for the same block). */
typedef struct rl_softperm_io {
  const real *X;  /* n x cb, rows in r's order */
  int64_t ldx;
  const real *G;  /* n x cb, rows in P's order: partner of the dots and the upstream gradient */
  int64_t ldg;
  real *PX;
  int64_t ldp;
  real *Y;
  int64_t ldy;
  real yscale;
  double *dot;
  int scalars;
  int backward;
  real scale;
  real *grad_X;
  int64_t ldgx;
  real *PtG;
  int64_t ldt;
  double *tdot;
} rl_softperm_io;

void rl_softperm_block(rl_softperm *sp, int64_t cb, const rl_softperm_io *io);
void rl_softperm_backward_begin(rl_softperm *sp);
/* Adds scale * d<G, P X>/dr (accumulated over the blocks since backward_begin) to grad_r. */
void rl_softperm_backward_end(rl_softperm *sp, real scale, real *grad_r, int64_t gstride);

#endif
