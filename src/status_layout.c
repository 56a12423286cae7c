/* status_layout: the `status` table and summary line laid out in a given
 * width. Pure — cells and a width in, text out — so the unit tests drive
 * it with any width; status.c picks the width and does the I/O.
 *
 * Widths are display columns of UTF-8 text, counted with our own small
 * table (status_text_width) rather than wcwidth(3): wcwidth depends on
 * LC_CTYPE (under the C locale it refuses every non-ASCII character), and
 * setlocale is process-wide state; the text is UTF-8 whatever the locale,
 * since it comes from the database as such. */
#include "status.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "sbuf.h"

static const char *const state_ids[STATUS_NSTATES] = {"ok", "failing", "never_polled", "no_stores",
                                                      "disabled"};
static const char *const state_words[STATUS_NSTATES] = {"ok", "failing", "never polled",
                                                        "no stores", "disabled"};

const char *status_state_id(enum status_state s)
{
	return s < STATUS_NSTATES ? state_ids[s] : "?";
}

const char *status_state_words(enum status_state s)
{
	return s < STATUS_NSTATES ? state_words[s] : "?";
}

int status_state_parse(const char *id)
{
	for (int s = 0; s < STATUS_NSTATES; s++)
		if (strcmp(id, state_ids[s]) == 0)
			return s;
	return -1;
}

static const char *const heads[STATUS_NCOLS] = {
    [SCOL_CONNECTOR] = "CONNECTOR",  [SCOL_STATE] = "STATE",          [SCOL_STORES] = "STORES",
    [SCOL_OUTCOME] = "LAST OUTCOME", [SCOL_SUCCESS] = "LAST SUCCESS", [SCOL_FAILURES] = "FAILURES",
    [SCOL_SYNCED] = "SYNCED UNTIL",  [SCOL_ROWS] = "ROWS 24H",        [SCOL_ERROR] = "LAST ERROR",
};

/* "…", one column wide. */
#define ELLIPSIS "\xE2\x80\xA6"

/* ---- characters and their widths ---- */

struct range {
	uint32_t lo, hi;
};

/* Zero width: combining marks (they draw on the character before) and
 * the zero-width format characters. */
static const struct range zero_width[] = {
    {0x0300, 0x036F}, {0x0483, 0x0489}, {0x0591, 0x05BD},   {0x0610, 0x061A}, {0x064B, 0x065F},
    {0x0E31, 0x0E31}, {0x0E34, 0x0E3A}, {0x0E47, 0x0E4E},   {0x1AB0, 0x1AFF}, {0x1DC0, 0x1DFF},
    {0x200B, 0x200F}, {0x202A, 0x202E}, {0x2060, 0x2064},   {0x20D0, 0x20FF}, {0xFE00, 0xFE0F},
    {0xFE20, 0xFE2F}, {0xFEFF, 0xFEFF}, {0xE0100, 0xE01EF},
};

/* Two columns: East Asian Wide and Fullwidth (UAX #11), and the emoji
 * blocks terminals draw wide. */
static const struct range double_width[] = {
    {0x1100, 0x115F},   {0x2E80, 0x303E},   {0x3041, 0x33FF},   {0x3400, 0x4DBF},
    {0x4E00, 0x9FFF},   {0xA000, 0xA4CF},   {0xAC00, 0xD7A3},   {0xF900, 0xFAFF},
    {0xFE30, 0xFE4F},   {0xFF00, 0xFF60},   {0xFFE0, 0xFFE6},   {0x1F300, 0x1F64F},
    {0x1F900, 0x1F9FF}, {0x20000, 0x2FFFD}, {0x30000, 0x3FFFD},
};

static bool in(const struct range *r, size_t n, uint32_t cp)
{
	for (size_t i = 0; i < n; i++)
		if (cp >= r[i].lo && cp <= r[i].hi)
			return true;
	return false;
}

/* One character of the text: its bytes, its columns, and whether it is
 * printed as '?' (a control character, which could move the cursor or
 * end the line, or a byte that is not well-formed UTF-8). */
