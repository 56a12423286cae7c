/* mask: removes a secret and its fragments from text before the text goes
 * anywhere a person or another system can read it (SPEC §3).
 *
 * A byte is masked when it lies inside an occurrence, in the text, of any
 * substring of the secret at least MASK_MIN_FRAGMENT bytes long. For each
 * text position the matcher knows the longest run ending there that is a
 * substring of the secret; that run, when long enough, is masked. The
 * matcher is a suffix automaton of the secret (Blumer et al. 1985): it
 * recognises exactly the secret's substrings, is built in O(secret) and
 * walked in O(text) amortised, so masking a 64 MiB body stays linear
 * whatever the secret looks like ("aaaa…" included). Transitions are kept
 * as short per-state lists: at most 3·len of them in all. */
#include "mask.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char withheld[] = "(withheld: out of memory while masking)";

struct edge {
	unsigned char byte;
	uint32_t to;
	uint32_t next; /* next edge of the same state, 0 = none (edge 0 unused) */
};

struct state {
	uint32_t len;   /* longest substring this state stands for */
	int32_t link;   /* suffix link, -1 for the root */
	uint32_t edges; /* first edge, 0 = none */
};

struct mask {
	char *secret;
	size_t slen;
	size_t min_run; /* MASK_MIN_FRAGMENT, or slen when the secret is shorter */
	struct state *st;
	uint32_t nst;
	struct edge *ed;
	uint32_t ned;
};

static uint32_t edge_find(const struct mask *m, uint32_t s, unsigned char c)
{
	for (uint32_t e = m->st[s].edges; e; e = m->ed[e].next)
		if (m->ed[e].byte == c)
			return m->ed[e].to;
	return UINT32_MAX;
}

static void edge_set(struct mask *m, uint32_t s, unsigned char c, uint32_t to)
{
	for (uint32_t e = m->st[s].edges; e; e = m->ed[e].next)
		if (m->ed[e].byte == c) {
			m->ed[e].to = to;
			return;
		}
	uint32_t e = m->ned++;
	m->ed[e] = (struct edge){.byte = c, .to = to, .next = m->st[s].edges};
	m->st[s].edges = e;
}

/* Copies s's edges onto the clone d (they are prepended, so order differs;
 * lookups do not care). */
static void edges_copy(struct mask *m, uint32_t s, uint32_t d)
{
	for (uint32_t e = m->st[s].edges; e; e = m->ed[e].next) {
		uint32_t n = m->ned++;
		m->ed[n] =
		    (struct edge){.byte = m->ed[e].byte, .to = m->ed[e].to, .next = m->st[d].edges};
		m->st[d].edges = n;
	}
}

/* The textbook online construction, one byte at a time. */
static void build(struct mask *m)
{
	m->st[0] = (struct state){.len = 0, .link = -1, .edges = 0};
	m->nst = 1;
	m->ned = 1;
	uint32_t last = 0;
	for (size_t i = 0; i < m->slen; i++) {
		unsigned char c = (unsigned char)m->secret[i];
		uint32_t cur = m->nst++;
		m->st[cur] = (struct state){.len = m->st[last].len + 1, .link = 0, .edges = 0};
		int64_t p = last;
		while (p >= 0 && edge_find(m, (uint32_t)p, c) == UINT32_MAX) {
			edge_set(m, (uint32_t)p, c, cur);
			p = m->st[p].link;
		}
		if (p >= 0) {
			uint32_t q = edge_find(m, (uint32_t)p, c);
			if (m->st[p].len + 1 == m->st[q].len) {
				m->st[cur].link = (int32_t)q;
			} else {
				uint32_t clone = m->nst++;
				m->st[clone] = (struct state){
				    .len = m->st[p].len + 1, .link = m->st[q].link, .edges = 0};
				edges_copy(m, q, clone);
				while (p >= 0 && edge_find(m, (uint32_t)p, c) == q) {
					edge_set(m, (uint32_t)p, c, clone);
					p = m->st[p].link;
				}
				m->st[q].link = (int32_t)clone;
				m->st[cur].link = (int32_t)clone;
			}
		}
		last = cur;
	}
}

int mask_new(const char *secret, struct mask **out)
{
	*out = NULL;
	struct mask *m = calloc(1, sizeof(*m));
	if (!m)
		return -1;
	size_t n = secret ? strlen(secret) : 0;
	/* The automaton's indexes are 32-bit; no bearer token comes close. */
	if (n > (1u << 28))
		n = 1u << 28;
	if (n > 0) {
		m->secret = malloc(n + 1);
		/* At most 2n states; at most 3n edges, plus the unused edge 0,
		 * plus those a clone copies (bounded by the same 3n total once
		 * the construction ends, but counted here as they are made). */
		m->st = calloc(2 * n + 1, sizeof(*m->st));
		m->ed = calloc(2 * (3 * n + 1), sizeof(*m->ed));
		if (!m->secret || !m->st || !m->ed) {
			mask_free(m);
			return -1;
		}
		memcpy(m->secret, secret, n);
		m->secret[n] = '\0';
		m->slen = n;
		m->min_run = n < MASK_MIN_FRAGMENT ? n : MASK_MIN_FRAGMENT;
		build(m);
	}
	*out = m;
	return 0;
}

