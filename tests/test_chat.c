/* test_chat.c - the chat session: templates, normalisation, the greedy
 * replies of the demo model, stop rules, streaming, undo/regen/edit,
 * snapshots, seeded sampling, raw completion and state-tuned starts. */
#include "app/session/chat.h"
#include "app/tools/pthwrite.h"
#include "tests/evalonce.h"
#include "tests/tap.h"

#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

static tokenizer *tok;

/* Streams the reply in progress; returns it (malloc'd) and the stop. */
static char *reply(chat *c, int *stop, int *stream_ok)
{
    char err[RWKV_ERRLEN], *buf = malloc(1);
    size_t len = 0;
    const char *out;
    size_t n;
    int rc;

    do {
        rc = chat_step(c, &out, &n, err, sizeof err);
        if (rc < 0) {
            diag("chat_step: %s", err);
            break;
        }
        buf = realloc(buf, len + n + 1);
        memcpy(buf + len, out, n);
        len += n;
    } while (rc == CHAT_STOP_NONE);
    buf[len] = '\0';
    *stop = rc;
    if (stream_ok) {
        const struct chat_turn *t = chat_turn_at(c, chat_turn_count(c) - 1);

        *stream_ok = rc > 0 && t && t->role == CHAT_ASSISTANT && strcmp(t->text, buf) == 0;
    }
    return buf;
}

static rwkv_model *load_model(const char *path)
{
    char err[RWKV_ERRLEN];
    rwkv_model *m = rwkv_model_load(path, NULL, err, sizeof err);

    if (!m) {
        diag("%s", err);
    }
    return m;
}

static struct sampler_settings greedy(void)
{
    struct sampler_settings s;

    sampler_defaults(&s);
    s.temperature = 0.0f;
    s.presence = 0.0f;
    s.frequency = 0.0f;
    s.max_tokens = 300;
    return s;
}

