# ksi-salesd — `make` builds build/ksi-salesd; `make check` builds and runs
# every test under AddressSanitizer and UBSan; `make demo` shows it working.
# Both install missing Debian packages first (`make deps`).

VERSION := 0.1.0

PKGS := libcurl libcjson libpq libsystemd libmicrohttpd librnp
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lev -lm

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wformat=2 -Wvla -Wpointer-arith -Wundef
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=gnu11 $(WARN) -D_GNU_SOURCE -DKSI_VERSION='"$(VERSION)"' \
	-Iinclude -Ibuild/gen $(PKG_CFLAGS) $(CPPFLAGS) $(CFLAGS)
SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

MODULE_SRCS := $(filter-out src/main.c,$(wildcard src/*.c))
MIGRATIONS := $(sort $(wildcard src/migrations/*.sql))
REL_OBJS := $(MODULE_SRCS:src/%.c=build/rel/%.o) build/rel/migrations.o
SAN_OBJS := $(MODULE_SRCS:src/%.c=build/san/%.o) build/san/migrations.o
# test_db_oom needs a database: tests/integration/db_oom.sh runs it, not `make unit`.
DB_UNIT_TESTS := build/san/test_db_oom build/san/test_dbq
UNIT_TESTS := $(filter-out $(DB_UNIT_TESTS),$(patsubst tests/unit/%.c,build/san/%,$(wildcard tests/unit/test_*.c)))

.PHONY: alert-tests bench-metrics all deps check unit fuzz fuzz-smoke integration systemd-check valgrind demo bench bench-sales soak chaos chaos-smoke install uninstall deb deb-install-test man-check clean format format-check lint
all: build/ksi-salesd

deps:
	@sh tests/lib/deps.sh

build/gen/migrations.c: $(MIGRATIONS) src/migrations/embed.sh
	@mkdir -p $(@D)
	sh src/migrations/embed.sh $(MIGRATIONS) > $@.tmp && mv $@.tmp $@

build/rel/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<
build/san/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SAN) -MMD -MP -c -o $@ $<
build/rel/migrations.o: build/gen/migrations.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<
build/san/migrations.o: build/gen/migrations.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SAN) -c -o $@ $<

# LDFLAGS: a package build passes dpkg-buildflags' hardening (relro, now).
build/ksi-salesd: build/rel/main.o $(REL_OBJS)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)
build/san/ksi-salesd: build/san/main.o $(SAN_OBJS)
	$(CC) $(ALL_CFLAGS) $(SAN) -o $@ $^ $(PKG_LIBS)

# Each unit test links only the modules it tests, so one module's work in
# progress never breaks another's tests.
# The validator's files: the response (validate.c), the record rules
# (validate_record.c) and the raw-JSON scanner (jscan.c).
VAL_MODULES := validate validate_record jscan
# The isotime module's files: ISO 8601 (isotime.c) and zones (isotime_tz.c).
ISO_MODULES := isotime isotime_tz
test_isotime_MODULES := $(ISO_MODULES)
test_window_MODULES := window $(ISO_MODULES)
test_validate_MODULES := $(VAL_MODULES) $(ISO_MODULES) sbuf mask
# The config module's files: the key table and file (config.c), the value
# parsers (config_values.c).
CONFIG_MODULES := config config_values
test_config_MODULES := $(CONFIG_MODULES) log jsonw
# A seam to make getline fail as it does out of memory (at -O2 glibc
# inlines getline into __getdelim).
test_config_LDFLAGS := -Wl,--wrap=getline,--wrap=__getdelim
test_http_MODULES := http window $(ISO_MODULES) $(CONFIG_MODULES) log jsonw mask
test_schedule_MODULES := schedule
test_mask_MODULES := mask
test_tokens_MODULES := tokens
test_stats_MODULES := stats
# The status layout alone: pure, with a width (status.c does the I/O).
test_status_MODULES := status_layout jsonw sbuf
test_metrics_MODULES := metrics stats sbuf log jsonw
test_janitor_MODULES := janitor log jsonw
# The `janitor` command's report alone: pure (janitor_command.c does the I/O).
test_janitor_layout_MODULES := janitor_layout jsonw sbuf
# sd_journal_sendv is a link-time fake in the test (it wins over libsystemd's).
test_log_MODULES := log jsonw
# And access() of journald's socket, which the test decides.
test_log_LDFLAGS := -Wl,--wrap=access
# The poller alone: http, dbq and db's outcome names are link-time fakes
# in the test, so it never links http.o, dbq.o or the db files.
test_poller_MODULES := poller $(VAL_MODULES) $(ISO_MODULES) sbuf window mask stats log jsonw connector
test_validate_oom_MODULES := $(VAL_MODULES) $(ISO_MODULES) sbuf mask
test_validate_oom_LDFLAGS := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc
# The probe module's files (src/probe*.c).
PROBE_MODULES := probe probe_judge probe_report probe_command
test_probe_MODULES := $(PROBE_MODULES) $(VAL_MODULES) $(ISO_MODULES) window http $(CONFIG_MODULES) log jsonw sbuf mask
# The database module's files (src/db_*.c).
DB_MODULES := db_conn db_lease db_write db_requests db_health db_tokens stats tokens db_maint
# The writer under allocation failure: db and what it links (connector
# needs http and isotime, http needs config; validate for the reason names).
test_db_oom_MODULES := $(DB_MODULES) sbuf log jsonw connector http $(CONFIG_MODULES) $(ISO_MODULES) $(VAL_MODULES) migrations mask
test_dbq_MODULES := dbq $(DB_MODULES) sbuf log jsonw connector http $(CONFIG_MODULES) $(ISO_MODULES) $(VAL_MODULES) migrations mask
test_db_oom_LDFLAGS := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup
.SECONDEXPANSION:
build/san/test_%: tests/unit/test_%.c $$(addprefix build/san/,$$(addsuffix .o,$$(test_$$*_MODULES)))
	$(CC) $(ALL_CFLAGS) $(SAN) $(shell pkg-config --cflags cmocka) -o $@ $^ \
		$(PKG_LIBS) $(shell pkg-config --libs cmocka) $(test_$*_LDFLAGS)

# tests/integration/tz.sh's helper: the TZif reader's offsets, to compare
# with PostgreSQL's.
build/san/tz_offsets: tests/integration/tz_offsets.c build/san/isotime.o build/san/isotime_tz.o
	$(CC) $(ALL_CFLAGS) $(SAN) -o $@ $^

# The fake customer API (tests, demo, bench).
build/fakeapi: tests/fakeapi/fakeapi.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Iinclude -o $@ $< $(shell pkg-config --libs libmicrohttpd gnutls) -lz -lpthread

# libFuzzer targets (clang): the validator, the validator against a strict
# reference parser, the ISO 8601 parser, the TZif reader.
FUZZ_FLAGS := -std=gnu11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=all -Iinclude $(shell pkg-config --cflags libcjson 2>/dev/null)
build/fuzz/fuzz_validate: tests/fuzz/fuzz_validate.c src/validate.c src/validate_record.c src/jscan.c src/isotime.c src/isotime_tz.c src/sbuf.c src/mask.c
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) -o $@ $^ -lcjson
# The differential target links jansson, the strict reference parser (never
# the daemon).
build/fuzz/fuzz_validate_diff: tests/fuzz/fuzz_validate_diff.c src/validate.c src/validate_record.c src/jscan.c src/isotime.c src/isotime_tz.c src/sbuf.c src/mask.c
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) $(shell pkg-config --cflags jansson 2>/dev/null) -o $@ $^ -lcjson \
		$(shell pkg-config --libs jansson 2>/dev/null)
build/fuzz/fuzz_isotime: tests/fuzz/fuzz_isotime.c src/isotime.c
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) -o $@ $^
# The TZif reader and POSIX TZ rules, from bytes.
build/fuzz/fuzz_tzif: tests/fuzz/fuzz_tzif.c src/isotime.c src/isotime_tz.c
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) -o $@ $^
FUZZ_TARGETS := build/fuzz/fuzz_validate build/fuzz/fuzz_validate_diff build/fuzz/fuzz_isotime build/fuzz/fuzz_tzif
FUZZ_SECONDS ?= 60
fuzz: $(FUZZ_TARGETS)
	@sh tests/fuzz/run.sh $(FUZZ_SECONDS)
# The short run `make check` includes.
fuzz-smoke: $(FUZZ_TARGETS)
	@sh tests/fuzz/run.sh 10

unit: $(UNIT_TESTS)
	@sh tests/lib/run-unit.sh $(UNIT_TESTS)

integration: build/san/ksi-salesd build/fakeapi build/san/tz_offsets $(DB_UNIT_TESTS)
	@rc=0; for s in $(INTEGRATION_SUITES); do \
		bash tests/integration/$$s.sh build/san/ksi-salesd build/fakeapi || rc=1; done; exit $$rc

systemd-check: build/ksi-salesd
	@sh tests/systemd/check.sh build/ksi-salesd

# The man pages render without warnings and document every key.
man-check:
	@sh tests/man/check.sh

# The integration suites with every run of the release binary under
# valgrind: any memory error or leak fails the run it happens in. db_oom
# runs build/san/test_db_oom and dbq build/san/test_dbq (ASan and LSan,
# never under valgrind) either way, tz build/san/tz_offsets.
INTEGRATION_SUITES := run daemon tools probe views requests faults db_oom tokens dbq tz dbcontract logs status metrics https crypt retention janitor claims
VALGRIND := valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
	--errors-for-leak-kinds=definite,indirect --suppressions=tests/valgrind.supp
valgrind: build/ksi-salesd build/fakeapi build/san/tz_offsets $(DB_UNIT_TESTS)
	@rc=0; for s in $(INTEGRATION_SUITES); do \
		KSI_WRAP="$(VALGRIND)" bash tests/integration/$$s.sh build/ksi-salesd build/fakeapi || rc=1; \
	done; exit $$rc

check: deps
	@$(MAKE) --no-print-directory format-check lint all unit alert-tests fuzz-smoke integration chaos-smoke systemd-check man-check

# The chaos soak (README "Chaos soak"): faults drawn from SEED for DURATION
# seconds over three daemons, then quiet, then the checker. The seed is
# printed first and the verdict last. chaos-smoke is the two short seeds
# `make check` runs: between them every kind of fault the schedule draws
# (28: API faults, kill -9, a fast restart, a connector disabled and
# enabled, a store unlinked; 68: an immediate restart, locks, SIGHUP good
# and bad, a store linked and re-coded; both: SIGSTOP, a new connector).
SEED ?= $(shell od -An -N2 -tu2 /dev/urandom | tr -d ' ')
DURATION ?= 300
CHAOS_SMOKE_SEEDS := 28 68
chaos: deps
	@$(MAKE) --no-print-directory build/san/ksi-salesd build/fakeapi
	@bash tests/chaos/run.sh build/san/ksi-salesd build/fakeapi $(SEED) $(DURATION)
# The seeds run side by side (each has its own PostgreSQL, fake API and
# ports; a run mostly sleeps between faults), so the smoke takes as long as
# the slower seed, not their sum; each one's output is printed whole, in
# order, once both are done.
chaos-smoke: build/san/ksi-salesd build/fakeapi
	@pids=; for s in $(CHAOS_SMOKE_SEEDS); do \
		bash tests/chaos/run.sh build/san/ksi-salesd build/fakeapi $$s 60 \
			>build/chaos-smoke-$$s.out 2>&1 & pids="$$pids $$!"; done; \
	rc=0; for p in $$pids; do wait $$p || rc=1; done; \
	for s in $(CHAOS_SMOKE_SEEDS); do cat build/chaos-smoke-$$s.out; done; exit $$rc

# The Prometheus alert rules, checked and unit-tested by promtool (Debian's
# prometheus package).
alert-tests:
	@promtool check rules etc/prometheus/ksi-salesd-alerts.yml
	@promtool test rules etc/prometheus/ksi-salesd-alerts.test.yml

demo: deps
	@$(MAKE) --no-print-directory build/ksi-salesd build/fakeapi
	@bash tests/demo.sh

bench: deps
	@$(MAKE) --no-print-directory build/ksi-salesd build/fakeapi
	@bash tests/bench/run.sh
	@bash tests/bench/sales_scale.sh build/ksi-salesd

# Only the sales_hourly-at-scale scenario (BENCH_SALES_ROWS rows).
bench-sales: deps
	@$(MAKE) --no-print-directory build/ksi-salesd
	@bash tests/bench/sales_scale.sh build/ksi-salesd

# What a /metrics scrape costs the daemon, at 10,000 connectors.
bench-metrics: deps
	@$(MAKE) --no-print-directory build/ksi-salesd
	@bash tests/bench/metrics.sh

soak: deps
	@$(MAKE) --no-print-directory build/ksi-salesd build/fakeapi
	@bash tests/soak/run.sh

# clang-format is pinned: another version lays code out differently, and
# `make check` fails on any file this one would change (`make format`
# fixes them).
CLANG_FORMAT := clang-format-14
FORMAT_FILES = $(wildcard src/*.c src/*.h include/*.h tests/unit/*.c tests/fakeapi/*.c tests/fuzz/*.c tests/integration/*.c)
format:
	$(CLANG_FORMAT) -i $(FORMAT_FILES)
format-check:
	@$(CLANG_FORMAT) --dry-run -Werror $(FORMAT_FILES) && echo "format: $(words $(FORMAT_FILES)) files, each as $(CLANG_FORMAT) lays it out"

# cppcheck does not read system headers, and cannot parse <sys/queue.h>'s
# FOREACH macros without them: that one header is included explicitly.
QUEUE_H := $(firstword $(wildcard /usr/include/sys/queue.h /usr/include/*/sys/queue.h))
lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability \
		--inline-suppr --include=$(QUEUE_H) \
		-Iinclude src tests/fakeapi

