/*
** fuzz_h5_common.h -- what the HDF5 fuzz targets share: the temporary file each input is written to, the checks of
** what a successful rl_dataset_load promises (dataset.h), and a walk of the generic readers behind rl.h5.*
** (rl_h5_list_group, rl_h5_kind, rl_h5_dataset_info, rl_h5_read_real, rl_h5_read_int64, rl_h5_read_rows and
** rl_h5_read_attrs on the root and on each member of the root). A violated promise, or a failure whose message does
** not name the file, is a finding: it aborts, like a crash. Included once by each target.
*/
#ifndef FUZZ_H5_COMMON_H
#define FUZZ_H5_COMMON_H

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../core/data/dataset.h"
#include "../../core/data/h5io.h"

/* Members of the root group visited by the generic walk. */
#define FUZZ_MAX_MEMBERS 16
/* Elements read from one dataset by the generic walk (the Lua binding allocates what the file declares; the
** readers' own size checks are what keeps that bounded). */
#define FUZZ_MAX_ELEMENTS ((int64_t)1 << 20)

static const char *fuzz_name = "fuzz";
/* Inputs that loaded as a dataset, and all inputs (printed at exit when FUZZ_STATS is set). */
static long loads_ok, loads_all;
static int file_fd = -1;
static char file_path[4096];

#define FINDING(...)                                                                                               \
  do {                                                                                                             \
    fprintf(stderr, "%s: ", fuzz_name);                                                                            \
    fprintf(stderr, __VA_ARGS__);                                                                      \
    fputc('\n', stderr);                                                                                           \
    abort();                                                                                                       \
  } while (0)

static void remove_file(void) { unlink(file_path); }

static void print_stats(void) {
  if (getenv("FUZZ_STATS")) fprintf(stderr, "%s: %ld of %ld inputs loaded as a dataset\n", fuzz_name, loads_ok, loads_all);
}

/* ASan's quarantine at 16 MB instead of 256: HDF5 allocates and frees large blocks for every file, and fresh
** memory costs page faults (about twice the executions per second). A malloc above 1 GB returns NULL, as on a
** machine without overcommit, instead of aborting: HDF5 mallocs sizes read from corrupt files and handles NULL, and
** so does rotlab (whose own allocations the fuzz build caps at 256 MB, RL_MAX_ALLOC). ASAN_OPTIONS overrides these. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
  return "quarantine_size_mb=16:allocator_may_return_null=1:max_allocation_size_mb=1024";
}

/* Creates the temporary file the inputs are written to. */
static void fuzz_h5_init(const char *name) {
  fuzz_name = name;
  const char *dir = getenv("TMPDIR");
  snprintf(file_path, sizeof file_path, "%s/rl_fuzz_h5_XXXXXX", dir && dir[0] ? dir : "/tmp");
  file_fd = mkstemp(file_path);
  if (file_fd < 0) {
    perror("fuzz_h5: mkstemp");
    exit(1);
  }
  atexit(remove_file);
  atexit(print_stats); /* (a crash report exits without atexit: the file is then left in TMPDIR) */
  /* Unbounded HDF5 free lists: each H5Fopen's large zeroed cache structures are reused instead of being mapped
  ** and faulted in anew under ASan's allocator (about 10x the executions per second). */
  H5set_free_list_limits(-1, -1, -1, -1, -1, -1);
}

/* A failing call must leave a message that names the file. */
static void check_message(const char *what) {
  const char *msg = rl_error();
  if (!msg[0]) FINDING("%s failed with an empty message", what);
  if (!strstr(msg, file_path)) FINDING("%s: message does not name the file: %s", what, msg);
}

/* What a successful rl_dataset_load promises (dataset.h). */
static void check_dataset(const rl_dataset *ds) {
  if (ds->count < 1 || ds->dim < 1 || ds->rows < ds->count) FINDING("bad sizes B=%lld D=%lld rows=%lld",
                                                                    (long long)ds->count, (long long)ds->dim,
                                                                    (long long)ds->rows);
  if (ds->offsets[0] != 0 || ds->offsets[ds->count] != ds->rows) FINDING("offsets do not span the rows");
  for (int64_t b = 0; b < ds->count; b++) {
    if (ds->offsets[b + 1] <= ds->offsets[b]) FINDING("set %lld is empty or reversed", (long long)b);
    if (ds->y[b] < 0 || ds->y[b] >= ds->num_classes) FINDING("label %lld out of range", (long long)b);
    if (ds->fold && ds->fold[b] < 0) FINDING("negative fold");
  }
  if (ds->group_offsets) {
    if (ds->ngroups < 1 || ds->group_offsets[0] != 0 || ds->group_offsets[ds->ngroups] != ds->count)
      FINDING("group offsets do not span the sets");
    for (int64_t g = 0; g < ds->ngroups; g++)
      if (ds->group_offsets[g + 1] <= ds->group_offsets[g]) FINDING("group %lld is empty", (long long)g);
  }
  for (int64_t i = 0; i < ds->rows * ds->dim; i++)
    if (!isfinite(ds->X[i])) FINDING("X[%lld] is not finite", (long long)i);

  /* gathering every set in order reproduces X */
  int64_t *sets = malloc((size_t)ds->count * sizeof *sets), *off = malloc((size_t)(ds->count + 1) * sizeof *off),
          *lab = malloc((size_t)ds->count * sizeof *lab), rows = 0;
  real *vals = malloc((size_t)(ds->rows * ds->dim) * sizeof *vals);
  if (!sets || !off || !lab || !vals) FINDING("out of memory in the harness");
  for (int64_t b = 0; b < ds->count; b++) sets[b] = b;
  if (rl_dataset_batch_rows(ds, sets, ds->count, &rows) || rows != ds->rows) FINDING("batch_rows: %s", rl_error());
  if (rl_dataset_gather(ds, sets, ds->count, vals, rows, off, lab)) FINDING("gather: %s", rl_error());
  if (memcmp(vals, ds->X, (size_t)(rows * ds->dim) * sizeof *vals) != 0 ||
      memcmp(off, ds->offsets, (size_t)(ds->count + 1) * sizeof *off) != 0 ||
      memcmp(lab, ds->y, (size_t)ds->count * sizeof *lab) != 0)
    FINDING("gather of every set does not reproduce the dataset");
  /* an out-of-range index is refused, not read */
  sets[0] = ds->count;
  if (rl_dataset_batch_rows(ds, sets, 1, &rows) == RL_OK) FINDING("batch_rows accepted index B");
  free(sets);
  free(off);
  free(lab);
  free(vals);
}