struct glyph {
	size_t len;
	size_t width;
	bool replaced;
};

static struct glyph next_glyph(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = jsonw_utf8_seq(p);
	if (n == 0)
		return (struct glyph){.len = 1, .width = 1, .replaced = true};
	uint32_t cp = n == 1 ? p[0] : (uint32_t)(p[0] & (0x7F >> n));
	for (size_t i = 1; i < n; i++)
		cp = (cp << 6) | (p[i] & 0x3F);
	if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0))
		return (struct glyph){.len = n, .width = 1, .replaced = true};
	size_t w = 1;
	if (in(zero_width, sizeof(zero_width) / sizeof(zero_width[0]), cp))
		w = 0;
	else if (in(double_width, sizeof(double_width) / sizeof(double_width[0]), cp))
		w = 2;
	return (struct glyph){.len = n, .width = w, .replaced = false};
}

size_t status_text_width(const char *s)
{
	size_t w = 0;
	while (*s) {
		struct glyph g = next_glyph(s);
		w += g.width;
		s += g.len;
	}
	return w;
}

/* Appends the characters of s[from, to) as printed. */
static void put_span(struct sbuf *out, const char *s, size_t from, size_t to)
{
	while (from < to) {
		struct glyph g = next_glyph(s + from);
		if (g.replaced)
			sbuf_addc(out, '?');
		else
			sbuf_add(out, s + from, g.len);
		from += g.len;
	}
}

/* Bytes of the longest prefix of s at most cols wide (with the zero-width
 * characters that follow it: they belong to its last character); *w its
 * width. Never ends inside a character. */
static size_t prefix_fit(const char *s, size_t cols, size_t *w)
{
	size_t off = 0, used = 0;
	while (s[off]) {
		struct glyph g = next_glyph(s + off);
		if (used + g.width > cols)
			break;
		used += g.width;
		off += g.len;
	}
	*w = used;
	return off;
}

/* Offset of the longest suffix of s (total columns wide) at most cols
 * wide that does not start with a zero-width character; *w its width. */
static size_t suffix_fit(const char *s, size_t total, size_t cols, size_t *w)
{
	size_t off = 0, rest = total;
	while (s[off]) {
		struct glyph g = next_glyph(s + off);
		if (rest <= cols && g.width > 0)
			break;
		rest -= g.width;
		off += g.len;
	}
	*w = rest;
	return off;
}

enum cut { CUT_END, CUT_MIDDLE };

/* Appends s in at most cols columns (exactly cols when pad): whole when it
 * fits, else cut with "…" at the end, or in the middle for CUT_MIDDLE —
 * connector names often share a prefix ("acme-madrid-…", "acme-sevilla-…")
 * and differ at the end. */
static void put_cell(struct sbuf *out, const char *s, size_t cols, enum cut how, bool pad)
{
	size_t total = status_text_width(s), used = 0;
	if (total <= cols) {
		put_span(out, s, 0, strlen(s));
		used = total;
	} else if (cols > 0 && (how == CUT_END || cols < 5)) {
		size_t n = prefix_fit(s, cols - 1, &used);
		put_span(out, s, 0, n);
		sbuf_puts(out, ELLIPSIS);
		used++;
	} else if (cols > 0) {
		size_t keep = cols - 1, hw, tw;
		size_t hn = prefix_fit(s, keep / 2, &hw);
		size_t tail = suffix_fit(s, total, keep - hw, &tw);
		put_span(out, s, 0, hn);
		sbuf_puts(out, ELLIPSIS);
		put_span(out, s, tail, strlen(s));
		used = hw + 1 + tw;
	}
	for (; pad && used < cols; used++)
		sbuf_addc(out, ' ');
}

/* Moves the line built in *line to out, without trailing spaces, cut with
 * "…" to width (0: no limit), and a newline; *line is empty afterwards. */
