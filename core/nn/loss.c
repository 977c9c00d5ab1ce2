/*
** loss.c -- cross-entropy and binary cross-entropy with logits, in their numerically stable forms, with double
** accumulators. Both validate their inputs before touching the outputs.
*/
#include <math.h>

#include "loss.h"

int rl_cross_entropy(const rl_tensor *logits, const real *labels, real *loss, rl_tensor *grad) {
  int rc = rl_expect_matrix(logits, -1, -1, "cross_entropy logits");
  if (rc) return rc;
  int64_t B = rl_rows(logits), C = rl_cols(logits);
  if (B < 1 || C < 1)
    return rl_fail(RL_EINVAL, "cross_entropy: expected at least one row and one class, got %lld x %lld",
                   (long long)B, (long long)C);
  if ((rc = rl_expect_finite(logits->data, logits->numel, "cross_entropy logits"))) return rc;
  for (int64_t b = 0; b < B; b++) {
    double y = labels[b];
    if (!isfinite(y) || y != floor(y) || y < 0 || y >= (double)C)
      return rl_fail(RL_EINVAL, "cross_entropy: label %lld is %g, expected an integer class id in 0..%lld",
                     (long long)b + 1, y, (long long)C - 1);
  }
  if (grad && (rc = rl_expect_matrix(grad, B, C, "cross_entropy gradient"))) return rc;
  double total = 0;
  for (int64_t b = 0; b < B; b++) {
    const real *z = logits->data + b * C;
    int64_t y = (int64_t)labels[b];
    double m = z[0];
    for (int64_t c = 1; c < C; c++) m = z[c] > m ? z[c] : m;
    double s = 0;
    for (int64_t c = 0; c < C; c++) s += exp(z[c] - m);
    double lse = m + log(s);
    total += lse - z[y];
    if (grad) {
      real *g = grad->data + b * C;
      for (int64_t c = 0; c < C; c++) g[c] = (real)((exp(z[c] - lse) - (c == y)) / (double)B);
    }
  }
  *loss = (real)(total / (double)B);
  return RL_OK;
}

int rl_bce_with_logits(const rl_tensor *logits, const real *targets, real *loss, rl_tensor *grad) {
  if (logits->ndim > 2 || (logits->ndim == 2 && logits->shape[1] != 1))
    return rl_fail(RL_EINVAL, "bce_with_logits: expected logits of shape B x 1 (or B), got %s",
                   logits->ndim > 2 ? "more than 2 dimensions" : "more than one column");
  int64_t B = logits->numel;
  if (B < 1) return rl_fail(RL_EINVAL, "bce_with_logits: expected at least one logit, got none");
  int rc = rl_expect_finite(logits->data, B, "bce_with_logits logits");
  if (rc) return rc;
  for (int64_t b = 0; b < B; b++) {
    double y = targets[b];
    if (!(y >= 0 && y <= 1))
      return rl_fail(RL_EINVAL, "bce_with_logits: target %lld is %g, expected a value in [0, 1]", (long long)b + 1, y);
  }
  if (grad && grad->numel != B)
    return rl_fail(RL_EINVAL, "bce_with_logits gradient: expected %lld values, got %lld", (long long)B,
                   (long long)grad->numel);
  double total = 0;
  for (int64_t b = 0; b < B; b++) {
    double z = logits->data[b], y = targets[b];
    total += (z > 0 ? z : 0) - z * y + log1p(exp(-fabs(z)));
    if (grad) {
      double s = z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
      grad->data[b] = (real)((s - y) / (double)B);
    }
  }
  *loss = (real)(total / (double)B);
  return RL_OK;
}
