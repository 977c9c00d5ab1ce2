/*
** fuzz_h5spec.c -- libFuzzer target for rotlab's validation of dataset files, structure level: the input bytes
** describe a dataset file -- which of /X, /offsets, /y, /group_offsets, /fold and one extra member exist, each as a
** dataset (of any of 12 element types, big- or little-endian, rank 0..5, dims 0..16, contiguous, chunked or
** chunked + gzip) or as a group, their values (small numbers, increasing runs, or raw bytes: NaN, Inf, huge,
** negative) and up to 4 root attributes (num_classes and others, of every attribute kind) -- and HDF5's own writer
** makes that file, so its HDF5 structure is always intact and everything found is rotlab's. The file goes through
** rl_dataset_load and the generic readers (fuzz_h5_common.h); a dataset that loads is written again with
** rl_dataset_write and must load back identical (whatever rotlab reads, it writes and reads back).
**
** The byte reader returns 0 once the input is used up, so short inputs are valid descriptions too.
*/
#include "fuzz_h5_common.h"

/* Longest dimension and rank the description can ask for. */
#define SPEC_MAX_EXTENT 16
#define SPEC_MAX_RANK 5

static char copy_path[4096];

typedef struct bytes {
  const uint8_t *p;
  size_t n;
} bytes;

static unsigned take(bytes *b) {
  if (!b->n) return 0;
  b->n--;
  return *b->p++;
}

static void take_raw(bytes *b, void *dst, size_t len) {
  size_t k = len < b->n ? len : b->n;
  memcpy(dst, b->p, k);
  memset((char *)dst + k, 0, len - k);
  b->p += k;
  b->n -= k;
}

/* Element types: a copy the caller closes. */
static hid_t element_type(unsigned k) {
  hid_t t;
  switch (k % 12) {
  case 0: return H5Tcopy(H5T_IEEE_F32LE);
  case 1: return H5Tcopy(H5T_IEEE_F64LE);
  case 2: return H5Tcopy(H5T_IEEE_F32BE);
  case 3: return H5Tcopy(H5T_IEEE_F64BE);
  case 4: return H5Tcopy(H5T_STD_I64LE);
  case 5: return H5Tcopy(H5T_STD_I32LE);
  case 6: return H5Tcopy(H5T_STD_U8LE);
  case 7: return H5Tcopy(H5T_STD_I64BE);
  case 8: return H5Tcopy(H5T_STD_U64LE);
  case 9: return H5Tcopy(H5T_STD_I16LE);
  case 10:
    t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 3);
    return t;
  default:
    t = H5Tcreate(H5T_COMPOUND, 8);
    H5Tinsert(t, "a", 0, H5T_STD_I32LE);
    H5Tinsert(t, "b", 4, H5T_IEEE_F32LE);
    return t;
  }
}

/* One field: flags choose absent / group / the natural type and rank / any type and rank, the layout and how the
** values are made. */
static void write_field(hid_t file, const char *name, int natural_type, int natural_rank, bytes *in) {
  unsigned flags = take(in);
  unsigned form = flags & 3;
  if (form == 1) return; /* absent */
  if (form == 2) {         /* a group in its place */
    hid_t g = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g >= 0) H5Gclose(g);
    return;
  }
  int type_k = natural_type, rank = natural_rank;
  if (form == 3) {
    type_k = (int)take(in);
    rank = (int)(take(in) % (SPEC_MAX_RANK + 1));
  }
  hsize_t dims[SPEC_MAX_RANK], numel = 1;
  for (int i = 0; i < rank; i++) numel *= (dims[i] = take(in) % (SPEC_MAX_EXTENT + 1));
  hid_t t = element_type((unsigned)type_k);
  size_t size = H5Tget_size(t);
  H5T_class_t cls = H5Tget_class(t);
  unsigned char *buf = calloc(numel ? numel : 1, size);
  if (!buf) FINDING("out of memory in the harness");
  int raw = flags & 16, increasing = flags & 32;
  int64_t run = 0;
  for (hsize_t i = 0; i < numel; i++) {
    unsigned char *e = buf + i * size;
    if (raw || (cls != H5T_INTEGER && cls != H5T_FLOAT)) {
      take_raw(in, e, size);
      continue;
    }
    int64_t v = increasing ? (run += take(in) % 4) : (int8_t)take(in);
    H5T_order_t order = H5Tget_order(t);
    if (cls == H5T_FLOAT) {
      if (size == 4) {
        float f = (float)v / 4;
        memcpy(e, &f, 4);
      } else {
        double d = (double)v / 4;
        memcpy(e, &d, 8);
      }
    } else {
      for (size_t k = 0; k < size; k++) e[k] = (unsigned char)((uint64_t)v >> (8 * k)); /* little-endian bytes */
    }
    if (order == H5T_ORDER_BE)
      for (size_t k = 0; k < size / 2; k++) {
        unsigned char c = e[k];
        e[k] = e[size - 1 - k];
        e[size - 1 - k] = c;
      }
  }
  hid_t s = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if ((flags & 4) && rank > 0 && numel > 0) {
    hsize_t chunk[SPEC_MAX_RANK];
    for (int i = 0; i < rank; i++) chunk[i] = dims[i] > 1 ? dims[i] / 2 + (take(in) & 1) : 1;
    H5Pset_chunk(dcpl, rank, chunk);
    if (flags & 8) H5Pset_deflate(dcpl, 1);
  }
  hid_t d = H5Dcreate2(file, name, t, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (d >= 0) {
    if (numel > 0 && !(flags & 64)) H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf); /* else: never written */
    H5Dclose(d);
  }
  H5Pclose(dcpl);
  H5Sclose(s);
  H5Tclose(t);
  free(buf);
}

