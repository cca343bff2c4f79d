/*
 * context.h - what the engine's version files may ask of an evaluation
 * context (rwkv.h has the public face).  Internal to engine/.
 */
#ifndef RWKV_CONTEXT_H
#define RWKV_CONTEXT_H

#include "engine/rwkv.h"

/* The version's scratch of ctx (rwkv_version.work_new's result). */
void *context_work(rwkv_context *ctx);

#endif