static void end_line(struct sbuf *out, struct sbuf *line, size_t width)
{
	if (line->failed) {
		out->failed = true;
		return;
	}
	while (line->len > 0 && line->data[line->len - 1] == ' ')
		line->data[--line->len] = '\0';
	const char *text = line->data ? line->data : "";
	if (width > 0)
		put_cell(out, text, width, CUT_END, false);
	else
		sbuf_add(out, text, line->len);
	sbuf_addc(out, '\n');
	line->len = 0;
	if (line->data)
		line->data[0] = '\0';
}

/* ---- lines of items, wrapped ---- */

/* A line of items separated by spaces: an item that does not fit the width
 * goes on the next line, indented by two, so a break falls between two
 * items, never inside one. */
struct wrap {
	struct sbuf *out;
	struct sbuf line;
	size_t used, width;
};

static void wrap_start(struct wrap *w, struct sbuf *out, size_t width, const char *head)
{
	*w = (struct wrap){.out = out, .width = width};
	sbuf_puts(&w->line, head);
	w->used = w->line.len;
}

static void wrap_item(struct wrap *w, const char *item, size_t len)
{
	if (w->width > 0 && w->used + 1 + len > w->width) {
		end_line(w->out, &w->line, w->width);
		sbuf_puts(&w->line, " ");
		w->used = 1;
	}
	sbuf_addc(&w->line, ' ');
	sbuf_add(&w->line, item, len);
	w->used += 1 + len;
}

static void wrap_end(struct wrap *w, bool failed)
{
	if (failed)
		w->line.failed = true;
	end_line(w->out, &w->line, w->width);
	free(w->line.data);
}

/* ---- the summary ---- */

void status_summary(const size_t counts[STATUS_NSTATES], size_t overdue, size_t width,
                    struct sbuf *out)
{
	size_t total = 0;
	for (int s = 0; s < STATUS_NSTATES; s++)
		total += counts[s];
	struct sbuf head = {0}, item = {0};
	sbuf_printf(&head, "%zu connector%s:", total, total == 1 ? "" : "s");
	struct wrap w;
	wrap_start(&w, out, width, head.failed ? "" : head.data);
	int last = STATUS_NSTATES - 1;
	while (last > STATUS_FAILING && counts[last] == 0)
		last--;
	for (int s = 0; s <= last; s++) {
		if (s > STATUS_FAILING && counts[s] == 0)
			continue;
		item.len = 0;
		sbuf_printf(&item, "%zu %s", counts[s], state_words[s]);
		if (s == STATUS_NEVER_POLLED && overdue > 0)
			sbuf_printf(&item, " (%zu overdue)", overdue);
		if (s < last)
			sbuf_addc(&item, ',');
		if (item.failed)
			break;
		wrap_item(&w, item.data, item.len);
	}
	wrap_end(&w, item.failed || head.failed);
	free(head.data);
	free(item.data);
}

/* ---- the audit tables' partitions ---- */

bool status_partitions_short(const struct status_partitions *p)
{
	return p->ahead_s < STATUS_AHEAD_MIN_S;
}

/* "7 days", or under two days in hours ("20 h"): whole ones, rounded down. */
static void put_ahead(struct sbuf *b, int64_t s)
{
	if (s >= 2 * 86400)
		sbuf_printf(b, "%lld days", (long long)(s / 86400));
	else
		sbuf_printf(b, "%lld h", (long long)(s / 3600));
}

/* The warning's items; n of them written to items[] (each the caller's to
 * free), 0 when p needs none. */
static size_t warning_items(const struct status_partitions *p, struct sbuf items[3])
{
	if (!status_partitions_short(p))
		return 0;
	if (p->ahead_s < 0)
		sbuf_printf(&items[0], "no partition of %s takes rows now:", p->table);
	else {
		sbuf_printf(&items[0], "%s has partitions only until %s (", p->table,
		            p->covered_until);
		put_ahead(&items[0], p->ahead_s);
		sbuf_puts(&items[0], " ahead):");
	}
	/* Its rows are inserted by the statement that writes the sales
	 * (db_write.c): without a partition the whole write fails. */
	sbuf_puts(&items[1], p->ahead_s < 0 ? "the daemon's writes fail;"
	                                    : "the daemon's writes fail after that;");
	sbuf_puts(&items[2], "is a janitor running? ksi-salesd janitor creates them");
	return 3;
}

