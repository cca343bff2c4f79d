/*
 * blascore.c - restart once with the right OpenBLAS core (blascore.h).
 */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "app/blascore.h"

/* Set in the restarted process: never restart twice. */
#define REEXEC_GUARD "RWKV_CHAT_BLAS_REEXEC"

void blascore_pick(char **argv)
{
#if defined(__x86_64__) && defined(__linux__)
    const char *core = openblas_get_corename();

    __builtin_cpu_init();
    if (getenv("OPENBLAS_CORETYPE") || getenv(REEXEC_GUARD) || !core ||
        !__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl")) {
        return;
    }
    if (strcasecmp(core, "haswell") && strcasecmp(core, "zen")) {
        return;
    }
    setenv("OPENBLAS_CORETYPE", __builtin_cpu_supports("avx512bf16") ? "Cooperlake" : "SkylakeX", 1);
    setenv(REEXEC_GUARD, "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: go on with the detected core */
    unsetenv("OPENBLAS_CORETYPE");
#else
    (void)argv;
#endif
}

const char *blascore_name(void)
{
    const char *core = openblas_get_corename();

    return core && *core ? core : "unknown";
}