# `make install` for people who build from source; the Debian package
# (`make deb`) runs the same target into its staging directory. PREFIX,
# SYSCONFDIR and DESTDIR as usual; UNITDIR and SYSUSERSDIR are where systemd
# looks under PREFIX (Debian: /lib/systemd/system, /usr/lib/sysusers.d).
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share/ksi-salesd
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
MAN_PAGES := etc/man/ksi-salesd.8 etc/man/ksi-salesd.conf.5
# Dashboards and alert rules, whichever exist (installed for Grafana and
# Prometheus to pick up; nothing reads them from there by itself).
SHARE_FILES := $(wildcard etc/grafana/*.json etc/prometheus/*.yml etc/prometheus/*.yaml)
CONF := $(DESTDIR)$(SYSCONFDIR)/ksi-salesd/ksi-salesd.conf
install: build/ksi-salesd
	install -D -m 0755 build/ksi-salesd $(DESTDIR)$(BINDIR)/ksi-salesd
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5
	sed 's|/usr/local/bin/ksi-salesd|$(BINDIR)/ksi-salesd|' systemd/ksi-salesd.service \
		> $(DESTDIR)$(UNITDIR)/ksi-salesd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/ksi-salesd.service
	install -D -m 0644 systemd/ksi-salesd.sysusers $(DESTDIR)$(SYSUSERSDIR)/ksi-salesd.conf
	install -m 0644 etc/man/ksi-salesd.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 etc/man/ksi-salesd.conf.5 $(DESTDIR)$(MANDIR)/man5/
	$(foreach f,$(SHARE_FILES),install -D -m 0644 $(f) $(DESTDIR)$(DATADIR)/$(f:etc/%=%) &&) true
	install -D -m 0644 etc/ksi-salesd.conf $(DESTDIR)$(DATADIR)/ksi-salesd.conf
	@# The configuration is the operator's: installed only where there is none,
	@# never overwritten. Installing into this system (no DESTDIR), the user
	@# is created and gets the file's group, as the package's postinst does.
	@if [ -e $(CONF) ]; then echo "keeping $(CONF) (the shipped one is in $(DESTDIR)$(DATADIR))"; \
	else install -D -m 0640 etc/ksi-salesd.conf $(CONF) && echo "installed $(CONF)"; fi
	@if [ -z "$(DESTDIR)" ]; then systemd-sysusers $(SYSUSERSDIR)/ksi-salesd.conf && \
		chgrp _ksi-salesd $(CONF) && echo "next: systemctl daemon-reload (systemd/README.md)"; fi

# Removes what install installed; the configuration file only if it is
# still the shipped one (an edited one is the operator's to delete).
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/ksi-salesd $(DESTDIR)$(UNITDIR)/ksi-salesd.service \
		$(DESTDIR)$(SYSUSERSDIR)/ksi-salesd.conf \
		$(DESTDIR)$(MANDIR)/man8/ksi-salesd.8 $(DESTDIR)$(MANDIR)/man5/ksi-salesd.conf.5
	@if [ -f $(CONF) ] && cmp -s $(CONF) etc/ksi-salesd.conf; then rm -f $(CONF); \
	elif [ -f $(CONF) ]; then echo "keeping $(CONF): it was changed"; fi
	rm -rf $(DESTDIR)$(DATADIR)
	@rmdir $(DESTDIR)$(SYSCONFDIR)/ksi-salesd 2>/dev/null || true

# The Debian package, built from a copy of the tree under build/deb so that
# nothing lands outside build/ (dpkg-buildpackage writes to the parent
# directory): build/deb/ksi-salesd_VERSION_ARCH.deb, then lintian on it.
# Offline: the build-dependencies come from Debian (debian/control).
DEB_SRC := build/deb/src/ksi-salesd-$(VERSION)
deb:
	@test "$$(dpkg-parsechangelog -S Version)" = "$(VERSION)" || \
		{ echo "debian/changelog's version is not $(VERSION): add an entry (dch -v $(VERSION))" >&2; exit 1; }
	rm -rf build/deb && mkdir -p $(DEB_SRC)
	tar --exclude=./build --exclude=./.git -cf - . | tar -C $(DEB_SRC) -xf -
	cd $(DEB_SRC) && dpkg-buildpackage -us -uc -b
	mv build/deb/src/*.deb build/deb/src/*.changes build/deb/src/*.buildinfo build/deb/
	rm -rf build/deb/src
	lintian --fail-on error --display-info build/deb/ksi-salesd_$(VERSION)_*.changes && echo "lintian: no error"
	@ls build/deb/*.deb

# Installs the package into this machine, checks it, runs it, purges it
# (root, a throwaway machine: CI runs it in .ci/run).
deb-install-test: deb
	bash tests/deb/install.sh build/deb/ksi-salesd_$(VERSION)_*.deb

clean:
	rm -rf build

-include $(wildcard build/rel/*.d build/san/*.d)
