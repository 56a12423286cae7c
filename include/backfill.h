/* backfill: `ksi-salesd backfill --connector NAME --from T --to T` (SPEC §6):
 * fetches a past span in max_window requests, oldest first, with the same
 * transactional writes as the daemon, under the connector's lease so it
 * never races a running daemon. */
#ifndef KSI_BACKFILL_H
#define KSI_BACKFILL_H

struct cli;
struct cfg;

/* Exit codes: 0 done, 1 a request failed (or interrupted), 2 usage, 3 database. */
int backfill_command(const struct cli *cli, struct cfg *cfg);

#endif
