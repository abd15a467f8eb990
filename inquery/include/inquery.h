/*
 * inquery.h: ask inlookup from C (libinquery).
 *
 * A drop-in for IndiMail's inquery(3): the same call, the same return conventions and the
 * same globals, against inlookup or IndiMail's own daemon (the wire protocol is the same).
 * Link with `pkg-config --cflags --libs inquery` (or -linquery).
 *
 * Where the daemon is, and how long to wait, come from the environment on every call, as
 * in IndiMail:
 *   INFIFO       request FIFO: absolute or ./relative as given, else a name in INFIFODIR
 *                (default "infifo"); instances NAME.1 .. NAME.N are found and one chosen
 *                at random
 *   INFIFODIR    directory of a relative INFIFO (default /run/indimail/inlookup)
 *   FIFOTMPDIR   where reply FIFOs are made (default /tmp); FIFO_MODE their mode (0660)
 *   CONTROLDIR   timeoutread / timeoutwrite, in seconds (default 4 each)
 *   INQUERY_FALLBACK=1
 *                when no daemon serves the FIFO, answer from MySQL directly (MYSQL_HOST,
 *                MYSQL_USER, MYSQL_PASSWD, MYSQL_DATABASE ... or CONTROLDIR/host.mysql),
 *                counted by inquery_fallbacks(). Off by default.
 */
#ifndef INQUERY_H
#define INQUERY_H

#include <pwd.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Query types: IndiMail's values (indimail.h), defined here unless already defined. */
#ifndef USER_QUERY
#define USER_QUERY   1 /* int *: 0 active, 1 absent, 2 inactive, 3 over quota, 4 alias */
#define RELAY_QUERY  2 /* int *: 1 may relay (POP/IMAP-before-SMTP from ip), 0 not; needs ip */
#define PWD_QUERY    3 /* struct passwd *: pw_name is the local part; pw_shell the quota */
#define HOST_QUERY   4 /* char *: "domain:mailstore-host:port" */
#define ALIAS_QUERY  5 /* char *: the alias lines, each ending in '\n'; "" when none */
#define LIMIT_QUERY  6 /* struct vlimits *: the domain's limits (a user: their domain's) */
#define DOMAIN_QUERY 7 /* char *: the real domain behind an alias domain, or the input */
#endif

/*
 * The LIMIT answer: IndiMail's struct vlimits, field for field, as the daemon sends it
 * (x86-64 Linux: 7 longs at 0, 4 uint64s at 56, 17 shorts at 88, padded to 128 bytes).
 * A program that includes IndiMail's own vlimits.h defines INQUERY_NO_VLIMITS first.
 */
#ifndef INQUERY_NO_VLIMITS
struct vlimits {
	long     domain_expiry;      /* unix time, -1: never */
	long     passwd_expiry;      /* unix time, -1: never */
	long     maxpopaccounts;     /* -1: unlimited */
	long     maxaliases;
	long     maxforwards;
	long     maxautoresponders;
	long     maxmailinglists;
	uint64_t diskquota;          /* bytes */
	uint64_t maxmsgcount;
	uint64_t defaultquota;       /* signed in the table: a negative value as its bits */
	uint64_t defaultmaxmsgcount;
	short    disable_pop;        /* 1: disabled */
	short    disable_imap;
	short    disable_dialup;
	short    disable_passwordchanging;
	short    disable_webmail;
	short    disable_relay;
	short    disable_smtp;
	short    perm_account;       /* bits: 1 deny create, 2 deny modify, 4 deny delete */
	short    perm_alias;
	short    perm_forward;
	short    perm_autoresponder;
	short    perm_maillist;
	short    perm_maillist_users;
	short    perm_maillist_moderators;
	short    perm_quota;
	short    perm_defaultquota;
	short    limit_type;         /* 0: defaults (no row), 1: the domain's row */
};
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && defined(__x86_64__)
_Static_assert(sizeof(struct vlimits) == 128, "struct vlimits must be 128 bytes");
#endif
#endif

