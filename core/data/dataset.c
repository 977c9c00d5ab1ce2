/*
** dataset.c -- reader, validator and writer of the dataset format (see dataset.h), and the gather that turns a
** list of set indices into a ragged batch. The same checks serve the reader (on the file) and the writer (on the
** caller's arrays), so whatever rotlab writes it can read back.
*/
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"

/* Bytes of X converted per hyperslab read (as double): bounds the scratch memory of a load. */
#ifndef RL_DATA_CHUNK_BYTES
#define RL_DATA_CHUNK_BYTES ((size_t)4 << 20)
#endif
/* Batches with at least this many values are copied by several threads. */
#define GATHER_PARALLEL_VALUES 65536

/* Labels are below this and num_classes is at most this: a class count is a tensor width (RL_MAX_DIM). */
#define MAX_CLASSES RL_MAX_DIM

/* Largest magnitude a value of X may have to be stored in `real`. */
#define REAL_LIMIT (sizeof(real) == sizeof(float) ? (double)FLT_MAX : DBL_MAX)

/* ---------------------------------------------------------------- shared checks */

/* A failed allocation for a field: the allocator's message names no file, so it is prefixed with file and field. */
static int alloc_fail(const char *file, const char *field) {
  char why[RL_ERRMSG_LEN];
  snprintf(why, sizeof why, "%s", rl_error());
  return rl_fail(RL_ENOMEM, "%s: %s: %s", file, field, why);
}

/* Checks an offsets array of n_entries = parts + 1 entries over `total` items (rows of /X or sets). */
static int check_offsets(const char *file, const char *field, const int64_t *off, int64_t n_entries, int64_t total,
                         const char *total_what, const char *part) {
  if (n_entries < 2)
    return rl_fail(RL_EINVAL, "%s: %s: needs at least 2 entries (one more than the number of %ss), got %lld", file,
                   field, part, (long long)n_entries);
  if (off[0] != 0) return rl_fail(RL_EINVAL, "%s: %s: must start at 0, got %lld", file, field, (long long)off[0]);
  for (int64_t i = 0; i + 1 < n_entries; i++) {
    if (off[i + 1] < off[i])
      return rl_fail(RL_EINVAL, "%s: %s: must be non-decreasing, but %s[%lld] = %lld < %s[%lld] = %lld", file, field,
                     field + 1, (long long)(i + 1), (long long)off[i + 1], field + 1, (long long)i, (long long)off[i]);
    if (off[i + 1] == off[i])
      return rl_fail(RL_EINVAL, "%s: %s: %s %lld (0-based) is empty (%s[%lld] = %s[%lld] = %lld); empty %ss are not allowed",
                     file, field, part, (long long)i, field + 1, (long long)i, field + 1, (long long)(i + 1),
                     (long long)off[i], part);
  }
  if (off[n_entries - 1] != total)
    return rl_fail(RL_EINVAL, "%s: %s: last entry must equal %s (%lld), got %lld", file, field, total_what,
                   (long long)total, (long long)off[n_entries - 1]);
  return RL_OK;
}

/* The num_classes attribute if present (0 if absent); fails if it is not a positive integer. */
static int attr_num_classes(const char *file, const rl_h5_attr *a, int64_t *out) {
  *out = 0;
  if (!a) return RL_OK;
  if (a->count == 1 && a->kind == RL_H5_ATTR_INT && a->ints[0] >= 1 && a->ints[0] <= MAX_CLASSES) {
    *out = a->ints[0];
    return RL_OK;
  }
  if (a->count == 1 && a->kind == RL_H5_ATTR_FLOAT && a->floats[0] >= 1 && a->floats[0] == floor(a->floats[0]) &&
      a->floats[0] <= (double)MAX_CLASSES) {
    *out = (int64_t)a->floats[0];
    return RL_OK;
  }
  if (a->count == 1 && (a->kind == RL_H5_ATTR_INT || a->kind == RL_H5_ATTR_FLOAT))
    return rl_fail(RL_EINVAL, "%s: attribute num_classes must be a positive integer, got %g (at most %lld)", file,
                   a->kind == RL_H5_ATTR_INT ? (double)a->ints[0] : a->floats[0], (long long)MAX_CLASSES);
  return rl_fail(RL_EINVAL, "%s: attribute num_classes must be one positive integer", file);
}

