/*
 * models.h - finding model files: a path, or a bare name searched in
 * $XDG_DATA_HOME/rwkv-chat/models, then the data dirs' models/
 * ($RWKV_CHAT_DATADIR, $(pkgdatadir)).
 */
#ifndef RWKV_MODELS_H
#define RWKV_MODELS_H

#include <stddef.h>

/* The data file of the models rwkv-tool pull knows ("NAME FILE SIZE
 * SHA256 URL" lines): --model NAME finds NAME's FILE too. */
#define MODELS_PULL_LIST "models.list"

/* File name extensions tried after the bare name, in order. */
#define MODELS_EXTENSIONS { "", ".pth", ".safetensors" }

/* Resolves name_or_path to a malloc'd path of an existing file.  A value
 * containing '/' or naming an existing file is a path; anything else is a
 * name (or a short name of models.list, standing for its file).  NULL with one line in err naming every place it looked. */
char *models_find(const char *name_or_path, char *err, size_t errlen);

/* The bundled demo model's path (malloc'd), or NULL with err naming the
 * places looked in. */
char *models_find_demo(char *err, size_t errlen);

struct models_entry {
    char *name;             /* file name, e.g. "rwkv7-tiny-chat.pth" */
    char *path;             /* full path */
    int shadowed;           /* an earlier directory has a model of this name */
};

/* Lists *.pth and *.safetensors in the search directories, in search
 * order.  *dirs (if not NULL) receives the directories searched, joined
 * by ", " (malloc'd).  0, or -1 on allocation failure.  Free with
 * models_list_free. */
int models_list(struct models_entry **out, size_t *n, char **dirs);
void models_list_free(struct models_entry *list, size_t n);

#endif
