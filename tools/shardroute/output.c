/* Tables (aligned or CSV) and JSON values of results. */
#include "cli.h"

#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int cli_table_init(cli_table *t, int ncols, const char **headers)
{
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
    t->headers = headers;
    t->right = calloc(ncols > 0 ? (size_t)ncols : 1, sizeof *t->right);
    return t->right ? 0 : -1;
}

int cli_table_add_owned(cli_table *t, char **cells)
{
    if (t->nrows == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        char **grown = realloc(t->cells, (size_t)cap * (size_t)t->ncols * sizeof *grown + 1);
        if (!grown)
            return -1;
        t->cells = grown;
        t->cap = cap;
    }
    memcpy(t->cells + (size_t)t->nrows * (size_t)t->ncols, cells, (size_t)t->ncols * sizeof *cells);
    t->nrows++;
    return 0;
}

int cli_table_add(cli_table *t, const char *const *cells)
{
    char **copy = calloc((size_t)t->ncols + 1, sizeof *copy);
    if (!copy)
        return -1;
    for (int i = 0; i < t->ncols; i++) {
        if (cells[i] && !(copy[i] = strdup(cells[i]))) {
            for (int j = 0; j < i; j++)
                free(copy[j]);
            free(copy);
            return -1;
        }
    }
    int rc = cli_table_add_owned(t, copy);
    if (rc != 0)
        for (int i = 0; i < t->ncols; i++)
            free(copy[i]);
    free(copy);
    return rc;
}

void cli_table_free(cli_table *t)
{
    for (size_t i = 0; i < (size_t)t->nrows * (size_t)t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->right);
    memset(t, 0, sizeof *t);
}

/* Columns on a terminal: UTF-8 code points (continuation bytes take no column). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xC0) != 0x80)
            w++;
    return w;
}

static void pad(FILE *f, size_t n)
{
    while (n--)
        fputc(' ', f);
}

void cli_table_print(const cli_table *t, FILE *f, const char *null)
{
    size_t *w = calloc((size_t)t->ncols + 1, sizeof *w);
    if (!w)
        return;
    for (int c = 0; c < t->ncols; c++)
        w[c] = width(t->headers[c]);
    for (int r = 0; r < t->nrows; r++)
        for (int c = 0; c < t->ncols; c++) {
            const char *v = t->cells[(size_t)r * (size_t)t->ncols + (size_t)c];
            size_t vw = width(v ? v : null);
            if (vw > w[c])
                w[c] = vw;
        }
    for (int c = 0; c < t->ncols; c++) {
        /* Headers aligned as their column's values. */
        size_t hw = width(t->headers[c]), left = t->right[c] ? w[c] - hw : 0;
        fputs(c ? "| " : " ", f);
        pad(f, left);
        fputs(t->headers[c], f);
        if (c + 1 < t->ncols)
            pad(f, w[c] - hw - left + 1);
    }
    fputc('\n', f);
    for (int c = 0; c < t->ncols; c++) {
        if (c)
            fputc('+', f);
        for (size_t i = 0; i < w[c] + 2; i++)
            fputc('-', f);
    }
    fputc('\n', f);
    for (int r = 0; r < t->nrows; r++) {
        for (int c = 0; c < t->ncols; c++) {
            const char *v = t->cells[(size_t)r * (size_t)t->ncols + (size_t)c];
            if (!v)
                v = null;
            size_t vw = width(v);
            fputs(c ? "| " : " ", f);
            if (t->right[c]) {
                pad(f, w[c] - vw);
                fputs(v, f);
                if (c + 1 < t->ncols)
                    fputc(' ', f);
            } else {
                fputs(v, f);
                if (c + 1 < t->ncols)
                    pad(f, w[c] - vw + 1);
            }
        }
        fputc('\n', f);
    }
    free(w);
}