/* Labels: non-negative and below num_classes (when given); sets *max_label. */
static int check_labels(const char *file, const int64_t *y, int64_t count, int64_t num_classes, int64_t *max_label) {
  int64_t mx = -1;
  for (int64_t b = 0; b < count; b++) {
    if (y[b] < 0)
      return rl_fail(RL_EINVAL, "%s: /y: label of set %lld (0-based) is %lld; labels must be >= 0", file, (long long)b,
                     (long long)y[b]);
    if (y[b] >= MAX_CLASSES) /* num_classes = max + 1 must not overflow, and it becomes a tensor width */
      return rl_fail(RL_EINVAL, "%s: /y: label of set %lld (0-based) is %lld; labels must be below %lld", file,
                     (long long)b, (long long)y[b], (long long)MAX_CLASSES);
    if (num_classes > 0 && y[b] >= num_classes)
      return rl_fail(RL_EINVAL, "%s: /y: label of set %lld (0-based) is %lld, but attribute num_classes is %lld "
                     "(labels must be 0..%lld)", file, (long long)b, (long long)y[b], (long long)num_classes,
                     (long long)(num_classes - 1));
    if (y[b] > mx) mx = y[b];
  }
  *max_label = mx;
  return RL_OK;
}

static int check_fold(const char *file, const int64_t *fold, int64_t count) {
  for (int64_t b = 0; b < count; b++)
    if (fold[b] < 0)
      return rl_fail(RL_EINVAL, "%s: /fold: fold of set %lld (0-based) is %lld; folds must be >= 0", file, (long long)b,
                     (long long)fold[b]);
  return RL_OK;
}

/* Set containing row r (binary search over the offsets). */
static int64_t set_of_row(const int64_t *off, int64_t count, int64_t r) {
  int64_t lo = 0, hi = count; /* off[lo] <= r < off[hi] */
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    if (off[mid] <= r) lo = mid;
    else hi = mid;
  }
  return lo;
}

/* A value of X that is not finite, or (for the writer to float32 / a float build) too large. */
static int bad_value(const char *file, const int64_t *off, int64_t count, int64_t row, int64_t col, double v,
                     double limit, const char *type) {
  int64_t set = set_of_row(off, count, row);
  if (isnan(v))
    return rl_fail(RL_EINVAL, "%s: /X: row %lld (0-based, in set %lld), column %lld is NaN", file, (long long)row,
                   (long long)set, (long long)col);
  if (isinf(v))
    return rl_fail(RL_EINVAL, "%s: /X: row %lld (0-based, in set %lld), column %lld is %sInf", file, (long long)row,
                   (long long)set, (long long)col, v < 0 ? "-" : "+");
  return rl_fail(RL_EINVAL, "%s: /X: row %lld (0-based, in set %lld), column %lld is %g, which does not fit in %s (|v| <= %g)",
                 file, (long long)row, (long long)set, (long long)col, v, type, limit);
}

/* ---------------------------------------------------------------- reading */

void rl_dataset_init(rl_dataset *ds) { memset(ds, 0, sizeof *ds); }

void rl_dataset_free(rl_dataset *ds) {
  if (!ds) return;
  if (ds->owns_X) rl_free(ds->X);
  rl_free(ds->offsets);
  rl_free(ds->y);
  rl_free(ds->group_offsets);
  rl_free(ds->fold);
  rl_h5_attrs_free(&ds->attrs);
  char file[RL_H5_NAME_LEN];
  memcpy(file, ds->file, sizeof file);
  rl_dataset_init(ds);
  memcpy(ds->file, file, sizeof file); /* keeps the name for messages after a close */
}

