/*
 * template.h - chat templates (personas): prompts/NAME.txt files, read
 * and checked here; app/session/chat_conversation.c feeds them.
 */
#ifndef RWKV_TEMPLATE_H
#define RWKV_TEMPLATE_H

#include <stddef.h>

/* A chat template: intro text fed once, then the system turn
 * "<system>: TEXT\n\n" when there is one, then turns as
 * "<user>: MSG\n\n<assistant>:" and the reply followed by "\n\n". */
struct chat_template {
    char *name;             /* "default", "translator", a file stem */
    char *intro;            /* may be "" */
    char *user;             /* "User" */
    char *assistant;        /* "Assistant" */
    char *system;           /* "System"; NULL reads as "System" */
    int thinking;           /* RWKV-7 G1 thinking: a reply may open with a
                               <think> block, and chat_set_think applies */
};

/* What a template may ask the model to read: the intro is fed once at
 * every start and /reset, the names at every turn.  A state file brings
 * its own template, so these bound what a file can make the model do. */
#define CHAT_INTRO_MAX (64 * 1024)  /* bytes */
#define CHAT_NAME_MAX 256           /* bytes of the user, assistant and system names */
/* Whether t is within those limits: 0, or -1 with err ("WHERE: ..."). */
int chat_template_check(const struct chat_template *t, const char *where, char *err,
                        size_t errlen);

/* Loads prompts/NAME.txt (searched in $XDG_CONFIG_HOME/rwkv-chat/prompts,
 * then the data dirs) or a path containing '/'.  0 or -1 with err. */
int chat_template_load(struct chat_template *t, const char *name_or_path, char *err, size_t errlen);
/* Parses a template file's text (the format is documented in prompts/README). */
int chat_template_parse(struct chat_template *t, const char *name, const char *text, size_t len,
                        char *err, size_t errlen);
void chat_template_free(struct chat_template *t);
/* Names chat_template_load finds: the stems of the *.txt files in
 * $XDG_CONFIG_HOME/rwkv-chat/prompts and in the data directories'
 * prompts/, sorted, without duplicates.  A NULL-terminated malloc'd array
 * (free with chat_template_names_free); NULL on allocation failure. */
char **chat_template_names(void);
void chat_template_names_free(char **names);
/* The template a model file's name asks for: "g1" for the RWKV-7 G1/G0
 * files (rwkv7-g1x-2.9b-20251119-ctx8192.pth: a name part g0/g1 with
 * optional letters), else NULL. */
const char *chat_template_for_model(const char *path);

#endif
