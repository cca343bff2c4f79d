/* test_paths.c - data lookup through RWKV_CHAT_DATADIR and XDG dirs. */
#include <stdlib.h>
#include <string.h>

#include "app/session/paths.h"
#include "tap.h"

int main(void)
{
    char *p, *dirs;

    p = paths_find_data("rwkv_vocab_v20230424.txt");
    ok(p != NULL && strstr(p, "/share/rwkv_vocab_v20230424.txt") != NULL,
       "vocabulary found through RWKV_CHAT_DATADIR (%s)", p ? p : "(null)");
    free(p);
    p = paths_find_data("no-such-file.txt");
    ok(p == NULL, "missing data file gives NULL");
    dirs = paths_data_dirs("x.txt");
    ok(dirs && strstr(dirs, PKGDATADIR "/x.txt") != NULL,
       "search list names the installed data dir (%s)", dirs);
    free(dirs);
    setenv("XDG_CONFIG_HOME", "/tmp/xdgtest", 1);
    p = paths_config_dir();
    ok(p && !strcmp(p, "/tmp/xdgtest/rwkv-chat"), "config dir follows XDG_CONFIG_HOME");
    free(p);
    unsetenv("XDG_CONFIG_HOME");
    setenv("HOME", "/home/u", 1);
    p = paths_config_dir();
    ok(p && !strcmp(p, "/home/u/.config/rwkv-chat"), "config dir defaults to ~/.config");
    free(p);
    return tap_done();
}