/* Shape and type of a field, with format-level messages: missing / not a dataset / wrong rank / wrong type. */
static int field_info(rl_h5 *f, const char *field, int rank, const char *shape_hint, int want_float, rl_h5_info *info) {
  int kind;
  int rc = rl_h5_kind(f, field, &kind);
  if (rc) return rc;
  if (kind == RL_H5_MISSING) return rl_fail(RL_EINVAL, "%s: %s: missing (a dataset file needs /X, /offsets and /y)", f->name, field);
  if (kind != RL_H5_DATASET)
    return rl_fail(RL_EINVAL, "%s: %s: is a %s, expected a dataset", f->name, field, kind == RL_H5_GROUP ? "group" : "link to nothing");
  if ((rc = rl_h5_dataset_info(f, field, info))) return rc;
  if (info->ndim != rank)
    return rl_fail(RL_EINVAL, "%s: %s: expected a %d-D dataset (%s), got %d-D", f->name, field, rank, shape_hint,
                   info->ndim);
  if (want_float) {
    if (info->type_class != RL_H5_FLOAT || (info->type_size != 4 && info->type_size != 8))
      return rl_fail(RL_EINVAL, "%s: %s: has type %s, expected float32 or float64", f->name, field, info->type_name);
  } else if (info->type_class != RL_H5_INT && info->type_class != RL_H5_UINT) {
    return rl_fail(RL_EINVAL, "%s: %s: has type %s, expected an integer type (int64)", f->name, field, info->type_name);
  }
  return RL_OK;
}

/* Reads the 1-D integer field into a new array; *n gets its length. */
static int read_int_field(rl_h5 *f, const char *field, const char *shape_hint, int64_t **out, int64_t *n) {
  rl_h5_info info;
  int rc = field_info(f, field, 1, shape_hint, 0, &info);
  if (rc) return rc;
  *n = info.shape[0];
  if (!(*out = rl_malloc((size_t)(*n ? *n : 1) * sizeof(int64_t)))) return alloc_fail(f->name, field);
  return rl_h5_read_int64(f, field, *out, *n);
}

static int optional_present(rl_h5 *f, const char *field, int *present) {
  int kind;
  int rc = rl_h5_kind(f, field, &kind);
  *present = kind != RL_H5_MISSING;
  return rc;
}

static int open_checked(rl_dataset *ds, rl_h5 *f) {
  rl_h5_info xi;
  int rc = field_info(f, "/X", 2, "rows x D", 1, &xi);
  if (rc) return rc;
  ds->rows = xi.shape[0];
  ds->dim = xi.shape[1];
  ds->x_is_double = xi.type_size == 8;
  if (ds->dim < 1) return rl_fail(RL_EINVAL, "%s: /X: has %lld columns, expected at least 1", ds->file, (long long)ds->dim);
  /* the values must fit one allocation (rl_shape_check's limits): refused here, with the file's name, before
  ** anything is allocated (h5io has checked that the shape is within RL_MAX_DIM and the file holds the data) */
  if ((size_t)xi.numel > RL_MAX_ALLOC / sizeof(real))
    return rl_fail(RL_ENOMEM, "%s: /X: %lld x %lld values do not fit in memory (more than RL_MAX_ALLOC = %zu bytes)",
                   ds->file, (long long)ds->rows, (long long)ds->dim, (size_t)RL_MAX_ALLOC);
  int64_t n;
  if ((rc = read_int_field(f, "/offsets", "B+1 entries for B sets", &ds->offsets, &n))) return rc;
  if ((rc = check_offsets(ds->file, "/offsets", ds->offsets, n, ds->rows, "the number of rows of /X", "set"))) return rc;
  ds->count = n - 1;
  if ((rc = read_int_field(f, "/y", "one label per set", &ds->y, &n))) return rc;
  if (n != ds->count)
    return rl_fail(RL_EINVAL, "%s: /y: has %lld entries, expected one label per set (B = %lld from /offsets)", ds->file,
                   (long long)n, (long long)ds->count);
  if ((rc = rl_h5_read_attrs(f, "/", &ds->attrs))) return rc;
  int64_t ncls, max_label;
  if ((rc = attr_num_classes(ds->file, rl_h5_attr_find(&ds->attrs, "num_classes"), &ncls))) return rc;
  if ((rc = check_labels(ds->file, ds->y, ds->count, ncls, &max_label))) return rc;
  ds->num_classes = ncls ? ncls : max_label + 1;
  int present;
  if ((rc = optional_present(f, "/group_offsets", &present))) return rc;
  if (present) {
    if ((rc = read_int_field(f, "/group_offsets", "G+1 entries for G groups", &ds->group_offsets, &n))) return rc;
    if ((rc = check_offsets(ds->file, "/group_offsets", ds->group_offsets, n, ds->count, "the number of sets B", "group")))
      return rc;
    ds->ngroups = n - 1;
  }
  if ((rc = optional_present(f, "/fold", &present))) return rc;
  if (present) {
    if ((rc = read_int_field(f, "/fold", "one fold per set", &ds->fold, &n))) return rc;
    if (n != ds->count)
      return rl_fail(RL_EINVAL, "%s: /fold: has %lld entries, expected one per set (B = %lld)", ds->file, (long long)n,
                     (long long)ds->count);
    if ((rc = check_fold(ds->file, ds->fold, ds->count))) return rc;
  }
  return RL_OK;
}

