/* test_validate: every rule of SPEC §3 as one row of a table: a response
 * body in, the whole-response refusal or the accepted count and the reason
 * of each refused element out; then the JSON text kept for a refusal, a body
 * that is not NUL-terminated, and a large response. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "validate.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define FROM 1675814400LL /* 2023-02-08T00:00:00Z */
#define TO (FROM + 24 * 3600)

/* One record of the guide's shape; values are pasted in as JSON text. */
#define REC(t, c, n) "{\"time\":\"" t "\",\"ext_ref_code\":\"" c "\",\"num_tickets\":" n "}"
#define T05 "2023-02-08T05:00:00Z"
#define T06 "2023-02-08T06:00:00Z"

/* A 200-byte code, and one byte longer. */
#define C200                                                                                       \
	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"                                       \
	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"                                       \
	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"                                       \
	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define C201 C200 "A"

/* Sorted by strcmp, as the header requires. */
static const char *const codes[] = {"0001", "0002",          "0003",
                                    C200,   "Z\xC3\xBCrich", "\xF0\x9F\x98\x80"};

/* The window lies wholly in the past. */
static const struct val_request req_past = {
    codes, ARRAY_LEN(codes), FROM, TO, TO + 10 * 3600, "UTC", NULL};
/* 12:30 UTC inside the window: 12:00 has started, 13:00 has not. */
static const struct val_request req_live = {
    codes, ARRAY_LEN(codes), FROM, TO, FROM + 12 * 3600 + 1800, "UTC", NULL};
/* Connectors whose hours are not at :00 UTC: Asia/Kolkata (+05:30) and
 * Australia/Lord_Howe (+11:00 in February, DST; +10:30 in winter) start
 * theirs at :30 UTC, Asia/Kathmandu (+05:45) at :15. */
static const struct val_request req_kolkata = {codes,          ARRAY_LEN(codes), FROM, TO,
                                               TO + 10 * 3600, "Asia/Kolkata",   NULL};
static const struct val_request req_kathmandu = {codes,          ARRAY_LEN(codes), FROM, TO,
                                                 TO + 10 * 3600, "Asia/Kathmandu", NULL};
/* A July window, when Lord Howe Island keeps +10:30. */
#define JULY 1688169600LL /* 2023-07-01T00:00:00Z */
static const struct val_request req_lord_howe = {
    codes, ARRAY_LEN(codes), JULY, JULY + 24 * 3600, JULY + 34 * 3600, "Australia/Lord_Howe", NULL};
static const struct val_request req_no_zone = {
    codes, ARRAY_LEN(codes), FROM, TO, TO + 10 * 3600, NULL, NULL};
static const struct val_request req_mars = {codes,          ARRAY_LEN(codes), FROM, TO,
                                            TO + 10 * 3600, "Mars/Olympus",   NULL};

struct vcase {
	const char *name;
	const char *body;
	size_t len;                    /* 0: strlen(body); set it to embed NUL bytes */
	const struct val_request *req; /* NULL: req_past */
	/* Whole response refused: error contains these. */
	const char *error;
	const char *error2;
	bool not_list; /* refused as JSON that is not a list, not as "not JSON" */
	/* Otherwise: accepted count, and "index=reason" of each refusal. */
	size_t nrecords;
	const char *reasons;
	const char *detail;  /* when set: the first refusal's detail contains it */
	const char *tickets; /* when set: the first record's num_tickets, in decimal */
	long long hour;      /* when != 0: the first record's hour */
};

static struct vcase cases[] = {
    /* ---- whole response ---- */
    {"valid list",
     "[" REC(T05, "0001", "25") "," REC(T05, "0002", "3") "," REC(T06, "0001", "0") "]",
     .nrecords = 3, .reasons = "", .tickets = "25", .hour = FROM + 5 * 3600},
    {"empty list", "[]", .nrecords = 0, .reasons = ""},
    {"white space around", " \r\n\t[ " REC(T05, "0001", "1") " ]\n\t \r\n", .nrecords = 1,
     .reasons = ""},
    {"UTF-8 byte order mark", "\xEF\xBB\xBF[" REC(T05, "0001", "1") "]", .nrecords = 1,
     .reasons = ""},
    {"empty body", "", .error = "empty body"},
    {"only white space", " \n\t ", .error = "empty body"},
    {"HTML page", "<!DOCTYPE html>\n<html><body><h1>502 Bad Gateway</h1></body></html>",
     .error = "an HTML page"},
    {"HTML page, upper case, after white space", "\n  <HTML><HEAD></HEAD></HTML>",
     .error = "an HTML page"},
    {"XML", "<?xml version=\"1.0\"?><sales></sales>", .error = "XML"},
    {"plain text", "Service Unavailable", .error = "text starting with 'Service Unavailable'"},
    {"text excerpt made safe and short",
     "Error\x01\xFF: the upstream server took too long to answer the request in time",
     .error = "text starting with 'Error\\x01\\xFF: the upstream server took"},
    {"malformed JSON", "[{\"time\": }]", .error = "not valid JSON", .error2 = "at byte"},
    {"lone surrogate escape after a cut is refused whole, like any cut",
     "[" REC(T05, "\\ud800", "1") ",{\"time", .error = "not valid JSON"},
    {"JSON with a lone surrogate followed by text", "[\"\\ud800\"] x",
     .error = "JSON followed by other text at byte 11"},
    {"trailing garbage", "[] x", .error = "JSON followed by other text at byte 3"},
    {"two lists", "[][]", .error = "JSON followed by other text at byte 2"},
    {"control byte after the list (cJSON skips it)", "[]\x01", 3,
     .error = "JSON followed by other text at byte 2"},
    {"NUL byte after the list", "[]\0[]", 5, .error = "JSON followed by other text at byte 2"},
    {"NUL byte at the end", "[] \0", 4, .error = "JSON followed by other text at byte 3"},
    {"control byte between elements", "[1,\x01 2]", .error = "control byte 0x01",
     .error2 = "at byte 3"},
    {"\\u escape without four hex digits (cJSON reads U+0000)", "[" REC(T05, "00\\u00g1", "1") "]",
     .error = "escape '\\u00g1' at byte", .error2 = "four hex digits"},
    {"short \\u escape in an ignored field", "[{\"x\":\"\\u12\"}]", .error = "not valid JSON"},
    {"leading zero", "[01]", .error = "malformed number '01'"},
    {"number ending in a point", "[" REC(T05, "0001", "1.") "]", .error = "malformed number"},
    {"number starting with -.", "[-.5]", .error = "malformed number"},
    {"object with keys data, meta", "{\"data\": [], \"meta\": {\"page\": 1}}",
     .error = "an object with keys data, meta", .error2 = "the guide requires a bare list",
     .not_list = true},
    {"object with many keys", "{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7}",
     .error = "keys a, b, c, d, e, \xE2\x80\xA6:", .error2 = "bare list", .not_list = true},
    {"empty object", "{}", .error = "an empty object", .error2 = "bare list", .not_list = true},
    {"bare string", "\"hello\"", .error = "a string: the guide requires a bare list",
     .not_list = true},
    {"bare number", "42", .error = "a number: the guide requires a bare list", .not_list = true},
    {"bare true", "true", .error = "true: the guide requires a bare list", .not_list = true},
    {"bare false", " false ", .error = "false: the guide requires a bare list", .not_list = true},
    {"bare null", "null", .error = "null: the guide requires a bare list", .not_list = true},

