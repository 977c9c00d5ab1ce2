/*
** h5io.h -- generic HDF5 input/output (serial HDF5 1.10 C API): numeric datasets of any type and rank <= 4 read
** as `real` or int64, group listings, attributes (numbers, strings, booleans; scalars or arrays), and writers for
** datasets, attributes and groups. Every call silences HDF5's automatic error printing for its duration and turns a
** failure into an rl_fail message that names the file and the object ("F: /path: problem"). Every HDF5 handle a
** call opens is closed before it returns, on every path.
**
** Usage: rl_h5 f; rl_h5_init(&f); if (rl_h5_open(&f, "x.h5", RL_H5_READ)) ...; ...; rl_h5_close(&f);
*/
#ifndef RL_H5IO_H
#define RL_H5IO_H

#include "../limits.h"
#include "../rl.h"

/* Longest file name kept for messages (longer names are truncated in messages only). */
#define RL_H5_NAME_LEN 256
/* Largest rank reported by rl_h5_info (HDF5's own limit, H5S_MAX_RANK). Readers accept rank <= RL_MAX_DIMS. */
#define RL_H5_MAX_RANK 32

/* An open HDF5 file. rl_h5_init makes it closed (id < 0); rl_h5_close is safe to call twice. */
typedef struct rl_h5 {
  int64_t id; /* hid_t of the file, < 0 when closed */
  char name[RL_H5_NAME_LEN];
} rl_h5;

/* Open modes. APPEND opens read-write and creates the file when it does not exist; TRUNCATE always starts empty. */
enum { RL_H5_READ = 0, RL_H5_APPEND = 1, RL_H5_TRUNCATE = 2 };

/* Object kinds. */
enum { RL_H5_MISSING = 0, RL_H5_GROUP = 1, RL_H5_DATASET = 2, RL_H5_OTHER = 3 };

/* Element classes of a dataset. */
enum { RL_H5_FLOAT = 0, RL_H5_INT = 1, RL_H5_UINT = 2, RL_H5_NONNUMERIC = 3 };

typedef struct rl_h5_info {
  int ndim;                         /* 0 for a scalar dataset */
  int64_t shape[RL_H5_MAX_RANK];
  int64_t numel;                    /* product of the shape (1 for a scalar) */
  int type_class;                   /* RL_H5_FLOAT, RL_H5_INT, RL_H5_UINT or RL_H5_NONNUMERIC */
  int type_size;                    /* bytes per element in the file */
  char type_name[24];               /* "float32", "int64", "uint8", "string", "compound", ... */
} rl_h5_info;

/* Members of a group, sorted by name. A zero-initialised list is empty; free with rl_h5_list_free. */
typedef struct rl_h5_member {
  char *name;
  int kind; /* RL_H5_GROUP, RL_H5_DATASET or RL_H5_OTHER (named datatypes, dangling links) */
} rl_h5_member;
typedef struct rl_h5_list {
  int64_t count;
  rl_h5_member *items;
} rl_h5_list;

/* Attribute value kinds. BOOL is h5py's boolean (an enum FALSE/TRUE); other enums read as INT. */
enum { RL_H5_ATTR_INT = 0, RL_H5_ATTR_FLOAT = 1, RL_H5_ATTR_STRING = 2, RL_H5_ATTR_BOOL = 3, RL_H5_ATTR_UNSUPPORTED = 4 };

/* One attribute. Readers fill every pointer they use (owned by the rl_h5_attrs); writers take the caller's memory.
** Values of an array attribute are flattened in row-major order. An UNSUPPORTED attribute (compound, opaque, ...)
** carries one string describing its type. */
typedef struct rl_h5_attr {
  const char *name;
  int kind;
  int is_array;                /* 0: a scalar (count = 1); 1: an array of count values */
  int64_t count;
  const int64_t *ints;         /* INT and BOOL (0/1) */
  const double *floats;        /* FLOAT */
  const char *const *strings;  /* STRING (and the description of an UNSUPPORTED type) */
} rl_h5_attr;

/* The attributes of one object, sorted by name; zero-initialised = empty; free with rl_h5_attrs_free. */
typedef struct rl_h5_attrs {
  int count;
  rl_h5_attr *items;
} rl_h5_attrs;

void rl_h5_init(rl_h5 *f);
int rl_h5_open(rl_h5 *f, const char *file, int mode);
void rl_h5_close(rl_h5 *f);

/* Kind of the object at path (RL_H5_MISSING when any component is absent or a component is not a group). */
int rl_h5_kind(rl_h5 *f, const char *path, int *kind);
/* Shape and element type of the dataset at path. */
int rl_h5_dataset_info(rl_h5 *f, const char *path, rl_h5_info *info);

/* Whole numeric dataset (float or integer of any size, rank <= RL_MAX_DIMS) converted to real; numel must match. */
int rl_h5_read_real(rl_h5 *f, const char *path, real *dst, int64_t numel);
/* Whole integer dataset converted to int64 (floating point datasets are refused); numel must match. */
int rl_h5_read_int64(rl_h5 *f, const char *path, int64_t *dst, int64_t numel);
/* Rows row0 .. row0+nrows-1 of the leading dimension of a numeric dataset, as double (a hyperslab read). */
int rl_h5_read_rows(rl_h5 *f, const char *path, int64_t row0, int64_t nrows, double *dst);

/* Members of the group at path ("/" is the root). */
int rl_h5_list_group(rl_h5 *f, const char *path, rl_h5_list *out);
void rl_h5_list_free(rl_h5_list *list);

/* Attributes of the group or dataset at path. */
int rl_h5_read_attrs(rl_h5 *f, const char *path, rl_h5_attrs *out);
void rl_h5_attrs_free(rl_h5_attrs *attrs);
/* The attribute called name in attrs, or NULL. */
const rl_h5_attr *rl_h5_attr_find(const rl_h5_attrs *attrs, const char *name);

/* Writers (file opened with APPEND or TRUNCATE). Missing intermediate groups are created; an existing dataset at
** path is an error. ndim may be 0 (a scalar dataset). as_double: store float64 (else float32). */
int rl_h5_write_real(rl_h5 *f, const char *path, const real *data, int ndim, const int64_t *shape, int as_double);
int rl_h5_write_int64(rl_h5 *f, const char *path, const int64_t *data, int ndim, const int64_t *shape);
/* Writes (or replaces) one attribute of the group or dataset at path. Strings are stored as variable-length
** UTF-8, booleans as h5py's enum, so h5py reads back str, bool, int64 and float64. */
int rl_h5_write_attr(rl_h5 *f, const char *path, const rl_h5_attr *attr);
/* Creates the group at path and any missing parents; an existing group is fine. */
int rl_h5_create_group(rl_h5 *f, const char *path);

#endif
