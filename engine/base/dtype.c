/* dtype.c - names of the weight formats (dtype.h). */
#include <strings.h>

#include "engine/base/dtype.h"

const char *rwkv_dtype_name(enum rwkv_dtype dtype)
{
    switch (dtype) {
    case RWKV_DTYPE_AUTO: return "auto";
    case RWKV_DTYPE_F32: return "fp32";
    case RWKV_DTYPE_F16: return "fp16";
    case RWKV_DTYPE_BF16: return "bf16";
    case RWKV_DTYPE_Q8: return "q8";
    case RWKV_DTYPE_Q4: return "q4";
    }
    return "?";
}

int rwkv_dtype_parse(const char *name, enum rwkv_dtype *out)
{
    static const struct {
        const char *name;
        enum rwkv_dtype dtype;
    } names[] = {
        { "auto", RWKV_DTYPE_AUTO }, { "fp32", RWKV_DTYPE_F32 }, { "f32", RWKV_DTYPE_F32 },
        { "float32", RWKV_DTYPE_F32 }, { "fp16", RWKV_DTYPE_F16 }, { "f16", RWKV_DTYPE_F16 },
        { "float16", RWKV_DTYPE_F16 }, { "bf16", RWKV_DTYPE_BF16 },
        { "bfloat16", RWKV_DTYPE_BF16 }, { "q8", RWKV_DTYPE_Q8 }, { "int8", RWKV_DTYPE_Q8 },
        { "i8", RWKV_DTYPE_Q8 }, { "q4", RWKV_DTYPE_Q4 }, { "int4", RWKV_DTYPE_Q4 },
    };
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!strcasecmp(name, names[i].name)) {
            *out = names[i].dtype;
            return 0;
        }
    }
    return -1;
}
