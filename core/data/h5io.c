/*
** h5io.c -- generic HDF5 input/output over the serial HDF5 1.10 C API (see h5io.h). Each public call silences
** HDF5's automatic error printing while it runs (H5Eset_auto2 with NULL, restored on return), closes every handle
** it opened on every path (one `done:` exit per function), and reports failures as "FILE: PATH: problem", adding
** HDF5's own innermost reason when there is one.
*/
#include <errno.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5io.h"

_Static_assert(sizeof(hid_t) == sizeof(int64_t), "rl_h5 stores a hid_t in an int64_t");

/* Longest HDF5 reason appended to a message. */
#define H5_REASON_LEN 160
/* Longest object path accepted (a buffer for walking the components of a path). */
#define H5_PATH_LEN 1024
/* A dataset's declared values (elements x element size) may take at most this many times the file's size when the
** dataset is chunked (a filter may have compressed it: deflate's largest ratio is about 1032:1), and at most the
** file's size otherwise (contiguous or compact data is stored as is). A dataset declaring more comes from a
** truncated or corrupt file: refused before any caller allocates for it (and before HDF5 fills gigabytes). */
#define H5_MAX_EXPANSION 1100
/* Declared sizes up to this many bytes are accepted whatever the file's size (a small dataset that was never
** written reads as its fill value and takes no room in the file). */
#define H5_SMALL_BYTES ((int64_t)1 << 20)
/* An attribute name looked up to make HDF5 decode every attribute message (no file has it; if one does, no harm). */
#define ATTR_PROBE_NAME "\x01rotlab: no such attribute"
/* Largest element size read from a dataset or attribute (bytes): every numeric type h5py and rotlab write fits. */
#define H5_MAX_ELEMENT 16

/* ---------------------------------------------------------------- errors */

/* HDF5's automatic error printing, saved while a call runs with it switched off. */
typedef struct quiet {
  H5E_auto2_t fn;
  void *data;
} quiet;

