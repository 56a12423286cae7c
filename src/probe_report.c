/* probe_report: what a probe says, for people and for the database. The
 * text report test-connection prints, and the JSON document that is both
 * test-connection --json and a connection_tests row's report. The token and
 * its fragments are masked in every string written (mask.h), before any
 * control byte is touched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "jsonw.h"
#include "mask.h"
#include "probe_internal.h"

/* s with the token and its fragments masked (mask.h): malloc'd, or NULL on
 * out of memory, when the caller prints a placeholder instead. */
static char *masked_copy(const char *s, const char *secret)
{
	size_t n = strlen(s);
	char *out = malloc(n + 1);
	if (out && mask_copy_secret(secret, s, n, out, n + 1) < 0) {
		free(out);
		out = NULL;
	}
	return out;
}

void probe_json_string(FILE *f, const char *s, const char *mask)
{
	char *copy = masked_copy(s ? s : "", mask);
	jsonw_string(f, copy ? copy : "(withheld: out of memory while masking)");
	free(copy);
}

/* Text output: one line per check, so control bytes become spaces. */
static void put_text(FILE *f, const char *s, const char *mask)
{
	char *copy = masked_copy(s ? s : "", mask);
	for (const char *p = copy ? copy : "(withheld: out of memory while masking)"; *p;) {
		unsigned char c = (unsigned char)*p++;
		fputc(c < 0x20 || c == 0x7f ? ' ' : c, f);
	}
	free(copy);
}

/* ---- reports ------------------------------------------------------------- */

static const char *outcome_name(const struct probe_answer *a)
{
	if (!a->answered)
		return "none";
	switch (a->outcome) {
	case HTTP_OUTCOME_OK:
		return "ok";
	case HTTP_OUTCOME_STATUS:
		return "status";
	case HTTP_OUTCOME_REDIRECT:
		return "redirect";
	case HTTP_OUTCOME_TOO_LARGE:
		return "too_large";
	case HTTP_OUTCOME_TIMEOUT:
		return "timeout";
	case HTTP_OUTCOME_NETWORK:
		break;
	}
	return "network";
}

static const char *verdict_summary(const struct probe_report *r, char *buf, size_t len)
{
	enum probe_status v = probe_verdict(r);
	if (v == PROBE_PASS)
		return "the API follows the integration guide";
	if (v == PROBE_WARN)
		return "every required check passed; read the warnings";
	size_t nfailed = 0, o = 0;
	for (size_t i = 0; i < r->nchecks; i++)
		nfailed += r->checks[i].required && r->checks[i].status == PROBE_FAIL;
	o += (size_t)snprintf(buf, len, "%zu required check%s failed (", nfailed,
	                      probei_plural(nfailed));
	for (size_t i = 0, k = 0; i < r->nchecks && o < len; i++)
		if (r->checks[i].required && r->checks[i].status == PROBE_FAIL)
			o += (size_t)snprintf(buf + o, len - o, "%s%s", k++ ? ", " : "",
			                      r->checks[i].name);
	if (o < len)
		snprintf(buf + o, len - o, "): the API does not follow the integration guide");
	return buf;
}

void probei_print_text(const struct probe *p)
{
	const struct probe_report *r = &p->report;
	const char *mask = p->c.bearer_token;
	const struct ask *m = &p->asks[PROBE_ASK_MAIN];
	printf("ksi-salesd test-connection: ");
	put_text(stdout, p->where, mask);
	if (p->from_db) {
		printf(" (connector ");
		put_text(stdout, p->c.name, mask);
		printf(")");
	}
	printf("\n  window %s … %s (%s), %zu code%s: ", m->from_s, m->to_s, p->c.timezone,
	       p->nasked, probei_plural(p->nasked));
	for (size_t i = 0; i < p->nasked && i < PROBEI_LIST_MAX; i++) {
		printf("%s", i ? ", " : "");
		put_text(stdout, p->c.codes[i], mask);
	}
	if (p->nasked > PROBEI_LIST_MAX)
		printf(" and %zu more", p->nasked - PROBEI_LIST_MAX);
	if (p->nasked < p->c.ncodes)
		printf(" (the first %zu of %zu: the daemon splits the codes over several requests)",
		       p->nasked, p->c.ncodes);
	printf("\n");
	for (size_t i = 0; i < r->nchecks; i++) {
		const struct probe_check *c = &r->checks[i];
		printf("%-4s  %-11s  ", probe_status_name(c->status), c->name);
		put_text(stdout, c->evidence, mask);
		printf("\n");
	}
	char buf[512];
	printf("verdict: %s: %s\n", probe_status_name(probe_verdict(r)),
	       verdict_summary(r, buf, sizeof(buf)));
}