void cli_csv_field(FILE *f, const char *s)
{
    if (!s)
        return; /* NULL: an empty field; the empty string is "" */
    bool quote = !*s || strpbrk(s, ",\"\r\n") || s[0] == ' ' || s[strlen(s) - 1] == ' ';
    if (!quote) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

void cli_table_print_csv(const cli_table *t, FILE *f)
{
    for (int c = 0; c < t->ncols; c++) {
        if (c)
            fputc(',', f);
        cli_csv_field(f, t->headers[c]);
    }
    fputs("\r\n", f);
    for (int r = 0; r < t->nrows; r++) {
        for (int c = 0; c < t->ncols; c++) {
            if (c)
                fputc(',', f);
            cli_csv_field(f, t->cells[(size_t)r * (size_t)t->ncols + (size_t)c]);
        }
        fputs("\r\n", f);
    }
}

const char *cli_type_name(sr_type t)
{
    switch (t) {
    case SR_TYPE_NULL: return "null";
    case SR_TYPE_INT: return "int";
    case SR_TYPE_FLOAT: return "float";
    case SR_TYPE_NUMERIC: return "numeric";
    case SR_TYPE_TEXT: return "text";
    case SR_TYPE_BYTES: return "bytes";
    case SR_TYPE_BOOL: return "bool";
    case SR_TYPE_DATETIME: return "datetime";
    default: return "unknown";
    }
}

bool cli_type_is_number(sr_type t)
{
    return t == SR_TYPE_INT || t == SR_TYPE_FLOAT || t == SR_TYPE_NUMERIC;
}

static char *hex_text(const unsigned char *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *s = malloc(2 * n + 3);
    if (!s)
        return NULL;
    s[0] = '\\';
    s[1] = 'x';
    for (size_t i = 0; i < n; i++) {
        s[2 + 2 * i] = digits[p[i] >> 4];
        s[3 + 2 * i] = digits[p[i] & 15];
    }
    s[2 + 2 * n] = '\0';
    return s;
}

/* Well-formed UTF-8 without NUL bytes: what can be printed and put in JSON as it is. */
static bool utf8_ok(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        size_t len;
        uint32_t cp;
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

char *cli_value_text(const sr_result *res, int row, int col)
{
    if (sr_result_is_null(res, row, col))
        return NULL;
    size_t n;
    const unsigned char *p = sr_result_bytes(res, row, col, &n);
    /* Bytes, and text that cannot be shown as it is, in hex. */
    if (sr_result_coltype(res, col) == SR_TYPE_BYTES || !utf8_ok(p, n))
        return hex_text(p, n);
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

struct json_object *cli_value_json(const sr_result *res, int row, int col)
{
    if (sr_result_is_null(res, row, col))
        return NULL; /* json-c's null */
    sr_type t = sr_result_coltype(res, col);
    const char *text = sr_result_value(res, row, col);
    int64_t i;
    double d;
    switch (t) {
    case SR_TYPE_INT:
        if (sr_result_int64(res, row, col, &i) == SR_OK)
            return json_object_new_int64(i);
        break;
    case SR_TYPE_BOOL:
        if (sr_result_int64(res, row, col, &i) == SR_OK)
            return json_object_new_boolean(i != 0);
        break;
    case SR_TYPE_FLOAT:
        /* The server's own digits, when they are a JSON number (not NaN or Infinity). */
        if (sr_result_double(res, row, col, &d) == SR_OK && isfinite(d))
            return json_object_new_double_s(d, text);
        break;
    default: /* numeric stays exact as a string; text, dates and bytes are strings */
        break;
    }
    char *s = cli_value_text(res, row, col);
    if (!s)
        return json_object_new_string(""); /* out of memory: nothing better to say */
    struct json_object *o = json_object_new_string(s);
    free(s);
    return o;
}

int cli_json_print(struct json_object *o, FILE *f)
{
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!s)
        return -1;
    fputs(s, f);
    fputc('\n', f);
    return 0;
}

struct json_object *cli_json_ms(double ms)
{
    char text[64];
    snprintf(text, sizeof text, "%.3f", ms);
    return json_object_new_double_s(ms, text);
}