/* IndiMail's globals, set by inquery() (never by inquery_r()). */
extern int userNotFound; /* 1: PWD, HOST or LIMIT found nothing (the call returned NULL) */
extern int is_inactive;  /* after PWD: 1 when the user is in the inactive table */

/*
 * inquery: ask one question; IndiMail's inquery(3).
 *
 * Returns a pointer into storage of the calling thread, valid until its next inquery():
 *   USER_QUERY, RELAY_QUERY   int *
 *   PWD_QUERY                 struct passwd * (strings in the same storage)
 *   LIMIT_QUERY               struct vlimits *
 *   HOST, ALIAS, DOMAIN_QUERY char *
 * Returns NULL when
 *   - nothing was found (PWD: no such user; HOST: no mail store; LIMIT: a bare domain with
 *     no limits row): userNotFound = 1 and errno = 0;
 *   - the query failed: userNotFound = 0 and errno says why:
 *       EINVAL     unknown query_type, NULL email, RELAY_QUERY without ip, a bad string
 *       ENXIO      no daemon serves the FIFO (missing, or nobody reading it)
 *       ETIMEDOUT  no reply within timeoutread (or the request not taken in timeoutwrite)
 *       EIO        the daemon answered with an error (its MySQL failed), or MySQL failed
 *                  in the fallback  (IndiMail sets errno 0 here)
 *       EPROTO     the reply was not in the query type's format
 *       other      creating the reply FIFO failed (EACCES, ENOSPC, ...)
 *     inquery_error() describes it in words.
 * ip is used by RELAY_QUERY only; pass NULL or "" otherwise.
 */
void *inquery(char query_type, char *email, char *ip);

/*
 * The answer of inquery_r(). Strings point into the caller's buffer.
 */
struct inquery_result {
	int           status;         /* USER: 0-4 as above; RELAY: 1 or 0; others: 0 */
	int           user_not_found; /* 1: PWD, HOST or LIMIT found nothing */
	int           is_inactive;    /* PWD: 1 when from the inactive table */
	struct passwd pw;             /* PWD */
	struct vlimits limits;        /* LIMIT */
	char         *text;           /* HOST, ALIAS, DOMAIN: NUL-terminated */
};

/* A buffer of this size holds the strings of any answer (one reply is at most PIPE_BUF). */
#define INQUERY_BUFSIZE 4096

/*
 * inquery_r: re-entrant inquery(), for threaded programs.
 *
 * Writes the answer into *result and its strings into buf (buflen bytes). Touches neither
 * userNotFound nor is_inactive; errno is unspecified afterwards.
 * Returns 0 when answered (check result->user_not_found), or an errno value: those listed
 * for inquery(), and ERANGE when buf is too small (INQUERY_BUFSIZE always suffices).
 *
 *   struct inquery_result r;
 *   char buf[INQUERY_BUFSIZE];
 *   int rc = inquery_r(PWD_QUERY, "alice@example.com", NULL, &r, buf, sizeof buf);
 *   if (rc) fprintf(stderr, "inquery: %s\n", strerror(rc));
 *   else if (r.user_not_found) puts("no such user");
 *   else printf("%s lives in %s\n", r.pw.pw_name, r.pw.pw_dir);
 */
int inquery_r(char query_type, const char *email, const char *ip,
		struct inquery_result *result, char *buf, size_t buflen);

/* The calling thread's last failure in words ("" before any); valid until its next one. */
const char *inquery_error(void);

/* How many queries, in this process, the MySQL fallback (INQUERY_FALLBACK) answered. */
unsigned long inquery_fallbacks(void);

/* sizeof(struct inquery_result) as the library was built: compare to catch a stale header. */
size_t inquery_result_size(void);

#ifdef __cplusplus
}
#endif

#endif /* INQUERY_H */