static void write_attr(hid_t file, bytes *in) {
  static const char *const names[] = {"num_classes", "backbone", "scale", "num_classes "};
  const char *name = names[take(in) % 4];
  unsigned kind = take(in) % 7;
  hsize_t n = take(in) % 4;
  int array = kind >= 5;
  hid_t t = -1, mt = -1, s = array ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
  unsigned char buf[64] = {0};
  const char *strs[4] = {"a", "bb", "", "ccc"};
  const void *src = buf;
  switch (kind) {
  case 0: /* int64, a small value or raw */
  case 5: {
    int64_t v[4];
    for (int i = 0; i < 4; i++) v[i] = (take(in) & 1) ? (int8_t)take(in) : 0;
    if (take(in) & 1) take_raw(in, v, sizeof v);
    memcpy(buf, v, sizeof v);
    t = H5Tcopy(H5T_STD_I64LE);
    mt = H5Tcopy(H5T_NATIVE_INT64);
    break;
  }
  case 1: /* float64 */
  case 6: {
    double v[4];
    for (int i = 0; i < 4; i++) v[i] = (int8_t)take(in) / 2.0;
    if (take(in) & 1) take_raw(in, v, sizeof v);
    memcpy(buf, v, sizeof v);
    t = H5Tcopy(H5T_IEEE_F64LE);
    mt = H5Tcopy(H5T_NATIVE_DOUBLE);
    break;
  }
  case 2: /* variable-length string */
    t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    mt = H5Tcopy(t);
    src = strs;
    break;
  case 3: /* fixed-length string, raw bytes */
    t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 5);
    mt = H5Tcopy(t);
    take_raw(in, buf, 5);
    break;
  default: { /* boolean enum, h5py style */
    int8_t no = 0, yes = 1;
    t = H5Tenum_create(H5T_NATIVE_INT8);
    H5Tenum_insert(t, "FALSE", &no);
    H5Tenum_insert(t, "TRUE", &yes);
    mt = H5Tcopy(t);
    buf[0] = take(in) & 1;
  }
  }
  if (H5Aexists(file, name) <= 0) {
    hid_t a = H5Acreate2(file, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
      if (!array || n > 0) H5Awrite(a, mt, src);
      H5Aclose(a);
    }
  }
  H5Tclose(t);
  H5Tclose(mt);
  H5Sclose(s);
}

/* rl_dataset_write of a loaded dataset, then a load of that file: the same dataset. */
static void check_round_trip(const rl_dataset *ds) {
  rl_h5_attr attrs[64];
  int nattrs = 0;
  for (int i = 0; i < ds->attrs.count && nattrs < 64; i++)
    if (ds->attrs.items[i].kind != RL_H5_ATTR_UNSUPPORTED) attrs[nattrs++] = ds->attrs.items[i];
  rl_dataset_spec spec = {ds->X, ds->rows, ds->dim, ds->x_is_double, ds->offsets, ds->count, ds->y,
                          ds->group_offsets, ds->ngroups, ds->fold, attrs, nattrs};
  if (rl_dataset_write(copy_path, &spec)) FINDING("a loaded dataset cannot be written: %s", rl_error());
  rl_dataset back;
  if (rl_dataset_load(&back, copy_path)) FINDING("a written dataset cannot be loaded: %s", rl_error());
  size_t nx = (size_t)(ds->rows * ds->dim) * sizeof(real), no = (size_t)(ds->count + 1) * sizeof(int64_t);
  int same = back.rows == ds->rows && back.dim == ds->dim && back.count == ds->count &&
             back.num_classes == ds->num_classes && back.ngroups == ds->ngroups &&
             !(back.fold == NULL) == !(ds->fold == NULL) && back.attrs.count == nattrs &&
             memcmp(back.X, ds->X, nx) == 0 && memcmp(back.offsets, ds->offsets, no) == 0 &&
             memcmp(back.y, ds->y, no - sizeof(int64_t)) == 0 &&
             (!ds->fold || memcmp(back.fold, ds->fold, no - sizeof(int64_t)) == 0) &&
             (!ds->group_offsets ||
              memcmp(back.group_offsets, ds->group_offsets, (size_t)(ds->ngroups + 1) * sizeof(int64_t)) == 0);
  if (!same) FINDING("write + load of a loaded dataset differs from it");
  rl_dataset_free(&back);
}

static void remove_copy(void) { unlink(copy_path); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_h5_init("fuzz_h5spec");
  snprintf(copy_path, sizeof copy_path, "%s.copy", file_path);
  atexit(remove_copy);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the writer's expected failures (odd chunks) print nothing */
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bytes in = {data, size};
  hid_t file = H5Fcreate(file_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) FINDING("cannot create %s", file_path);
  write_field(file, "X", 0, 2, &in);
  write_field(file, "offsets", 4, 1, &in);
  write_field(file, "y", 4, 1, &in);
  write_field(file, "group_offsets", 4, 1, &in);
  write_field(file, "fold", 4, 1, &in);
  if (take(&in) & 1) write_field(file, "extra", 1, 1, &in);
  for (unsigned i = 0, n = take(&in) % 5; i < n; i++) write_attr(file, &in);
  H5Fclose(file);
  rl_dataset ds;
  if (fuzz_h5_read_all(&ds)) {
    check_round_trip(&ds);
    rl_dataset_free(&ds);
  }
  return 0;
}