static quiet quiet_begin(void) {
  quiet q = {NULL, NULL};
  H5Eget_auto2(H5E_DEFAULT, &q.fn, &q.data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  return q;
}

static void quiet_end(quiet q) { H5Eset_auto2(H5E_DEFAULT, q.fn, q.data); }

static herr_t innermost_reason(unsigned n, const H5E_error2_t *err, void *data) {
  if (n == 0 && err->desc && err->desc[0]) {
    char *r = data;
    snprintf(r, H5_REASON_LEN, "%s", err->desc);
    /* one line, without the time stamp, descriptor and buffer address some I/O errors carry */
    char *cut = strstr(r, ": time = ");
    if (cut) *cut = '\0';
    if ((cut = strchr(r, '\n'))) *cut = '\0';
  }
  return 0;
}

/* Records "FILE: PATH: message (HDF5: reason)"; call it right after the failing HDF5 call, before any cleanup (every
** HDF5 call clears the error stack). */
static int h5_fail(const rl_h5 *f, const char *path, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static int h5_fail(const rl_h5 *f, const char *path, int code, const char *fmt, ...) {
  char msg[RL_ERRMSG_LEN], reason[H5_REASON_LEN] = "";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_reason, reason);
  H5Eclear2(H5E_DEFAULT);
  if (path)
    return rl_fail(code, "%s: %s: %s%s%s%s", f->name, path, msg, reason[0] ? " (HDF5: " : "", reason,
                   reason[0] ? ")" : "");
  return rl_fail(code, "%s: %s%s%s%s", f->name, msg, reason[0] ? " (HDF5: " : "", reason, reason[0] ? ")" : "");
}

/* A failed allocation's message (from rl_malloc, naming no file) prefixed with the file and path; other codes pass. */
static int name_failure(const rl_h5 *f, const char *path, int rc) {
  if (rc != RL_ENOMEM) return rc;
  char why[RL_ERRMSG_LEN];
  snprintf(why, sizeof why, "%s", rl_error());
  return rl_fail(rc, "%s: %s: %s", f->name, path, why);
}

static int check_open(const rl_h5 *f, const char *path) {
  if (!f || f->id < 0) return rl_fail(RL_ESTATE, "h5: the file is not open");
  if (!path || !path[0]) return rl_fail(RL_EINVAL, "%s: empty object path", f->name);
  if (strlen(path) >= H5_PATH_LEN)
    return rl_fail(RL_EINVAL, "%s: object path longer than %d characters", f->name, H5_PATH_LEN - 1);
  return RL_OK;
}

static void close_id(hid_t id, herr_t (*closer)(hid_t)) {
  if (id >= 0) closer(id);
}

/* ---------------------------------------------------------------- files */

void rl_h5_init(rl_h5 *f) {
  f->id = -1;
  f->name[0] = '\0';
}

int rl_h5_open(rl_h5 *f, const char *file, int mode) {
  if (f->id >= 0) return rl_fail(RL_ESTATE, "h5: handle already holds the open file %s", f->name);
  if (!file || !file[0]) return rl_fail(RL_EINVAL, "h5: empty file name");
  snprintf(f->name, sizeof f->name, "%s", file);
  if (mode == RL_H5_READ && access(file, R_OK) != 0)
    return rl_fail(RL_EIO, "%s: cannot open for reading: %s", f->name, strerror(errno));
  struct stat st;
  if (mode == RL_H5_READ && stat(file, &st) == 0 && !S_ISREG(st.st_mode)) /* a FIFO would block HDF5's open */
    return rl_fail(RL_EIO, "%s: cannot open as an HDF5 file: %s", f->name,
                   S_ISDIR(st.st_mode) ? "it is a directory" : "not a regular file");
  quiet q = quiet_begin();
  hid_t id = -1;
  int rc = RL_OK;
  switch (mode) {
  case RL_H5_READ:
    id = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (id < 0) rc = h5_fail(f, NULL, RL_EIO, "cannot open as an HDF5 file");
    break;
  case RL_H5_APPEND:
    if (access(file, F_OK) == 0) {
      id = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
      if (id < 0) rc = h5_fail(f, NULL, RL_EIO, "cannot open as an HDF5 file for writing");
    } else {
      id = H5Fcreate(file, H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
      if (id < 0) rc = h5_fail(f, NULL, RL_EIO, "cannot create the HDF5 file");
    }
    break;
  case RL_H5_TRUNCATE:
    id = H5Fcreate(file, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (id < 0) rc = h5_fail(f, NULL, RL_EIO, "cannot create the HDF5 file");
    break;
  default:
    rc = rl_fail(RL_EINVAL, "%s: unknown open mode %d", f->name, mode);
  }
  quiet_end(q);
  f->id = rc ? -1 : id;
  return rc;
}

void rl_h5_close(rl_h5 *f) {
  if (!f || f->id < 0) return;
  quiet q = quiet_begin();
  H5Fclose(f->id);
  quiet_end(q);
  f->id = -1;
}

/* ---------------------------------------------------------------- objects */

static int type_of_info(const H5O_info_t *oi) {
  if (oi->type == H5O_TYPE_GROUP) return RL_H5_GROUP;
  if (oi->type == H5O_TYPE_DATASET) return RL_H5_DATASET;
  return RL_H5_OTHER;
}

/* Kind of the object at path, walking its components so that a missing parent is "missing", not an error. */
static int object_kind(hid_t file, const char *path) {
  char buf[H5_PATH_LEN];
  size_t n = strlen(path), len = 0;
  int kind = RL_H5_GROUP; /* the root */
  for (size_t i = 0; i < n;) {
    while (i < n && path[i] == '/') i++;
    if (i == n) break;
    size_t j = i;
    while (j < n && path[j] != '/') j++;
    if (kind != RL_H5_GROUP) return RL_H5_MISSING; /* a component below a dataset */
    buf[len++] = '/';
    memcpy(buf + len, path + i, j - i);
    len += j - i;
    buf[len] = '\0';
    H5O_info_t oi;
    if (H5Lexists(file, buf, H5P_DEFAULT) <= 0 ||
        H5Oget_info_by_name2(file, buf, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
      H5Eclear2(H5E_DEFAULT);
      return RL_H5_MISSING;
    }
    kind = type_of_info(&oi);
    i = j;
  }
  H5Eclear2(H5E_DEFAULT); /* a failed probe must not show up as the reason of a later message */
  return kind;
}

/* When path is missing because one of its parents exists but is not a group, copies that parent into buf and
** returns its kind; else returns RL_H5_MISSING. */
static int blocking_parent(hid_t file, const char *path, char *buf) {
  size_t n = strlen(path), len = 0;
  for (size_t i = 0; i < n;) {
    while (i < n && path[i] == '/') i++;
    size_t j = i;
    while (j < n && path[j] != '/') j++;
    if (j >= n) break; /* the last component is not a parent */
    buf[len++] = '/';
    memcpy(buf + len, path + i, j - i);
    len += j - i;
    buf[len] = '\0';
    int kind = object_kind(file, buf);
    if (kind == RL_H5_MISSING) return RL_H5_MISSING;
    if (kind != RL_H5_GROUP) return kind;
    i = j;
  }
  return RL_H5_MISSING;
}

static const char *kind_name(int kind) {
  switch (kind) {
  case RL_H5_GROUP: return "a group";
  case RL_H5_DATASET: return "a dataset";
  case RL_H5_MISSING: return "missing";
  default: return "neither a group nor a dataset";
  }
}

int rl_h5_kind(rl_h5 *f, const char *path, int *kind) {
  int rc = check_open(f, path);
  if (rc) return rc;
  quiet q = quiet_begin();
  *kind = object_kind(f->id, path);
  H5Eclear2(H5E_DEFAULT);
  quiet_end(q);
  return RL_OK;
}

/* Opens the dataset at path, with a precise message when it is missing or is something else. */
static int open_dataset(rl_h5 *f, const char *path, hid_t *out) {
  int kind = object_kind(f->id, path);
  if (kind == RL_H5_MISSING) return h5_fail(f, path, RL_EINVAL, "no such dataset");
  if (kind != RL_H5_DATASET) return h5_fail(f, path, RL_EINVAL, "is %s, not a dataset", kind_name(kind));
  *out = H5Dopen2(f->id, path, H5P_DEFAULT);
  if (*out < 0) return h5_fail(f, path, RL_EIO, "cannot open the dataset");
  return RL_OK;
}

/* Element class, size and a readable name of an HDF5 type. Numbers of a size other than 1, 2, 4, 8 (integers) or
** 2, 4, 8, 16 (floats) are classed non-numeric, so no reader hands such a type (which only a corrupt file or an
** unusual writer produces) to HDF5's conversions. */
static void describe_type(hid_t t, int *cls, int *size, char *name, size_t n) {
  H5T_class_t c = H5Tget_class(t);
  size_t bytes = H5Tget_size(t);
  *size = bytes > H5_MAX_ELEMENT ? H5_MAX_ELEMENT + 1 : (int)bytes; /* (a size field from the file can be huge) */
  *cls = RL_H5_NONNUMERIC;
  if ((c == H5T_INTEGER && bytes != 1 && bytes != 2 && bytes != 4 && bytes != 8) ||
      (c == H5T_FLOAT && bytes != 2 && bytes != 4 && bytes != 8 && bytes != 16)) {
    snprintf(name, n, "%s of %zu bytes", c == H5T_FLOAT ? "float" : "integer", bytes);
    return;
  }
  switch (c) {
  case H5T_FLOAT:
    *cls = RL_H5_FLOAT;
    snprintf(name, n, "float%d", *size * 8);
    return;
  case H5T_INTEGER:
    *cls = H5Tget_sign(t) == H5T_SGN_NONE ? RL_H5_UINT : RL_H5_INT;
    snprintf(name, n, "%s%d", *cls == RL_H5_UINT ? "uint" : "int", *size * 8);
    return;
  case H5T_STRING: snprintf(name, n, "string"); return;
  case H5T_COMPOUND: snprintf(name, n, "compound"); return;
  case H5T_ENUM: snprintf(name, n, "enum"); return;
  case H5T_ARRAY: snprintf(name, n, "array"); return;
  case H5T_VLEN: snprintf(name, n, "variable-length"); return;
  case H5T_OPAQUE: snprintf(name, n, "opaque"); return;
  case H5T_BITFIELD: snprintf(name, n, "bitfield"); return;
  case H5T_REFERENCE: snprintf(name, n, "reference"); return;
  case H5T_TIME: snprintf(name, n, "time"); return;
  default: snprintf(name, n, "unknown"); return;
  }
}

/* Size of the file in bytes (0 if unknown). */
static int64_t file_bytes(const rl_h5 *f) {
  hsize_t size = 0;
  if (H5Fget_filesize(f->id, &size) < 0) {
    H5Eclear2(H5E_DEFAULT);
    return 0;
  }
  return size > (hsize_t)INT64_MAX ? INT64_MAX : (int64_t)size;
}

/* Refuses a dataset whose declared values cannot be in the file (see H5_MAX_EXPANSION), or that keeps them
** outside the file (external raw files, virtual datasets): a dataset file names no other file to read. */
static int check_storage(rl_h5 *f, const char *path, hid_t d, const rl_h5_info *info) {
  int rc = RL_OK;
  hid_t dcpl = H5Dget_create_plist(d);
  if (dcpl < 0) return h5_fail(f, path, RL_EIO, "cannot read the storage layout");
  H5D_layout_t layout = H5Pget_layout(dcpl);
  int external = H5Pget_external_count(dcpl);
  if (layout == H5D_VIRTUAL || external > 0) {
    rc = h5_fail(f, path, RL_EINVAL, "keeps its values outside the file (%s), which is not supported",
                 layout == H5D_VIRTUAL ? "a virtual dataset" : "external storage");
    goto done;
  }
  if (layout < 0) {
    rc = h5_fail(f, path, RL_EIO, "cannot read the storage layout");
    goto done;
  }
  int64_t size = info->type_size > 0 ? info->type_size : 1, have = file_bytes(f);
  int64_t limit = layout == H5D_CHUNKED ? (have > INT64_MAX / H5_MAX_EXPANSION ? INT64_MAX : have * H5_MAX_EXPANSION)
                                        : have;
  if (limit < H5_SMALL_BYTES) limit = H5_SMALL_BYTES;
  if (info->numel > limit / size)
    rc = h5_fail(f, path, RL_EINVAL, "declares %lld elements of %lld bytes, more than a file of %lld bytes can hold "
                 "(truncated or corrupt file)", (long long)info->numel, (long long)size, (long long)have);
done:
  H5Pclose(dcpl);
  return rc;
}

/* Shape and type of an open dataset, checked against RL_MAX_DIM and the size of the file. */
static int dataset_info(rl_h5 *f, const char *path, hid_t d, rl_h5_info *info) {
  hid_t s = -1, t = -1;
  int rc = RL_OK;
  memset(info, 0, sizeof *info);
  s = H5Dget_space(d);
  t = H5Dget_type(d);
  if (s < 0 || t < 0) {
    rc = h5_fail(f, path, RL_EIO, "cannot read the shape or type");
    goto done;
  }
  H5S_class_t sc = H5Sget_simple_extent_type(s);
  if (sc == H5S_SCALAR) {
    info->ndim = 0;
    info->numel = 1;
  } else if (sc == H5S_NULL) { /* an empty dataset (h5py.Empty) reads as zero elements */
    info->ndim = 1;
    info->numel = 0;
  } else {
    hsize_t dims[H5S_MAX_RANK];
    int nd = H5Sget_simple_extent_dims(s, dims, NULL);
    if (nd < 0) {
      rc = h5_fail(f, path, RL_EIO, "cannot read the shape");
      goto done;
    }
    info->ndim = nd;
    info->numel = 1;
    int too_large = 0;
    for (int i = 0; i < nd; i++) { /* dims come from the file: any 64-bit value */
      too_large |= dims[i] > (hsize_t)RL_MAX_DIM;
      info->shape[i] = too_large ? 0 : (int64_t)dims[i];
      if (!too_large && dims[i] && info->numel > RL_MAX_DIM / (int64_t)dims[i]) too_large = 1;
      if (!too_large) info->numel *= (int64_t)dims[i];
    }
    if (too_large) {
      char shape[160];
      size_t k = 0;
      for (int i = 0; i < nd && k + 24 < sizeof shape; i++)
        k += (size_t)snprintf(shape + k, sizeof shape - k, "%s%llu", i ? " x " : "", (unsigned long long)dims[i]);
      rc = h5_fail(f, path, RL_EINVAL, "shape %s is too large (more than RL_MAX_DIM = %lld elements)", shape,
                   (long long)RL_MAX_DIM);
      goto done;
    }
  }
  describe_type(t, &info->type_class, &info->type_size, info->type_name, sizeof info->type_name);
  rc = check_storage(f, path, d, info);
done:
  close_id(s, H5Sclose);
  close_id(t, H5Tclose);
  return rc;
}

int rl_h5_dataset_info(rl_h5 *f, const char *path, rl_h5_info *info) {
  int rc = check_open(f, path);
  if (rc) return rc;
  quiet q = quiet_begin();
  hid_t d = -1;
  rc = open_dataset(f, path, &d);
  if (!rc) rc = dataset_info(f, path, d, info);
  close_id(d, H5Dclose);
  quiet_end(q);
  return rc;
}

/* ---------------------------------------------------------------- reading datasets */

/* Whole-dataset read into memory type mt, after checking the class (want_integer: integers only) and size. */
static int read_whole(rl_h5 *f, const char *path, hid_t mt, int want_integer, void *dst, int64_t numel) {
  int rc = check_open(f, path);
  if (rc) return rc;
  quiet q = quiet_begin();
  hid_t d = -1;
  rl_h5_info info;
  rc = open_dataset(f, path, &d);
  if (!rc) rc = dataset_info(f, path, d, &info);
  if (rc) goto done;
  if (info.type_class == RL_H5_NONNUMERIC) {
    rc = h5_fail(f, path, RL_EINVAL, "has type %s, expected a numeric dataset", info.type_name);
    goto done;
  }
  if (want_integer && info.type_class == RL_H5_FLOAT) {
    rc = h5_fail(f, path, RL_EINVAL, "has type %s, expected an integer dataset", info.type_name);
    goto done;
  }
  if (info.ndim > RL_MAX_DIMS) {
    rc = h5_fail(f, path, RL_EINVAL, "has rank %d, at most %d is supported", info.ndim, RL_MAX_DIMS);
    goto done;
  }
  if (info.numel != numel) {
    rc = h5_fail(f, path, RL_EINVAL, "has %lld elements, the caller expected %lld", (long long)info.numel,
                 (long long)numel);
    goto done;
  }
  if (numel > 0 && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
    rc = h5_fail(f, path, RL_EIO, "cannot read the values");
done:
  close_id(d, H5Dclose);
  quiet_end(q);
  return rc;
}

int rl_h5_read_real(rl_h5 *f, const char *path, real *dst, int64_t numel) {
  return read_whole(f, path, sizeof(real) == sizeof(double) ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT, 0, dst, numel);
}

int rl_h5_read_int64(rl_h5 *f, const char *path, int64_t *dst, int64_t numel) {
  return read_whole(f, path, H5T_NATIVE_INT64, 1, dst, numel);
}

int rl_h5_read_rows(rl_h5 *f, const char *path, int64_t row0, int64_t nrows, double *dst) {
  int rc = check_open(f, path);
  if (rc) return rc;
  quiet q = quiet_begin();
  hid_t d = -1, fs = -1, ms = -1;
  rl_h5_info info;
  rc = open_dataset(f, path, &d);
  if (!rc) rc = dataset_info(f, path, d, &info);
  if (rc) goto done;
  if (info.type_class == RL_H5_NONNUMERIC) {
    rc = h5_fail(f, path, RL_EINVAL, "has type %s, expected a numeric dataset", info.type_name);
    goto done;
  }
  if (info.ndim < 1 || info.ndim > RL_MAX_DIMS) {
    rc = h5_fail(f, path, RL_EINVAL, "has rank %d, reading rows needs rank 1..%d", info.ndim, RL_MAX_DIMS);
    goto done;
  }
  if (row0 < 0 || nrows < 0 || row0 > info.shape[0] - nrows) {
    rc = h5_fail(f, path, RL_EINVAL, "rows %lld..%lld are outside the %lld rows", (long long)row0,
                 (long long)(row0 + nrows - 1), (long long)info.shape[0]);
    goto done;
  }
  if (nrows == 0) goto done;
  hsize_t start[RL_MAX_DIMS] = {0}, count[RL_MAX_DIMS];
  for (int i = 0; i < info.ndim; i++) count[i] = (hsize_t)info.shape[i];
  start[0] = (hsize_t)row0;
  count[0] = (hsize_t)nrows;
  fs = H5Dget_space(d);
  ms = H5Screate_simple(info.ndim, count, NULL);
  if (fs < 0 || ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0) {
    rc = h5_fail(f, path, RL_EIO, "cannot select rows %lld..%lld", (long long)row0, (long long)(row0 + nrows - 1));
    goto done;
  }
  if (H5Dread(d, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, dst) < 0)
    rc = h5_fail(f, path, RL_EIO, "cannot read rows %lld..%lld", (long long)row0, (long long)(row0 + nrows - 1));
done:
  close_id(ms, H5Sclose);
  close_id(fs, H5Sclose);
  close_id(d, H5Dclose);
  quiet_end(q);
  return rc;
}

/* ---------------------------------------------------------------- groups */

typedef struct list_ctx {
  rl_h5_list *out;
  int64_t cap;
  int rc;
} list_ctx;

static herr_t list_member(hid_t g, const char *name, const H5L_info_t *li, void *data) {
  list_ctx *c = data;
  rl_h5_list *l = c->out;
  if (l->count == c->cap) {
    int64_t cap = c->cap ? 2 * c->cap : 16;
    rl_h5_member *p = rl_realloc(l->items, (size_t)cap * sizeof *p);
    if (!p) {
      c->rc = RL_ENOMEM;
      return -1;
    }
    l->items = p;
    c->cap = cap;
  }
  char *copy = rl_malloc(strlen(name) + 1);
  if (!copy) {
    c->rc = RL_ENOMEM;
    return -1;
  }
  strcpy(copy, name);
  H5O_info_t oi;
  int kind = RL_H5_OTHER; /* dangling or external links stay "other" */
  if (li->type == H5L_TYPE_HARD || li->type == H5L_TYPE_SOFT)
    if (H5Oget_info_by_name2(g, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) >= 0) kind = type_of_info(&oi);
  l->items[l->count].name = copy;
  l->items[l->count].kind = kind;
  l->count++;
  return 0;
}

int rl_h5_list_group(rl_h5 *f, const char *path, rl_h5_list *out) {
  out->count = 0;
  out->items = NULL;
  int rc = check_open(f, path);
  if (rc) return rc;
  quiet q = quiet_begin();
  hid_t g = -1;
  int kind = object_kind(f->id, path);
  if (kind == RL_H5_MISSING) {
    rc = h5_fail(f, path, RL_EINVAL, "no such group");
    goto done;
  }
  if (kind != RL_H5_GROUP) {
    rc = h5_fail(f, path, RL_EINVAL, "is %s, not a group", kind_name(kind));
    goto done;
  }
  g = H5Gopen2(f->id, path, H5P_DEFAULT);
  if (g < 0) {
    rc = h5_fail(f, path, RL_EIO, "cannot open the group");
    goto done;
  }
  list_ctx c = {out, 0, RL_OK};
  if (H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, list_member, &c) < 0)
    rc = c.rc ? c.rc : h5_fail(f, path, RL_EIO, "cannot list the group members");
done:
  close_id(g, H5Gclose);
  quiet_end(q);
  if (rc) rl_h5_list_free(out);
  return name_failure(f, path, rc);
}

void rl_h5_list_free(rl_h5_list *l) {
  if (!l) return;
  for (int64_t i = 0; i < l->count; i++) rl_free(l->items[i].name);
  rl_free(l->items);
  l->items = NULL;
  l->count = 0;
}

/* ---------------------------------------------------------------- attributes: reading */

typedef struct attr_ctx {
  rl_h5 *f;
  const char *path;
  rl_h5_attrs *out;
  int cap;
  int rc;
} attr_ctx;

static char *dup_string(const char *s, size_t n) {
  char *p = rl_malloc(n + 1);
  if (!p) return NULL;
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

/* Reads the integer at p of the given size and signedness. */
static int64_t load_integer(const unsigned char *p, size_t size, int is_signed) {
  switch (size) {
  case 1: { int8_t s; uint8_t u; memcpy(&s, p, 1); memcpy(&u, p, 1); return is_signed ? s : u; }
  case 2: { int16_t s; uint16_t u; memcpy(&s, p, 2); memcpy(&u, p, 2); return is_signed ? s : u; }
  case 4: { int32_t s; uint32_t u; memcpy(&s, p, 4); memcpy(&u, p, 4); return is_signed ? s : (int64_t)u; }
  default: { int64_t s; memcpy(&s, p, 8); return s; }
  }
}

/* 1 if the enum type is h5py's boolean: two members named FALSE and TRUE. */
static int is_h5py_bool(hid_t t) {
  if (H5Tget_nmembers(t) != 2) return 0;
  int ok = 1;
  for (unsigned i = 0; i < 2; i++) {
    char *name = H5Tget_member_name(t, i);
    if (!name) return 0;
    if (strcmp(name, i == 0 ? "FALSE" : "TRUE") != 0) ok = 0;
    H5free_memory(name);
  }
  return ok;
}

static int read_attr_strings(attr_ctx *c, const char *name, hid_t a, hid_t t, hid_t s, int64_t count, char **dst) {
  int rc = RL_OK;
  hid_t mt = -1;
  void *buf = NULL;
  if (H5Tis_variable_str(t) > 0) {
    mt = H5Tcopy(H5T_C_S1);
    if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0) {
      rc = h5_fail(c->f, c->path, RL_EIO, "attribute '%s': cannot make a string type", name);
      goto done;
    }
    char **vbuf = rl_calloc((size_t)count, sizeof(char *));
    if (!(buf = vbuf)) {
      rc = RL_ENOMEM;
      goto done;
    }
    if (H5Aread(a, mt, vbuf) < 0) {
      rc = h5_fail(c->f, c->path, RL_EIO, "attribute '%s': cannot read the strings", name);
      goto done;
    }
    for (int64_t i = 0; i < count && !rc; i++)
      if (!(dst[i] = dup_string(vbuf[i] ? vbuf[i] : "", vbuf[i] ? strlen(vbuf[i]) : 0))) rc = RL_ENOMEM;
    H5Dvlen_reclaim(mt, s, H5P_DEFAULT, vbuf);
  } else {
    size_t size = H5Tget_size(t);
    H5T_str_t pad = H5Tget_strpad(t);
    mt = H5Tcopy(t);
    if (mt < 0) {
      rc = h5_fail(c->f, c->path, RL_EIO, "attribute '%s': cannot copy the string type", name);
      goto done;
    }
    char *fbuf = rl_malloc((size_t)count * size);
    if (!(buf = fbuf)) {
      rc = RL_ENOMEM;
      goto done;
    }
    if (H5Aread(a, mt, fbuf) < 0) {
      rc = h5_fail(c->f, c->path, RL_EIO, "attribute '%s': cannot read the strings", name);
      goto done;
    }
    for (int64_t i = 0; i < count && !rc; i++) {
      const char *p = fbuf + (size_t)i * size;
      size_t n = strnlen(p, size);
      if (pad == H5T_STR_SPACEPAD)
        while (n > 0 && p[n - 1] == ' ') n--;
      if (!(dst[i] = dup_string(p, n))) rc = RL_ENOMEM;
    }
  }
done:
  rl_free(buf);
  close_id(mt, H5Tclose);
  return rc;
}

static int read_attr_enum(attr_ctx *c, const char *name, hid_t a, hid_t t, int64_t count, int64_t *dst, int *kind) {
  int rc = RL_OK;
  hid_t mt = H5Tget_native_type(t, H5T_DIR_ASCEND), super = H5Tget_super(t);
  unsigned char *buf = NULL;
  if (mt < 0 || super < 0) {
    rc = h5_fail(c->f, c->path, RL_EIO, "attribute '%s': cannot read the enum type", name);
    goto done;
  }
  size_t size = H5Tget_size(mt);
  int is_signed = H5Tget_sign(super) != H5T_SGN_NONE;
  if (size != 1 && size != 2 && size != 4 && size != 8) {
    rc = h5_fail(c->f, c->path, RL_EINVAL, "attribute '%s': enum of %zu-byte integers is not supported", name, size);
    goto done;
  }
  if (!(buf = rl_malloc((size_t)count * size))) {
    rc = RL_ENOMEM;
    goto done;
  }
  if (H5Aread(a, mt, buf) < 0) {
    rc = h5_fail(c->f, c->path, RL_EIO, "attribute '%s': cannot read the values", name);
    goto done;
  }
  *kind = is_h5py_bool(t) ? RL_H5_ATTR_BOOL : RL_H5_ATTR_INT;
  for (int64_t i = 0; i < count; i++) {
    int64_t v = load_integer(buf + (size_t)i * size, size, is_signed);
    dst[i] = *kind == RL_H5_ATTR_BOOL ? (v != 0) : v;
  }
done:
  rl_free(buf);
  close_id(mt, H5Tclose);
  close_id(super, H5Tclose);
  return rc;
}

/* Bytes of one variable-length value in the file: a length (4), a global heap address and an index (4). */
static size_t vlen_file_size(const rl_h5 *f) {
  size_t addr = 8, len = 8;
  hid_t fcpl = H5Fget_create_plist(f->id);
  if (fcpl < 0 || H5Pget_sizes(fcpl, &addr, &len) < 0) H5Eclear2(H5E_DEFAULT);
  if (fcpl >= 0) H5Pclose(fcpl);
  return 4 + addr + 4;
}

/* Reads one attribute into *out (whose pointers it allocates). */
static int read_attr(attr_ctx *c, hid_t a, const char *name, rl_h5_attr *out) {
  int rc = RL_OK;
  hid_t t = H5Aget_type(a), s = H5Aget_space(a);
  if (t < 0 || s < 0) {
    rc = h5_fail(c->f, c->path, RL_EIO, "attribute '%s': cannot read its type or shape", name);
    goto done;
  }
  H5S_class_t sc = H5Sget_simple_extent_type(s);
  int64_t count = 1;
  out->is_array = sc != H5S_SCALAR;
  if (sc == H5S_NULL) {
    count = 0;
  } else if (sc == H5S_SIMPLE) {
    hssize_t n = H5Sget_simple_extent_npoints(s);
    count = n < 0 ? 0 : (int64_t)n;
  }
  out->count = count;
  int cls, size;
  char tname[24];
  describe_type(t, &cls, &size, tname, sizeof tname);
  H5T_class_t hc = H5Tget_class(t);
  if (hc == H5T_INTEGER || hc == H5T_FLOAT || hc == H5T_STRING || hc == H5T_ENUM) {
    /* an attribute's values are stored in the file as they are: a count beyond the file's size is corruption */
    int64_t have = file_bytes(c->f), limit = have > H5_SMALL_BYTES ? have : H5_SMALL_BYTES;
    size_t esize = H5Tget_size(t);
    /* the values HDF5 holds for the attribute must be as many bytes as the count says: HDF5 1.10 copies
    ** count x size bytes out of a shorter buffer when a corrupt message says otherwise */
    hsize_t held = H5Aget_storage_size(a);
    size_t stored = esize; /* bytes per value in the file */
    if (H5Tis_variable_str(t) > 0) stored = vlen_file_size(c->f); /* (H5Tget_size gives the in-memory size) */
    if (stored > 0 && stored <= (size_t)limit && count <= limit / (int64_t)stored && held != (hsize_t)count * stored) {
      out->count = 0;
      rc = h5_fail(c->f, c->path, RL_EINVAL, "attribute '%s': %lld values of %zu bytes, but %llu bytes stored "
                   "(corrupt file)", name, (long long)count, stored, (unsigned long long)held);
      goto done;
    }
    if (esize == 0 || esize > (size_t)limit || count > limit / (int64_t)esize) {
      out->count = 0; /* nothing allocated yet */
      rc = h5_fail(c->f, c->path, RL_EINVAL, "attribute '%s': declares %lld values of %zu bytes, more than a file "
                   "of %lld bytes can hold (truncated or corrupt file)", name, (long long)count, esize,
                   (long long)have);
      goto done;
    }
  }
  if ((hc == H5T_INTEGER || hc == H5T_FLOAT) && cls == RL_H5_NONNUMERIC) hc = H5T_NO_CLASS; /* odd sizes: described */
  if (hc == H5T_INTEGER) {
    int64_t *v = rl_calloc((size_t)count, sizeof *v);
    out->kind = RL_H5_ATTR_INT;
    if (!(out->ints = v)) rc = RL_ENOMEM;
    else if (count && H5Aread(a, H5T_NATIVE_INT64, v) < 0)
      rc = h5_fail(c->f, c->path, RL_EIO, "attribute '%s': cannot read the values", name);
  } else if (hc == H5T_FLOAT) {
    double *v = rl_calloc((size_t)count, sizeof *v);
    out->kind = RL_H5_ATTR_FLOAT;
    if (!(out->floats = v)) rc = RL_ENOMEM;
    else if (count && H5Aread(a, H5T_NATIVE_DOUBLE, v) < 0)
      rc = h5_fail(c->f, c->path, RL_EIO, "attribute '%s': cannot read the values", name);
  } else if (hc == H5T_STRING) {
    char **v = rl_calloc((size_t)count, sizeof *v);
    out->kind = RL_H5_ATTR_STRING;
    if (!(out->strings = (const char *const *)v)) rc = RL_ENOMEM;
    else if (count) rc = read_attr_strings(c, name, a, t, s, count, v);
  } else if (hc == H5T_ENUM) {
    int64_t *v = rl_calloc((size_t)count, sizeof *v);
    out->kind = RL_H5_ATTR_INT;
    if (!(out->ints = v)) rc = RL_ENOMEM;
    else if (count) rc = read_attr_enum(c, name, a, t, count, v, &out->kind);
  } else {
    char desc[64];
    snprintf(desc, sizeof desc, "(unsupported HDF5 attribute type: %s)", tname);
    char **v = rl_calloc(1, sizeof *v);
    out->kind = RL_H5_ATTR_UNSUPPORTED;
    out->is_array = 0;
    out->count = 1;
    if (!(out->strings = (const char *const *)v) || !(v[0] = dup_string(desc, strlen(desc)))) rc = RL_ENOMEM;
  }
done:
  close_id(t, H5Tclose);
  close_id(s, H5Sclose);
  return rc;
}

static void attr_free_values(rl_h5_attr *a) {
  if (a->strings)
    for (int64_t i = 0; i < a->count; i++) rl_free((void *)a->strings[i]);
  rl_free((void *)a->strings);
  rl_free((void *)a->ints);
  rl_free((void *)a->floats);
  rl_free((void *)a->name);
  memset(a, 0, sizeof *a);
}

static herr_t attr_visit(hid_t loc, const char *name, const H5A_info_t *ai, void *data) {
  attr_ctx *c = data;
  rl_h5_attrs *out = c->out;
  if (out->count == c->cap) {
    int cap = c->cap ? 2 * c->cap : 16;
    rl_h5_attr *p = rl_realloc(out->items, (size_t)cap * sizeof *p);
    if (!p) {
      c->rc = RL_ENOMEM;
      return -1;
    }
    out->items = p;
    c->cap = cap;
  }
  rl_h5_attr *item = &out->items[out->count];
  memset(item, 0, sizeof *item);
  out->count++; /* counted now so that a failure below frees what was allocated */
  if (!(item->name = dup_string(name, strlen(name)))) {
    c->rc = RL_ENOMEM;
    return -1;
  }
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  if (a < 0) {
    c->rc = h5_fail(c->f, c->path, RL_EIO, "cannot open attribute '%s'", name);
    return -1;
  }
  c->rc = read_attr(c, a, name, item);
  H5Aclose(a);
  return c->rc ? -1 : 0;
}

/* Opens the group or dataset at path as a generic object. */
static int open_object(rl_h5 *f, const char *path, hid_t *out) {
  int kind = object_kind(f->id, path);
  if (kind == RL_H5_MISSING) return h5_fail(f, path, RL_EINVAL, "no such group or dataset");
  if (kind == RL_H5_OTHER) return h5_fail(f, path, RL_EINVAL, "is neither a group nor a dataset");
  *out = H5Oopen(f->id, path, H5P_DEFAULT);
  if (*out < 0) return h5_fail(f, path, RL_EIO, "cannot open the object");
  return RL_OK;
}

int rl_h5_read_attrs(rl_h5 *f, const char *path, rl_h5_attrs *out) {
  out->count = 0;
  out->items = NULL;
  int rc = check_open(f, path);
  if (rc) return rc;
  quiet q = quiet_begin();
  hid_t o = -1;
  rc = open_object(f, path, &o);
  /* HDF5 1.10 crashes (a NULL dereference in H5A__attr_release_table) when an attribute message fails to decode
  ** while H5Aiterate2 builds its table. H5Aexists decodes every attribute message of the object (they stay cached
  ** in the object header) and fails cleanly on a corrupt one, so it goes first. */
  if (!rc && H5Aexists(o, ATTR_PROBE_NAME) < 0) rc = h5_fail(f, path, RL_EIO, "cannot read the attributes");
  if (!rc) {
    attr_ctx c = {f, path, out, 0, RL_OK};
    if (H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_INC, NULL, attr_visit, &c) < 0)
      rc = c.rc ? c.rc : h5_fail(f, path, RL_EIO, "cannot list the attributes");
  }
  close_id(o, H5Oclose);
  quiet_end(q);
  if (rc) rl_h5_attrs_free(out);
  return name_failure(f, path, rc);
}

void rl_h5_attrs_free(rl_h5_attrs *attrs) {
  if (!attrs) return;
  for (int i = 0; i < attrs->count; i++) attr_free_values(&attrs->items[i]);
  rl_free(attrs->items);
  attrs->items = NULL;
  attrs->count = 0;
}

const rl_h5_attr *rl_h5_attr_find(const rl_h5_attrs *attrs, const char *name) {
  for (int i = 0; i < attrs->count; i++)
    if (strcmp(attrs->items[i].name, name) == 0) return &attrs->items[i];
  return NULL;
}

/* ---------------------------------------------------------------- writing */

/* A link-creation property list that creates missing parent groups. */
static hid_t intermediate_lcpl(void) {
  hid_t p = H5Pcreate(H5P_LINK_CREATE);
  if (p >= 0 && H5Pset_create_intermediate_group(p, 1) < 0) {
    H5Pclose(p);
    return -1;
  }
  return p;
}

static int check_writable(rl_h5 *f, const char *path, int ndim, const int64_t *shape) {
  int rc = check_open(f, path);
  if (rc) return rc;
  if (ndim < 0 || ndim > RL_MAX_DIMS)
    return rl_fail(RL_EINVAL, "%s: %s: rank must be 0..%d, got %d", f->name, path, RL_MAX_DIMS, ndim);
  for (int i = 0; i < ndim; i++)
    if (shape[i] < 0)
      return rl_fail(RL_EINVAL, "%s: %s: dimension %d is negative (%lld)", f->name, path, i + 1, (long long)shape[i]);
  return RL_OK;
}

static int write_dataset(rl_h5 *f, const char *path, hid_t ftype, hid_t mtype, const void *data, int ndim,
                         const int64_t *shape) {
  int rc = check_writable(f, path, ndim, shape);
  if (rc) return rc;
  quiet q = quiet_begin();
  hid_t s = -1, d = -1, lcpl = -1, dcpl = -1;
  int kind = object_kind(f->id, path);
  int64_t numel = 1;
  char parent[H5_PATH_LEN];
  if (kind != RL_H5_MISSING) {
    rc = h5_fail(f, path, RL_EINVAL, "already exists (%s)", kind_name(kind));
    goto done;
  }
  if ((kind = blocking_parent(f->id, path, parent)) != RL_H5_MISSING) {
    rc = h5_fail(f, path, RL_EINVAL, "cannot be created: its parent %s is %s", parent, kind_name(kind));
    goto done;
  }
  hsize_t dims[RL_MAX_DIMS];
  for (int i = 0; i < ndim; i++) numel *= (int64_t)(dims[i] = (hsize_t)shape[i]);
  s = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
  lcpl = intermediate_lcpl();
  dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (s < 0 || lcpl < 0 || dcpl < 0 || H5Pset_obj_track_times(dcpl, 0) < 0) { /* no timestamps: same data, same bytes */
    rc = h5_fail(f, path, RL_EIO, "cannot create the dataspace");
    goto done;
  }
  d = H5Dcreate2(f->id, path, ftype, s, lcpl, dcpl, H5P_DEFAULT);
  if (d < 0) {
    rc = h5_fail(f, path, RL_EIO, "cannot create the dataset");
    goto done;
  }
  if (numel > 0 && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    rc = h5_fail(f, path, RL_EIO, "cannot write the values");
done:
  close_id(d, H5Dclose);
  close_id(s, H5Sclose);
  close_id(lcpl, H5Pclose);
  close_id(dcpl, H5Pclose);
  quiet_end(q);
  return rc;
}

int rl_h5_write_real(rl_h5 *f, const char *path, const real *data, int ndim, const int64_t *shape, int as_double) {
  return write_dataset(f, path, as_double ? H5T_IEEE_F64LE : H5T_IEEE_F32LE,
                       sizeof(real) == sizeof(double) ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT, data, ndim, shape);
}

int rl_h5_write_int64(rl_h5 *f, const char *path, const int64_t *data, int ndim, const int64_t *shape) {
  return write_dataset(f, path, H5T_STD_I64LE, H5T_NATIVE_INT64, data, ndim, shape);
}

/* The file type of an attribute (memory type equals file type except for numbers); *mem gets the memory type. */
static int attr_types(rl_h5 *f, const char *path, const rl_h5_attr *a, hid_t *ftype, hid_t *mtype) {
  *ftype = *mtype = -1;
  switch (a->kind) {
  case RL_H5_ATTR_INT:
    *ftype = H5Tcopy(H5T_STD_I64LE);
    *mtype = H5Tcopy(H5T_NATIVE_INT64);
    break;
  case RL_H5_ATTR_FLOAT:
    *ftype = H5Tcopy(H5T_IEEE_F64LE);
    *mtype = H5Tcopy(H5T_NATIVE_DOUBLE);
    break;
  case RL_H5_ATTR_STRING:
    *ftype = H5Tcopy(H5T_C_S1);
    if (*ftype >= 0 && (H5Tset_size(*ftype, H5T_VARIABLE) < 0 || H5Tset_cset(*ftype, H5T_CSET_UTF8) < 0)) break;
    *mtype = *ftype >= 0 ? H5Tcopy(*ftype) : -1;
    break;
  case RL_H5_ATTR_BOOL: {
    int8_t no = 0, yes = 1;
    *ftype = H5Tenum_create(H5T_NATIVE_INT8);
    if (*ftype >= 0 && (H5Tenum_insert(*ftype, "FALSE", &no) < 0 || H5Tenum_insert(*ftype, "TRUE", &yes) < 0)) break;
    *mtype = *ftype >= 0 ? H5Tcopy(*ftype) : -1;
    break;
  }
  default:
    return rl_fail(RL_EINVAL, "%s: %s: attribute '%s' has an unsupported kind %d", f->name, path, a->name, a->kind);
  }
  if (*ftype < 0 || *mtype < 0) return h5_fail(f, path, RL_EIO, "attribute '%s': cannot make its type", a->name);
  return RL_OK;
}

int rl_h5_write_attr(rl_h5 *f, const char *path, const rl_h5_attr *a) {
  int rc = check_open(f, path);
  if (rc) return rc;
  if (!a->name || !a->name[0]) return rl_fail(RL_EINVAL, "%s: %s: attribute with an empty name", f->name, path);
  if (a->count < 0 || (!a->is_array && a->count != 1))
    return rl_fail(RL_EINVAL, "%s: %s: attribute '%s': a scalar needs exactly one value, got %lld", f->name, path,
                   a->name, (long long)a->count);
  quiet q = quiet_begin();
  hid_t o = -1, ft = -1, mt = -1, s = -1, at = -1;
  int8_t *flags = NULL;
  rc = open_object(f, path, &o);
  if (!rc) rc = attr_types(f, path, a, &ft, &mt);
  if (rc) goto done;
  if (H5Aexists(o, a->name) > 0 && H5Adelete(o, a->name) < 0) {
    rc = h5_fail(f, path, RL_EIO, "cannot replace attribute '%s'", a->name);
    goto done;
  }
  hsize_t n = (hsize_t)a->count;
  s = a->is_array ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
  if (s < 0 || (at = H5Acreate2(o, a->name, ft, s, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
    rc = h5_fail(f, path, RL_EIO, "cannot create attribute '%s'", a->name);
    goto done;
  }
  const void *buf = NULL;
  switch (a->kind) {
  case RL_H5_ATTR_INT: buf = a->ints; break;
  case RL_H5_ATTR_FLOAT: buf = a->floats; break;
  case RL_H5_ATTR_STRING: buf = a->strings; break;
  default: /* BOOL: the enum's base is int8 */
    if (!(flags = rl_malloc((size_t)a->count))) {
      rc = RL_ENOMEM;
      goto done;
    }
    for (int64_t i = 0; i < a->count; i++) flags[i] = a->ints[i] != 0;
    buf = flags;
  }
  if (a->count > 0 && H5Awrite(at, mt, buf) < 0) rc = h5_fail(f, path, RL_EIO, "cannot write attribute '%s'", a->name);
done:
  rl_free(flags);
  close_id(at, H5Aclose);
  close_id(s, H5Sclose);
  close_id(ft, H5Tclose);
  close_id(mt, H5Tclose);
  close_id(o, H5Oclose);
  quiet_end(q);
  return rc;
}

int rl_h5_create_group(rl_h5 *f, const char *path) {
  int rc = check_open(f, path);
  if (rc) return rc;
  quiet q = quiet_begin();
  hid_t g = -1, lcpl = -1;
  int kind = object_kind(f->id, path);
  if (kind == RL_H5_GROUP) goto done;
  char parent[H5_PATH_LEN];
  if (kind != RL_H5_MISSING) {
    rc = h5_fail(f, path, RL_EINVAL, "already exists as %s", kind_name(kind));
    goto done;
  }
  if ((kind = blocking_parent(f->id, path, parent)) != RL_H5_MISSING) {
    rc = h5_fail(f, path, RL_EINVAL, "cannot be created: its parent %s is %s", parent, kind_name(kind));
    goto done;
  }
  lcpl = intermediate_lcpl();
  if (lcpl < 0 || (g = H5Gcreate2(f->id, path, lcpl, H5P_DEFAULT, H5P_DEFAULT)) < 0)
    rc = h5_fail(f, path, RL_EIO, "cannot create the group");
done:
  close_id(g, H5Gclose);
  close_id(lcpl, H5Pclose);
  quiet_end(q);
  return rc;
}