int rl_dataset_open(rl_dataset *ds, const char *file) {
  rl_dataset_init(ds);
  snprintf(ds->file, sizeof ds->file, "%s", file ? file : "");
  rl_h5 f;
  rl_h5_init(&f);
  int rc = rl_h5_open(&f, file, RL_H5_READ);
  if (!rc) rc = open_checked(ds, &f);
  rl_h5_close(&f);
  if (rc) rl_dataset_free(ds);
  return rc;
}

int rl_dataset_read_values(const rl_dataset *ds, real *dst) {
  rl_h5 f;
  rl_h5_init(&f);
  double *chunk = NULL;
  int64_t chunk_rows = (int64_t)(RL_DATA_CHUNK_BYTES / sizeof(double) / (size_t)ds->dim);
  if (chunk_rows < 1) chunk_rows = 1;
  if (chunk_rows > ds->rows) chunk_rows = ds->rows;
  int rc = rl_h5_open(&f, ds->file, RL_H5_READ);
  if (rc) return rc;
  rl_h5_info xi;
  if ((rc = rl_h5_dataset_info(&f, "/X", &xi))) goto done;
  if (xi.ndim != 2 || xi.shape[0] != ds->rows || xi.shape[1] != ds->dim) {
    rc = rl_fail(RL_EIO, "%s: /X: changed since the file was opened", ds->file);
    goto done;
  }
  if (!(chunk = rl_malloc((size_t)chunk_rows * (size_t)ds->dim * sizeof(double)))) {
    rc = alloc_fail(ds->file, "/X");
    goto done;
  }
  for (int64_t r0 = 0; r0 < ds->rows; r0 += chunk_rows) {
    int64_t n = ds->rows - r0 < chunk_rows ? ds->rows - r0 : chunk_rows;
    if ((rc = rl_h5_read_rows(&f, "/X", r0, n, chunk))) goto done;
    const int64_t len = n * ds->dim;
    real *out = dst + r0 * ds->dim;
    for (int64_t i = 0; i < len; i++) {
      double v = chunk[i];
      if (!(fabs(v) <= REAL_LIMIT)) { /* NaN fails this too */
        rc = bad_value(ds->file, ds->offsets, ds->count, r0 + i / ds->dim, i % ds->dim, v, REAL_LIMIT, RL_REAL_NAME);
        goto done;
      }
      out[i] = (real)v;
    }
  }
done:
  rl_free(chunk);
  rl_h5_close(&f);
  return rc;
}

int rl_dataset_load(rl_dataset *ds, const char *file) {
  int rc = rl_dataset_open(ds, file);
  if (rc) return rc;
  size_t n = (size_t)ds->rows * (size_t)ds->dim; /* rl_dataset_open checked that n reals fit RL_MAX_ALLOC */
  if (!(ds->X = rl_malloc(n * sizeof(real)))) rc = alloc_fail(ds->file, "/X");
  if (!rc) {
    ds->owns_X = 1;
    rc = rl_dataset_read_values(ds, ds->X);
  }
  if (rc) rl_dataset_free(ds);
  return rc;
}

/* ---------------------------------------------------------------- batches */

int rl_dataset_batch_rows(const rl_dataset *ds, const int64_t *sets, int64_t n, int64_t *rows) {
  if (n < 1) return rl_fail(RL_EINVAL, "%s: a batch needs at least one set", ds->file);
  int64_t total = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t s = sets[i];
    if (s < 0 || s >= ds->count)
      return rl_fail(RL_EINVAL, "%s: set index %lld (entry %lld) is out of range (the dataset has %lld sets)", ds->file,
                     (long long)s, (long long)i, (long long)ds->count);
    total += ds->offsets[s + 1] - ds->offsets[s];
  }
  *rows = total;
  return RL_OK;
}

