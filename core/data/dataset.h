/*
** dataset.h -- the dataset file format of DESIGN section 5 and batches drawn from it.
**
**   /X              rows x D, float32 or float64     the instances of every set, set after set
**   /offsets        B+1, integer (int64)             set b is rows offsets[b] .. offsets[b+1]-1; no empty set
**   /y              B, integer (int64)               label of each set, 0 <= y < num_classes
**   /group_offsets  G+1, integer (optional)          group g is sets group_offsets[g] .. group_offsets[g+1]-1
**   /fold           B, integer (optional)            a predefined fold of each set, >= 0
**   root attributes (optional)                       backbone, layer, source, num_classes, ...
**
** The reader validates every field and fails with a message naming the file and the field ("F: /offsets: ...";
** indices in messages are 0-based, as in the file). X is read in chunks of rows (hyperslabs) while it is checked,
** straight into one buffer, so memory stays at the size of X plus one chunk.
*/
#ifndef RL_DATASET_H
#define RL_DATASET_H

#include "h5io.h"

typedef struct rl_dataset {
  char file[RL_H5_NAME_LEN];
  real *X;                 /* rows x dim, row-major; owned when owns_X */
  int owns_X;
  int x_is_double;         /* /X is float64 in the file (else float32) */
  int64_t rows, dim;
  int64_t count;           /* B, the number of sets */
  int64_t *offsets;        /* B+1 */
  int64_t *y;              /* B */
  int64_t num_classes;     /* attribute num_classes when present, else max(y) + 1 */
  int64_t ngroups;         /* G (0 without /group_offsets) */
  int64_t *group_offsets;  /* G+1, or NULL */
  int64_t *fold;           /* B, or NULL */
  rl_h5_attrs attrs;       /* the root attributes */
} rl_dataset;

/* An empty dataset (safe to free). */
void rl_dataset_init(rl_dataset *ds);
/* Reads and validates everything except the values of X (whose shape and type are checked); ds must be empty. */
int rl_dataset_open(rl_dataset *ds, const char *file);
/* Reads X (rows x dim) into dst by chunks of rows, checking that every value is finite (and fits `real`). Does
** not set ds->X: the caller owns dst. */
int rl_dataset_read_values(const rl_dataset *ds, real *dst);
/* rl_dataset_open + rl_dataset_read_values into a buffer the dataset owns. */
int rl_dataset_load(rl_dataset *ds, const char *file);
/* Frees what the dataset owns; safe to call twice. */
void rl_dataset_free(rl_dataset *ds);

/* Total rows of the sets with the given 0-based indices (each checked: 0 <= sets[i] < count; n >= 1). */
int rl_dataset_batch_rows(const rl_dataset *ds, const int64_t *sets, int64_t n, int64_t *rows);
/* Gathers the sets into a batch: values (rows x dim, capacity_rows rows available), offsets (n+1) and labels (n).
** ds->X must be set. */
int rl_dataset_gather(const rl_dataset *ds, const int64_t *sets, int64_t n, real *values, int64_t capacity_rows,
                      int64_t *offsets, int64_t *labels);

/* What rl_dataset_write stores; group_offsets, fold and attrs may be NULL. */
typedef struct rl_dataset_spec {
  const real *X;
  int64_t rows, dim;
  int x_as_double;              /* store /X as float64 (else float32) */
  const int64_t *offsets;       /* count + 1 */
  int64_t count;
  const int64_t *y;             /* count */
  const int64_t *group_offsets; /* ngroups + 1 */
  int64_t ngroups;
  const int64_t *fold;          /* count */
  const rl_h5_attr *attrs;      /* root attributes */
  int nattrs;
} rl_dataset_spec;

/* Validates the spec with the reader's rules, then writes a new file (replacing any file at that name). A failed
** write removes the partial file. */
int rl_dataset_write(const char *file, const rl_dataset_spec *spec);

#endif