/* The generic readers on one dataset. */
static void walk_dataset(rl_h5 *f, const char *path) {
  rl_h5_info info;
  if (rl_h5_dataset_info(f, path, &info)) {
    check_message("rl_h5_dataset_info");
    return;
  }
  if (info.type_class == RL_H5_NONNUMERIC || info.numel < 0 || info.numel > FUZZ_MAX_ELEMENTS) return;
  int64_t n = info.numel ? info.numel : 1;
  real *r = malloc((size_t)n * sizeof *r);
  int64_t *k = malloc((size_t)n * sizeof *k);
  double *row = NULL;
  if (!r || !k) FINDING("out of memory in the harness");
  if (rl_h5_read_real(f, path, r, info.numel)) check_message("rl_h5_read_real");
  if (rl_h5_read_int64(f, path, k, info.numel)) check_message("rl_h5_read_int64");
  if (rl_h5_read_real(f, path, r, info.numel + 1) == RL_OK) FINDING("read_real accepted a wrong element count");
  if (info.ndim >= 1 && info.ndim <= RL_MAX_DIMS && info.shape[0] > 0) {
    int64_t per_row = info.numel / info.shape[0];
    if ((row = malloc((size_t)(per_row ? per_row : 1) * sizeof *row)) == NULL) FINDING("out of memory in the harness");
    if (rl_h5_read_rows(f, path, info.shape[0] - 1, 1, row)) check_message("rl_h5_read_rows");
    if (rl_h5_read_rows(f, path, info.shape[0], 1, row) == RL_OK) FINDING("read_rows accepted a row past the end");
  }
  free(r);
  free(k);
  free(row);
}

static void walk_attrs(rl_h5 *f, const char *path) {
  rl_h5_attrs attrs;
  if (rl_h5_read_attrs(f, path, &attrs)) {
    check_message("rl_h5_read_attrs");
    return;
  }
  for (int i = 0; i < attrs.count; i++) {
    const rl_h5_attr *a = &attrs.items[i];
    if (!a->name || a->count < 0) FINDING("attribute %d has no name or a negative count", i);
    for (int64_t j = 0; j < a->count; j++) {
      if ((a->kind == RL_H5_ATTR_STRING || a->kind == RL_H5_ATTR_UNSUPPORTED) && !a->strings[j])
        FINDING("attribute '%s': string %lld is NULL", a->name, (long long)j);
      if (a->kind == RL_H5_ATTR_BOOL && a->ints[j] != 0 && a->ints[j] != 1) FINDING("boolean attribute not 0/1");
    }
  }
  rl_h5_attrs_free(&attrs);
}

static void walk_generic(void) {
  rl_h5 f;
  rl_h5_init(&f);
  if (rl_h5_open(&f, file_path, RL_H5_READ)) {
    check_message("rl_h5_open");
    return;
  }
  walk_attrs(&f, "/");
  rl_h5_list list;
  if (rl_h5_list_group(&f, "/", &list)) {
    check_message("rl_h5_list_group");
  } else {
    for (int64_t i = 0; i < list.count && i < FUZZ_MAX_MEMBERS; i++) {
      char path[RL_H5_NAME_LEN + 2];
      if (!list.items[i].name) FINDING("member %lld has no name", (long long)i);
      snprintf(path, sizeof path, "/%s", list.items[i].name);
      int kind;
      if (rl_h5_kind(&f, path, &kind)) check_message("rl_h5_kind");
      else if (kind == RL_H5_DATASET) walk_dataset(&f, path);
      if (kind == RL_H5_DATASET || kind == RL_H5_GROUP) walk_attrs(&f, path);
    }
    rl_h5_list_free(&list);
  }
  rl_h5_close(&f);
  rl_h5_close(&f); /* safe twice */
}

/* The dataset reader and the generic readers on the file at file_path; returns 1 if the dataset loaded. */
static int fuzz_h5_read_all(rl_dataset *loaded) {
  rl_clear_error();
  rl_dataset ds;
  int ok = rl_dataset_load(&ds, file_path) == RL_OK;
  loads_ok += ok;
  loads_all++;
  const char *stats = getenv("FUZZ_STATS");
  if (stats && strcmp(stats, "2") == 0) fprintf(stderr, "%s: %s\n", fuzz_name, ok ? "loaded" : rl_error());
  if (ok) {
    check_dataset(&ds);
  } else {
    check_message("rl_dataset_load");
    if (ds.X || ds.offsets || ds.y || ds.attrs.items) FINDING("a failed load left memory in the dataset");
  }
  if (ok && loaded) {
    *loaded = ds;
  } else {
    rl_dataset_free(&ds);
    rl_dataset_free(&ds); /* safe twice */
  }
  walk_generic();
  return ok;
}

#endif