    /* ---- legal JSON the guide refuses (issue 10) ---- */
    /* Lone UTF-16 surrogate escapes: RFC 8259's grammar allows them. */
    {"lone high surrogate in an ignored field is ignored",
     "[{\"note\":\"Caf\\ud800\",\"time\":\"" T05 "\",\"ext_ref_code\":\"0001\",\"num_tickets\":1}]",
     .nrecords = 1, .reasons = "", .tickets = "1"},
    {"lone surrogates in an ignored value's keys and list are ignored",
     "[{\"meta\":{\"\\udc00\":[1,\"\\ud800\\ud800\"]},\"time\":\"" T05
     "\",\"ext_ref_code\":\"0001\",\"num_tickets\":2}]",
     .nrecords = 1, .reasons = "", .tickets = "2"},
    {"lone surrogate in ext_ref_code refuses that record only",
     "[" REC(T05, "0001\\udc00", "1") "," REC(T06, "0001", "3") "]", .nrecords = 1,
     .reasons = "0=invalid_string",
     .detail = "ext_ref_code \"0001\\udc00\" holds a lone UTF-16 surrogate escape \\udc00 at "
               "byte 52",
     .tickets = "3"},
    {"lone surrogate in time", "[" REC("2023-02-08T05:00:00Z\\uDBFF", "0001", "1") "]",
     .reasons = "0=invalid_string", .detail = "time \"2023-02-08T05:00:00Z\\uDBFF\" holds a lone"},
    {"high surrogate before a non-surrogate escape is lone",
     "[" REC(T05, "\\ud800\\u0041", "1") "]", .reasons = "0=invalid_string",
     .detail = "escape \\ud800 at"},
    {"high, high, low: the first high is lone", "[" REC(T05, "\\ud800\\ud800\\udc00", "1") "]",
     .reasons = "0=invalid_string"},
    {"lone surrogate in a key refuses its record, before missing fields",
     "[{\"ti\\ud800me\":\"" T05 "\"}]", .reasons = "0=invalid_string",
     .detail = "key \"ti\\ud800me\" holds a lone UTF-16 surrogate escape \\ud800 at byte 5"},
    {"lone surrogate in any key of the record refuses it",
     "[{\"x\\udfff\":1,\"time\":\"" T05 "\",\"ext_ref_code\":\"0001\",\"num_tickets\":1}]",
     .reasons = "0=invalid_string"},
    {"surrogate pairs are fine everywhere",
     "[{\"\\ud83d\\ude00\":\"\\ud83d\\ude00\",\"time\":\"" T05
     "\",\"ext_ref_code\":\"\\ud83d\\ude00\",\"num_tickets\":4}]",
     .nrecords = 1, .reasons = "", .tickets = "4"},
    {"an escaped backslash then u is no escape", "[" REC(T05, "\\\\ud800", "1") "]",
     .reasons = "0=unknown_ext_ref_code"},
    {"a lone surrogate key in a top-level object: JSON, not a list", "{\"\\ud800\":1}",
     .error = "an object with keys \xEF\xBF\xBD", .not_list = true},
    /* Keys the daemon reads given twice, compared unescaped. */
    {"num_tickets twice refuses the record",
     "[{\"time\":\"" T05 "\",\"ext_ref_code\":\"0001\",\"num_tickets\":1,\"num_tickets\":2}]",
     .reasons = "0=duplicate_key",
     .detail = "key num_tickets appears 2 times in this record (at bytes 54 and 70): the guide "
               "allows each field once"},
    {"time and \\u0074ime are the same key",
     "[{\"time\":\"" T05 "\",\"\\u0074ime\":\"" T06
     "\",\"ext_ref_code\":\"0001\",\"num_tickets\":1}]",
     .reasons = "0=duplicate_key", .detail = "key time appears 2 times"},
    {"ext_ref_code twice, same value",
     "[{\"ext_ref_code\":\"0001\",\"time\":\"" T05
     "\",\"ext_ref_code\":\"0001\",\"num_tickets\":1}]",
     .reasons = "0=duplicate_key", .detail = "key ext_ref_code appears 2 times"},
    {"time three times", "[{\"time\":1,\"time\":2,\"time\":3}]", .reasons = "0=duplicate_key",
     .detail = "appears 3 times in this record (at bytes 2 and 11, \xE2\x80\xA6)"},
    {"duplicate key beats a missing field", "[{\"time\":\"" T05 "\",\"time\":\"" T05 "\"}]",
     .reasons = "0=duplicate_key"},
    {"an ignored key twice is ignored",
     "[{\"note\":1,\"note\":2,\"time\":\"" T05 "\",\"ext_ref_code\":\"0001\",\"num_tickets\":5}]",
     .nrecords = 1, .reasons = "", .tickets = "5"},
    {"guide keys twice inside an ignored value are ignored",
     "[{\"x\":{\"num_tickets\":1,\"num_tickets\":2},\"time\":\"" T05
     "\",\"ext_ref_code\":\"0001\",\"num_tickets\":6}]",
     .nrecords = 1, .reasons = "", .tickets = "6"},
    {"time\\u0000 is not time",
     "[{\"time\\u0000\":\"junk\",\"time\":\"" T05
     "\",\"ext_ref_code\":\"0001\",\"num_tickets\":7}]",
     .nrecords = 1, .reasons = "", .tickets = "7"},
    /* The connector's hour grid. */
    {"17:00+05:30 to a UTC connector is 11:30Z, off its grid",
     "[" REC("2023-02-08T17:00:00+05:30", "0001", "1") "]", .reasons = "0=time_not_on_hour",
     .detail = "time \"2023-02-08T17:00:00+05:30\" is 2023-02-08T11:30:00+00:00 in the "
               "connector's zone UTC, not the start of an hour there: the guide requires the "
               "connector's hours, e.g. 2023-02-08T11:00:00+00:00"},
    {"off the grid is checked before the window",
     "[" REC("2023-02-07T17:00:00+05:30", "0001", "1") "]", .reasons = "0=time_not_on_hour"},
    {"17:00+05:30 to an Asia/Kolkata connector is on its grid",
     "[" REC("2023-02-08T17:00:00+05:30", "0001", "1") "]", .req = &req_kolkata, .nrecords = 1,
     .reasons = "", .hour = FROM + 11 * 3600 + 1800},
    {"11:00Z to an Asia/Kolkata connector is off its grid",
     "[" REC("2023-02-08T11:00:00Z", "0001", "1") "]", .req = &req_kolkata,
     .reasons = "0=time_not_on_hour",
     .detail = "is 2023-02-08T16:30:00+05:30 in the connector's zone Asia/Kolkata"},
    {"+05:45 to an Asia/Kathmandu connector (:15 UTC) is on its grid",
     "[" REC("2023-02-08T10:00:00+05:45", "0001", "1") "]", .req = &req_kathmandu, .nrecords = 1,
     .reasons = "", .hour = FROM + 4 * 3600 + 900},
    {"+05:30 to an Asia/Kathmandu connector is off its grid",
     "[" REC("2023-02-08T10:00:00+05:30", "0001", "1") "]", .req = &req_kathmandu,
     .reasons = "0=time_not_on_hour", .detail = "zone Asia/Kathmandu"},
    {"+10:30 to Australia/Lord_Howe in July (:30 UTC) is on its grid",
     "[" REC("2023-07-01T20:00:00+10:30", "0001", "1") "]", .req = &req_lord_howe, .nrecords = 1,
     .reasons = "", .hour = JULY + 9 * 3600 + 1800},
    {"09:00Z to Australia/Lord_Howe in July is off its grid",
     "[" REC("2023-07-01T09:00:00Z", "0001", "1") "]", .req = &req_lord_howe,
     .reasons = "0=time_not_on_hour",
     .detail = "2023-07-01T19:30:00+10:30 in the connector's zone"},
    {"no zone is read as UTC", "[" REC("2023-02-08T17:00:00+05:30", "0001", "1") "]",
     .req = &req_no_zone, .reasons = "0=time_not_on_hour", .detail = "zone UTC"},
    {"a zone this host does not know refuses the record, naming it", "[" REC(T05, "0001", "1") "]",
     .req = &req_mars, .reasons = "0=time_not_on_hour",
     .detail = "its zone Mars/Olympus has no known offset"},

