/* validate: judges one response body against the integration guide (SPEC §3).
 * Pure: bytes plus what was requested in, owned result out. Only this module
 * includes cJSON.h; no cJSON pointer leaves it. */
#ifndef KSI_VALIDATE_H
#define KSI_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VAL_MAX_STRING_BYTES 200 /* SPEC §3: longer string fields are refused */
#define VAL_MAX_JSON_BYTES 2048  /* rejected_records keeps at most this much of a record */

/* Why one record was refused. Each has a stable snake_case name
 * (val_reason_name) stored in rejected_records.reason. */
enum val_reason {
	VAL_NOT_OBJECT,          /* not_an_object */
	VAL_MISSING_FIELD,       /* missing_field */
	VAL_WRONG_TYPE,          /* wrong_type */
	VAL_STRING_NUL,          /* string_has_nul */
	VAL_STRING_INVALID_UTF8, /* string_invalid_utf8 */
	VAL_STRING_TOO_LONG,     /* string_too_long */
	VAL_TIME_NO_OFFSET,      /* time_without_offset */
	VAL_TIME_UNPARSEABLE,    /* time_unparseable */
	VAL_TIME_NOT_ON_HOUR,    /* time_not_on_hour */
	VAL_TIME_OUTSIDE_WINDOW, /* time_outside_window */
	VAL_TIME_IN_FUTURE,      /* time_in_future */
	VAL_UNKNOWN_CODE,        /* unknown_ext_ref_code */
	VAL_TICKETS_NEGATIVE,    /* num_tickets_negative */
	VAL_TICKETS_FRACTIONAL,  /* num_tickets_fractional */
	VAL_TICKETS_TOO_LARGE,   /* num_tickets_too_large */
	VAL_DUPLICATE,           /* duplicate */
	VAL_STRING_INVALID,      /* invalid_string: a lone UTF-16 surrogate escape */
	VAL_DUPLICATE_KEY,       /* duplicate_key: time, ext_ref_code or num_tickets twice */
};

const char *val_reason_name(enum val_reason r);

/* What was asked: the answer is judged against exactly this. */
struct val_request {
	const char *const *codes; /* requested ext_ref_codes, sorted by strcmp */
	size_t ncodes;
	int64_t from; /* first hour asked, epoch seconds */
	int64_t to;   /* end of the last hour asked (exclusive), epoch seconds */
	int64_t now;  /* hours starting after now have not started yet */
	/* The connector's IANA zone: a record's hour must start an hour there
	 * (SPEC §2). NULL is read as "UTC". */
	const char *zone;
	/* The connector's token (NULL: none): every text quoting the body — a
	 * refusal's detail and JSON text, the whole response's error — has it
	 * and its fragments masked before it is cut (SPEC §3, mask.h). */
	const char *secret;
};

/* One accepted record. */
struct val_record {
	size_t code;         /* index into val_request.codes */
	int64_t hour;        /* epoch seconds of the hour's start */
	int32_t num_tickets; /* 0 … 2147483647 */
};

/* One refused record. */
struct val_refusal {
	enum val_reason reason;
	size_t index; /* position in the response list, from 0 */
	char *detail; /* what was wrong and what the guide expects, for a person */
	char *json;   /* the record's JSON text, valid UTF-8, at most VAL_MAX_JSON_BYTES */
};

/* Why a whole response was refused, by type: callers and the differential
 * fuzz target tell these apart without reading the message. */
enum val_whole {
	VAL_WHOLE_NONE = 0, /* not refused */
	VAL_WHOLE_NOT_JSON, /* not one RFC 8259 JSON text (empty, HTML, malformed,
	                     * text after the value), or beyond cJSON's nesting limit */
	VAL_WHOLE_NOT_LIST, /* JSON, but its top level is not a list */
};

struct val_result {
	/* Whole response refused: nothing below is set but `whole` and `error`. */
	bool refused;
	enum val_whole whole;
	char *error;
	size_t received;            /* elements in the list */
	struct val_record *records; /* sorted by (code, hour), no duplicates */
	size_t nrecords;
	struct val_refusal *refusals; /* in response order */
	size_t nrefusals;
};

/* Judges body[0..len) (not NUL-terminated; the parser is given a terminated
 * copy and must reach its end). Returns 0 with *out filled — refused or not —
 * or -1 only when memory ran out. Free with val_result_free in both cases. */
int val_validate(const char *body, size_t len, const struct val_request *req,
                 struct val_result *out) __attribute__((warn_unused_result));

/* Frees what val_validate allocated; accepts a zeroed or NULL result. */
void val_result_free(struct val_result *r);

#endif
