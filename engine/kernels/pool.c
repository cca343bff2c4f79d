/*
 * pool.c - the persistent worker pool (pool.h).
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "engine/kernels/pool.h"

/*
 * n_threads - 1 workers wait for jobs; kpool_run publishes a job (fn, ctx,
 * n) under a new generation number, joins in, and returns once every task
 * has finished.  Tasks are handed out through one atomic word,
 *     claim = generation << 32 | n << 16 | next index,
 * so a worker late for a finished job can never take a task: its
 * compare-and-swap fails on the generation, or finds next == n.  fn and ctx
 * are read only after a successful claim, while the caller is still
 * waiting for that task, so they are the claimed job's.
 *
 * Generation calls one product after another, a few microseconds apart: a
 * worker that went to sleep between them would cost a futex wake-up (tens
 * of microseconds on a virtual machine) every time.  So workers, and the
 * caller waiting for stragglers, spin for a while (SPIN_NS) before they
 * sleep on a condition variable (wake, done).  Each sleeper announces
 * itself (sleepers, waiting) before its last look at what it waits for,
 * and the other side looks at that announcement after changing it, all
 * sequentially consistent: one of the two always sees the other.
 */
#define SPIN_NS 50000
#define MAX_TASKS 0xFFFF

struct kpool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t wake;        /* a new job, or quit */
    pthread_cond_t done;        /* tasks_left reached 0 */
    int quit;                   /* atomic */
    uint32_t generation;        /* atomic: the newest job */
    int sleepers;               /* atomic: workers asleep or about to be */
    /* the current job */
    void (*fn)(void *ctx, int i);
    void *ctx;
    uint64_t claim;             /* atomic, see above */
    int tasks_left;             /* atomic: tasks not finished yet */
    int waiting;                /* atomic: the caller sleeps on done */
    float *scratch;             /* kpool_scratch's buffer, kept between calls */
    size_t scratch_floats;
};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A bounded spin: spin_on pauses and returns 1 until the spin is SPIN_NS
 * old (the clock is read every 256 turns), then 0. */
struct spin {
    uint64_t start;
    unsigned turns;
};

static int spin_on(struct spin *s)
{
    if ((s->turns++ & 255) == 0) {
        uint64_t t = now_ns();

        if (!s->start) {
            s->start = t;
        } else if (t - s->start > SPIN_NS) {
            return 0;
        }
    }
    cpu_relax();
    return 1;
}

/* Takes tasks of job `generation` until none are left; returns how many. */
static int kpool_work(struct kpool *p, uint32_t generation)
{
    uint64_t cur = __atomic_load_n(&p->claim, __ATOMIC_ACQUIRE);
    int done = 0;

    for (;;) {
        unsigned next = (unsigned)(cur & 0xFFFF), n = (unsigned)(cur >> 16) & 0xFFFF;

        if ((uint32_t)(cur >> 32) != generation || next >= n) {
            break;
        }
        if (__atomic_compare_exchange_n(&p->claim, &cur, cur + 1, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            p->fn(p->ctx, (int)next);
            done++;
            cur = __atomic_load_n(&p->claim, __ATOMIC_ACQUIRE);
        }
    }
    return done;
}

/* Waits until the pool's generation differs from seen (or quit); returns it. */
static uint32_t kpool_wait_job(struct kpool *p, uint32_t seen)
{
    struct spin spin = { 0, 0 };
    uint32_t g;

    do {
        g = __atomic_load_n(&p->generation, __ATOMIC_ACQUIRE);
        if (g != seen || __atomic_load_n(&p->quit, __ATOMIC_ACQUIRE)) {
            return g;
        }
    } while (spin_on(&spin));
    /* Sleep.  The caller stores the generation, then reads sleepers; we
     * count ourselves in, then read the generation (both sequentially
     * consistent): one of us sees the other, so no wake-up is lost. */
    pthread_mutex_lock(&p->lock);
    __atomic_add_fetch(&p->sleepers, 1, __ATOMIC_SEQ_CST);
    while ((g = __atomic_load_n(&p->generation, __ATOMIC_SEQ_CST)) == seen &&
           !__atomic_load_n(&p->quit, __ATOMIC_SEQ_CST)) {
        pthread_cond_wait(&p->wake, &p->lock);
    }
    __atomic_sub_fetch(&p->sleepers, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&p->lock);
    return g;
}

static void *kpool_main(void *arg)
{
    struct kpool *p = arg;
    uint32_t seen = 0;

    for (;;) {
        seen = kpool_wait_job(p, seen);
        if (__atomic_load_n(&p->quit, __ATOMIC_ACQUIRE)) {
            break;
        }
        int did = kpool_work(p, seen);

        if (did && __atomic_sub_fetch(&p->tasks_left, did, __ATOMIC_SEQ_CST) == 0 &&
            __atomic_load_n(&p->waiting, __ATOMIC_SEQ_CST)) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

int kpool_default_threads(void)
{
    long n;
#ifdef CPU_COUNT
    cpu_set_t set;

    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) {
        return CPU_COUNT(&set);
    }
#endif
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void kpool_stack_attr(pthread_attr_t *attr)
{
    size_t cur;

    if (pthread_attr_getstacksize(attr, &cur) == 0 && cur < KPOOL_STACK) {
        (void)pthread_attr_setstacksize(attr, KPOOL_STACK);  /* else: the default */
    }
}

struct kpool *kpool_new(int n_threads)
{
    struct kpool *p;

    if (n_threads <= 0) {
        n_threads = kpool_default_threads();
    }
    if (n_threads > 256) {
        n_threads = 256;
    }
    p = calloc(1, sizeof *p);
    if (!p) {
        return NULL;
    }
    p->n_threads = 1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        sigset_t all, old;

        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            kpool_free(p);
            return NULL;
        }
        /* Workers block every signal (they inherit this mask), so that the
         * program's handlers always run on its own threads. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pthread_attr_t attr;
        int have_attr = pthread_attr_init(&attr) == 0;

        if (have_attr) {
            kpool_stack_attr(&attr);
        }
        for (int i = 0; i < n_threads - 1; i++) {
            if (pthread_create(&p->threads[i], have_attr ? &attr : NULL, kpool_main, p) != 0) {
                break;          /* run with the threads we got */
            }
            p->n_threads++;
        }
        if (have_attr) {
            pthread_attr_destroy(&attr);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    return p;
}

void kpool_free(struct kpool *p)
{
    if (!p) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    __atomic_store_n(&p->quit, 1, __ATOMIC_SEQ_CST);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_threads - 1; i++) {
        pthread_join(p->threads[i], NULL);
    }
    free(p->threads);
    free(p->scratch);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
}

