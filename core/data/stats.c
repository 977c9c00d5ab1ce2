/*
** stats.c -- per-feature mean and standard deviation over the rows of chosen sets (see stats.h).
*/
#include <math.h>

#include "stats.h"

int rl_dataset_feature_stats(const rl_dataset *ds, const int64_t *sets, int64_t n, real *mean, real *std) {
  if (!ds || !ds->X) return rl_fail(RL_EINVAL, "feature_stats: the dataset has no values loaded");
  int64_t rows;
  int rc = rl_dataset_batch_rows(ds, sets, n, &rows); /* checks n >= 1 and every index */
  if (rc) return rc;
  int64_t d = ds->dim;
  double *acc = rl_calloc((size_t)d * 2, sizeof(double));
  if (!acc) return RL_ENOMEM;
  double *sum = acc, *sq = acc + d;
  for (int64_t i = 0; i < n; i++)
    for (int64_t r = ds->offsets[sets[i]]; r < ds->offsets[sets[i] + 1]; r++)
      for (int64_t j = 0; j < d; j++) sum[j] += ds->X[r * d + j];
  for (int64_t j = 0; j < d; j++) sum[j] /= (double)rows;
  for (int64_t i = 0; i < n; i++)
    for (int64_t r = ds->offsets[sets[i]]; r < ds->offsets[sets[i] + 1]; r++)
      for (int64_t j = 0; j < d; j++) {
        double dv = ds->X[r * d + j] - sum[j];
        sq[j] += dv * dv;
      }
  for (int64_t j = 0; j < d; j++) {
    double sd = sqrt(sq[j] / (double)rows), scale = fabs(sum[j]) > 1 ? fabs(sum[j]) : 1;
    mean[j] = (real)sum[j];
    std[j] = sd <= RL_STATS_CONSTANT_REL * scale ? 1 : (real)sd;
  }
  rl_free(acc);
  return RL_OK;
}