    /* ---- element shape ---- */
    {"elements that are not objects", "[5, [1], null, \"x\", true]", .nrecords = 0,
     .reasons = "0=not_an_object 1=not_an_object 2=not_an_object 3=not_an_object 4=not_an_object",
     .detail = "element is a number (5), not an object"},
    {"missing time", "[{\"ext_ref_code\":\"0001\",\"num_tickets\":1}]",
     .reasons = "0=missing_field", .detail = "missing time:"},
    {"missing ext_ref_code", "[{\"time\":\"" T05 "\",\"num_tickets\":1}]",
     .reasons = "0=missing_field", .detail = "missing ext_ref_code:"},
    {"missing num_tickets", "[{\"time\":\"" T05 "\",\"ext_ref_code\":\"0001\"}]",
     .reasons = "0=missing_field", .detail = "missing num_tickets:"},
    {"all missing", "[{}]", .reasons = "0=missing_field",
     .detail = "missing time, ext_ref_code, num_tickets"},
    {"key case matters", "[{\"Time\":\"" T05 "\",\"ext_ref_code\":\"0001\",\"num_tickets\":1}]",
     .reasons = "0=missing_field"},
    {"missing beats wrong type", "[{\"time\":5}]", .reasons = "0=missing_field"},
    {"num_tickets as a string \"25\"",
     "[{\"time\":\"" T05 "\",\"ext_ref_code\":\"0001\",\"num_tickets\":\"25\"}]",
     .reasons = "0=wrong_type",
     .detail = "num_tickets is a string (\"25\"): the guide requires a JSON number"},
    {"ext_ref_code as a number 1", "[{\"time\":\"" T05 "\",\"ext_ref_code\":1,\"num_tickets\":1}]",
     .reasons = "0=wrong_type", .detail = "ext_ref_code is a number (1)"},
    {"time as true", "[{\"time\":true,\"ext_ref_code\":\"0001\",\"num_tickets\":1}]",
     .reasons = "0=wrong_type", .detail = "time is true: the guide requires a string"},
    {"time as epoch number", "[{\"time\":1675832400,\"ext_ref_code\":\"0001\",\"num_tickets\":1}]",
     .reasons = "0=wrong_type", .detail = "time is a number"},
    {"num_tickets null", "[{\"time\":\"" T05 "\",\"ext_ref_code\":\"0001\",\"num_tickets\":null}]",
     .reasons = "0=wrong_type", .detail = "num_tickets is null"},
    {"num_tickets as a list",
     "[{\"time\":\"" T05 "\",\"ext_ref_code\":\"0001\",\"num_tickets\":[1]}]",
     .reasons = "0=wrong_type"},
    {"extra fields ignored",
     "[{\"store\":\"x\",\"time\":\"" T05 "\",\"nested\":{\"a\":[1,{\"b\":\"\xFF\"}]},"
     "\"ext_ref_code\":\"0001\",\"num_tickets\":7,\"note\":\"a\\u0000b\",\"n\":1e999}]",
     .nrecords = 1, .reasons = "", .tickets = "7"},
    {"escaped key names the field (as cJSON)",
     "[{\"\\u0074ime\":\"" T05 "\",\"ext_ref_code\":\"0001\",\"num_tickets\":1}]", .nrecords = 1,
     .reasons = ""},

