/*
** setops.c -- per-set sums, maxima and softmax-weighted sums (with their backward), scalar activations and
** initialisers shared by the baseline poolings. Accumulations run in double so the float build stays accurate.
*/
#include <math.h>

#include "setops.h"

/* torch.nn.Softplus(beta=1, threshold=20) switches to the identity above this. */
#define SOFTPLUS_THRESHOLD 20.0

double rl_setop_softplus(double r) { return r > SOFTPLUS_THRESHOLD ? r : log1p(exp(r)); }

double rl_setop_softplus_grad(double r) { return r > SOFTPLUS_THRESHOLD ? 1.0 : rl_setop_sigmoid(r); }

double rl_setop_sigmoid(double r) {
  if (r >= 0) return 1.0 / (1.0 + exp(-r));
  double e = exp(r);
  return e / (1.0 + e);
}

void rl_setop_init_uniform(real *x, int64_t n, double bound, rl_rng *g) {
  for (int64_t i = 0; i < n; i++) x[i] = (real)(bound * (2.0 * rl_rng_uniform(g) - 1.0));
}

void rl_setop_init_normal(real *x, int64_t n, rl_rng *g) {
  for (int64_t i = 0; i < n; i++) x[i] = (real)rl_rng_normal(g);
}

void rl_setop_sum_max(const real *x, int64_t D, int64_t lo, int64_t hi, real *sum, real *max, int64_t *argmax) {
  for (int64_t d = 0; d < D; d++) {
    double acc = 0;
    real mx = x[lo * D + d];
    int64_t arg = lo;
    for (int64_t r = lo; r < hi; r++) {
      real v = x[r * D + d];
      acc += v;
      if (v > mx) {
        mx = v;
        arg = r;
      }
    }
    sum[d] = (real)acc;
    max[d] = mx;
    argmax[d] = arg;
  }
}

void rl_setop_softmax_pool(const real *x, int64_t D, int64_t lo, int64_t hi, const real *s, real *a, real *y,
                           double eps) {
  double mx = s[lo], total = 0;
  for (int64_t r = lo + 1; r < hi; r++) mx = s[r] > mx ? s[r] : mx;
  for (int64_t r = lo; r < hi; r++) total += exp((double)s[r] - mx);
  double denom = total + eps;
  for (int64_t r = lo; r < hi; r++) a[r] = (real)(exp((double)s[r] - mx) / denom);
  for (int64_t d = 0; d < D; d++) {
    double acc = 0;
    for (int64_t r = lo; r < hi; r++) acc += (double)a[r] * x[r * D + d];
    y[d] = (real)acc;
  }
}

void rl_setop_softmax_pool_backward(const real *x, int64_t D, int64_t lo, int64_t hi, const real *a,
                                    const real *gy, real *gs, real *gx) {
  double avg = 0;
  for (int64_t r = lo; r < hi; r++) {
    double ga = 0;
    for (int64_t d = 0; d < D; d++) ga += (double)gy[d] * x[r * D + d];
    gs[r] = (real)ga;
    avg += (double)a[r] * ga;
  }
  for (int64_t r = lo; r < hi; r++) gs[r] = (real)(a[r] * ((double)gs[r] - avg));
  if (gx)
    for (int64_t r = lo; r < hi; r++)
      for (int64_t d = 0; d < D; d++) gx[r * D + d] += a[r] * gy[d];
}

void rl_setop_add_colsum(const real *src, int64_t rows, int64_t cols, real *dst) {
  for (int64_t c = 0; c < cols; c++) {
    double acc = 0;
    for (int64_t r = 0; r < rows; r++) acc += src[r * cols + c];
    dst[c] += (real)acc;
  }
}
