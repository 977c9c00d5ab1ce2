/*
** fuzz_h5.c -- libFuzzer target for the HDF5 side of core/data, byte level: the input bytes are the HDF5 file (one
** temporary file, $TMPDIR/rl_fuzz_h5_XXXXXX, rewritten for each input and opened by name as users' files are; HDF5
** refuses an anonymous memfd's /proc/self/fd path, having no real path for it). It goes through rl_dataset_load
** (on success: every promise of dataset.h checked, every set gathered) and the generic readers of rl.h5.*; see
** fuzz_h5_common.h. Errors are fine; a crash, a leak, a hang, undefined behaviour, a message that does not name the
** file or a broken promise is a finding.
**
** The bytes reach HDF5's own parser of the file format, which in HDF5 1.10 (Debian 12) has memory-safety defects
** of its own on corrupt metadata: `make fuzz` runs this target in fork mode and tests/fuzz/triage.lua sorts what it
** finds into rotlab's (a failure) and HDF5's (reported). fuzz_h5spec.c covers rotlab's validation with files whose
** HDF5 structure is always intact. See tests/fuzz/README.md.
*/
#include "fuzz_h5_common.h"

static void put_file(const uint8_t *data, size_t size) {
  if (ftruncate(file_fd, 0) != 0) FINDING("ftruncate failed");
  size_t done = 0;
  while (done < size) {
    ssize_t k = pwrite(file_fd, data + done, size - done, (off_t)done);
    if (k <= 0) FINDING("pwrite failed");
    done += (size_t)k;
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_h5_init("fuzz_h5");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  put_file(data, size);
  fuzz_h5_read_all(NULL);
  return 0;
}