void mask_free(struct mask *m)
{
	if (!m)
		return;
	if (m->secret) {
		/* explicit_bzero: a plain memset before free may be optimised out. */
		explicit_bzero(m->secret, m->slen);
		free(m->secret);
	}
	free(m->st);
	free(m->ed);
	free(m);
}

bool mask_is_empty(const struct mask *m)
{
	return !m || m->slen == 0;
}

/* Marks in cover[0..len) every byte of text[0..len) that lies in a long
 * enough substring of the secret. A run ending at i of length L covers
 * [i-L+1, i]; runs are found in increasing i, so marking backwards stops
 * at the first byte already marked. */
static void find_cover(const struct mask *m, const char *text, size_t len, unsigned char *cover)
{
	uint32_t v = 0;
	size_t l = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		uint32_t to;
		while (v != 0 && (to = edge_find(m, v, c)) == UINT32_MAX) {
			v = (uint32_t)m->st[v].link;
			l = m->st[v].len;
		}
		to = edge_find(m, v, c);
		if (to != UINT32_MAX) {
			v = to;
			l++;
		} else {
			v = 0;
			l = 0;
		}
		if (l >= m->min_run && (m->slen >= MASK_MIN_FRAGMENT || l == m->slen))
			for (size_t k = 0; k < l && !cover[i - k]; k++)
				cover[i - k] = 1;
	}
}

/* Writes text with each run of covered bytes replaced by MASK_MARK, up to
 * cap bytes; returns the bytes written. */
static size_t emit(const char *text, size_t len, const unsigned char *cover, char *dst, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o < cap; i++) {
		if (!cover[i]) {
			dst[o++] = text[i];
			continue;
		}
		for (const char *k = MASK_MARK; *k && o < cap; k++)
			dst[o++] = *k;
		while (i + 1 < len && cover[i + 1])
			i++;
	}
	return o;
}

int mask_apply(const struct mask *m, char *text, size_t *len)
{
	if (mask_is_empty(m) || *len == 0)
		return 0;
	unsigned char *cover = calloc(*len, 1);
	if (!cover)
		return -1;
	find_cover(m, text, *len, cover);
	/* In place is safe: a run of >= 1 covered bytes becomes at most
	 * strlen(MASK_MARK) bytes only when the run is at least that long
	 * (min_run >= 3 for secrets of 3 bytes and more); for shorter secrets
	 * the mark is cut to the run's own length so the text never grows. */
	size_t o = 0;
	for (size_t i = 0; i < *len;) {
		if (!cover[i]) {
			text[o++] = text[i++];
			continue;
		}
		size_t run = 0;
		while (i + run < *len && cover[i + run])
			run++;
		size_t mark = strlen(MASK_MARK) < run ? strlen(MASK_MARK) : run;
		memcpy(text + o, MASK_MARK, mark);
		o += mark;
		i += run;
	}
	free(cover);
	*len = o;
	return 0;
}

long mask_copy(const struct mask *m, const char *src, size_t len, char *dst, size_t dstsize)
{
	size_t cap = dstsize - 1;
	if (mask_is_empty(m)) {
		size_t n = len < cap ? len : cap;
		memcpy(dst, src, n);
		dst[n] = '\0';
		return (long)n;
	}
	/* Whether byte j is masked depends on the bytes up to j + slen - 1
	 * only, so masking a prefix of P bytes decides its first P - slen + 1
	 * bytes exactly as masking all of src would. Grow the prefix until
	 * the decided part fills dst or src ends. */
	size_t p = cap + m->slen;
	for (;;) {
		if (p > len)
			p = len;
		unsigned char *cover = calloc(p ? p : 1, 1);
		if (!cover) {
			size_t n = sizeof(withheld) - 1 < cap ? sizeof(withheld) - 1 : cap;
			memcpy(dst, withheld, n);
			dst[n] = '\0';
			return -1;
		}
		find_cover(m, src, p, cover);
		size_t decided = p == len ? p : p - m->slen + 1;
		size_t o = emit(src, decided, cover, dst, cap);
		free(cover);
		if (o == cap || p == len) {
			dst[o] = '\0';
			return (long)o;
		}
		p = p * 2;
	}
}

long mask_format(const struct mask *m, char *dst, size_t dstsize, const char *fmt, ...)
{
	char *text = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&text, fmt, ap);
	va_end(ap);
	if (n < 0) {
		size_t k = sizeof(withheld) - 1 < dstsize - 1 ? sizeof(withheld) - 1 : dstsize - 1;
		memcpy(dst, withheld, k);
		dst[k] = '\0';
		return -1;
	}
	long r = mask_copy(m, text, (size_t)n, dst, dstsize);
	explicit_bzero(text, (size_t)n);
	free(text);
	return r;
}

long mask_copy_secret(const char *secret, const char *src, size_t len, char *dst, size_t dstsize)
{
	struct mask *m;
	if (mask_new(secret, &m) != 0) {
		size_t k = sizeof(withheld) - 1 < dstsize - 1 ? sizeof(withheld) - 1 : dstsize - 1;
		memcpy(dst, withheld, k);
		dst[k] = '\0';
		return -1;
	}
	long r = mask_copy(m, src, len, dst, dstsize);
	mask_free(m);
	return r;
}
