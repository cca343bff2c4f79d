/*
 * kl.h - KL(softmax(p) || softmax(q)) of two rows of logits, for tests
 * that measure how far one run's logits are from another's.
 */
#ifndef RWKV_TESTS_KL_H
#define RWKV_TESTS_KL_H

#include <math.h>
#include <stddef.h>

__attribute__((unused))
static double row_kl(const float *p, const float *q, size_t V)
{
    double mp = p[0], mq = q[0], zp = 0, zq = 0, kl = 0;

    for (size_t i = 0; i < V; i++) {
        mp = fmax(mp, p[i]);
        mq = fmax(mq, q[i]);
    }
    for (size_t i = 0; i < V; i++) {
        zp += exp(p[i] - mp);
        zq += exp(q[i] - mq);
    }
    for (size_t i = 0; i < V; i++) {
        double lp = p[i] - mp - log(zp), lq = q[i] - mq - log(zq);

        kl += exp(lp) * (lp - lq);
    }
    return kl;
}

#endif