    /* ---- string fields ---- */
    {"\\u0000 escape in ext_ref_code", "[" REC(T05, "0001\\u0000", "1") "]",
     .reasons = "0=string_has_nul", .detail = "contains a NUL"},
    {"\\u0000 escape in time", "[" REC("2023-02-08T05:00:00Z\\u0000junk", "0001", "1") "]",
     .reasons = "0=string_has_nul"},
    {"raw NUL byte in ext_ref_code",
     "[" REC(T05,
             "00\0"
             "01",
             "1") "]",
     sizeof("[" REC(T05,
                    "00\0"
                    "01",
                    "1") "]") -
         1,
     .reasons = "0=string_has_nul", .detail = "\"00\\x0001\""},
    {"invalid UTF-8 byte in ext_ref_code",
     "[" REC(T05,
             "00\xFF"
             "1",
             "1") "]",
     .reasons = "0=string_invalid_utf8", .detail = "byte 0xFF"},
    {"overlong UTF-8", "[" REC(T05, "\xC0\xAF", "1") "]", .reasons = "0=string_invalid_utf8"},
    {"UTF-8 encoded surrogate", "[" REC(T05, "\xED\xA0\x80", "1") "]",
     .reasons = "0=string_invalid_utf8"},
    {"UTF-8 above U+10FFFF", "[" REC(T05, "\xF4\x90\x80\x80", "1") "]",
     .reasons = "0=string_invalid_utf8"},
    {"truncated UTF-8 sequence", "[" REC(T05, "Z\xC3", "1") "]",
     .reasons = "0=string_invalid_utf8"},
    {"invalid UTF-8 in time", "[" REC("2023-02-08T05:00:00\xFF", "0001", "1") "]",
     .reasons = "0=string_invalid_utf8"},
    {"multi-byte UTF-8 code accepted when requested", "[" REC(T05, "Z\xC3\xBCrich", "1") "]",
     .nrecords = 1, .reasons = ""},
    {"escaped multi-byte code matches the same bytes", "[" REC(T05, "Z\\u00fcrich", "1") "]",
     .nrecords = 1, .reasons = ""},
    {"200-byte code accepted", "[" REC(T05, C200, "1") "]", .nrecords = 1, .reasons = ""},
    {"201-byte code too long", "[" REC(T05, C201, "1") "]", .reasons = "0=string_too_long",
     .detail = "is 201 bytes long: the guide allows at most 200"},
    {"long time string too long", "[" REC("2023-02-08T05:00:00" C200, "0001", "1") "]",
     .reasons = "0=string_too_long"},
    {"raw control byte in a code is not refused as such",
     "[" REC(T05,
             "00\x01"
             "1",
             "1") "]",
     .reasons = "0=unknown_ext_ref_code"},
    {"string rules come before time rules", "[" REC("yesterday\xFF", "0001", "1") "]",
     .reasons = "0=string_invalid_utf8"},

    /* ---- time ---- */
    {"time without offset", "[" REC("2023-02-08T05:00:00", "0001", "1") "]",
     .reasons = "0=time_without_offset", .detail = "has no UTC offset"},
    {"time unparseable", "[" REC("yesterday", "0001", "1") "]", .reasons = "0=time_unparseable",
     .detail = "time \"yesterday\" is not an ISO 8601 date-time"},
    {"time with no such day", "[" REC("2023-02-30T05:00:00Z", "0001", "1") "]",
     .reasons = "0=time_unparseable"},
    {"10:30 not on the hour", "[" REC("2023-02-08T10:30:00Z", "0001", "1") "]",
     .reasons = "0=time_not_on_hour", .detail = "is not the start of an hour"},
    {"10:00:00.5Z not on the hour", "[" REC("2023-02-08T10:00:00.5Z", "0001", "1") "]",
     .reasons = "0=time_not_on_hour"},
    {"10:00:00.000Z on the hour", "[" REC("2023-02-08T10:00:00.000Z", "0001", "1") "]",
     .nrecords = 1, .reasons = "", .hour = FROM + 10 * 3600},
    {"+05:30 on its own hour", "[" REC("2023-02-08T10:00:00+05:30", "0001", "1") "]",
     .req = &req_kolkata, .nrecords = 1, .reasons = "", .hour = FROM + 4 * 3600 + 1800},
    {"+05:45 on its own hour", "[" REC("2023-02-08T10:00:00+05:45", "0001", "1") "]",
     .req = &req_kathmandu, .nrecords = 1, .reasons = "", .hour = FROM + 4 * 3600 + 900},
    {"-03:00 offset", "[" REC("2023-02-08T02:00:00-03:00", "0001", "1") "]", .nrecords = 1,
     .reasons = "", .hour = FROM + 5 * 3600},
    {"+05:30 with :30 UTC minutes is not its hour",
     "[" REC("2023-02-08T10:30:00+05:30", "0001", "1") "]", .reasons = "0=time_not_on_hour"},
    {"time before the window", "[" REC("2023-02-07T23:00:00Z", "0001", "1") "]",
     .reasons = "0=time_outside_window",
     .detail = "outside the requested window: from 2023-02-08T00:00:00+00:00 up to, not "
               "including, 2023-02-09T00:00:00+00:00"},
    {"window told in the record's offset", "[" REC("2023-02-07T20:00:00-03:00", "0001", "1") "]",
     .reasons = "0=time_outside_window", .detail = "from 2023-02-07T21:00:00-03:00"},
    {"time at the window end (exclusive)", "[" REC("2023-02-09T00:00:00Z", "0001", "1") "]",
     .reasons = "0=time_outside_window"},
    {"first hour of the window", "[" REC("2023-02-08T00:00:00Z", "0001", "1") "]", .nrecords = 1,
     .reasons = "", .hour = FROM},
    {"last hour inside the window", "[" REC("2023-02-08T23:00:00Z", "0001", "1") "]", .nrecords = 1,
     .reasons = "", .hour = TO - 3600},
    {"hour not started yet", "[" REC("2023-02-08T13:00:00Z", "0001", "1") "]", .req = &req_live,
     .reasons = "0=time_in_future",
     .detail = "has not started yet (now is 2023-02-08T12:30:00+00:00)"},
    {"the open hour has started", "[" REC("2023-02-08T12:00:00Z", "0001", "1") "]",
     .req = &req_live, .nrecords = 1, .reasons = ""},
    {"outside the window beats unknown code", "[" REC("2023-02-07T23:00:00Z", "9999", "-1") "]",
     .reasons = "0=time_outside_window"},