/* "a\\nb" -> "a\nb" in place. */
static void unescape(char *s)
{
    char *o = s;

    for (; *s; s++) {
        if (s[0] == '\\' && s[1] == 'n') {
            *o++ = '\n';
            s++;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

static int same_state(const chat *a, const rwkv_state *b)
{
    const rwkv_state *x = chat_state(a);

    return rwkv_state_floats(x) == rwkv_state_floats(b) &&
           !memcmp(rwkv_state_cdata(x), rwkv_state_cdata(b), rwkv_state_floats(b) * sizeof(float));
}

static void test_normalize_and_templates(void)
{
    struct chat_template t;
    char err[RWKV_ERRLEN], *n;
    const char *text;

    n = chat_normalize("  \n hello\n\n\n world \r\n\r\n again\t \n");
    ok(n && !strcmp(n, "hello\n world \n again"), "normalise: strip, CRLF, runs of newlines -> one");
    free(n);
    n = chat_normalize(" \n\t ");
    ok(n && !*n, "normalise: whitespace only -> empty");
    free(n);

    text = "# c\nuser: Bob\nassistant: Alice\n---\n\nBob: hi\n\nAlice: yo\n\n\n";
    ok(chat_template_parse(&t, "x", text, strlen(text), err, sizeof err) == 0 &&
       !strcmp(t.user, "Bob") && !strcmp(t.assistant, "Alice") && !strcmp(t.name, "x") &&
       !strcmp(t.intro, "Bob: hi\n\nAlice: yo\n\n"),
       "template: header names, intro ends with exactly one blank line");
    chat_template_free(&t);
    text = "User: hi\n\nAssistant: hello";
    ok(chat_template_parse(&t, "y", text, strlen(text), err, sizeof err) == 0 &&
       !strcmp(t.user, "User") && !strcmp(t.intro, "User: hi\n\nAssistant: hello\n\n"),
       "template without ---: all intro, default names");
    chat_template_free(&t);
    text = "usr: Bob\n---\n";
    ok(chat_template_parse(&t, "z", text, strlen(text), err, sizeof err) == -1 &&
       !strcmp(err, "z: line 1: unknown key 'usr' (expected user, assistant, system, "
               "thinking or description)"),
       "template: unknown key refused (%s)", err);
    text = "user:\n---\n";
    ok(chat_template_parse(&t, "z", text, strlen(text), err, sizeof err) == -1 &&
       strstr(err, "empty value"), "template: empty value refused (%s)", err);

    if (chat_template_load(&t, "bare", err, sizeof err) == 0) {
        ok(!strcmp(t.name, "bare") && !strcmp(t.intro, "") && !strcmp(t.user, "User") &&
           !strcmp(t.assistant, "Assistant"), "prompts/bare.txt: no intro, User/Assistant");
        chat_template_free(&t);
    } else {
        ok(0, "prompts/bare.txt loads (%s)", err);
    }
    {
        static const char *names[] = { "default", "translator", "coder" };
        size_t i;
        int all = 1;

        for (i = 0; i < 3; i++) {
            if (chat_template_load(&t, names[i], err, sizeof err) < 0) {
                diag("%s", err);
                all = 0;
                continue;
            }
            all &= strlen(t.intro) > 20 && !strcmp(t.intro + strlen(t.intro) - 2, "\n\n") &&
                   !strncmp(t.intro, "User: ", 6);
            chat_template_free(&t);
        }
        ok(all, "default, translator, coder: intros in the chat format");
    }
    {
        char **names = chat_template_names();
        size_t i, k = 0;
        int has_bare = 0, has_coder = 0;

        for (i = 0; names && names[i]; i++) {
            has_bare |= !strcmp(names[i], "bare");
            has_coder |= !strcmp(names[i], "coder");
            k += i > 0 && strcmp(names[i - 1], names[i]) >= 0;
        }
        ok(names && has_bare && has_coder && k == 0, "template names listed, sorted, unique (%zu)",
           i);
        chat_template_names_free(names);
    }
    ok(chat_template_load(&t, "no-such-persona", err, sizeof err) == -1 &&
       strstr(err, "no prompt named 'no-such-persona'"), "unknown prompt name: %s", err);

    /* A user's own template in $XDG_CONFIG_HOME/rwkv-chat/prompts wins. */
    {
        const char *cfg = getenv("XDG_CONFIG_HOME");
        char dir[1024], path[1100];
        FILE *f;

        if (cfg && *cfg == '/') {
            snprintf(dir, sizeof dir, "mkdir -p '%s/rwkv-chat/prompts'", cfg);
            if (system(dir) == 0) {
                snprintf(path, sizeof path, "%s/rwkv-chat/prompts/pirate.txt", cfg);
                f = fopen(path, "w");
                fputs("user: Me\nassistant: Pirate\n---\nMe: hi\n\nPirate: Arr.\n", f);
                fclose(f);
                ok(chat_template_load(&t, "pirate", err, sizeof err) == 0 &&
                   !strcmp(t.assistant, "Pirate") && !strcmp(t.name, "pirate"),
                   "user template found in $XDG_CONFIG_HOME/rwkv-chat/prompts");
                chat_template_free(&t);
                ok(chat_template_load(&t, path, err, sizeof err) == 0 && !strcmp(t.name, "pirate"),
                   "template by path, named by its stem");
                chat_template_free(&t);
                unlink(path);
            }
        } else {
            skip("XDG_CONFIG_HOME not set (run under make check)");
            skip("XDG_CONFIG_HOME not set");
        }
    }
}

/* The official greedy replies of the demo model, from the bare template. */
static void test_greedy(rwkv_model *m)
{
    struct sampler_settings s = greedy();
    struct chat_template bare = { "bare", "", "User", "Assistant", NULL, 0 };
    char err[RWKV_ERRLEN], *tsv, *line, *save = NULL;
    chat *c = chat_new(m, tok, &bare, &s, err, sizeof err);
    int n = 0, good = 0, streams = 1;

    tsv = read_file(shared_path("models/greedy.tsv"), NULL);
    if (!c || !tsv) {
        ok(0, "greedy.tsv and a chat (%s)", c ? "no greedy.tsv" : err);
        free(tsv);
        chat_free(c);
        return;
    }
    for (line = strtok_r(tsv, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *tab = strchr(line, '\t'), *got;
        int stop, stream_ok;
        int32_t *ids;
        size_t n_ids;
        char prompt[512];

        if (!tab) {
            continue;
        }
        *tab = '\0';
        unescape(tab + 1);
        chat_reset(c);
        if (chat_send(c, line, err, sizeof err) < 0) {
            diag("%s", err);
            continue;
        }
        /* The fed prompt is exactly "User: Q\n\nAssistant:". */
        snprintf(prompt, sizeof prompt, "User: %s\n\nAssistant:", line);
        tokenizer_encode(tok, (const uint8_t *)prompt, strlen(prompt), &ids, &n_ids);
        got = reply(c, &stop, &stream_ok);
        n++;
        if (!strcmp(got, tab + 1) && stop == CHAT_STOP_END &&
            chat_get_stats(c)->prompt_tokens == n_ids) {
            good++;
        } else {
            diag("%s: got [%s] (%s), want [%s]", line, got, chat_stop_name(stop), tab + 1);
        }
        streams &= stream_ok;
        free(ids);
        free(got);
    }
    ok(n >= 5 && good == n, "demo model: %d/%d greedy replies exactly as the official package", good,
       n);
    ok(streams, "streamed bytes == transcript reply, for every greedy reply");
    free(tsv);
    chat_free(c);
}

/* Multi-turn feeding, undo, regen, edit, snapshots, interrupt, length. */
static void test_operations(rwkv_model *m)
{
    struct sampler_settings s = greedy();
    struct chat_template bare = { "bare", "", "User", "Assistant", NULL, 0 };
    char err[RWKV_ERRLEN], *r1, *r2, *r3, *text;
    chat *c = chat_new(m, tok, &bare, &s, err, sizeof err);
    rwkv_state *zero = rwkv_state_new(m), *after1, *after2;
    int stop, sok;
    size_t n;
    const char *out;

    if (!c) {
        ok(0, "chat_new: %s", err);
        return;
    }
    ok(same_state(c, zero) && chat_turn_count(c) == 0, "new chat with the bare template: zero state");
    chat_send(c, "hi", err, sizeof err);
    r1 = reply(c, &stop, &sok);
    after1 = rwkv_state_clone(chat_state(c));
    chat_send(c, "Who are you?", err, sizeof err);
    ok(chat_get_stats(c)->prompt_tokens == 10, "second message costs only its own 10 tokens (%zu)",
       chat_get_stats(c)->prompt_tokens);
    r2 = reply(c, &stop, &sok);
    after2 = rwkv_state_clone(chat_state(c));
    ok(chat_turn_count(c) == 4 && chat_turn_at(c, 0)->role == CHAT_USER &&
       !strcmp(chat_turn_at(c, 2)->text, "Who are you?") && chat_turn_at(c, 3)->role == CHAT_ASSISTANT,
       "transcript: user, assistant, user, assistant");
    ok(chat_get_stats(c)->context_tokens == 7 + 33 + 10 + chat_get_stats(c)->reply_tokens,
       "context counts every fed token (%zu)", chat_get_stats(c)->context_tokens);

    /* Regen at temperature 0 gives the same reply and the same state. */
    ok(chat_regen(c, err, sizeof err) == 0 && chat_turn_count(c) == 3 && chat_generating(c),
       "regen drops the last reply and starts a new one");
    r3 = reply(c, &stop, &sok);
    ok(!strcmp(r3, r2) && same_state(c, after2), "greedy regen: same reply, identical state");
    free(r3);

    /* Undo restores the exact state before the message. */
    ok(chat_undo(c, err, sizeof err) == 0 && chat_turn_count(c) == 2 && same_state(c, after1),
       "undo: transcript back to 2 turns, state bit-identical to after reply 1");
    ok(chat_undo(c, err, sizeof err) == 0 && chat_turn_count(c) == 0 && same_state(c, zero),
       "undo again: back to the zero state");
    ok(chat_undo(c, err, sizeof err) == -1 && !strcmp(err, "nothing to undo"), "undo on empty: %s",
       err);
    ok(chat_regen(c, err, sizeof err) == -1, "regen on empty refused: %s", err);

    /* Snapshots. */
    chat_send(c, "hi", err, sizeof err);
    free(reply(c, &stop, &sok));
    ok(chat_snapshot_take(c, "after-hi", err, sizeof err) == 0 &&
       !strcmp(chat_current_snapshot(c), "after-hi") && chat_snapshot_count(c) == 1,
       "snapshot taken and current");
    chat_send(c, "What is RWKV?", err, sizeof err);
    free(reply(c, &stop, &sok));
    ok(chat_current_snapshot(c) == NULL, "a new message leaves the snapshot");
    ok(chat_snapshot_restore(c, "after-hi", err, sizeof err) == 0 && same_state(c, after1) &&
       chat_turn_count(c) == 2 && !strcmp(chat_turn_at(c, 1)->text, r1),
       "restore: state and transcript of the snapshot");
    chat_send(c, "Who are you?", err, sizeof err);
    r3 = reply(c, &stop, &sok);
    ok(!strcmp(r3, r2) && same_state(c, after2), "branch from the snapshot continues exactly");
    free(r3);
    ok(chat_snapshot_restore(c, "after-hi", err, sizeof err) == 0 && chat_undo(c, err, sizeof err) == 0 &&
       same_state(c, zero), "undo works across a restore (the snapshot keeps the undo stack)");
    ok(chat_snapshot_restore(c, "nope", err, sizeof err) == -1 &&
       !strcmp(err, "no snapshot named 'nope'"), "restore unknown: %s", err);
    ok(chat_snapshot_delete(c, "after-hi", err, sizeof err) == 0 && chat_snapshot_count(c) == 0 &&
       chat_snapshot_delete(c, "after-hi", err, sizeof err) == -1, "delete, then delete again refused");

    /* Edit: drops the exchange and hands back the text. */
    chat_reset(c);
    chat_send(c, "hi", err, sizeof err);
    free(reply(c, &stop, &sok));
    chat_send(c, "What  is\n\n\nRWKV?", err, sizeof err);
    free(reply(c, &stop, &sok));
    text = chat_edit_last(c, err, sizeof err);
    ok(text && !strcmp(text, "What  is\nRWKV?") && chat_turn_count(c) == 2 && same_state(c, after1),
       "edit_last returns the (normalised) message and restores the state");
    free(text);

    /* Interrupt: partial reply kept, the next message is preceded by "\n\n". */
    chat_reset(c);
    chat_send(c, "hi", err, sizeof err);
    chat_step(c, &out, &n, err, sizeof err);
    chat_step(c, &out, &n, err, sizeof err);
    chat_interrupt(c);
    ok(!chat_generating(c) && chat_turn_count(c) == 2 && !strcmp(chat_turn_at(c, 1)->text, "Hi."),
       "interrupt after 2 tokens: reply ends at once, partial reply \"%s\" kept",
       chat_turn_at(c, 1) ? chat_turn_at(c, 1)->text : "");
    chat_send(c, "hi", err, sizeof err);
    ok(chat_get_stats(c)->prompt_tokens == 8, "next message owes the \"\\n\\n\": 1 + 7 tokens (%zu)",
       chat_get_stats(c)->prompt_tokens);
    chat_request_stop(c);
    ok(chat_step(c, &out, &n, err, sizeof err) == CHAT_STOP_INTERRUPT && !chat_generating(c),
       "chat_request_stop: the next step ends the reply");

    /* max_tokens. */
    chat_settings(c)->max_tokens = 3;
    chat_settings_changed(c);
    chat_send(c, "Tell me about ssh.", err, sizeof err);
    free(reply(c, &stop, &sok));
    ok(stop == CHAT_STOP_LENGTH && chat_get_stats(c)->reply_tokens == 3 && sok,
       "max_tokens 3: stop 'length' after 3 tokens");
    ok(!strcmp(chat_stop_name(CHAT_STOP_END), "end") && !strcmp(chat_stop_name(CHAT_STOP_EOS), "eos"),
       "stop names");

    /* Token 0 unbanned and the only one allowed: the reply ends at once. */
    {
        int32_t id;
        int bans = chat_ban(c, 0, 0, err, sizeof err) == 0;

        for (id = 1; id < rwkv_model_info(m)->n_vocab; id++) {
            bans &= chat_ban(c, id, 1, err, sizeof err) == 0;
        }
        chat_send(c, "hi", err, sizeof err);
        free(reply(c, &stop, &sok));
        ok(bans && stop == CHAT_STOP_EOS && chat_get_stats(c)->reply_tokens == 0 && sok &&
           !strcmp(chat_turn_at(c, chat_turn_count(c) - 1)->text, ""),
           "token 0 unbanned: stop 'eos', empty reply");
        ok(chat_ban(c, -1, 1, err, sizeof err) == -1 && chat_ban(c, 65536, 1, err, sizeof err) == -1,
           "ban outside the vocabulary refused: %s", err);
        for (id = 1; id < rwkv_model_info(m)->n_vocab; id++) {
            chat_ban(c, id, 0, err, sizeof err);
        }
        chat_ban(c, 0, 1, err, sizeof err);
        for (id = tokenizer_vocab_size(tok); id < rwkv_model_info(m)->n_vocab; id++) {
            chat_ban(c, id, 1, err, sizeof err);
        }
    }

    /* Raw completion: bytes as they are, through blank lines, up to the
     * length limit (the demo model goes on with the next "User:" turn). */
    chat_settings(c)->max_tokens = 60;
    chat_settings_changed(c);
    chat_reset(c);
    ok(chat_send_raw(c, "User: hi\n\nAssistant:", 20, err, sizeof err) == 0, "raw prompt fed");
    r3 = reply(c, &stop, &sok);
    {
        size_t l1 = strlen(r1);
        int good = stop == CHAT_STOP_LENGTH && r3[0] == ' ' && !strncmp(r3 + 1, r1, l1) &&
                   !strncmp(r3 + 1 + l1, "\n\n", 2);

        if (!good) {
            diag("raw: [%s] %s", r3, chat_stop_name(stop));
        }
        ok(good, "raw completion keeps the leading space, runs through the blank line, "
                 "stops at the length limit");
    }
    free(r3);
    ok(chat_send(c, "   \n ", err, sizeof err) == -1 && !strcmp(err, "empty message"),
       "empty message refused");

    free(r1);
    free(r2);
    rwkv_state_free(zero);
    rwkv_state_free(after1);
    rwkv_state_free(after2);
    chat_free(c);
}

/* Counts the progress calls of a long prompt; stops it at call stop_at. */
struct progress {
    size_t calls, total;
    size_t stop_at;             /* 0: never */
    int in_order;               /* every call came CHAT_PROMPT_CHUNK tokens after the last */
};

static int on_progress(void *ctx, size_t fed, size_t total)
{
    struct progress *p = ctx;

    p->in_order &= fed == p->calls * CHAT_PROMPT_CHUNK && fed < total;
    p->calls++;
    p->total = total;
    return p->stop_at && p->calls == p->stop_at;
}

/* A prompt of n_words words, malloc'd. */
static char *long_text(size_t n_words)
{
    static const char *const words[] = { "river", "stone", "cloud", "paper", "light", "green" };
    char *text = malloc(n_words * 8 + 1), *o = text;
    size_t i;

    for (i = 0; i < n_words; i++) {
        o += sprintf(o, "%s%s", i ? " " : "", words[(i * 7 + i / 5) % 6]);
    }
    return text;
}

/* Long prompts: fed in pieces with progress calls, exactly as one
 * rwkv_eval would feed them; stopping one leaves the conversation as it
 * was, and it goes on as if the message had never been sent. */
static void test_long_prompt(rwkv_model *m, const char *what)
{
    struct sampler_settings s = greedy();
    struct chat_template bare = { "bare", "", "User", "Assistant", NULL, 0 };
    struct progress p = { 0, 0, 0, 1 };
    char err[RWKV_ERRLEN], *text = long_text(1300), *r1, *r2, *r3 = NULL;
    chat *c = chat_new(m, tok, &bare, &s, err, sizeof err);
    chat *d = chat_new(m, tok, &bare, &s, err, sizeof err);
    rwkv_state *zero = rwkv_state_new(m), *after1, *ref = rwkv_state_new(m);
    float *ref_logits = malloc((size_t)rwkv_model_info(m)->n_vocab * sizeof(float));
    int32_t *ids = NULL;
    size_t n_ids = 0, ctx1;
    int stop, sok, rc;

    if (!c || !d) {
        ok(0, "%s: chat_new: %s", what, err);
        return;
    }
    chat_set_progress(c, on_progress, &p);

    /* Raw: compare with one rwkv_eval of the same tokens from the zero state. */
    tokenizer_encode(tok, (const uint8_t *)text, strlen(text), &ids, &n_ids);
    rc = eval_once(m, ref, ids, n_ids, ref_logits, 0, err, sizeof err);
    ok(rc == 0 && chat_send_raw(c, text, strlen(text), err, sizeof err) == 0 && same_state(c, ref) &&
       !memcmp(chat_logits(c), ref_logits, (size_t)rwkv_model_info(m)->n_vocab * sizeof(float)),
       "%s: a %zu-token prompt fed in pieces: state and logits bit-identical to one rwkv_eval",
       what, n_ids);
    ok(p.calls == (n_ids + CHAT_PROMPT_CHUNK - 1) / CHAT_PROMPT_CHUNK && p.total == n_ids &&
       p.in_order, "%s: progress asked before each of its %zu pieces, in order (%zu calls)", what,
       (n_ids + CHAT_PROMPT_CHUNK - 1) / CHAT_PROMPT_CHUNK, p.calls);
    chat_interrupt(c);
    chat_reset(c);
    p.calls = 0;
    ok(chat_send(c, "hi", err, sizeof err) == 0 && p.calls == 0,
       "%s: a short message is fed without progress calls", what);
    r1 = reply(c, &stop, &sok);
    after1 = rwkv_state_clone(chat_state(c));
    ctx1 = chat_get_stats(c)->context_tokens;

    /* Stopped at the second piece. */
    p.stop_at = 2;
    p.calls = 0;
    rc = chat_send(c, text, err, sizeof err);
    ok(rc == CHAT_INTERRUPTED && strstr(err, "interrupted after 512 of ") && !strchr(err, '\n'),
       "%s: the progress callback stops the prompt after its first piece: %s", what, err);
    ok(!chat_generating(c) && chat_turn_count(c) == 2 && same_state(c, after1) &&
       chat_get_stats(c)->context_tokens == ctx1,
       "%s: after the stopped prompt: no reply, 2 turns, state and context as before it", what);
    ok(chat_regen(c, err, sizeof err) == 0 && (r3 = reply(c, &stop, &sok)) && !strcmp(r3, r1) &&
       same_state(c, after1), "%s: regen still redoes the last reply (undo stack intact)", what);
    free(r3);

    /* /edit TEXT (chat_edit_send) stopped: the exchange it replaces stays. */
    p.stop_at = 2;
    p.calls = 0;
    rc = chat_edit_send(c, text, err, sizeof err);
    ok(rc == CHAT_INTERRUPTED && strstr(err, "interrupted after 512 of ") &&
       chat_turn_count(c) == 2 && !strcmp(chat_turn_at(c, 0)->text, "hi") &&
       !strcmp(chat_turn_at(c, 1)->text, r1) && same_state(c, after1) &&
       chat_get_stats(c)->context_tokens == ctx1 && !chat_generating(c),
       "%s: edit_send stopped: the last exchange, state and context are as before it", what);
    ok(chat_regen(c, err, sizeof err) == 0 && (r3 = reply(c, &stop, &sok)) && !strcmp(r3, r1) &&
       same_state(c, after1), "%s: and it can still be regenerated (undo stack intact)", what);
    free(r3);
    p.stop_at = 0;
    ok(chat_edit_send(c, " \n ", err, sizeof err) == -1 && !strcmp(err, "empty message") &&
       chat_turn_count(c) == 2 && !strcmp(chat_turn_at(c, 1)->text, r1) && same_state(c, after1),
       "%s: edit_send of an empty message: '%s', the last exchange kept", what, err);
    ok(chat_edit_send(c, "hi", err, sizeof err) == 0 && (r3 = reply(c, &stop, &sok)) &&
       !strcmp(r3, r1) && same_state(c, after1) && chat_turn_count(c) == 2 &&
       chat_get_stats(c)->context_tokens == ctx1,
       "%s: edit_send with the same text: the same reply, state and context", what);
    free(r3);

    /* The conversation goes on as if the message had never been sent. */
    p.stop_at = 0;
    chat_send(c, "Who are you?", err, sizeof err);
    r2 = reply(c, &stop, &sok);
    chat_send(d, "hi", err, sizeof err);
    free(reply(d, &stop, &sok));
    chat_send(d, "Who are you?", err, sizeof err);
    r3 = reply(d, &stop, &sok);
    ok(!strcmp(r2, r3) && same_state(c, chat_state(d)) && chat_turn_count(c) == chat_turn_count(d),
       "%s: the next message gives the reply and state of a chat that never saw it", what);
    ok(chat_undo(c, err, sizeof err) == 0 && chat_undo(c, err, sizeof err) == 0 &&
       same_state(c, zero) && chat_turn_count(c) == 0, "%s: undo goes back to the start", what);
    ok(chat_edit_send(c, "hi", err, sizeof err) == -1 && !strcmp(err, "no message to edit") &&
       same_state(c, zero) && chat_turn_count(c) == 0, "%s: edit_send with nothing to edit: '%s'",
       what, err);

    /* A reply in progress is ended first; stopping the prompt keeps it. */
    chat_send(c, "hi", err, sizeof err);
    p.stop_at = 1;
    p.calls = 0;
    ok(chat_send(c, text, err, sizeof err) == CHAT_INTERRUPTED && chat_turn_count(c) == 2 &&
       !chat_generating(c) && strstr(err, "interrupted after 0 of "),
       "%s: stopped before the first piece: the reply in progress ended, kept as it was", what);
    free(r1);
    free(r2);
    free(r3);
    free(ids);
    free(text);
    free(ref_logits);
    rwkv_state_free(ref);
    rwkv_state_free(after1);
    rwkv_state_free(zero);
    chat_free(c);
    chat_free(d);
}

/* Sampling: the same seed gives the same reply, byte for byte. */
static void test_seeded(rwkv_model *m, const char *what)
{
    struct sampler_settings s;
    struct chat_template t;
    char err[RWKV_ERRLEN], *a, *b, *d;
    chat *x, *y;
    int stop, sok, sok2;

    sampler_defaults(&s);
    s.temperature = 1.0f;
    s.top_p = 0.9f;
    s.max_tokens = 40;
    s.seed = 1234;
    if (chat_template_load(&t, "default", err, sizeof err) < 0) {
        t.name = strdup("x");
        t.intro = strdup("");
        t.user = strdup("User");
        t.assistant = strdup("Assistant");
    }
    x = chat_new(m, tok, &t, &s, err, sizeof err);
    y = chat_new(m, tok, &t, &s, err, sizeof err);
    chat_template_free(&t);
    if (!x || !y) {
        ok(0, "%s: chats: %s", what, err);
        chat_free(x);
        chat_free(y);
        return;
    }
    chat_send(x, "Tell me a story.", err, sizeof err);
    a = reply(x, &stop, &sok);
    chat_send(y, "Tell me a story.", err, sizeof err);
    b = reply(y, &stop, &sok2);
    ok(!strcmp(a, b) && sok && sok2, "%s: same seed, same reply (%zu bytes)", what, strlen(a));
    chat_settings(y)->seed = 99;
    chat_settings_changed(y);
    chat_regen(y, err, sizeof err);
    d = reply(y, &stop, &sok);
    ok(strcmp(a, d) != 0 || strlen(a) == 0, "%s: another seed, another reply", what);
    ok(sok, "%s: sampled reply streamed == transcript", what);
    free(a);
    free(b);
    free(d);
    chat_free(x);
    chat_free(y);
}

static int is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Random replies (random weights, top_p 1): whatever the tokens, the
 * streamed bytes are the transcript text, stripped, valid UTF-8 pieces,
 * never containing the end of the turn. */
static void test_stream_invariants(rwkv_model *m)
{
    struct sampler_settings s;
    char err[RWKV_ERRLEN];
    chat *c;
    int seed, good = 1, ends = 0, ws_inside = 0;

    sampler_defaults(&s);
    s.top_p = 1.0f;
    s.presence = s.frequency = 0.0f;
    s.max_tokens = 40;
    c = chat_new(m, tok, NULL, &s, err, sizeof err);
    for (seed = 0; seed < 20 && c; seed++) {
        char *r;
        int stop, sok;
        size_t len;

        chat_settings(c)->seed = (uint64_t)seed;
        chat_settings_changed(c);
        chat_reset(c);
        chat_send(c, "Write something.", err, sizeof err);
        r = reply(c, &stop, &sok);
        len = strlen(r);
        ends += stop == CHAT_STOP_END;
        ws_inside += strchr(r, '\n') != NULL || strchr(r, ' ') != NULL;
        if (!sok || strstr(r, "\n\n") || (len && (is_ws(r[0]) || is_ws(r[len - 1])))) {
            diag("seed %d: [%s] stream ok %d", seed, r, sok);
            good = 0;
        }
        free(r);
    }
    ok(c && good, "20 random replies: stream == transcript, stripped, no \\n\\n (%d ended the turn, "
       "%d with inner whitespace)", ends, ws_inside);
    chat_free(c);
}

/* Writes a state-tuned file for the demo model shape: time_state[l] is
 * [H][N][N] with value (l, h, i, j) -> l + h/10 + i/1000 + j/100000. */
static int write_tuned(const char *path, const struct rwkv_info *info, int transposed_ok,
                       int poison)
{
    char err[RWKV_ERRLEN];
    pthw *w = pthw_new(path, PTHW_PTH, err, sizeof err);
    int64_t shape[3] = { info->n_head, info->head_size, info->head_size };
    size_t n = (size_t)(info->n_head * info->head_size * info->head_size), k;
    float *data = malloc(n * sizeof(float));
    int l, rc = 0;
    char name[64];

    if (!w || !data) {
        diag("%s", err);
        free(data);
        return -1;
    }
    if (!transposed_ok) {
        shape[0] = info->n_head + 1;
    }
    for (l = 0; l < info->n_layer && rc == 0; l++) {
        snprintf(name, sizeof name, "blocks.%d.att.time_state", l);
        rc = pthw_declare(w, name, CKPT_F32, 3, shape, err, sizeof err);
    }
    rc = rc ? rc : pthw_begin(w, err, sizeof err);
    for (l = 0; l < info->n_layer && rc == 0; l++) {
        size_t h, i, j, N = (size_t)info->head_size;

        data = realloc(data, (size_t)(shape[0] * shape[1] * shape[2]) * sizeof(float));
        for (h = 0; h < (size_t)shape[0]; h++) {
            for (i = 0; i < N; i++) {
                for (j = 0; j < N; j++) {
                    data[(h * N + i) * N + j] = (float)(l + h / 10.0 + i / 1000.0 + j / 100000.0);
                }
            }
        }
        if (poison && l == info->n_layer - 1) {
            data[7] = NAN;
        }
        rc = pthw_write(w, data, err, sizeof err);
    }
    rc = rc ? rc : pthw_finish(w, err, sizeof err);
    if (rc) {
        diag("%s", err);
    }
    pthw_free(w);
    free(data);
    (void)k;
    return rc;
}

static void test_tuned(rwkv_model *m)
{
    const struct rwkv_info *info = rwkv_model_info(m);
    char err[RWKV_ERRLEN];
    rwkv_state *st = rwkv_state_new(m);
    const char *path = "tests/tmp/tuned.pth", *bad = "tests/tmp/tuned-bad.pth";
    const char *nan = "tests/tmp/tuned-nan.pth";
    size_t C = (size_t)info->n_embd, H = (size_t)info->n_head, N = (size_t)info->head_size;
    size_t per = 2 * C + H * N * N, l, h, i, j;
    int good = 1;

    err[0] = '\0';
    mkdir("tests", 0755);
    mkdir("tests/tmp", 0755);
    if (write_tuned(path, info, 1, 0) < 0 || write_tuned(bad, info, 0, 0) < 0 ||
        write_tuned(nan, info, 1, 1) < 0) {
        ok(0, "writing state-tuned test files");
        rwkv_state_free(st);
        return;
    }
    ok(rwkv_state_load_tuned(m, st, path, err, sizeof err) == 0, "state-tuned file loads (%s)",
       err);
    for (l = 0; l < (size_t)info->n_layer; l++) {
        const float *p = rwkv_state_cdata(st) + l * per;

        for (i = 0; i < C; i++) {
            good &= p[i] == 0.0f && p[C + H * N * N + i] == 0.0f;
        }
        for (h = 0; h < H; h++) {
            for (i = 0; i < N; i++) {
                for (j = 0; j < N; j++) {
                    /* RWKV-7: wkv[h][i][j] = time_state[h][i][j] (v·kᵀ as stored) */
                    good &= p[C + (h * N + i) * N + j] ==
                            (float)(l + h / 10.0 + i / 1000.0 + j / 100000.0);
                }
            }
        }
    }
    ok(info->version == 7 && good, "RWKV-7: time_state used as stored for the wkv state, x_prev zero");
    ok(rwkv_state_load_tuned(m, st, bad, err, sizeof err) == -1 &&
       strstr(err, "tensor blocks.0.att.time_state: expected"), "wrong shape refused: %s", err);
    ok(rwkv_state_load_tuned(m, st, shared_path("fixtures/models/v7.pth"), err, sizeof err) == -1 &&
       strstr(err, "time_state missing"), "a model file is not a state: %s", err);
    {
        char want[128];

        snprintf(want, sizeof want, "tuned-nan.pth: tensor blocks.%d.att.time_state holds NaN/Inf "
                 "values: the state-tuned file is damaged", info->n_layer - 1);
        ok(rwkv_state_load_tuned(m, st, nan, err, sizeof err) == -1 && strstr(err, want) &&
           !strchr(err, '\n'), "a state-tuned file holding NaN is refused: %s", err);
    }
    {
        struct sampler_settings s = greedy();
        struct chat_template def = { "d", "User: hi\n\nAssistant: Hello.\n\n", "User",
                                     "Assistant", NULL, 0 };
        chat *c = chat_new(m, tok, &def, &s, err, sizeof err);
        rwkv_state *ref = rwkv_state_new(m);

        rwkv_state *was = rwkv_state_clone(chat_state(c));

        ok(chat_load_tuned_state(c, nan, err, sizeof err) == -1 && strstr(err, "NaN/Inf") &&
           same_state(c, was), "a state-tuned start holding NaN is refused; the chat is as it "
           "was (%s)", err);
        rwkv_state_free(was);
        rwkv_state_load_tuned(m, ref, path, err, sizeof err);
        ok(c && chat_load_tuned_state(c, path, err, sizeof err) == 0 && same_state(c, ref),
           "chat starts from the tuned state (it replaces the intro, as in ChatRWKV)");
        chat_send(c, "hi", err, sizeof err);
        chat_interrupt(c);
        chat_reset(c);
        ok(same_state(c, ref), "reset goes back to the tuned state");
        ok(chat_tuned_name(c) && !strcmp(chat_tuned_name(c), path), "the chat names its tuned "
           "start");
        ok(chat_load_tuned_state(c, bad, err, sizeof err) == -1 && strstr(err, "time_state") &&
           same_state(c, ref) && !strcmp(chat_tuned_name(c), path),
           "a tuned file that does not fit changes nothing");
        chat_snapshot_take(c, "tuned", err, sizeof err);
        ok(chat_load_tuned_state(c, NULL, err, sizeof err) == 0 && !chat_tuned_name(c) &&
           !same_state(c, ref), "NULL drops the tuned start: back to the intro");
        ok(chat_snapshot_restore(c, "tuned", err, sizeof err) == 0 && chat_tuned_name(c) &&
           same_state(c, ref), "a snapshot keeps the tuned start");
        chat_reset(c);
        ok(same_state(c, ref), "reset after restoring it goes back to the tuned state");
        rwkv_state_free(ref);
        chat_free(c);
    }
    unlink(path);
    unlink(bad);
    unlink(nan);
    rwkv_state_free(st);
}

/* Resident memory of this process, in bytes (/proc/self/statm). */
static size_t resident_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) {
            resident = 0;
        }
        fclose(f);
    }
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* 1000 snapshots hold about 1000 states, not 1000 copies of the sampler's
 * vocabulary-sized arrays (0.7 MB each before); the 1001st is refused. */
static void test_snapshot_memory(rwkv_model *m)
{
    struct sampler_settings s = greedy();
    char err[RWKV_ERRLEN], name[32], *r1, *r2;
    chat *c = chat_new(m, tok, NULL, &s, err, sizeof err);
    size_t before, after, state_bytes, bound, i, n_ok = 0;
    int stop;

    s.max_tokens = 6;
    chat_settings(c)->max_tokens = 6;
    chat_settings(c)->temperature = 1.0f;
    chat_settings(c)->seed = 5;
    chat_settings_changed(c);
    chat_send(c, "Hello there.", err, sizeof err);
    free(reply(c, &stop, NULL));
    state_bytes = rwkv_state_floats(chat_state(c)) * sizeof(float);
    /* Warm the allocator with one snapshot taken and deleted. */
    chat_snapshot_take(c, "warm", err, sizeof err);
    chat_snapshot_delete(c, "warm", err, sizeof err);
    before = resident_bytes();
    for (i = 0; i < CHAT_SNAPSHOTS_MAX; i++) {
        snprintf(name, sizeof name, "s%zu", i);
        n_ok += chat_snapshot_take(c, name, err, sizeof err) == 0;
    }
    after = resident_bytes();
    /* Each: the state plus a few kB (sampler counts, transcript, names);
     * 64 KiB leaves room for the allocator (ASan's redzones and quarantine
     * take about 40 kB here).  Before, each cost the state + 0.7 MB. */
    bound = CHAT_SNAPSHOTS_MAX * (state_bytes + 65536);
    ok(n_ok == CHAT_SNAPSHOTS_MAX && chat_snapshot_count(c) == CHAT_SNAPSHOTS_MAX &&
       before > 0 && after - before < bound,
       "%d snapshots: resident memory grew %.1f MB, under 1000 x (state %zu B + 64 KiB) = %.1f MB",
       CHAT_SNAPSHOTS_MAX, (after - before) / 1e6, state_bytes, bound / 1e6);
    ok(chat_snapshot_take(c, "one-more", err, sizeof err) == -1 &&
       strstr(err, "1000 snapshots already, the most kept: delete one") &&
       chat_snapshot_count(c) == CHAT_SNAPSHOTS_MAX,
       "snapshot 1001 is refused with a message: %s", err);
    ok(chat_snapshot_take(c, "s7", err, sizeof err) == 0 &&
       chat_snapshot_delete(c, "s8", err, sizeof err) == 0 &&
       chat_snapshot_take(c, "one-more", err, sizeof err) == 0,
       "at the cap, a snapshot can be taken again under its name, or after a /delete");
    /* Restoring still continues exactly (sampler counts and random state
     * come back from their compact form). */
    chat_send(c, "Tell me more.", err, sizeof err);
    r1 = reply(c, &stop, NULL);
    chat_snapshot_restore(c, "s500", err, sizeof err);
    chat_send(c, "Tell me more.", err, sizeof err);
    r2 = reply(c, &stop, NULL);
    ok(!strcmp(r1, r2) && *r1, "a restored snapshot samples the same reply at temperature 1 "
       "(\"%s\")", r1);
    free(r1);
    free(r2);
    chat_free(c);
}

/* A model whose logits are NaN says so, instead of "every token is
 * banned".  The state is poisoned by hand: files holding NaN are refused
 * at load (test_statefile), weights holding NaN too (test_badinput). */
static void test_nonfinite_logits(rwkv_model *m)
{
    char err[RWKV_ERRLEN];
    int pass;

    for (pass = 0; pass < 2; pass++) {
        struct sampler_settings s = greedy();
        chat *c;
        float *st;
        size_t i, n;
        const char *out;
        int rc;

        s.temperature = pass ? 0.8f : 0.0f;
        c = chat_new(m, tok, NULL, &s, err, sizeof err);
        st = rwkv_state_data((rwkv_state *)chat_state(c));
        n = rwkv_state_floats(chat_state(c));
        for (i = 0; i < n; i++) {
            st[i] = NAN;
        }
        err[0] = '\0';
        rc = chat_send(c, "hello", err, sizeof err) == 0 ? chat_step(c, &out, &n, err, sizeof err)
                                                        : -9;
        ok(rc == -1 && strstr(err, "the model produced NaN/Inf logits") &&
           !strstr(err, "banned") && !chat_generating(c),
           "NaN logits (temperature %s): the reply fails saying so: %s", pass ? "0.8" : "0", err);
        chat_free(c);
    }
}

/* --- G1 format and thinking --------------------------------------------- */

/* Feeds text into st (its own piece, as the chat feeds each turn). */
static int feed_text(rwkv_model *m, rwkv_state *st, const char *text)
{
    char err[RWKV_ERRLEN];
    int32_t *ids = NULL;
    size_t n = 0;
    int rc;

    if (tokenizer_encode(tok, (const uint8_t *)text, strlen(text), &ids, &n) < 0) {
        return -1;
    }
    rc = n ? eval_once(m, st, ids, n, NULL, 0, err, sizeof err) : 0;
    free(ids);
    return rc;
}

/* What one forced reply gave: the bytes handed out per part, the stop. */
struct forced {
    char reasoning[512], answer[512];
    int stop, mixed;
    size_t tokens;
};

/* Makes the reply in progress generate text's tokens (every other token is
 * banned at each step) until the chat stops it: the chat's own stop rules
 * decide where.  Leaves every token banned but the last: free c after. */
static void force(rwkv_model *m, chat *c, const char *text, struct forced *f)
{
    char err[RWKV_ERRLEN];
    int32_t *ids = NULL, id;
    size_t n = 0, k = 0;

    memset(f, 0, sizeof *f);
    tokenizer_encode(tok, (const uint8_t *)text, strlen(text), &ids, &n);
    for (id = 1; id < rwkv_model_info(m)->n_vocab; id++) {
        chat_ban(c, id, 1, err, sizeof err);
    }
    chat_ban(c, ids[0], 0, err, sizeof err);
    for (;;) {
        size_t before = chat_get_stats(c)->reply_tokens, len;
        const char *out;
        int rc = chat_step(c, &out, &len, err, sizeof err);

        if (rc < 0) {
            diag("chat_step: %s", err);
            f->stop = -1;
            break;
        }
        if (len) {
            int reasoning = chat_step_part(c) == CHAT_PART_REASONING;
            char *dst = reasoning ? f->reasoning : f->answer;
            size_t have = strlen(dst);

            if (have + len < sizeof f->reasoning) {
                memcpy(dst + have, out, len);
                dst[have + len] = '\0';
            }
            f->mixed |= reasoning && f->answer[0];
        }
        if (chat_get_stats(c)->reply_tokens > before && k + 1 < n) {
            chat_ban(c, ids[k], 1, err, sizeof err);
            chat_ban(c, ids[++k], 0, err, sizeof err);
        }
        f->stop = rc;
        if (rc != CHAT_STOP_NONE) {
            break;
        }
    }
    f->tokens = chat_get_stats(c)->reply_tokens;
    free(ids);
}

static size_t count_tokens(const char *text)
{
    int32_t *ids = NULL;
    size_t n = 0;

    tokenizer_encode(tok, (const uint8_t *)text, strlen(text), &ids, &n);
    free(ids);
    return n;
}

static int same_text(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

/* A G1 chat on m with system text and think mode. */
static chat *g1_chat(rwkv_model *m, const char *system, enum chat_think think)
{
    char err[RWKV_ERRLEN];
    struct sampler_settings s = greedy();
    struct chat_template t;
    chat *c;

    if (chat_template_load(&t, "g1", err, sizeof err) < 0) {
        diag("%s", err);
        return NULL;
    }
    c = chat_new(m, tok, &t, &s, err, sizeof err);
    chat_template_free(&t);
    if (c && system && chat_set_system(c, system, err, sizeof err) < 0) {
        diag("%s", err);
    }
    if (c) {
        chat_set_think(c, think);
    }
    return c;
}

static void test_g1_templates(void)
{
    struct chat_template t;
    char err[RWKV_ERRLEN];
    const char *text = "system: Sys\nthinking: yes\n---\n";
    enum chat_think mode;

    ok(chat_template_parse(&t, "x", text, strlen(text), err, sizeof err) == 0 && t.thinking &&
       same_text(t.system, "Sys"), "template keys system and thinking");
    chat_template_free(&t);
    text = "thinking: maybe\n---\n";
    ok(chat_template_parse(&t, "x", text, strlen(text), err, sizeof err) == -1 &&
       strstr(err, "thinking: 'maybe' is not yes or no"), "thinking: maybe refused (%s)", err);
    text = "---\nhello\n";
    ok(chat_template_parse(&t, "x", text, strlen(text), err, sizeof err) == 0 && !t.thinking &&
       same_text(t.system, "System"), "templates default to System and no thinking");
    chat_template_free(&t);
    ok(chat_template_load(&t, "g1", err, sizeof err) == 0 && t.thinking && !t.intro[0] &&
       same_text(t.user, "User") && same_text(t.assistant, "Assistant") &&
       same_text(t.system, "System"), "prompts/g1.txt: no intro, User/Assistant/System, thinking");
    chat_template_free(&t);
    ok(same_text(chat_template_for_model("/m/rwkv7-g1x-2.9b-20251119-ctx8192.pth"), "g1") &&
       same_text(chat_template_for_model("rwkv7-g1a-0.1b-20250728-ctx4096.pth"), "g1") &&
       same_text(chat_template_for_model("rwkv7-g0a-7.2b-20250829-ctx4096.pth"), "g1") &&
       same_text(chat_template_for_model("RWKV7-G1.pth"), "g1") &&
       !chat_template_for_model("RWKV-x070-World-1.5B-v3-20250127-ctx4096.pth") &&
       !chat_template_for_model("/models/g1/rwkv7-tiny-chat.pth") &&
       !chat_template_for_model("big1.pth") && !chat_template_for_model("rwkv7-g12.pth"),
       "G1/G0 file names choose the g1 template, others none");
    ok(chat_think_parse("a_lot", &mode) == 0 && mode == CHAT_THINK_A_LOT &&
       chat_think_parse("on", &mode) == 0 && mode == CHAT_THINK_ON &&
       chat_think_parse("lots", &mode) == -1 && !strcmp(chat_think_name(CHAT_THINK_A_BIT), "a-bit"),
       "think mode names");
}

/* The model sees exactly the G1 template's text, in each thinking mode. */
static void test_g1_feeding(rwkv_model *m)
{
    static const struct {
        enum chat_think mode;
        const char *prompt;
    } modes[] = {
        { CHAT_THINK_AUTO, "User: hi\n there\n\nAssistant:" },
        { CHAT_THINK_OFF, "User: hi\n there\n\nAssistant: <think>\n</think" },
        { CHAT_THINK_ON, "User: hi\n there\n\nAssistant: <think" },
        { CHAT_THINK_A_BIT, "User: hi\n there (think a bit)\n\nAssistant: <think" },
        { CHAT_THINK_A_LOT, "User: hi\n there (think a lot)\n\nAssistant: <think" },
    };
    char err[RWKV_ERRLEN];
    int good = 1;
    size_t i;

    for (i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        chat *c = g1_chat(m, "  Be  brief.\n\n\nVery.  ", modes[i].mode);
        rwkv_state *ref = rwkv_state_new(m);
        int same;

        feed_text(m, ref, "System: Be  brief.\nVery.\n\n");
        if (i == 0) {
            ok(c && same_state(c, ref) && same_text(chat_get_system(c), "Be  brief.\nVery."),
               "the system turn is fed at the start, normalised");
        }
        feed_text(m, ref, modes[i].prompt);
        same = c && chat_send(c, "  hi\n\n\n there ", err, sizeof err) == 0 && same_state(c, ref) &&
               same_text(chat_turn_at(c, 0)->text, "hi\n there");
        if (!same) {
            diag("think %s: the state differs from feeding \"%s\"", chat_think_name(modes[i].mode),
                 modes[i].prompt);
        }
        good &= same;
        rwkv_state_free(ref);
        chat_free(c);
    }
    ok(good, "think auto/off/on/a-bit/a-lot feed G1's text exactly (system turn, suffixes, "
       "<think prefixes)");
    {
        chat *c = g1_chat(m, "Be brief.", CHAT_THINK_AUTO);
        rwkv_state *ref = rwkv_state_new(m);

        feed_text(m, ref, "System: Be brief.\n\n");
        chat_send(c, "hi", err, sizeof err);
        chat_interrupt(c);
        chat_reset(c);
        ok(same_state(c, ref), "/reset goes back to the system turn");
        ok(chat_set_system(c, NULL, err, sizeof err) == 0 && !chat_get_system(c) &&
           chat_get_stats(c)->context_tokens == 0, "the system turn can be dropped");
        rwkv_state_free(ref);
        chat_free(c);
    }
}

/* Where a thinking reply ends, and how it is split. */
static void test_g1_stops(rwkv_model *m)
{
    const char *think = ">\nStep one.\n\nStep two: a < b.\n</think>\n\nThe answer.\n\nUser: more";
    char err[RWKV_ERRLEN], path[] = "tests/tmp/g1.state";
    struct forced f;
    const struct chat_turn *t;
    chat *c = g1_chat(m, "Be brief.", CHAT_THINK_ON), *d;

    chat_send(c, "Why?", err, sizeof err);
    force(m, c, think, &f);
    t = chat_turn_at(c, 1);
    ok(f.stop == CHAT_STOP_END && f.tokens == count_tokens(">\nStep one.\n\nStep two: a < b.\n"
                                                           "</think>\n\nThe answer.\n\n"),
       "a think block's blank lines and the blank line after </think> do not end the turn; "
       "the one after the answer does (%zu tokens, stop %d)", f.tokens, f.stop);
    ok(t && same_text(t->reasoning, "Step one.\n\nStep two: a < b.") &&
       same_text(t->text, "The answer."), "the turn keeps the reasoning and the answer apart");
    ok(!strcmp(f.reasoning, "Step one.\n\nStep two: a < b.") &&
       !strcmp(f.answer, "The answer.") && !f.mixed,
       "the streamed parts are exactly the turn's reasoning and answer, reasoning first");

    /* State files keep the reasoning, the system turn and the think mode. */
    mkdir("tests", 0755);
    mkdir("tests/tmp", 0755);
    d = g1_chat(m, NULL, CHAT_THINK_AUTO);
    ok(chat_save(c, path, err, sizeof err) == 0 && chat_load(d, path, err, sizeof err) == 0 &&
       same_text(chat_turn_at(d, 1)->reasoning, t->reasoning) &&
       same_text(chat_get_system(d), "Be brief.") && chat_get_think(d) == CHAT_THINK_ON &&
       !chat_turn_at(d, 0)->reasoning, "a state file keeps reasoning, system turn and think mode");
    chat_reset(c);
    chat_reset(d);
    ok(same_state(d, chat_state(c)), "after loading, /reset goes back to the saved system turn");
    unlink(path);
    chat_free(d);

    /* regen starts again after the same <think prefix. */
    chat_send(c, "Why?", err, sizeof err);
    force(m, c, think, &f);
    chat_free(c);
    c = g1_chat(m, "Be brief.", CHAT_THINK_ON);
    chat_send(c, "Why?", err, sizeof err);
    chat_interrupt(c);
    chat_regen(c, err, sizeof err);
    force(m, c, think, &f);
    ok(f.stop == CHAT_STOP_END && same_text(chat_turn_at(c, 1)->reasoning, "Step one.\n\nStep "
                                            "two: a < b."), "/regen: the same think rules");
    chat_free(c);

    /* Never closed: the reasoning runs to max_tokens, no answer. */
    c = g1_chat(m, NULL, CHAT_THINK_A_LOT);
    chat_settings(c)->max_tokens = 8;
    chat_settings_changed(c);
    chat_send(c, "Why?", err, sizeof err);
    force(m, c, ">\nHmm.\n\nHmm hmm.\n\nStill thinking about it all", &f);
    t = chat_turn_at(c, 1);
    ok(f.stop == CHAT_STOP_LENGTH && t && t->reasoning && !strncmp(t->reasoning, "Hmm.\n\nHmm", 9) &&
       same_text(t->text, "") && !strcmp(f.reasoning, t->reasoning),
       "an unclosed think block runs to max_tokens: reasoning only");
    chat_free(c);

    /* auto: the model may open a think block itself, or not. */
    c = g1_chat(m, NULL, CHAT_THINK_AUTO);
    chat_send(c, "Why?", err, sizeof err);
    force(m, c, " <think>\nHmm.\n\nOK.\n</think>\nYes.\n\nUser:", &f);
    t = chat_turn_at(c, 1);
    ok(f.stop == CHAT_STOP_END && same_text(t->reasoning, "Hmm.\n\nOK.") &&
       same_text(t->text, "Yes."), "auto: a think block the model opens itself");
    chat_send(c, "And?", err, sizeof err);
    force(m, c, " Plain answer.\n\nUser:", &f);
    t = chat_turn_at(c, 3);
    ok(f.stop == CHAT_STOP_END && !t->reasoning && same_text(t->text, "Plain answer.") &&
       !f.reasoning[0], "auto: a plain answer ends at its blank line");
    chat_free(c);

    /* off: "<think>\n</think" was fed; the empty block is no reasoning. */
    c = g1_chat(m, NULL, CHAT_THINK_OFF);
    chat_send(c, "Why?", err, sizeof err);
    force(m, c, ">\n\nDirect.\n\nUser:", &f);
    t = chat_turn_at(c, 1);
    ok(f.stop == CHAT_STOP_END && !t->reasoning && same_text(t->text, "Direct."),
       "off: a direct answer, no reasoning");
    chat_free(c);

    /* Templates without thinking keep ChatRWKV's rule: the first blank line. */
    {
        struct sampler_settings s = greedy();
        struct chat_template def = { "d", "", "User", "Assistant", NULL, 0 };

        c = chat_new(m, tok, &def, &s, err, sizeof err);
        chat_set_think(c, CHAT_THINK_ON);
        chat_send(c, "Why?", err, sizeof err);
        force(m, c, " <think>\na\n\nb", &f);
        t = chat_turn_at(c, 1);
        ok(f.stop == CHAT_STOP_END && !t->reasoning && same_text(t->text, "<think>\na"),
           "no thinking template: no think block, the first blank line ends the turn");
        chat_free(c);
    }
}

/* One reply streamed to its stop: each part's bytes appended. */
struct streamed {
    char reasoning[4096], answer[4096];
    int stop;
};

static void stream_more(chat *c, struct streamed *out)
{
    char err[RWKV_ERRLEN];
    const char *b;
    size_t n;

    do {
        out->stop = chat_step(c, &b, &n, err, sizeof err);
        if (out->stop < 0) {
            diag("chat_step: %s", err);
            return;
        }
        if (n) {
            char *dst = chat_step_part(c) == CHAT_PART_REASONING ? out->reasoning : out->answer;
            size_t have = strlen(dst);

            if (have + n < sizeof out->answer) {
                memcpy(dst + have, b, n);
                dst[have + n] = '\0';
            }
        }
    } while (out->stop == CHAT_STOP_NONE);
}

/* /continue: a reply cut at max_tokens and continued, part after part,
 * is the reply an uncut run gives (bytes handed out, turn, state, token
 * count: sampled, penalties on), with thinking too; refused when the last
 * reply was not cut or the state changed since. */
static void test_continue(rwkv_model *m, const char *what, int g1)
{
    char err[RWKV_ERRLEN];
    struct sampler_settings s;
    struct streamed one, parts;
    struct chat_stats whole;
    const int total = 35, piece = 7;
    chat *a, *b;
    int n_parts = 0, continued_ok = 1;
    double seconds = 0;

    sampler_defaults(&s);
    s.seed = 5;
    s.max_tokens = total;
    if (g1) {
        a = g1_chat(m, NULL, CHAT_THINK_ON);
        b = g1_chat(m, NULL, CHAT_THINK_ON);
        chat_settings(a)->temperature = chat_settings(b)->temperature = 1.0f;
        chat_settings(a)->seed = chat_settings(b)->seed = 5;
        chat_settings(a)->max_tokens = total;
        chat_settings_changed(a);
    } else {
        a = chat_new(m, tok, NULL, &s, err, sizeof err);
        b = chat_new(m, tok, NULL, &s, err, sizeof err);
    }
    chat_settings(b)->max_tokens = piece;
    chat_settings_changed(b);
    memset(&one, 0, sizeof one);
    memset(&parts, 0, sizeof parts);
    chat_send(a, "Tell me about tar.", err, sizeof err);
    stream_more(a, &one);
    whole = *chat_get_stats(a);
    chat_send(b, "Tell me about tar.", err, sizeof err);
    ok(chat_continue(b, err, sizeof err) == -1 && strstr(err, "a reply is being generated"),
       "%s: /continue during a reply is refused", what);
    for (;;) {
        stream_more(b, &parts);
        n_parts++;
        if (parts.stop != CHAT_STOP_LENGTH || chat_get_stats(b)->reply_tokens >= (size_t)total) {
            break;
        }
        continued_ok &= chat_get_stats(b)->reply_seconds >= seconds;
        seconds = chat_get_stats(b)->reply_seconds;
        if (chat_continue(b, err, sizeof err) < 0) {
            diag("%s", err);
            continued_ok = 0;
            break;
        }
        continued_ok &= chat_turn_count(b) == 1 && chat_generating(b);
    }
    ok(continued_ok && n_parts > 1, "%s: a reply cut every %d tokens continued %d times", what,
       piece, n_parts - 1);
    ok(parts.stop == one.stop && !strcmp(parts.answer, one.answer) &&
       !strcmp(parts.reasoning, one.reasoning),
       "%s: the parts handed out are the uncut reply's bytes (%zu answer, %zu reasoning), "
       "stop %d", what, strlen(one.answer), strlen(one.reasoning), one.stop);
    ok(chat_turn_count(b) == 2 && !strcmp(chat_turn_at(b, 1)->text, chat_turn_at(a, 1)->text) &&
       ((!chat_turn_at(a, 1)->reasoning && !chat_turn_at(b, 1)->reasoning) ||
        (chat_turn_at(a, 1)->reasoning && chat_turn_at(b, 1)->reasoning &&
         !strcmp(chat_turn_at(a, 1)->reasoning, chat_turn_at(b, 1)->reasoning))),
       "%s: one assistant turn holding the whole reply", what);
    ok(same_state(b, chat_state(a)) && chat_get_stats(b)->reply_tokens == whole.reply_tokens &&
       chat_get_stats(b)->context_tokens == whole.context_tokens &&
       chat_get_stats(b)->reply_seconds >= seconds,
       "%s: the same state, reply tokens (%zu) and context; the reply's time adds up", what,
       chat_get_stats(b)->reply_tokens);
    if (parts.stop != CHAT_STOP_LENGTH) {
        ok(chat_continue(b, err, sizeof err) == -1 &&
           strstr(err, "the last reply was not cut at max_tokens: nothing to continue") &&
           !strchr(err, '\n'), "%s: /continue after a reply that ended: %s", what, err);
    } else {
        ok(1, "%s: (the uncut reply ran to max_tokens too)", what);
    }
    /* Only right after the cut. */
    chat_reset(b);
    chat_send(b, "Tell me about tar.", err, sizeof err);
    memset(&parts, 0, sizeof parts);
    stream_more(b, &parts);
    ok(parts.stop == CHAT_STOP_LENGTH && chat_snapshot_take(b, "cut", err, sizeof err) == 0 &&
       chat_save(b, "tests/tmp/cut.state", err, sizeof err) == 0 &&
       chat_continue(b, err, sizeof err) == 0,
       "%s: /snap and /save keep the chance to continue", what);
    stream_more(b, &parts);
    chat_send(b, "More.", err, sizeof err);
    stream_more(b, &parts);
    ok(chat_undo(b, err, sizeof err) == 0 && chat_continue(b, err, sizeof err) == -1,
       "%s: after /undo there is nothing to continue", what);
    ok(chat_snapshot_restore(b, "cut", err, sizeof err) == 0 &&
       chat_continue(b, err, sizeof err) == -1 && chat_load(b, "tests/tmp/cut.state", err,
                                                             sizeof err) == 0 &&
       chat_continue(b, err, sizeof err) == -1,
       "%s: nor after /restore or /load (%s)", what, err);
    unlink("tests/tmp/cut.state");
    chat_free(a);
    chat_free(b);
}

/* force(), but with max_tokens 3 and /continue after each cut: the same
 * text in pieces. */
static int force_in_pieces(rwkv_model *m, chat *c, const char *text, struct forced *f)
{
    char err[RWKV_ERRLEN];
    int32_t *ids = NULL, id;
    size_t n = 0, k = 0;
    int cuts = 0;

    memset(f, 0, sizeof *f);
    chat_settings(c)->max_tokens = 3;
    chat_settings_changed(c);
    tokenizer_encode(tok, (const uint8_t *)text, strlen(text), &ids, &n);
    for (id = 1; id < rwkv_model_info(m)->n_vocab; id++) {
        chat_ban(c, id, 1, err, sizeof err);
    }
    chat_ban(c, ids[0], 0, err, sizeof err);
    for (;;) {
        size_t before = chat_get_stats(c)->reply_tokens, len;
        const char *out;
        int rc = chat_step(c, &out, &len, err, sizeof err);

        if (rc < 0) {
            f->stop = -1;
            break;
        }
        if (len) {
            int reasoning = chat_step_part(c) == CHAT_PART_REASONING;
            char *dst = reasoning ? f->reasoning : f->answer;
            size_t have = strlen(dst);

            if (have + len < sizeof f->reasoning) {
                memcpy(dst + have, out, len);
                dst[have + len] = '\0';
            }
            f->mixed |= reasoning && f->answer[0];
        }
        if (chat_get_stats(c)->reply_tokens > before && k + 1 < n) {
            chat_ban(c, ids[k], 1, err, sizeof err);
            chat_ban(c, ids[++k], 0, err, sizeof err);
        }
        f->stop = rc;
        if (rc == CHAT_STOP_LENGTH && chat_continue(c, err, sizeof err) == 0) {
            cuts++;
            continue;
        }
        if (rc != CHAT_STOP_NONE) {
            break;
        }
    }
    f->tokens = chat_get_stats(c)->reply_tokens;
    free(ids);
    return cuts;
}

/* /continue through a think block: cut inside the reasoning, around
 * "</think>" and inside the answer, the reply is split and ends as it does
 * uncut. */
static void test_continue_think(rwkv_model *m)
{
    const char *text = ">\nStep one.\n\nStep two.\n</think>\n\nThe answer, long enough to be cut "
                       "a few times.\n\nUser: more";
    char err[RWKV_ERRLEN];
    struct forced whole, cut;
    chat *a = g1_chat(m, NULL, CHAT_THINK_ON), *b = g1_chat(m, NULL, CHAT_THINK_ON);
    int cuts;

    chat_send(a, "Why?", err, sizeof err);
    force(m, a, text, &whole);
    chat_send(b, "Why?", err, sizeof err);
    cuts = force_in_pieces(m, b, text, &cut);
    ok(cuts > 5 && whole.stop == CHAT_STOP_END && cut.stop == CHAT_STOP_END &&
       cut.tokens == whole.tokens && !strcmp(cut.reasoning, whole.reasoning) &&
       !strcmp(cut.answer, whole.answer) && !cut.mixed && chat_turn_count(b) == 2 &&
       same_text(chat_turn_at(b, 1)->reasoning, "Step one.\n\nStep two.") &&
       same_text(chat_turn_at(b, 1)->text, chat_turn_at(a, 1)->text) &&
       same_state(b, chat_state(a)),
       "G1: cut every 3 tokens (%d times) through the think block and continued: the same "
       "reasoning, answer, stop and state as uncut", cuts);
    ok(chat_continue(b, err, sizeof err) == -1 && strstr(err, "not cut at max_tokens"),
       "/continue after a reply that ended at its blank line: %s", err);
    chat_free(a);
    chat_free(b);
}

/* State files name their model (issue 21): the "model" and "model_path"
 * sections, a refusal that says which model a file belongs to, and files
 * without them (from before) still loading. */
static void test_model_file(rwkv_model *demo, rwkv_model *world)
{
    char err[RWKV_ERRLEN], name[256], path[] = "tests/tmp/model-name.state";
    struct sampler_settings s = greedy();
    chat *a = chat_new(demo, tok, NULL, &s, err, sizeof err);
    chat *b = chat_new(world, tok, NULL, &s, err, sizeof err);
    chat *old = chat_new(demo, tok, NULL, &s, err, sizeof err);
    int stop;

    mkdir("tests", 0755);
    mkdir("tests/tmp", 0755);
    if (!a || !b || !old) {
        ok(0, "chats for the model-name test: %s", err);
        return;
    }
    ok(chat_model_name(a) == NULL, "a chat has no model file until one is set");
    chat_set_model_file(a, "/some/dir/rwkv7-tiny-chat.pth");
    chat_set_model_file(b, "/other/v7-world.pth");
    ok(!strcmp(chat_model_name(a), "rwkv7-tiny-chat.pth"), "the model's name is the file name");
    chat_send(a, "hi", err, sizeof err);
    free(reply(a, &stop, NULL));
    ok(chat_save(a, path, err, sizeof err) == 0, "save with a model file: %s", err);
    chat_file_model(path, 0, name, sizeof name);
    ok(!strcmp(name, "rwkv7-tiny-chat.pth"), "the state file keeps the model's file name (%s)",
       name);
    chat_file_model(path, 1, name, sizeof name);
    ok(!strcmp(name, "/some/dir/rwkv7-tiny-chat.pth"), "and its path (%s)", name);
    ok(chat_load(b, path, err, sizeof err) < 0 && strstr(err, "saved with another model") &&
       strstr(err, "it belongs to the model rwkv7-tiny-chat.pth") && chat_turn_count(b) == 0,
       "another model refuses the file and names the model it belongs to: %s", err);
    chat_set_model_file(old, NULL);
    ok(chat_load(old, path, err, sizeof err) == 0 && chat_turn_count(old) == 2,
       "the same model loads it (%s)", err);
    ok(chat_save(old, path, err, sizeof err) == 0, "save without a model file");
    chat_file_model(path, 0, name, sizeof name);
    ok(name[0] == '\0', "a file without the model section names none");
    ok(chat_load(a, path, err, sizeof err) == 0 && chat_turn_count(a) == 2,
       "a file without the model section (as before) still loads: %s", err);
    ok(chat_load(b, path, err, sizeof err) < 0 && !strstr(err, "belongs to"),
       "another model refuses it without naming one: %s", err);
    chat_file_model("tests/tmp/no-such.state", 0, name, sizeof name);
    ok(name[0] == '\0', "a missing file names no model");
    chat_file_model(shared_path("fixtures/models/v7.pth"), 0, name, sizeof name);
    ok(name[0] == '\0', "a file that is not a state file names no model");
    unlink(path);
    chat_free(a);
    chat_free(b);
    chat_free(old);
}

int main(void)
{
    char err[WORLD_ERRLEN];
    rwkv_model *demo, *world;
    const char *datadir = getenv("RWKV_CHAT_DATADIR");
    char demo_path[4096];

    tok = tokenizer_load(shared_path("fixtures/rwkv_vocab_v20230424.txt"), err, sizeof err);
    if (!tok) {
        ok(0, "vocabulary: %s", err);
        return tap_done();
    }
    test_normalize_and_templates();
    test_g1_templates();

    snprintf(demo_path, sizeof demo_path, "%s/../share/models/rwkv7-tiny-chat.pth",
             getenv("SHARED_DIR") ? getenv("SHARED_DIR") : "..");
    if (getenv("TOP_SRCDIR")) {
        snprintf(demo_path, sizeof demo_path, "%s/share/models/rwkv7-tiny-chat.pth",
                 getenv("TOP_SRCDIR"));
    }
    (void)datadir;
    demo = load_model(demo_path);
    if (demo) {
        test_greedy(demo);
        test_operations(demo);
        test_long_prompt(demo, "demo model");
        test_seeded(demo, "demo model");
        test_tuned(demo);
        test_g1_feeding(demo);
        test_g1_stops(demo);
        test_nonfinite_logits(demo);
        test_snapshot_memory(demo);
        test_continue(demo, "demo model", 0);
        test_continue(demo, "demo model, G1 thinking on", 1);
        test_continue_think(demo);
    } else {
        ok(0, "demo model %s loads", demo_path);
    }
    world = load_model(shared_path("fixtures/models/v7-world.pth"));
    if (world) {
        test_seeded(world, "v7-world (random weights)");
        test_stream_invariants(world);
        test_long_prompt(world, "v7-world");
        test_continue(world, "v7-world (random weights)", 0);
        if (demo) {
            test_model_file(demo, world);
        }
        rwkv_model_free(world);
    } else {
        ok(0, "v7-world.pth loads");
    }
    rwkv_model_free(demo);
    tokenizer_free(tok);
    return tap_done();
}
