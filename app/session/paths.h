/*
 * paths.h - where rwkv-chat finds its data and keeps its files.
 *
 * Installed data ($(pkgdatadir): vocabulary, prompts/, models/) can be
 * overridden by $RWKV_CHAT_DATADIR, a colon-separated list of directories
 * searched first (the test suite points it at the source tree).
 */
#ifndef RWKV_PATHS_H
#define RWKV_PATHS_H

#include <stddef.h>

/* Finds data file rel ("rwkv_vocab_v20230424.txt", "prompts/default.txt").
 * Returns a malloc'd path of an existing file, or NULL. */
char *paths_find_data(const char *rel);
/* The data directories searched, in order, joined by ", " (malloc'd), for
 * error messages. */
char *paths_data_dirs(const char *rel);
/* $XDG_CONFIG_HOME/rwkv-chat, $XDG_DATA_HOME/rwkv-chat,
 * $XDG_STATE_HOME/rwkv-chat (with the XDG defaults); malloc'd. */
char *paths_config_dir(void);
char *paths_data_home(void);
char *paths_state_dir(void);
/* The session file of a model (its file name, no directory): malloc'd
 * "$XDG_STATE_HOME/rwkv-chat/sessions/NAME.state". */
char *paths_session_file(const char *model_name);
/* The session file written last (newest in sessions/), malloc'd; NULL
 * when there is none. */
char *paths_last_session(void);
/* The one session file of rwkv-chat before sessions were kept per model:
 * "$XDG_STATE_HOME/rwkv-chat/session.state", malloc'd. */
char *paths_old_session_file(void);
/* mkdir -p; 0 or -1 (errno set). */
int paths_mkdirs(const char *dir);
/* malloc'd "a/b". */
char *paths_join(const char *a, const char *b);

#endif