/* The --json document, also what a connection_tests row's report holds.
 * Every string goes through probe_json_string with the token as its mask. */
void probei_print_json(FILE *f, const struct probe *p)
{
	const struct probe_report *r = &p->report;
	const char *mask = p->c.bearer_token;
	const struct ask *m = &p->asks[PROBE_ASK_MAIN];
	fputs("{\"endpoint\":", f);
	probe_json_string(f, p->where, mask);
	fputs(",\"connector\":", f);
	if (p->from_db)
		probe_json_string(f, p->c.name, mask);
	else
		fputs("null", f);
	fputs(",\"timezone\":", f);
	probe_json_string(f, p->c.timezone, mask);
	fprintf(f, ",\"fromTime\":\"%s\",\"toTime\":\"%s\",\"codes\":[", m->from_s, m->to_s);
	for (size_t i = 0; i < p->nasked; i++) {
		if (i)
			fputc(',', f);
		probe_json_string(f, p->c.codes[i], mask);
	}
	fprintf(f, "],\"codes_total\":%zu,\n\"checks\":[", p->c.ncodes);
	for (size_t i = 0; i < r->nchecks; i++) {
		const struct probe_check *c = &r->checks[i];
		fprintf(f, "%s\n {\"name\":\"%s\",\"status\":\"%s\",\"required\":%s,\"evidence\":",
		        i ? "," : "", c->name, probe_status_name(c->status),
		        c->required ? "true" : "false");
		probe_json_string(f, c->evidence, mask);
		fputc('}', f);
	}
	fputs("],\n\"requests\":[", f);
	for (int i = 0; i < PROBE_NASKS; i++) {
		const struct ask *a = &p->asks[i];
		const struct probe_answer *x = &p->answers[i];
		fprintf(
		    f,
		    "%s\n "
		    "{\"name\":\"%s\",\"authorization\":%s,\"fromTime\":\"%s\",\"toTime\":\"%s\","
		    "\"outcome\":\"%s\",\"http_status\":%ld,\"ms\":%ld,\"bytes\":%zu,\"gzip\":%s",
		    i ? "," : "", probei_ask_names[i], i == PROBE_ASK_NOAUTH ? "false" : "true",
		    a->from_s, a->to_s, outcome_name(x), x->status,
		    (long)(x->elapsed * 1000.0 + 0.5), x->bytes, x->gzip ? "true" : "false");
		if (x->validated && !x->v.refused)
			fprintf(f, ",\"received\":%zu,\"accepted\":%zu,\"refused\":%zu",
			        x->v.received, x->v.nrecords, x->v.nrefusals);
		if (x->validated && x->v.refused) {
			fputs(",\"error\":", f);
			probe_json_string(f, x->v.error, mask);
		} else if (x->answered && x->outcome != HTTP_OUTCOME_OK) {
			fputs(",\"error\":", f);
			probe_json_string(f, x->error, mask);
		}
		fputc('}', f);
	}
	char buf[512];
	enum probe_status v = probe_verdict(r);
	fprintf(f, "],\n\"verdict\":\"%s\",\"summary\":", probe_status_name(v));
	probe_json_string(f, verdict_summary(r, buf, sizeof(buf)), mask);
	fprintf(f, ",\"exit_code\":%d}\n", v == PROBE_FAIL ? EXIT_FAILED : EXIT_OK);
}

char *probe_report_json(const struct probe *p)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	probei_print_json(f, p);
	bool failed = ferror(f) != 0;
	if (fclose(f) != 0 || failed) {
		free(buf);
		return NULL;
	}
	return buf;
}