int rl_dataset_gather(const rl_dataset *ds, const int64_t *sets, int64_t n, real *values, int64_t capacity_rows,
                      int64_t *offsets, int64_t *labels) {
  if (!ds->X) return rl_fail(RL_ESTATE, "%s: the values of /X are not loaded", ds->file);
  int64_t rows;
  int rc = rl_dataset_batch_rows(ds, sets, n, &rows);
  if (rc) return rc;
  if (rows > capacity_rows)
    return rl_fail(RL_EINVAL, "%s: the batch has %lld rows, the output holds %lld", ds->file, (long long)rows,
                   (long long)capacity_rows);
  offsets[0] = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t s = sets[i];
    offsets[i + 1] = offsets[i] + ds->offsets[s + 1] - ds->offsets[s];
    labels[i] = ds->y[s];
  }
  const int64_t dim = ds->dim;
#pragma omp parallel for schedule(static) if (rows * dim >= GATHER_PARALLEL_VALUES)
  for (int64_t i = 0; i < n; i++) {
    int64_t s = sets[i];
    memcpy(values + offsets[i] * dim, ds->X + ds->offsets[s] * dim,
           (size_t)(offsets[i + 1] - offsets[i]) * (size_t)dim * sizeof(real));
  }
  return RL_OK;
}

/* ---------------------------------------------------------------- writing */

static int check_spec(const char *file, const rl_dataset_spec *s) {
  if (!s->X || !s->offsets || !s->y) return rl_fail(RL_EINVAL, "%s: X, offsets and y are required", file);
  if (s->dim < 1) return rl_fail(RL_EINVAL, "%s: /X: has %lld columns, expected at least 1", file, (long long)s->dim);
  int rc = check_offsets(file, "/offsets", s->offsets, s->count + 1, s->rows, "the number of rows of /X", "set");
  if (rc) return rc;
  int64_t ncls = 0, max_label;
  for (int i = 0; i < s->nattrs; i++)
    if (strcmp(s->attrs[i].name, "num_classes") == 0 && (rc = attr_num_classes(file, &s->attrs[i], &ncls))) return rc;
  if ((rc = check_labels(file, s->y, s->count, ncls, &max_label))) return rc;
  if (s->group_offsets &&
      (rc = check_offsets(file, "/group_offsets", s->group_offsets, s->ngroups + 1, s->count, "the number of sets B", "group")))
    return rc;
  if (s->fold && (rc = check_fold(file, s->fold, s->count))) return rc;
  double limit = s->x_as_double ? DBL_MAX : FLT_MAX;
  for (int64_t i = 0; i < s->rows * s->dim; i++)
    if (!(fabs((double)s->X[i]) <= limit))
      return bad_value(file, s->offsets, s->count, i / s->dim, i % s->dim, (double)s->X[i], limit,
                       s->x_as_double ? "float64" : "float32");
  return RL_OK;
}

static int write_fields(rl_h5 *f, const rl_dataset_spec *s) {
  int64_t shape[2] = {s->rows, s->dim};
  int rc = rl_h5_write_real(f, "/X", s->X, 2, shape, s->x_as_double);
  int64_t n = s->count + 1;
  if (!rc) rc = rl_h5_write_int64(f, "/offsets", s->offsets, 1, &n);
  if (!rc) rc = rl_h5_write_int64(f, "/y", s->y, 1, &s->count);
  if (!rc && s->group_offsets) {
    int64_t g = s->ngroups + 1;
    rc = rl_h5_write_int64(f, "/group_offsets", s->group_offsets, 1, &g);
  }
  if (!rc && s->fold) rc = rl_h5_write_int64(f, "/fold", s->fold, 1, &s->count);
  for (int i = 0; !rc && i < s->nattrs; i++) rc = rl_h5_write_attr(f, "/", &s->attrs[i]);
  return rc;
}

int rl_dataset_write(const char *file, const rl_dataset_spec *spec) {
  if (!file || !file[0]) return rl_fail(RL_EINVAL, "dataset write: empty file name");
  int rc = check_spec(file, spec);
  if (rc) return rc;
  rl_h5 f;
  rl_h5_init(&f);
  if ((rc = rl_h5_open(&f, file, RL_H5_TRUNCATE))) return rc;
  rc = write_fields(&f, spec);
  rl_h5_close(&f);
  if (rc) remove(file);
  return rc;
}
