/*
 * blascore.c - restart once with the right OpenBLAS core (blascore.h).
 */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include "app/session/blascore.h"

/* Set in the restarted process: never restart twice. */
#define REEXEC_GUARD "RWKV_CHAT_BLAS_REEXEC"

/* 1 if core is one of names (case-insensitive). */
static int core_is(const char *core, const char *const *names)
{
    for (; *names; names++) {
        if (!strcasecmp(core, *names)) {
            return 1;
        }
    }
    return 0;
}

/* The core to restart with, or NULL: the AVX-512 kernels on an AVX-512 CPU
 * that the library took for Haswell/Zen; on a CPU with AVX2 and FMA that
 * the library took for an older core (Prescott, Nehalem, Sandybridge... what
 * 0.3.21 falls back to for a CPU model it does not know, such as a newer
 * Xeon behind a hypervisor), the best kernels the CPU can run. */
static const char *better_core(void)
{
#if defined(__x86_64__) && defined(__linux__)
    static const char *const avx512_cores[] = { "skylakex", "cooperlake", "sapphirerapids", NULL };
    static const char *const avx2_cores[] = { "haswell", "zen", NULL };
    const char *core = openblas_get_corename();
    int avx512;

    __builtin_cpu_init();
    if (getenv("OPENBLAS_CORETYPE") || !core || !__builtin_cpu_supports("avx2") ||
        !__builtin_cpu_supports("fma") || core_is(core, avx512_cores)) {
        return NULL;
    }
    avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl");
    if (core_is(core, avx2_cores) && !avx512) {
        return NULL;
    }
    if (!avx512) {
        return "Haswell";
    }
    return __builtin_cpu_supports("avx512bf16") ? "Cooperlake" : "SkylakeX";
#else
    return NULL;
#endif
}

/* 1 if an address-space or data-size limit is set (ulimit -v, -d). */
static int memory_limited(void)
{
    struct rlimit r;

    return (getrlimit(RLIMIT_AS, &r) == 0 && r.rlim_cur != RLIM_INFINITY) ||
           (getrlimit(RLIMIT_DATA, &r) == 0 && r.rlim_cur != RLIM_INFINITY);
}

void blascore_pick(char **argv)
{
#ifdef __linux__
    const char *core = better_core();
    /* Each thread of OpenBLAS's own pool allocates a 128 MiB buffer as it
     * starts (when the library loads), and 0.3.21 retries a failed one
     * forever: under a memory limit those threads spin, and exit waits
     * for them.  The engine never uses them (engine/kernels/blas.h), so the
     * restart asks for none. */
    int one_thread = memory_limited() && openblas_get_num_threads() > 1;

    if (getenv(REEXEC_GUARD) || (!core && !one_thread)) {
        return;
    }
    if (core) {
        setenv("OPENBLAS_CORETYPE", core, 1);
    }
    if (one_thread) {
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
        /* one malloc arena: each thread's own would reserve 64 MiB of the
         * limited address space, room an sgemm's buffer was counted on */
        setenv("MALLOC_ARENA_MAX", "1", 0);
    }
    setenv(REEXEC_GUARD, "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: go on as we are */
    if (core) {
        unsetenv("OPENBLAS_CORETYPE");
    }
    unsetenv(REEXEC_GUARD);
#else
    (void)argv;
#endif
}

const char *blascore_name(void)
{
    const char *core = openblas_get_corename();

    return core && *core ? core : "unknown";
}
