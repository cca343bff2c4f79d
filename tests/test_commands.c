/* test_commands.c - the slash-command table (app/session/commands.c)
 * against what users read: every command is listed by /help with its
 * synopsis and help line, documented in share/rwkv-chat.1 under
 * COMMANDS, and the man page documents no command the table lacks.
 * Also the table's argument rules and completion hints as commands_run
 * and commands_complete apply them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/session/commands.h"
#include "tests/tap.h"

/* 1 if the COMMANDS section holds a ".TP" item whose tag line names cmd:
 * ".B /cmd", ".BI /cmd \"...\"" or ".BR /cmd \"...\"". */
static int man_documents(const char *section, const char *cmd)
{
    const char *p = section;
    size_t len = strlen(cmd);

    while ((p = strstr(p, ".TP\n.B"))) {
        const char *tag = strchr(p + 4, ' ');

        p += 4;
        if (tag && !strncmp(tag + 1, cmd, len) &&
            (tag[1 + len] == '\n' || tag[1 + len] == ' ')) {
            return 1;
        }
    }
    return 0;
}

int main(void)
{
    size_t n, i, word_start, count;
    const struct command_info *table = commands_table(&n);
    struct session s;
    struct command_result r;
    char path[4096], line[256], *man, *section, *end;
    const char *matches[64];
    int rc;

    ok(n >= 18, "the table has every command (%zu)", n);

    /* /help lists each command with its synopsis and help line. */
    memset(&s, 0, sizeof(s));
    rc = commands_run(&s, "/help", &r);
    ok(rc == 0 && r.action == COMMAND_SHOW && r.text, "/help shows a text");
    for (i = 0; i < n && r.text; i++) {
        snprintf(line, sizeof(line), "%s%s%s", table[i].name, *table[i].args ? " " : "",
                 table[i].args);
        ok(strstr(r.text, line) && strstr(r.text, table[i].help),
           "/help lists %s with its synopsis and help", line);
    }
    ok(r.text && strstr(r.text, "/help                this list\n/reset") == r.text,
       "/help keeps its layout (name and synopsis in the widest one's columns)");
    /* two spaces at least after each synopsis, the longest included: the
     * TUI continues a wrapped line under the text after them */
    for (i = 0, rc = 0; i < n && r.text; i++) {
        snprintf(line, sizeof(line), "%s%s%s  ", table[i].name, *table[i].args ? " " : "",
                 table[i].args);
        rc |= !strstr(r.text, line);
    }
    ok(r.text && rc == 0, "/help: two spaces at least after every synopsis");
    command_result_free(&r);
    rc = commands_run(&s, "/? anything", &r);
    ok(rc == 0 && r.text && !strncmp(r.text, "/help ", 6), "/? is /help and takes any argument");
    command_result_free(&r);

    /* The man page documents every command, and no other. */
    snprintf(path, sizeof(path), "%s/share/rwkv-chat.1", ABS_TOP_SRCDIR);
    man = read_file(path, NULL);
    ok(man != NULL, "read %s", path);
    section = man ? strstr(man, "\n.SH COMMANDS\n") : NULL;
    ok(section != NULL, "the man page has a COMMANDS section");
    if (section) {
        const char *p;

        section++;
        if ((end = strstr(section + 1, "\n.SH "))) {
            end[1] = 0;
        }
        for (i = 0; i < n; i++) {
            ok(man_documents(section, table[i].name), "the man page documents %s",
               table[i].name);
        }
        for (p = section; (p = strstr(p, ".TP\n.B")); ) {
            const char *tag = strchr(p + 4, ' ');
            size_t len = 0, j;
            int known = 0;

            p += 4;
            if (!tag || tag[1] != '/') {
                continue;
            }
            while (tag[1 + len] && tag[1 + len] != ' ' && tag[1 + len] != '\n') {
                len++;
            }
            for (j = 0; j < n; j++) {
                known |= strlen(table[j].name) == len && !strncmp(table[j].name, tag + 1, len);
            }
            ok(known, "the man page's %.*s is in the table", (int)len, tag + 1);
        }
    }
    free(man);

    /* The table's argument rules, as commands_run applies them. */
    for (i = 0; i < n; i++) {
        if (table[i].arg_kind == COMMAND_ARGS_NONE) {
            snprintf(line, sizeof(line), "%s extra", table[i].name);
            rc = commands_run(&s, line, &r);
            ok(rc < 0 && r.action == COMMAND_ERROR && r.text &&
               strstr(r.text, "takes no argument"), "%s refuses an argument", table[i].name);
            command_result_free(&r);
        } else if (table[i].arg_kind == COMMAND_ARGS_NEEDED) {
            rc = commands_run(&s, table[i].name, &r);
            ok(rc < 0 && r.action == COMMAND_ERROR && r.text && table[i].arg_what &&
               strstr(r.text, table[i].arg_what), "%s alone says it needs %s", table[i].name,
               table[i].arg_what ? table[i].arg_what : "?");
            command_result_free(&r);
        }
    }
    rc = commands_run(&s, "/nonesuch", &r);
    ok(rc < 0 && r.text && strstr(r.text, "unknown command '/nonesuch'"),
       "an unknown command is refused");
    command_result_free(&r);

    /* Writes-a-file flag and completion hints. */
    ok(commands_writes_file("  /save x") && !commands_writes_file("/saves x") &&
       !commands_writes_file("/load x"), "only /save writes a file");
    count = commands_complete(NULL, "/s", 2, matches, 64, &word_start);
    ok(count == 5 && word_start == 0, "/s completes to the 5 commands starting so (%zu)", count);
    count = commands_complete(NULL, "/set te", 7, matches, 64, &word_start);
    ok(count == 1 && !strcmp(matches[0], "temperature") && word_start == 5,
       "/set completes knob names");
    count = commands_complete(NULL, "/restore a", 10, matches, 64, &word_start);
    ok(count == 0, "/restore without a chat completes nothing");
    count = commands_complete(NULL, "/load te", 8, matches, 64, &word_start);
    ok(count == 0, "/load completes nothing");
    return tap_done();
}