    /* ---- ext_ref_code ---- */
    {"unknown code", "[" REC(T05, "9999", "1") "]", .reasons = "0=unknown_ext_ref_code",
     .detail = "ext_ref_code \"9999\" was not requested: the request asked for \"0001\", "
               "\"0002\", \"0003\""},
    {"\"1\" is not \"0001\"", "[" REC(T05, "1", "1") "]", .reasons = "0=unknown_ext_ref_code"},
    {"code with trailing space is not the code", "[" REC(T05, "0001 ", "1") "]",
     .reasons = "0=unknown_ext_ref_code"},
    {"unknown code beats bad num_tickets", "[" REC(T05, "9999", "-1") "]",
     .reasons = "0=unknown_ext_ref_code"},

    /* ---- num_tickets ---- */
    {"num_tickets -1", "[" REC(T05, "0001", "-1") "]", .reasons = "0=num_tickets_negative",
     .detail =
         "num_tickets -1 is negative: the guide requires a whole number from 0 to 2147483647"},
    {"num_tickets 25.5", "[" REC(T05, "0001", "25.5") "]", .reasons = "0=num_tickets_fractional",
     .detail = "num_tickets 25.5 has a fractional part"},
    {"num_tickets 25.0 is 25", "[" REC(T05, "0001", "25.0") "]", .nrecords = 1, .reasons = "",
     .tickets = "25"},
    {"num_tickets 2.5e1 is 25", "[" REC(T05, "0001", "2.5e1") "]", .nrecords = 1, .reasons = "",
     .tickets = "25"},
    {"num_tickets 250E-1 is 25", "[" REC(T05, "0001", "250E-1") "]", .nrecords = 1, .reasons = "",
     .tickets = "25"},
    {"num_tickets 1e999", "[" REC(T05, "0001", "1e999") "]", .reasons = "0=num_tickets_too_large"},
    {"num_tickets 2147483647", "[" REC(T05, "0001", "2147483647") "]", .nrecords = 1, .reasons = "",
     .tickets = "2147483647"},
    {"num_tickets 2147483648", "[" REC(T05, "0001", "2147483648") "]",
     .reasons = "0=num_tickets_too_large"},
    {"num_tickets 0", "[" REC(T05, "0001", "0") "]", .nrecords = 1, .reasons = "", .tickets = "0"},
    {"num_tickets -0 is 0", "[" REC(T05, "0001", "-0") "]", .nrecords = 1, .reasons = "",
     .tickets = "0"},
    {"num_tickets -0.0e5 is 0", "[" REC(T05, "0001", "-0.0e5") "]", .nrecords = 1, .reasons = "",
     .tickets = "0"},
    {"num_tickets -1.5 is negative first", "[" REC(T05, "0001", "-1.5") "]",
     .reasons = "0=num_tickets_negative"},
    {"num_tickets -1e999 is negative", "[" REC(T05, "0001", "-1e999") "]",
     .reasons = "0=num_tickets_negative"},
    {"num_tickets 2147483647.5 is too large first", "[" REC(T05, "0001", "2147483647.5") "]",
     .reasons = "0=num_tickets_too_large"},
    {"num_tickets fraction a double cannot see", "[" REC(T05, "0001", "2147483646.00000000001") "]",
     .reasons = "0=num_tickets_fractional"},
    {"num_tickets 1e-400 is not zero", "[" REC(T05, "0001", "1e-400") "]",
     .reasons = "0=num_tickets_fractional"},
    {"num_tickets 0.5", "[" REC(T05, "0001", "0.5") "]", .reasons = "0=num_tickets_fractional"},
    {"num_tickets 1e9 is 1000000000", "[" REC(T05, "0001", "1e9") "]", .nrecords = 1, .reasons = "",
     .tickets = "1000000000"},
    {"num_tickets 1e10", "[" REC(T05, "0001", "1e10") "]", .reasons = "0=num_tickets_too_large"},

    /* ---- duplicates ---- */
    {"two copies both refused",
     "[" REC(T05, "0001", "1") "," REC(T06, "0001", "2") "," REC(T05, "0001", "1") "]",
     .nrecords = 1, .reasons = "0=duplicate 2=duplicate",
     .detail = "ext_ref_code \"0001\" and hour 2023-02-08T05:00:00+00:00 appear 2 times in this "
               "response (also element 2)",
     .tickets = "2"},
    {"three copies all refused",
     "[" REC(T05, "0002", "1") "," REC(T05, "0002", "2") "," REC(T05, "0001",
                                                                 "5") "," REC(T05, "0002", "3") "]",
     .nrecords = 1, .reasons = "0=duplicate 1=duplicate 3=duplicate",
     .detail = "also elements 1, 3", .tickets = "5"},
    {"same hour written in another offset is a copy",
     "[" REC(T05, "0001", "1") "," REC("2023-02-08T02:00:00-03:00", "0001", "1") "]",
     .reasons = "0=duplicate 1=duplicate"},
    {"a copy with bad num_tickets keeps its reason and still refuses the good one",
     "[" REC(T05, "0001", "-4") "," REC(T05, "0001", "4") "]",
     .reasons = "0=num_tickets_negative 1=duplicate", .detail = "appear 2 times"},
    {"a copy refused before the key exists is not a copy",
     "[" REC("2023-02-08T05:30:00Z", "0001", "1") "," REC(T05, "0001", "4") "]", .nrecords = 1,
     .reasons = "0=time_not_on_hour", .tickets = "4"},
    {"same hour, other code is no copy", "[" REC(T05, "0001", "1") "," REC(T05, "0002", "1") "]",
     .nrecords = 2, .reasons = ""},
    {"mixed good and bad in response order",
     "[" REC(T05, "0001", "1") ",7," REC(T06, "0002", "25.5") "," REC(T06, "0001", "2") "]",
     .nrecords = 2, .reasons = "1=not_an_object 2=num_tickets_fractional", .tickets = "1"},
};