void status_partitions_warning(const struct status_partitions *p, struct sbuf *out)
{
	struct sbuf items[3] = {{0}};
	size_t n = warning_items(p, items);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			sbuf_addc(out, ' ');
		sbuf_add(out, items[i].data, items[i].len);
		if (items[i].failed)
			out->failed = true;
		free(items[i].data);
	}
}

void status_partitions(const struct status_partitions *p, size_t n, size_t width, struct sbuf *out)
{
	struct sbuf head = {0}, item = {0};
	for (size_t i = 0; i < n; i++) {
		head.len = 0;
		sbuf_printf(&head, "%s:", p[i].table);
		struct wrap w;
		wrap_start(&w, out, width, head.failed ? "" : head.data);
		bool failed = head.failed;
		for (int k = 0; k < 4 && !failed; k++) {
			item.len = 0;
			switch (k) {
			case 0:
				sbuf_printf(&item, "%s partition%s,", p[i].partitions,
				            strcmp(p[i].partitions, "1") == 0 ? "" : "s");
				break;
			case 1:
				if (*p[i].oldest)
					sbuf_printf(&item, "oldest kept %s,", p[i].oldest);
				else if (*p[i].legacy_until)
					sbuf_printf(&item,
					            "kept from the start (one partition up to %s),",
					            p[i].legacy_until);
				break;
			case 2:
				if (*p[i].next_boundary)
					sbuf_printf(&item, "next boundary %s,", p[i].next_boundary);
				break;
			case 3:
				if (p[i].ahead_s < 0) {
					sbuf_puts(&item, "no partition for now");
				} else {
					sbuf_printf(&item, "partitions until %s (",
					            p[i].covered_until);
					put_ahead(&item, p[i].ahead_s);
					sbuf_puts(&item, " ahead)");
				}
				break;
			}
			failed = item.failed;
			if (!failed && item.len > 0)
				wrap_item(&w, item.data, item.len);
		}
		wrap_end(&w, failed);
		struct sbuf warn[3] = {{0}};
		size_t nw = warning_items(&p[i], warn);
		if (nw > 0) {
			wrap_start(&w, out, width, "warning:");
			failed = false;
			for (size_t k = 0; k < nw; k++) {
				failed |= warn[k].failed;
				if (!warn[k].failed)
					wrap_item(&w, warn[k].data, warn[k].len);
				free(warn[k].data);
			}
			wrap_end(&w, failed);
		}
	}
	free(head.data);
	free(item.data);
}

/* ---- the table ---- */

/* Columns dropped when shortening is not enough, least useful first:
 * STORES is configuration (0 already reads "no stores"), LAST OUTCOME is
 * said by STATE and LAST ERROR, then the freshness details, then the
 * failure count and the last success; CONNECTOR and STATE always stay. */
static const enum status_col drop_order[] = {SCOL_STORES,   SCOL_OUTCOME, SCOL_ROWS, SCOL_SYNCED,
                                             SCOL_FAILURES, SCOL_SUCCESS, SCOL_ERROR};
enum { NDROP = sizeof(drop_order) / sizeof(drop_order[0]) };

/* How far the two shortened columns may go before a column is dropped:
 * below these a name or an error no longer says which or why. */
enum { MIN_CONNECTOR = 16, MIN_ERROR = 20, SEP = 2 };

struct plan {
	bool shown[STATUS_NCOLS];
	size_t w[STATUS_NCOLS];
};

static size_t plan_total(const struct plan *p)
{
	size_t total = 0, n = 0;
	for (int c = 0; c < STATUS_NCOLS; c++)
		if (p->shown[c]) {
			total += p->w[c];
			n++;
		}
	return total + (n > 0 ? SEP * (n - 1) : 0);
}

