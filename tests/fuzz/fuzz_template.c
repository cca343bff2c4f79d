/* fuzz_template.c - the chat template (persona file) parser. */
#include "app/session/chat.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct chat_template t;
    char err[512];

    if (chat_template_parse(&t, "fuzz", (const char *)data, size, err, sizeof err) == 0) {
        chat_template_free(&t);
    }
    return 0;
}
