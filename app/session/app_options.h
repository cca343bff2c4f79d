/*
 * app_options.h - struct app_options: every setting of rwkv-chat, as
 * options_parse (options.c) fills it from the defaults, the config file
 * (config.c applies it) and the command line.  No code of its own: both
 * options.c and config.c include it, neither includes the other's header
 * for it.
 */
#ifndef RWKV_APP_OPTIONS_H
#define RWKV_APP_OPTIONS_H

#include "engine/rwkv.h"
#include "engine/sampling/sampler.h"

/* Reply length limit unless set (0 on the command line means none). */
#define OPTIONS_DEFAULT_MAX_TOKENS 1000

/* Where app_options.cache_max came from. */
enum { OPTIONS_CACHE_MAX_UNSET = 0, OPTIONS_CACHE_MAX_CONFIG, OPTIONS_CACHE_MAX_OPTION };
/* The name of the bundled demo model, found via paths_find_data. */
#define OPTIONS_DEMO_MODEL "rwkv7-tiny-chat.pth"
/* What rwkv-chat says about the demo model (status line, /info, --verbose). */
#define OPTIONS_DEMO_NOTICE \
    "tiny demo model: knows a little about Debian commands; " \
    "load a real RWKV-7 World model with --model PATH"

/* TUI colours from the config file: curses colour names or numbers
 * ("default", "red", "cyan", "244"...); NULL = the TUI's own choice. */
struct app_colours {
    char *user;             /* colour.user */
    char *assistant;        /* colour.assistant */
    char *status;           /* colour.status */
    char *accent;           /* colour.accent: selection, panel titles */
    char *error;            /* colour.error */
    int mono;               /* theme = mono: no colours, bold and reverse only */
};

struct app_options {
    char *model;            /* --model PATH|NAME or config "model"; NULL = demo */
    int model_from_user;    /* 1 if model came from the command line or config;
                               main sets it to 0 when that is the demo model itself */
    int model_in_config;    /* model came from the config file's "model =" */
    char *prompt;           /* --prompt NAME or config "prompt"; NULL = default */
    char *state_in;         /* --state-in FILE */
    char *state_out;        /* --state-out FILE */
    char *state_tuned;      /* --state-tuned FILE or config "state_tuned": the start state */
    char *system;           /* --system TEXT or config "system": the system turn */
    int think;              /* --think or config "think": enum chat_think; -1 = not given */
    int think_given;        /* --think on the command line (wins over a state file's) */
    char *vocab;            /* --vocab PATH; NULL = installed vocabulary */
    char *data_dir;         /* --data-dir DIR: searched before $(pkgdatadir) */
    char *config_path;      /* --config FILE, or the default path (may not exist) */
    struct sampler_settings sampling;   /* knobs (sampler.h), defaults + config + options */
    int seed_set;           /* --seed or config seed given (else a random seed) */
    unsigned knobs_given;   /* bit i: knob_at(i) given on the command line
                               (--greedy counts for temperature, presence, frequency) */
    int greedy;             /* --greedy: temperature 0, no penalties */
    int batch;              /* --batch */
    int jsonl;              /* --jsonl */
    int complete;           /* --complete */
    int verbose;            /* --verbose */
    int resume;             /* --resume */
    int n_threads;          /* -t/--threads, 0 = all CPUs */
    enum rwkv_dtype dtype;  /* --dtype */
    int no_cache;           /* --no-cache: no conversion cache */
    uint64_t cache_max;     /* --cache-max or config cache_max: bytes */
    int cache_max_from;     /* OPTIONS_CACHE_MAX_*: given where */
    struct rwkv_lora *lora; /* --lora FILE[:SCALE], in order (paths malloc'd) */
    int n_lora;
    struct app_colours colours;
    /* --serve: the HTTP API (app/serve/) */
    int serve;              /* --serve */
    char *host;             /* --host H; NULL = 127.0.0.1 */
    int port;               /* --port P (0: any free port, printed) */
    int parallel;           /* --parallel N: conversations generated at once */
    long state_cache_mb;    /* --state-cache-mb MB: the LRU of conversation states */
    long states_mb;         /* --states-mb MB: named states (/v1/states) */
    char *api_key;          /* --api-key KEY: required as "Authorization: Bearer KEY" */
    int max_tokens_cap;     /* --max-tokens-cap N: the most a request may ask for */
    long max_body_kb;       /* --max-body-kb KB: the largest request body */
    int idle_timeout;       /* --idle-timeout S: seconds before an idle connection closes */
};

#define OPTIONS_DEFAULT_PORT 8080
#define OPTIONS_DEFAULT_PARALLEL 4
#define OPTIONS_DEFAULT_STATE_CACHE_MB 1024
#define OPTIONS_DEFAULT_STATES_MB 256
#define OPTIONS_DEFAULT_MAX_TOKENS_CAP 16384
#define OPTIONS_DEFAULT_MAX_BODY_KB 4096
#define OPTIONS_DEFAULT_IDLE_TIMEOUT 60

#endif