int kpool_threads(const struct kpool *p)
{
    return p ? p->n_threads : 1;
}

/* Runs fn(ctx, i) for i in [0, n), 1 < n <= MAX_TASKS, on the pool. */
static void kpool_run_some(struct kpool *p, void (*fn)(void *ctx, int i), void *ctx, int n)
{
    uint32_t generation = p->generation + 1;
    struct spin spin = { 0, 0 };

    p->fn = fn;
    p->ctx = ctx;
    __atomic_store_n(&p->tasks_left, n, __ATOMIC_RELAXED);
    __atomic_store_n(&p->claim, (uint64_t)generation << 32 | (uint64_t)n << 16,
                     __ATOMIC_RELEASE);
    __atomic_store_n(&p->generation, generation, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&p->sleepers, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }

    int did = kpool_work(p, generation);
    int left = __atomic_sub_fetch(&p->tasks_left, did, __ATOMIC_ACQ_REL);

    /* Stragglers: spin, then sleep until the last one signals (a worker may
     * have been descheduled in the middle of its task). */
    while (left > 0 && spin_on(&spin)) {
        left = __atomic_load_n(&p->tasks_left, __ATOMIC_ACQUIRE);
    }
    if (left > 0) {
        pthread_mutex_lock(&p->lock);
        __atomic_store_n(&p->waiting, 1, __ATOMIC_SEQ_CST);
        while (__atomic_load_n(&p->tasks_left, __ATOMIC_SEQ_CST) > 0) {
            pthread_cond_wait(&p->done, &p->lock);
        }
        __atomic_store_n(&p->waiting, 0, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&p->lock);
    }
}

/* A job of more than MAX_TASKS tasks runs in rounds. */
struct kpool_round {
    void (*fn)(void *ctx, int i);
    void *ctx;
    int base;
};

static void round_task(void *ctx, int i)
{
    const struct kpool_round *r = ctx;

    r->fn(r->ctx, r->base + i);
}

void kpool_run(struct kpool *p, void (*fn)(void *ctx, int i), void *ctx, int n)
{
    if (n <= 0) {
        return;
    }
    if (!p || p->n_threads == 1 || n == 1) {
        for (int i = 0; i < n; i++) {
            fn(ctx, i);
        }
        return;
    }
    if (n > MAX_TASKS) {
        for (int base = 0; base < n; base += MAX_TASKS) {
            struct kpool_round r = { fn, ctx, base };

            kpool_run(p, round_task, &r, n - base < MAX_TASKS ? n - base : MAX_TASKS);
        }
        return;
    }
    kpool_run_some(p, fn, ctx, n);
}

float *kpool_scratch(struct kpool *p, size_t n)
{
    float *buf;

    if (p->scratch_floats >= n) {
        return p->scratch;
    }
    buf = malloc((n ? n : 1) * sizeof *buf);
    if (!buf) {
        return NULL;
    }
    free(p->scratch);
    p->scratch = buf;
    p->scratch_floats = n;
    return buf;
}
