/*
 * blascore.h - the OpenBLAS kernels the program runs with.
 *
 * OpenBLAS picks its kernels ("core") once, when the library loads, from
 * its own CPU detection or the OPENBLAS_CORETYPE variable.  Debian's
 * 0.3.21 takes some AVX-512 CPUs (Zen 4, Zen 5) for Haswell or Zen and runs
 * its AVX2 sgemm there, at about half the speed; a CPU model it does not
 * know (a newer Xeon in a virtual machine) it takes for Prescott and runs
 * SSE3 kernels, several times slower.
 */
#ifndef RWKV_APP_BLASCORE_H
#define RWKV_APP_BLASCORE_H

/* Restarts the program (argv) once: on an AVX-512 CPU that the library
 * took for Haswell/Zen, with OPENBLAS_CORETYPE naming the AVX-512 kernels,
 * and on an AVX2 CPU that it took for an older core, naming the best the
 * CPU has (unless the user set OPENBLAS_CORETYPE); under a memory limit (ulimit
 * -v or -d), with OPENBLAS_NUM_THREADS=1, since the threads OpenBLAS
 * starts would each hang on a buffer the limit does not allow.  Does
 * nothing when neither applies, when it already restarted, or when the
 * restart fails.  Call first thing in main, before any other thread or
 * open terminal state exists. */
void blascore_pick(char **argv);

/* The core OpenBLAS runs with ("Zen", "SkylakeX", ...), or "unknown". */
const char *blascore_name(void);

#endif
