/* chat_sections.c - a chat's state file: chat_save encodes the chat's
 * sections (settings, template, transcript, exchanges, snapshots) and
 * chat_load decodes and checks them (moved verbatim from what is now chat_conversation.c). */
#include "app/session/chat_internal.h"


/* --- state files -------------------------------------------------------- */

/* A growable little-endian byte buffer for the sections. */
struct buf {
    uint8_t *p;
    size_t len, cap;
    int failed;
};

static void buf_put(struct buf *b, const void *data, size_t n)
{
    if (b->failed || reserve((char **)&b->p, &b->cap, b->len + n) < 0) {
        b->failed = 1;
        return;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_u32(struct buf *b, uint32_t v)
{
    uint8_t x[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

    buf_put(b, x, 4);
}

static void buf_u64(struct buf *b, uint64_t v)
{
    buf_u32(b, (uint32_t)v);
    buf_u32(b, (uint32_t)(v >> 32));
}

static void buf_str(struct buf *b, const char *s)
{
    size_t n = strlen(s);

    buf_u32(b, (uint32_t)n);
    buf_put(b, s, n);
}

/* A reader over a section; any overrun sets failed. */
struct reader {
    const uint8_t *p;
    size_t len, pos;
    int failed;
};

static uint32_t rd_u32(struct reader *r)
{
    const uint8_t *p;

    if (r->failed || r->len - r->pos < 4) {
        r->failed = 1;
        return 0;
    }
    p = r->p + r->pos;
    r->pos += 4;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd_u64(struct reader *r)
{
    uint64_t lo = rd_u32(r);

    return lo | (uint64_t)rd_u32(r) << 32;
}

static float rd_f32(struct reader *r)
{
    uint32_t u = rd_u32(r);
    float f;

    memcpy(&f, &u, 4);
    return f;
}

/* malloc'd string; NULL (and failed) on overrun. */
static char *rd_str(struct reader *r)
{
    uint32_t n = rd_u32(r);
    char *s;

    if (r->failed || r->len - r->pos < n) {
        r->failed = 1;
        return NULL;
    }
    s = malloc((size_t)n + 1);
    if (!s) {
        r->failed = 1;
        return NULL;
    }
    memcpy(s, r->p + r->pos, n);
    s[n] = '\0';
    r->pos += n;
    return s;
}

/* The knobs section: one "name value" line per knob of engine/sampling/knobs.h,
 * the value in digits that read back exactly. */
static void put_knobs(struct buf *b, const struct sampler_settings *s)
{
    char value[64];
    size_t i;

    for (i = 0; i < knob_count(); i++) {
        knob_format(knob_at(i), s, 1, value, sizeof value);
        buf_put(b, knob_at(i)->name, strlen(knob_at(i)->name));
        buf_put(b, " ", 1);
        buf_put(b, value, strlen(value));
        buf_put(b, "\n", 1);
    }
}

/* Tuned start of a snapshot in the snapshots section. */
enum { SNAP_TUNED_NONE, SNAP_TUNED_FILE, SNAP_TUNED_OWN };

static void buf_text(struct buf *b, const char *s, size_t n)
{
    buf_u32(b, (uint32_t)n);
    buf_put(b, s, n);
}

/* One snapshot of the snapshots section (layout in share/state-format.md). */
static void put_snapshot(struct buf *b, const chat *c, const struct snapshot *s)
{
    struct buf k = { 0 };
    size_t i, hs, nf = rwkv_state_floats(s->state->state);

    buf_str(b, s->name);
    buf_u64(b, (uint64_t)(int64_t)s->taken);
    buf_u32(b, (uint32_t)s->tr.n);
    for (i = 0; i < s->tr.n; i++) {
        buf_u32(b, (uint32_t)s->tr.turns[i].role);
        buf_str(b, s->tr.turns[i].text);
        buf_u32(b, s->tr.turns[i].reasoning != NULL);
        if (s->tr.turns[i].reasoning) {
            buf_str(b, s->tr.turns[i].reasoning);
        }
    }
    buf_str(b, s->tmpl.name);
    buf_str(b, s->tmpl.user);
    buf_str(b, s->tmpl.assistant);
    buf_str(b, s->tmpl.intro);
    buf_str(b, s->tmpl.system ? s->tmpl.system : "System");
    buf_u32(b, (uint32_t)s->tmpl.thinking);
    put_knobs(&k, &s->settings);
    if (k.failed) {
        b->failed = 1;
    }
    buf_text(b, (const char *)k.p, k.len);
    free(k.p);
    buf_u64(b, s->seeded);
    buf_text(b, s->smp_state, s->smp_len);
    buf_u32(b, (uint32_t)s->sep);
    buf_u64(b, s->stats.context_tokens);
    buf_u32(b, (uint32_t)s->think);
    buf_u32(b, s->system != NULL);
    if (s->system) {
        buf_str(b, s->system);
    }
    if (!s->tuned) {
        buf_u32(b, SNAP_TUNED_NONE);
    } else {
        buf_u32(b, s->tuned == c->tuned ? SNAP_TUNED_FILE : SNAP_TUNED_OWN);
        buf_str(b, s->tuned_name ? s->tuned_name : "");
        if (s->tuned != c->tuned) {
            buf_put(b, rwkv_state_cdata(s->tuned->state), nf * sizeof(float));
        }
    }
    buf_put(b, rwkv_state_cdata(s->state->state), nf * sizeof(float));
    /* An RWKV-7b state's history (the engine's form, as in 'history'). */
    hs = rwkv_state_history_size(s->state->state);
    buf_u64(b, hs);
    if (hs && !b->failed) {
        if (reserve((char **)&b->p, &b->cap, b->len + hs) < 0) {
            b->failed = 1;
        } else {
            rwkv_state_history_write(s->state->state, b->p + b->len);
            b->len += hs;
        }
    }
}

int chat_save(chat *c, const char *path, char *err, size_t errlen)
{
    struct buf tr = { 0 }, tm = { 0 }, st = { 0 }, sm = { 0 }, cs = { 0 }, tx = { 0 };
    struct buf rs = { 0 }, th = { 0 }, sn = { 0 };
    struct rwkv_statefile_section sec[14];
    uint32_t n_reasoning = 0;
    size_t i, n_sec = 0;
    int rc;

    if (c->generating) {
        snprintf(err, errlen, "%s: a reply is being generated: stop it before saving", path);
        return -1;
    }
    buf_u32(&tr, (uint32_t)c->tr.n);
    for (i = 0; i < c->tr.n; i++) {
        buf_u32(&tr, (uint32_t)c->tr.turns[i].role);
        buf_str(&tr, c->tr.turns[i].text);
    }
    buf_str(&tm, c->tmpl.name);
    buf_str(&tm, c->tmpl.user);
    buf_str(&tm, c->tmpl.assistant);
    buf_str(&tm, c->tmpl.intro);
    put_knobs(&st, &c->settings);
    /* Added after version 1's sections (older readers skip them). */
    buf_str(&tx, c->tmpl.system ? c->tmpl.system : "System");
    buf_u32(&tx, (uint32_t)c->tmpl.thinking);
    buf_u32(&th, (uint32_t)c->think);
    for (i = 0; i < c->tr.n; i++) {
        n_reasoning += c->tr.turns[i].reasoning != NULL;
    }
    buf_u32(&rs, n_reasoning);
    for (i = 0; i < c->tr.n; i++) {
        if (c->tr.turns[i].reasoning) {
            buf_u32(&rs, (uint32_t)i);
            buf_str(&rs, c->tr.turns[i].reasoning);
        }
    }
    if (reserve((char **)&sm.p, &sm.cap, sampler_state_size(c->smp)) < 0) {
        sm.failed = 1;
    } else {
        sm.len = sampler_state_save(c->smp, sm.p);
    }
    buf_u32(&cs, (uint32_t)c->sep);
    buf_u64(&cs, c->stats.context_tokens);
    buf_u64(&cs, c->base_tokens);
    buf_u64(&cs, c->seeded);
    /* Always written (count 0 too): a file with it replaces the snapshots
     * in memory when loaded, one from before it leaves them. */
    buf_u32(&sn, (uint32_t)c->n_snaps);
    for (i = 0; i < c->n_snaps && !sn.failed; i++) {
        put_snapshot(&sn, c, &c->snaps[i]);
    }
    if (tr.failed || tm.failed || st.failed || sm.failed || cs.failed || tx.failed ||
        rs.failed || th.failed || sn.failed) {
        rc = -1;
        snprintf(err, errlen, "%s: out of memory", path);
    } else {
        sec[n_sec++] = (struct rwkv_statefile_section){ "transcript", tr.p, tr.len };
        sec[n_sec++] = (struct rwkv_statefile_section){ "template", tm.p, tm.len };
        sec[n_sec++] = (struct rwkv_statefile_section){ "knobs", st.p, st.len };
        sec[n_sec++] = (struct rwkv_statefile_section){ "sampler", sm.p, sm.len };
        sec[n_sec++] = (struct rwkv_statefile_section){ "chat", cs.p, cs.len };
        sec[n_sec++] = (struct rwkv_statefile_section){ "template_ext", tx.p, tx.len };
        sec[n_sec++] = (struct rwkv_statefile_section){ "think", th.p, th.len };
        sec[n_sec++] = (struct rwkv_statefile_section){ "snapshots", sn.p, sn.len };
        if (n_reasoning) {
            sec[n_sec++] = (struct rwkv_statefile_section){ "reasoning", rs.p, rs.len };
        }
        if (c->system) {
            sec[n_sec++] = (struct rwkv_statefile_section){ "system", c->system,
                                                            strlen(c->system) };
        }
        if (c->model_path) {
            sec[n_sec++] = (struct rwkv_statefile_section){ "model", c->model_name,
                                                            strlen(c->model_name) };
            sec[n_sec++] = (struct rwkv_statefile_section){ "model_path", c->model_path,
                                                            strlen(c->model_path) };
        }
        if (c->tuned) {
            sec[n_sec++] = (struct rwkv_statefile_section){
                "tuned", rwkv_state_cdata(c->tuned->state),
                rwkv_state_floats(c->tuned->state) * sizeof(float)
            };
            sec[n_sec++] = (struct rwkv_statefile_section){
                "tuned_name", c->tuned_name, strlen(c->tuned_name)
            };
        }
        rc = rwkv_statefile_save(path, c->model, c->state, sec, n_sec, err, errlen);
    }
    free(tr.p);
    free(tm.p);
    free(st.p);
    free(sm.p);
    free(cs.p);
    free(tx.p);
    free(rs.p);
    free(th.p);
    free(sn.p);
    return rc;
}

void chat_file_model(const char *path, int want_path, char *out, size_t outlen)
{
    long n = rwkv_statefile_peek(path, want_path ? "model_path" : "model", out, outlen);

    /* Only a whole, one-line name is believed: it is shown and looked up. */
    if (n <= 0 || (size_t)n >= outlen || strlen(out) != (size_t)n || strchr(out, '\n') ||
        (!want_path && strchr(out, '/'))) {
        if (outlen) {
            *out = '\0';
        }
    }
}

/* Whether f[0..n-1] are all finite. */
static int all_finite(const float *f, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (!isfinite(f[i])) {
            return 0;
        }
    }
    return 1;
}

/* Opens a section for reading; 0, or -1 with err when absent. */
static int section(const rwkv_statefile *sf, const char *path, const char *tag, struct reader *r,
                   char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->p = rwkv_statefile_section(sf, tag, &r->len);
    if (!r->p) {
        snprintf(err, errlen, "%s: no '%s' section: not a chat state file", RWKV_ESC(path), tag);
        return -1;
    }
    return 0;
}

/* Reads a knobs section ("name value" lines) into s through the knob
 * table's check; names it does not know (a newer rwkv-chat's knobs) are
 * skipped.  0, or -1 with why. */
static int get_knobs(const struct reader *r, struct sampler_settings *s, char *why,
                     size_t whylen)
{
    char *text, *line, *next, *value, reason[160];
    const struct knob *k;
    int rc = 0;

    if (r->len > CHAT_KNOBS_MAX || memchr(r->p, '\0', r->len)) {
        snprintf(why, whylen, "not a list of knobs (%zu bytes)", r->len);
        return -1;
    }
    text = malloc(r->len + 1);
    if (!text) {
        oom(why, whylen);
        return -1;
    }
    memcpy(text, r->p, r->len);
    text[r->len] = '\0';
    for (line = text; *line && rc == 0; line = next) {
        next = strchr(line, '\n');
        if (!next) {
            snprintf(why, whylen, "the last line has no newline");
            rc = -1;
            break;
        }
        *next++ = '\0';
        value = strchr(line, ' ');
        if (!value || value == line) {
            snprintf(why, whylen, "'%.40s' is not a 'name value' line", line);
            rc = -1;
            break;
        }
        *value++ = '\0';
        if ((k = knob_find(line)) != NULL && knob_parse(k, s, value, reason, sizeof reason) < 0) {
            snprintf(why, whylen, "%s: %s", k->name, reason);
            rc = -1;
        }
    }
    free(text);
    return rc;
}

/* A string without NUL bytes (malloc'd); NULL (and failed) otherwise. */
static char *rd_text(struct reader *r)
{
    size_t at = r->pos;
    char *s = rd_str(r);

    if (s && strlen(s) != r->pos - at - 4) {
        free(s);
        r->failed = 1;
        return NULL;
    }
    return s;
}

/* n bytes in place; NULL (and failed) on overrun. */
static const uint8_t *rd_bytes(struct reader *r, size_t n)
{
    const uint8_t *p;

    if (r->failed || r->len - r->pos < n) {
        r->failed = 1;
        return NULL;
    }
    p = r->p + r->pos;
    r->pos += n;
    return p;
}

/* A shared state holding the floats at p (unaligned), or NULL out of
 * memory; *finite says whether they all are. */
static struct shared *shared_floats(chat *c, const uint8_t *p, int *finite)
{
    struct shared *s = calloc(1, sizeof *s);
    size_t nf = rwkv_state_floats(c->state);

    if (!s || !(s->state = rwkv_state_new(c->model))) {
        free(s);
        return NULL;
    }
    s->refs = 1;
    memcpy(rwkv_state_data(s->state), p, nf * sizeof(float));
    *finite = all_finite(rwkv_state_data(s->state), nf);
    return s;
}

/* Whether two starts (intro or tuned start, then the system turn) give
 * the same base state. */
static int same_start(const struct chat_template *ta, const struct shared *tua, const char *sya,
                      const struct chat_template *tb, const struct shared *tub, const char *syb)
{
    if (tua != tub || (!tua && strcmp(ta->intro, tb->intro) != 0) || (!sya != !syb)) {
        return 0;
    }
    return !sya || (!strcmp(sya, syb) && !strcmp(ta->system, tb->system));
}

/* Reads one snapshot of the snapshots section into s (zeroed); snaps[0..n)
 * are those read before it.  0; 1 when the bytes are malformed; -1 with
 * err on any other refusal. */
static int get_snapshot(chat *c, struct reader *r, struct snapshot *s, const struct snapshot *snaps,
                        size_t n, const char *shown, const struct chat_template *tm,
                        struct shared *base, struct shared *tuned, const char *system,
                        size_t *start_bytes, char *err, size_t errlen)
{
    size_t nf = rwkv_state_floats(c->state), i, len;
    struct reader kr;
    const uint8_t *p;
    char why[256];
    uint32_t nt, k, has, kind, think;
    int finite = 1;

    s->name = rd_text(r);
    if (!s->name || !*s->name) {
        return 1;
    }
    for (i = 0; i < n; i++) {
        if (!strcmp(snaps[i].name, s->name)) {
            return 1;
        }
    }
    s->taken = (time_t)(int64_t)rd_u64(r);
    nt = rd_u32(r);
    for (k = 0; k < nt && !r->failed; k++) {
        uint32_t role = rd_u32(r);
        char *text = rd_str(r), *reasoning = NULL;

        has = rd_u32(r);
        if (has == 1) {
            reasoning = rd_text(r);
        }
        if (r->failed || role > CHAT_ASSISTANT || has > 1 || (has && role != CHAT_ASSISTANT) ||
            transcript_add(&s->tr, (enum chat_role)role, text, strlen(text)) < 0 ||
            (reasoning && transcript_set_reasoning(&s->tr, reasoning, strlen(reasoning)) < 0)) {
            r->failed = 1;
        }
        free(text);
        free(reasoning);
    }
    s->tmpl.name = rd_text(r);
    s->tmpl.user = rd_text(r);
    s->tmpl.assistant = rd_text(r);
    s->tmpl.intro = rd_text(r);
    s->tmpl.system = rd_text(r);
    k = rd_u32(r);
    s->tmpl.thinking = k != 0;
    if (r->failed || k > 1) {
        return 1;
    }
    snprintf(why, sizeof why, "%s: 'snapshots' section: snapshot '%s'", shown,
             RWKV_ESC(s->name));
    if (chat_template_check(&s->tmpl, why, err, errlen) < 0) {
        return -1;
    }
    len = rd_u32(r);
    p = rd_bytes(r, len);
    if (!p) {
        return 1;
    }
    memset(&kr, 0, sizeof kr);
    kr.p = p;
    kr.len = len;
    sampler_defaults(&s->settings);
    if (get_knobs(&kr, &s->settings, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s: 'snapshots' section: snapshot '%s': knobs: %s", shown,
                 RWKV_ESC(s->name), why);
        return -1;
    }
    s->seeded = rd_u64(r);
    len = rd_u32(r);
    p = rd_bytes(r, len);
    if (!p) {
        return 1;
    }
    {
        /* The sampler's state is checked by loading it into a scratch one. */
        sampler *chk = sampler_clone(c->smp);
        int bad = !chk || sampler_state_load(chk, p, len) < 0;

        sampler_free(chk);
        if (!chk) {
            oom(err, errlen);
            return -1;
        }
        if (bad) {
            return 1;
        }
    }
    if (!(s->smp_state = malloc(len ? len : 1))) {
        oom(err, errlen);
        return -1;
    }
    memcpy(s->smp_state, p, len);
    s->smp_len = len;
    k = rd_u32(r);
    s->sep = (int)k;
    s->stats.context_tokens = (size_t)rd_u64(r);
    think = rd_u32(r);
    s->think = (enum chat_think)think;
    has = rd_u32(r);
    if (r->failed || k > 2 || think > CHAT_THINK_A_LOT || has > 1) {
        return 1;
    }
    if (has) {
        s->system = rd_text(r);
        if (!s->system || !*s->system || strlen(s->system) > CHAT_INTRO_MAX) {
            return 1;
        }
    }
    kind = rd_u32(r);
    if (r->failed || kind > SNAP_TUNED_OWN || (kind == SNAP_TUNED_FILE && !tuned)) {
        return 1;
    }
    if (kind != SNAP_TUNED_NONE && !(s->tuned_name = rd_text(r))) {
        return 1;
    }
    if (kind == SNAP_TUNED_FILE) {
        s->tuned = shared_ref(tuned);
    } else if (kind == SNAP_TUNED_OWN) {
        if (!(p = rd_bytes(r, nf * sizeof(float)))) {
            return 1;
        }
        if (!(s->tuned = shared_floats(c, p, &finite))) {
            oom(err, errlen);
            return -1;
        }
        if (!finite) {
            return 1;
        }
    }
    if (!(p = rd_bytes(r, nf * sizeof(float)))) {
        return 1;
    }
    if (!(s->state = shared_floats(c, p, &finite))) {
        oom(err, errlen);
        return -1;
    }
    len = (size_t)rd_u64(r);
    p = rd_bytes(r, len);
    /* an RWKV-7b snapshot always has a history (at least its count), others never */
    if (!finite || !p || (len != 0) != (rwkv_model_info(c->model)->history_floats != 0) ||
        (len && rwkv_state_history_check(c->model, p, len, why, sizeof why) < 0)) {
        return 1;
    }
    if (len && rwkv_state_history_read(s->state->state, p, len, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s: 'snapshots' section: snapshot '%s': %s", shown,
                 RWKV_ESC(s->name), why);
        return -1;
    }
    /* Its base (for /reset): the file's when it starts the same way, else
     * that of an earlier snapshot that does, else read anew. */
    if (same_start(tm, tuned, system, &s->tmpl, s->tuned, s->system)) {
        s->base = shared_ref(base);
    }
    for (i = 0; i < n && !s->base; i++) {
        if (same_start(&snaps[i].tmpl, snaps[i].tuned, snaps[i].system, &s->tmpl, s->tuned,
                       s->system)) {
            s->base = shared_ref(snaps[i].base);
        }
    }
    if (!s->base) {
        if (!(s->base = make_base(c, &s->tmpl, s->tuned, s->system, &len, why, sizeof why))) {
            snprintf(err, errlen, "%s: reading snapshot '%s''s intro: %s; nothing changed",
                     shown, RWKV_ESC(s->name), why);
            return -1;
        }
        *start_bytes += rwkv_state_bytes(s->base->state);
    }
    s->bytes = snapshot_bytes(s);
    return 0;
}

/* The snapshots section: a u32 count, then each snapshot.  At most
 * CHAT_SNAPSHOTS_MAX of them, CHAT_SNAPSHOT_BYTES together.  0 with
 * *out (malloc'd), *n_out and *bytes_out, or -1 with err. */
static int get_snapshots(chat *c, const struct reader *section, const char *shown,
                         const struct chat_template *tm, struct shared *base,
                         struct shared *tuned, const char *system, struct snapshot **out,
                         size_t *n_out, size_t *bytes_out, char *err, size_t errlen)
{
    struct reader r = *section;
    struct snapshot *snaps = NULL;
    size_t n = 0, bytes = 0, i, start_bytes = 0;
    uint32_t count = rd_u32(&r);
    int rc = 1;

    if (!r.failed && count <= CHAT_SNAPSHOTS_MAX) {
        snaps = calloc(count ? count : 1, sizeof *snaps);
        rc = snaps ? 0 : -1;
        if (!snaps) {
            oom(err, errlen);
        }
    }
    for (n = 0; rc == 0 && n < count; n++) {
        rc = get_snapshot(c, &r, &snaps[n], snaps, n, shown, tm, base, tuned, system,
                          &start_bytes, err, errlen);
        /* the states of the intros read anew (snapshots that start their own
         * way) stay with the snapshots: as much again at most */
        if (rc == 0 && ((bytes += snaps[n].bytes) > CHAT_SNAPSHOT_BYTES ||
                        start_bytes > CHAT_SNAPSHOT_BYTES)) {
            rc = 1;
        }
    }
    if (rc == 0 && r.pos != r.len) {
        rc = 1;
    }
    if (rc != 0) {
        if (rc == 1) {
            snprintf(err, errlen, "%s: corrupt 'snapshots' section", shown);
        }
        for (i = 0; snaps && i < count && i <= n; i++) {
            snapshot_release(&snaps[i]);
        }
        free(snaps);
        return -1;
    }
    *out = snaps;
    *n_out = count;
    *bytes_out = bytes;
    return 0;
}

/* The transcript and reasoning sections of sf into tr (empty on entry):
 * 0; -1 with err when there is no transcript; 1 when a section is
 * corrupt, *what naming it. */
static int read_turns(const rwkv_statefile *sf, const char *shown, struct transcript *tr,
                      const char **what, char *err, size_t errlen)
{
    struct reader r;
    uint32_t n, i;
    size_t nb;

    if (section(sf, shown, "transcript", &r, err, errlen) < 0) {
        return -1;
    }
    n = rd_u32(&r);
    for (i = 0; i < n && !r.failed; i++) {
        uint32_t role = rd_u32(&r);
        char *text = rd_str(&r);

        if (!r.failed && (role > CHAT_ASSISTANT || transcript_add(tr, (enum chat_role)role, text,
                                                                   strlen(text)) < 0)) {
            r.failed = 1;
        }
        free(text);
    }
    if (r.failed || r.pos != r.len) {
        *what = "transcript";
        return 1;
    }
    if (rwkv_statefile_section(sf, "reasoning", &nb)) {
        section(sf, shown, "reasoning", &r, err, errlen);
        n = rd_u32(&r);
        for (i = 0; i < n && !r.failed; i++) {
            uint32_t at = rd_u32(&r);
            char *text = rd_str(&r);
            struct chat_turn *t = !r.failed && at < tr->n ? &tr->turns[at] : NULL;

            if (!t || t->role != CHAT_ASSISTANT || t->reasoning) {
                r.failed = 1;
            } else {
                t->reasoning = text;
                text = NULL;
            }
            free(text);
        }
        if (r.failed || r.pos != r.len) {
            *what = "reasoning";
            return 1;
        }
    }
    return 0;
}

int chat_file_turns(const rwkv_statefile *sf, const char *name, struct chat_turn **turns,
                    size_t *n, char *err, size_t errlen)
{
    struct transcript tr = { 0 };
    const char *what = NULL;
    char shown[RWKV_ESCAPE_LEN];
    size_t nb;
    int rc;

    *turns = NULL;
    *n = 0;
    if (!rwkv_statefile_section(sf, "transcript", &nb)) {
        return 0;
    }
    rwkv_escape_str(shown, sizeof shown, name);
    rc = read_turns(sf, shown, &tr, &what, err, errlen);
    if (rc != 0) {
        if (rc > 0) {
            snprintf(err, errlen, "%s: corrupt '%s' section", shown, what);
        }
        transcript_free(&tr);
        return -1;
    }
    *turns = tr.turns;
    *n = tr.n;
    return 0;
}

int chat_load(chat *c, const char *path, char *err, size_t errlen)
{
    rwkv_statefile *sf;
    struct reader r;
    struct transcript tr = { 0 };
    struct chat_template tm = { NULL, NULL, NULL, NULL, NULL, 0 };
    struct sampler_settings set;
    struct shared *base = NULL, *tuned = NULL;
    char *tuned_name = NULL, *system = NULL;
    uint32_t think = CHAT_THINK_AUTO;
    sampler *smp = NULL;
    uint64_t seeded = 0, context = 0, base_tokens = 0;
    uint32_t sep = 0;
    size_t nb;
    const char *what = NULL;
    char why[256];
    /* The name in messages: escaped, a long one shortened in the middle. */
    char shown[RWKV_ESCAPE_LEN];
    int with_knobs, with_snaps, rc;
    struct snapshot *snaps = NULL;
    size_t n_snaps = 0, snap_bytes = 0;

    settle(c);
    rwkv_escape_str(shown, sizeof shown, path);
    sf = rwkv_statefile_load(path, c->model, err, errlen);
    if (!sf) {
        char theirs[256];

        /* A file of another model: say which one it belongs to. */
        chat_file_model(path, 0, theirs, sizeof theirs);
        if (*theirs && (!c->model_name || strcmp(theirs, c->model_name) != 0)) {
            size_t used = strlen(err);

            snprintf(err + used, errlen - used, "; it belongs to the model %s", RWKV_ESC(theirs));
        }
        return -1;
    }
    /* Parse everything into temporaries; the chat changes only at the end. */
    rc = read_turns(sf, shown, &tr, &what, err, errlen);
    if (rc < 0) {
        goto fail;
    }
    if (rc > 0) {
        goto corrupt;
    }
    if (section(sf, shown, "template", &r, err, errlen) < 0) {
        goto fail;
    }
    tm.name = rd_str(&r);
    tm.user = rd_str(&r);
    tm.assistant = rd_str(&r);
    tm.intro = rd_str(&r);
    if (r.failed || r.pos != r.len) {
        what = "template";
        goto corrupt;
    }
    snprintf(why, sizeof why, "%s: 'template' section", path);
    if (chat_template_check(&tm, why, err, errlen) < 0) {
        goto fail;
    }
    /* The knobs: by name (format 2), or the fixed "settings" of format 1. */
    sampler_defaults(&set);
    r.p = rwkv_statefile_section(sf, "knobs", &r.len);
    with_knobs = r.p != NULL;
    if (with_knobs) {
        if (get_knobs(&r, &set, why, sizeof why) < 0) {
            snprintf(err, errlen, "%s: 'knobs' section: %s", shown, why);
            goto fail;
        }
    } else {
        if (section(sf, shown, "settings", &r, err, errlen) < 0) {
            goto fail;
        }
        set.temperature = rd_f32(&r);
        set.top_p = rd_f32(&r);
        set.top_k = (int)rd_u32(&r);
        set.min_p = rd_f32(&r);
        set.presence = rd_f32(&r);
        set.frequency = rd_f32(&r);
        set.decay = rd_f32(&r);
        set.max_tokens = (int)rd_u32(&r);
        set.seed = rd_u64(&r);
        seeded = rd_u64(&r);
        if (r.failed || r.pos != r.len) {
            what = "settings";
            goto corrupt;
        }
        if (knob_check_all(&set, why, sizeof why) < 0) {
            snprintf(err, errlen, "%s: 'settings' section: %s", shown, why);
            goto fail;
        }
    }
    if (section(sf, shown, "sampler", &r, err, errlen) < 0) {
        goto fail;
    }
    smp = sampler_clone(c->smp);
    if (!smp) {
        oom(err, errlen);
        goto fail;
    }
    if (sampler_state_load(smp, r.p, r.len) < 0) {
        what = "sampler";
        goto corrupt;
    }
    sampler_configure(smp, &set);
    if (section(sf, shown, "chat", &r, err, errlen) < 0) {
        goto fail;
    }
    sep = rd_u32(&r);
    context = rd_u64(&r);
    base_tokens = rd_u64(&r);
    if (with_knobs) {
        seeded = rd_u64(&r);
    }
    if (r.failed || r.pos != r.len || sep > 2) {
        what = "chat";
        goto corrupt;
    }
    {
        const void *p = rwkv_statefile_section(sf, "tuned", &nb);
        const char *name;
        size_t name_len;

        if (p) {
            if (nb != rwkv_state_floats(c->state) * sizeof(float)) {
                what = "tuned";
                goto corrupt;
            }
            tuned = calloc(1, sizeof *tuned);
            if (!tuned || !(tuned->state = rwkv_state_new(c->model))) {
                oom(err, errlen);
                goto fail;
            }
            tuned->refs = 1;
            memcpy(rwkv_state_data(tuned->state), p, nb);
            if (!all_finite(rwkv_state_data(tuned->state), nb / sizeof(float))) {
                snprintf(err, errlen, "%s: the state-tuned start in the file holds NaN/Inf "
                         "values: the file is damaged and cannot be loaded", shown);
                goto fail;
            }
            /* Files from before the name was kept: name the state file. */
            name = rwkv_statefile_section(sf, "tuned_name", &name_len);
            if (!name) {
                name = path;
                name_len = strlen(path);
            }
            if (memchr(name, 0, name_len)) {
                what = "tuned_name";
                goto corrupt;
            }
            tuned_name = strndup(name, name_len);
            if (!tuned_name) {
                oom(err, errlen);
                goto fail;
            }
        }
    }
    /* Sections newer files add: absent, the defaults of version 1. */
    tm.system = NULL;
    tm.thinking = 0;
    if (rwkv_statefile_section(sf, "template_ext", &nb)) {
        section(sf, path, "template_ext", &r, err, errlen);
        tm.system = rd_str(&r);
        tm.thinking = rd_u32(&r) != 0;
        if (r.failed || r.pos != r.len || strlen(tm.system) > CHAT_NAME_MAX) {
            what = "template_ext";
            goto corrupt;
        }
    } else if (!(tm.system = strdup("System"))) {
        oom(err, errlen);
        goto fail;
    }
    if (rwkv_statefile_section(sf, "think", &nb)) {
        section(sf, path, "think", &r, err, errlen);
        think = rd_u32(&r);
        if (r.failed || r.pos != r.len || think > CHAT_THINK_A_LOT) {
            what = "think";
            goto corrupt;
        }
    }
    {
        const char *p = rwkv_statefile_section(sf, "system", &nb);

        if (p) {
            if (memchr(p, 0, nb) || !nb || nb > CHAT_INTRO_MAX) {
                what = "system";
                goto corrupt;
            }
            if (!(system = strndup(p, nb))) {
                oom(err, errlen);
                goto fail;
            }
        }
    }
    /* The base state (for /reset) of the saved template: the model reads
     * its intro (bounded by chat_template_check; Ctrl-C stops it). */
    base = make_base(c, &tm, tuned, system, &nb, why, sizeof why);
    if (!base) {
        snprintf(err, errlen, "%s: reading the saved intro: %s; nothing changed", path, why);
        goto fail;
    }
    /* The snapshots (files from before they were kept have none). */
    r.p = rwkv_statefile_section(sf, "snapshots", &r.len);
    r.pos = 0;
    r.failed = 0;
    with_snaps = r.p != NULL;
    if (with_snaps && get_snapshots(c, &r, shown, &tm, base, tuned, system, &snaps, &n_snaps,
                                    &snap_bytes, err, errlen) < 0) {
        goto fail;
    }
    /* Commit (the state first: an RWKV-7b history may not fit in memory,
     * and then the state is unchanged). */
    if (rwkv_statefile_get_state(sf, c->state) != 0) {
        snprintf(err, errlen, "%s: out of memory for the saved state; nothing changed", path);
        goto fail;
    }
    if (with_snaps) {
        for (nb = 0; nb < c->n_snaps; nb++) {
            snapshot_release(&c->snaps[nb]);
        }
        free(c->snaps);
        c->snaps = snaps;
        c->n_snaps = c->cap_snaps = n_snaps;
        c->snap_bytes = snap_bytes;
        snaps = NULL;
    }
    c->cut = 0;
    rwkv_statefile_free(sf);
    exchanges_clear(c);
    transcript_free(&c->tr);
    c->tr = tr;
    chat_template_free(&c->tmpl);
    c->tmpl = tm;
    sampler_free(c->smp);
    c->smp = smp;
    c->settings = set;
    c->seeded = seeded;
    unref(c->tuned);
    c->tuned = tuned;
    free(c->tuned_name);
    c->tuned_name = tuned_name;
    free(c->system);
    c->system = system;
    c->think = (enum chat_think)think;
    unref(c->base);
    c->base = base;
    c->base_tokens = (size_t)base_tokens;
    memset(&c->stats, 0, sizeof c->stats);
    c->stats.context_tokens = (size_t)context;
    c->sep = (int)sep;
    set_current(c, NULL);
    return 0;

corrupt:
    snprintf(err, errlen, "%s: corrupt '%s' section", shown, what);
fail:
    for (nb = 0; snaps && nb < n_snaps; nb++) {
        snapshot_release(&snaps[nb]);
    }
    free(snaps);
    rwkv_statefile_free(sf);
    transcript_free(&tr);
    chat_template_free(&tm);
    sampler_free(smp);
    unref(tuned);
    free(tuned_name);
    free(system);
    unref(base);
    return -1;
}