/* Well-formed UTF-8 (RFC 3629), a test-side oracle. */
static int utf8_ok(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;

	while (*u) {
		unsigned c = *u, n, i, cp;

		if (c < 0x80) {
			u++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			n = 1, cp = c & 0x1F;
		else if (c >= 0xE0 && c <= 0xEF)
			n = 2, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4)
			n = 3, cp = c & 0x07;
		else
			return 0;
		for (i = 1; i <= n; i++) {
			if ((u[i] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (u[i] & 0x3F);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		u += n + 1;
	}
	return 1;
}

/* "index=reason ..." of a result, to compare with a row in one message. */
static void reasons_of(const struct val_result *r, char *buf, size_t size)
{
	size_t i, used = 0;

	buf[0] = '\0';
	for (i = 0; i < r->nrefusals && used < size; i++) {
		int n = snprintf(buf + used, size - used, "%s%zu=%s", i ? " " : "",
		                 r->refusals[i].index, val_reason_name(r->refusals[i].reason));
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static void check_texts(const char *name, const struct val_result *r)
{
	size_t i;

	if (r->error && !utf8_ok(r->error))
		fail_msg("%s: error is not valid UTF-8: %s", name, r->error);
	for (i = 0; i < r->nrefusals; i++) {
		const struct val_refusal *f = &r->refusals[i];

		if (!f->detail || !utf8_ok(f->detail))
			fail_msg("%s: refusal %zu detail missing or not UTF-8", name, i);
		if (!f->json || !utf8_ok(f->json) || strlen(f->json) > VAL_MAX_JSON_BYTES)
			fail_msg("%s: refusal %zu json missing, not UTF-8 or too long", name, i);
	}
}

static void run_case(void **state)
{
	const struct vcase *c = *state;
	const struct val_request *req = c->req ? c->req : &req_past;
	size_t len = c->len ? c->len : strlen(c->body);
	struct val_result r;
	char got[1024];
	/* An exact-size heap copy: ASan then catches any read past len. */
	char *body = malloc(len ? len : 1);

	assert_non_null(body);
	memcpy(body, c->body, len);
	if (val_validate(body, len, req, &r) != 0)
		fail_msg("%s: val_validate returned -1", c->name);
	free(body);
	check_texts(c->name, &r);
	if (c->error) {
		if (!r.refused || !r.error)
			fail_msg("%s: want the response refused (\"%s\"), got %zu accepted",
			         c->name, c->error, r.nrecords);
		if (!strstr(r.error, c->error) || (c->error2 && !strstr(r.error, c->error2)))
			fail_msg("%s: error \"%s\" lacks \"%s\" / \"%s\"", c->name, r.error,
			         c->error, c->error2 ? c->error2 : "");
		if (r.records || r.refusals || r.nrecords || r.nrefusals || r.received)
			fail_msg("%s: a refused response must carry nothing but its error",
			         c->name);
		if (r.whole != (c->not_list ? VAL_WHOLE_NOT_LIST : VAL_WHOLE_NOT_JSON))
			fail_msg("%s: want the refusal typed %s, got %d", c->name,
			         c->not_list ? "not a list" : "not JSON", (int)r.whole);
		val_result_free(&r);
		return;
	}
	if (r.refused || r.whole != VAL_WHOLE_NONE)
		fail_msg("%s: response refused: %s", c->name, r.error);
	reasons_of(&r, got, sizeof(got));
	if (strcmp(got, c->reasons) != 0)
		fail_msg("%s: want refusals \"%s\", got \"%s\"%s%s", c->name, c->reasons, got,
		         r.nrefusals ? " — first detail: " : "",
		         r.nrefusals ? r.refusals[0].detail : "");
	if (r.nrecords != c->nrecords)
		fail_msg("%s: want %zu accepted, got %zu", c->name, c->nrecords, r.nrecords);
	if (r.received != r.nrecords + r.nrefusals)
		fail_msg("%s: received %zu != %zu + %zu", c->name, r.received, r.nrecords,
		         r.nrefusals);
	if (c->detail && (r.nrefusals == 0 || !strstr(r.refusals[0].detail, c->detail)))
		fail_msg("%s: want the first detail to contain \"%s\", got \"%s\"", c->name,
		         c->detail, r.nrefusals ? r.refusals[0].detail : "(no refusal)");
	if (c->tickets) {
		char n[16] = "(none)";

		if (r.nrecords)
			snprintf(n, sizeof(n), "%ld", (long)r.records[0].num_tickets);
		if (strcmp(n, c->tickets) != 0)
			fail_msg("%s: want num_tickets %s, got %s", c->name, c->tickets, n);
	}
	if (c->hour && (r.nrecords == 0 || r.records[0].hour != c->hour))
		fail_msg("%s: want hour %lld, got %lld", c->name, c->hour,
		         r.nrecords ? (long long)r.records[0].hour : 0LL);
	val_result_free(&r);
}

/* The JSON text kept for a refusal is the element as sent, byte for byte. */
static void test_json_text_is_raw(void **state)
{
	static const char el0[] = "{ \"time\" : \"" T05 "\",\n  \"ext_ref_code\":\"9999\", "
	                          "\"num_tickets\": 1.0 , \"x\": [1, {\"y\": \"]}\\\"\"}] }";
	static const char body[] =
	    "[\n  { \"time\" : \"" T05 "\",\n  \"ext_ref_code\":\"9999\", "
	    "\"num_tickets\": 1.0 , \"x\": [1, {\"y\": \"]}\\\"\"}] } ,\t-7e2 ]";
	struct val_result r;

	(void)state;
	assert_int_equal(val_validate(body, strlen(body), &req_past, &r), 0);
	assert_int_equal(r.nrefusals, 2);
	assert_string_equal(r.refusals[0].json, el0);
	assert_string_equal(r.refusals[1].json, "-7e2");
	val_result_free(&r);
}

/* Bytes a text column cannot hold are made safe, and stay JSON. */
static void test_json_text_made_safe(void **state)
{
	static const char body[] =
	    "[{\"time\":\"" T05 "\",\"ext_ref_code\":\"a\0b\x01\xFF\",\"num_tickets\":1}]";
	static const char want[] =
	    "{\"time\":\"" T05
	    "\",\"ext_ref_code\":\"a\\u0000b\\u0001\xEF\xBF\xBD\",\"num_tickets\":1}";
	struct val_result r;

	(void)state;
	assert_int_equal(val_validate(body, sizeof(body) - 1, &req_past, &r), 0);
	assert_int_equal(r.nrefusals, 1);
	assert_int_equal(r.refusals[0].reason, VAL_STRING_NUL);
	assert_string_equal(r.refusals[0].json, want);
	assert_non_null(strstr(r.refusals[0].detail, "\"a\\x00b\\x01\\xFF\""));
	val_result_free(&r);
}

/* A long record is cut at VAL_MAX_JSON_BYTES, never inside a character. */
static void test_json_text_truncated(void **state)
{
	static const char head[] = "[{\"ext_ref_code\":5,\"pad\":\"xx";
	size_t npad = 3000, len = 0, i;
	char *body = malloc(sizeof(head) + npad * 3 + 16);
	struct val_result r;

	(void)state;
	assert_non_null(body);
	memcpy(body, head, sizeof(head) - 1);
	len = sizeof(head) - 1;
	for (i = 0; i < npad; i++) { /* "€" is 3 bytes: the cut falls inside one */
		memcpy(body + len, "\xE2\x82\xAC", 3);
		len += 3;
	}
	memcpy(body + len, "\"}]", 3);
	len += 3;
	assert_int_equal(val_validate(body, len, &req_past, &r), 0);
	assert_int_equal(r.nrefusals, 1);
	assert_int_equal(r.refusals[0].reason, VAL_MISSING_FIELD);
	assert_true(strlen(r.refusals[0].json) <= VAL_MAX_JSON_BYTES);
	assert_true(strlen(r.refusals[0].json) > VAL_MAX_JSON_BYTES - 4);
	assert_true(utf8_ok(r.refusals[0].json));
	assert_memory_equal(r.refusals[0].json, body + 1, strlen(r.refusals[0].json));
	val_result_free(&r);
	free(body);
}

/* body[len] and beyond are not the body's: garbage there changes nothing. */
static void test_not_nul_terminated(void **state)
{
	static const char valid[] = "[" REC(T05, "0001", "12") "]";
	size_t n = sizeof(valid) - 1;
	char *buf = malloc(n + 8);
	struct val_result r;

	(void)state;
	assert_non_null(buf);
	memcpy(buf, valid, n);
	memcpy(buf + n, "]]]xyz!", 8);
	assert_int_equal(val_validate(buf, n, &req_past, &r), 0);
	assert_false(r.refused);
	assert_int_equal(r.nrecords, 1);
	assert_int_equal(r.records[0].num_tickets, 12);
	val_result_free(&r);

	/* Cut in the middle of the number: the bytes after len ("2}]") must not
	 * complete it. */
	assert_int_equal(val_validate(buf, (size_t)(strstr(buf, "12") - buf) + 1, &req_past, &r),
	                 0);
	assert_true(r.refused);
	assert_non_null(strstr(r.error, "not valid JSON"));
	val_result_free(&r);
	free(buf);
}

/* 100,000 records, shuffled, several codes: all accepted, sorted by
 * (code, hour), in well under a second even under the sanitizers. */
/* SPEC §3: every quote of the body has the token and its fragments masked
 * before it is cut — a refused record's JSON text, the whole response's
 * error — even when the token straddles the cut. */
#define SECRET "tok-0123456789abcdef"
static void assert_no_fragment(const char *text, const char *what)
{
	const char *sec = SECRET;
	for (size_t i = 0; i + 6 <= strlen(sec); i++)
		if (memmem(text, strlen(text), sec + i, 6))
			fail_msg("%s holds the token fragment %.6s: %s", what, sec + i, text);
}

static void test_token_masked_in_every_quote(void **state)
{
	(void)state;
	struct val_request req = req_past;
	req.secret = SECRET;
	struct val_result r;
	/* A refused record quoting the token in an ignored field. */
	const char *rec =
	    "[{\"time\":\"bad\",\"ext_ref_code\":\"0001\",\"num_tickets\":1,\"echo\":\"" SECRET
	    "\"}]";
	assert_int_equal(val_validate(rec, strlen(rec), &req, &r), 0);
	assert_int_equal(r.nrefusals, 1);
	assert_non_null(strstr(r.refusals[0].json, "\"echo\":\"***\""));
	assert_no_fragment(r.refusals[0].json, "the record's JSON text");
	val_result_free(&r);
	/* The token as an object key and as what follows the JSON. */
	const char *bodies[] = {"{\"" SECRET "\": 1}", "[] " SECRET, "<html>" SECRET "</html>",
	                        "[{\"time\":\"" SECRET
	                        "\",\"ext_ref_code\":\"0001\",\"num_tickets\":1}]"};
	for (size_t i = 0; i < ARRAY_LEN(bodies); i++) {
		assert_int_equal(val_validate(bodies[i], strlen(bodies[i]), &req, &r), 0);
		assert_no_fragment(r.refused ? r.error : r.refusals[0].detail, bodies[i]);
		if (!r.refused)
			assert_no_fragment(r.refusals[0].json, bodies[i]);
		val_result_free(&r);
	}
	/* A record longer than VAL_MAX_JSON_BYTES, the token across the cut at
	 * every offset: none of its bytes before the cut survive. */
	for (size_t at = VAL_MAX_JSON_BYTES - 30; at <= VAL_MAX_JSON_BYTES; at++) {
		char body[VAL_MAX_JSON_BYTES + 200];
		const char *head =
		    "[{\"time\":\"bad\",\"ext_ref_code\":\"0001\",\"num_tickets\":1,\"pad\":\"";
		size_t n = strlen(head);
		memcpy(body, head, n);
		/* The record starts at byte 1: the token at record offset at. */
		while (n < at + 1)
			body[n++] = 'x';
		memcpy(body + n, SECRET "\"}]", strlen(SECRET) + 3);
		n += strlen(SECRET) + 3;
		assert_int_equal(val_validate(body, n, &req, &r), 0);
		assert_int_equal(r.nrefusals, 1);
		const char *j = r.refusals[0].json;
		size_t jl = strlen(j);
		for (size_t k = 2; k <= strlen(SECRET) && k <= jl; k++)
			if (memcmp(j + jl - k, SECRET, k) == 0)
				fail_msg(
				    "token at %zu: the JSON text ends with its first %zu bytes", at,
				    k);
		val_result_free(&r);
	}
}

static void test_large(void **state)
{
	enum { NCODES = 1000, NHOURS = 100, N = NCODES * NHOURS };
	static char names[NCODES][8];
	static const char *large_codes[NCODES];
	struct val_request req = {large_codes,      NCODES, FROM, FROM + NHOURS * 3600,
	                          TO + 1000 * 3600, "UTC",  NULL};
	size_t cap = (size_t)N * 200 + 16, len = 0, i;
	char *body = malloc(cap);
	struct val_result r;
	(void)state;
	assert_non_null(body);
	for (i = 0; i < NCODES; i++) {
		snprintf(names[i], sizeof(names[i]), "S%04zu", i);
		large_codes[i] = names[i];
	}
	body[len++] = '[';
	for (i = 0; i < N; i++) {
		/* A fixed permutation (7919 is prime to N): order is not sorted. */
		size_t k = (i * 7919) % N, code = k % NCODES, hour = k / NCODES;
		time_t at = (time_t)(FROM + (int64_t)hour * 3600);
		struct tm tm;
		char ts[32];

		gmtime_r(&at, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
		len += (size_t)snprintf(
		    body + len, cap - len,
		    "%s{\"time\":\"%s\",\"ext_ref_code\":\"%s\",\"num_tickets\":%zu}", i ? "," : "",
		    ts, names[code], k);
	}
	body[len++] = ']';
	/* Speed is measured by make bench, not asserted here. */
	assert_int_equal(val_validate(body, len, &req, &r), 0);
	assert_false(r.refused);
	assert_int_equal(r.received, N);
	assert_int_equal(r.nrecords, N);
	assert_int_equal(r.nrefusals, 0);
	for (i = 0; i < (size_t)N; i++) {
		const struct val_record *rec = &r.records[i];

		if (rec->code != i / NHOURS || rec->hour != FROM + (int64_t)(i % NHOURS) * 3600 ||
		    rec->num_tickets != (int32_t)((i % NHOURS) * NCODES + i / NHOURS))
			fail_msg("large: record %zu out of order or wrong", i);
	}
	val_result_free(&r);

	/* Every record doubled: sorting finds each pair without pairwise compare. */
	body[len - 1] = ',';
	memcpy(body + len, body + 1, len - 2);
	len = 2 * len - 2;
	body[len++] = ']';
	assert_int_equal(val_validate(body, len, &req, &r), 0);
	assert_int_equal(r.nrecords, 0);
	assert_int_equal(r.nrefusals, 2 * N);
	for (i = 0; i < r.nrefusals; i++) {
		if (r.refusals[i].reason != VAL_DUPLICATE || r.refusals[i].index != i)
			fail_msg("large doubled: refusal %zu is not a duplicate in order", i);
	}
	val_result_free(&r);
	free(body);
}

static void test_free_accepts_zeroed_and_null(void **state)
{
	struct val_result r;

	(void)state;
	memset(&r, 0, sizeof(r));
	val_result_free(&r);
	val_result_free(NULL);
	assert_int_equal(val_validate("[]", 2, &req_past, &r), 0);
	val_result_free(&r);
	val_result_free(&r); /* freeing leaves it zeroed: twice is harmless */
}

static void test_reason_names(void **state)
{
	(void)state;
	assert_string_equal(val_reason_name(VAL_NOT_OBJECT), "not_an_object");
	assert_string_equal(val_reason_name(VAL_STRING_NUL), "string_has_nul");
	assert_string_equal(val_reason_name(VAL_TIME_NO_OFFSET), "time_without_offset");
	assert_string_equal(val_reason_name(VAL_UNKNOWN_CODE), "unknown_ext_ref_code");
	assert_string_equal(val_reason_name(VAL_TICKETS_TOO_LARGE), "num_tickets_too_large");
	assert_string_equal(val_reason_name(VAL_DUPLICATE), "duplicate");
}

int main(void)
{
	static const struct CMUnitTest extra[] = {
	    cmocka_unit_test(test_json_text_is_raw),
	    cmocka_unit_test(test_json_text_made_safe),
	    cmocka_unit_test(test_json_text_truncated),
	    cmocka_unit_test(test_not_nul_terminated),
	    cmocka_unit_test(test_large),
	    cmocka_unit_test(test_token_masked_in_every_quote),
	    cmocka_unit_test(test_free_accepts_zeroed_and_null),
	    cmocka_unit_test(test_reason_names),
	};
	static struct CMUnitTest tests[ARRAY_LEN(cases) + ARRAY_LEN(extra)];
	size_t i;

	for (i = 0; i < ARRAY_LEN(cases); i++) {
		tests[i].name = cases[i].name;
		tests[i].test_func = run_case;
		tests[i].initial_state = &cases[i];
	}
	for (i = 0; i < ARRAY_LEN(extra); i++)
		tests[ARRAY_LEN(cases) + i] = extra[i];
	return _cmocka_run_group_tests("validate", tests, ARRAY_LEN(tests), NULL, NULL);
}