static size_t min_of(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* Shortens LAST ERROR and CONNECTOR, one column at a time from the widest
 * (LAST ERROR on a tie), until the table fits width or both are at their
 * floors. Whether it fits. */
static bool shrink(struct plan *p, const size_t floor[STATUS_NCOLS], size_t width)
{
	static const enum status_col shrinkable[] = {SCOL_ERROR, SCOL_CONNECTOR};
	size_t total = plan_total(p);
	while (total > width) {
		int pick = -1;
		for (size_t i = 0; i < sizeof(shrinkable) / sizeof(shrinkable[0]); i++) {
			int c = (int)shrinkable[i];
			if (p->shown[c] && p->w[c] > floor[c] && (pick < 0 || p->w[c] > p->w[pick]))
				pick = c;
		}
		if (pick < 0)
			return false;
		p->w[pick]--;
		total--;
	}
	return true;
}

/* The columns to show and their widths for width (0: all, in full). */
static struct plan plan_for(const size_t natural[STATUS_NCOLS], size_t width)
{
	struct plan p;
	for (int c = 0; c < STATUS_NCOLS; c++) {
		p.shown[c] = true;
		p.w[c] = natural[c];
	}
	if (width == 0 || plan_total(&p) <= width)
		return p;
	size_t floor[STATUS_NCOLS];
	for (int c = 0; c < STATUS_NCOLS; c++)
		floor[c] = natural[c];
	floor[SCOL_CONNECTOR] = min_of(natural[SCOL_CONNECTOR], MIN_CONNECTOR);
	floor[SCOL_ERROR] = min_of(natural[SCOL_ERROR], MIN_ERROR);
	for (size_t k = 0;; k++) {
		/* Each round starts from the natural widths: a dropped column
		 * gives its room back to the shortened ones. */
		for (int c = 0; c < STATUS_NCOLS; c++)
			p.w[c] = natural[c];
		if (shrink(&p, floor, width))
			return p;
		if (k == NDROP)
			break;
		p.shown[drop_order[k]] = false;
	}
	/* CONNECTOR and STATE alone: the name may go down to its header's
	 * width; narrower still, end_line cuts each line. */
	floor[SCOL_CONNECTOR] = min_of(natural[SCOL_CONNECTOR], strlen(heads[SCOL_CONNECTOR]));
	(void)shrink(&p, floor, width);
	return p;
}

static void put_row(struct sbuf *out, struct sbuf *line, const char *const *row,
                    const struct plan *p, size_t width)
{
	int last = STATUS_NCOLS - 1;
	while (last > 0 && !p->shown[last])
		last--;
	for (int c = 0; c <= last; c++) {
		if (!p->shown[c])
			continue;
		put_cell(line, row[c], p->w[c], c == SCOL_CONNECTOR ? CUT_MIDDLE : CUT_END,
		         c != last);
		if (c != last)
			sbuf_puts(line, "  ");
	}
	end_line(out, line, width);
}

void status_table(const char *const *cells, size_t nrows, size_t width, struct sbuf *out)
{
	size_t natural[STATUS_NCOLS];
	for (int c = 0; c < STATUS_NCOLS; c++) {
		natural[c] = strlen(heads[c]);
		for (size_t r = 0; r < nrows; r++) {
			size_t w = status_text_width(cells[r * STATUS_NCOLS + (size_t)c]);
			if (w > natural[c])
				natural[c] = w;
		}
	}
	struct plan p = plan_for(natural, width);
	struct sbuf line = {0};
	put_row(out, &line, heads, &p, width);
	for (size_t r = 0; r < nrows; r++)
		put_row(out, &line, &cells[r * STATUS_NCOLS], &p, width);
	if (nrows == 0) {
		sbuf_puts(&line,
		          "(no connectors: add one with INSERT INTO ksi_sales.connectors ...)");
		end_line(out, &line, width);
	}
	free(line.data);
}
