/*
 * inquery.h: ask inlookup from C (libinquery).
 *
 * A drop-in for IndiMail's inquery(3): the same call, the same return conventions and the
 * same globals, against inlookup or IndiMail's own daemon (the wire protocol is the same).
 * Beyond it, inquery_imap_*() use the IMAP sessions inlookup keeps (inlookup only).
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
 *   SHARED_CACHE the daemon's shared-memory cache (default: INFIFO's path plus ".cache"),
 *                read before asking over the FIFO: a hit costs a few memory reads and no
 *                system call; "off" asks every query over the FIFO. Mapped once per
 *                process; a missing or unreadable file is looked for again once a second.
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

/*
 * IMAP sessions kept by inlookup (docs/imap.md): log in once per session key, run commands
 * on the connection the daemon holds, log out (the daemon parks the connection for the
 * same user's next login), or only check a password. Every call is re-entrant and
 * thread-safe: results go to the caller's storage, errno, inquery_error() and
 * inquery_imap_errcode() are the calling thread's. Passwords are read in place, sent to the
 * daemon, and never logged or kept by the library.
 *
 * On failure each call returns -1 with errno set and inquery_imap_errcode() giving the
 * daemon's reason (INQUERY_IMAP_E_*, 0 when the request got no IMAP answer):
 *
 *   errno         inquery_imap_errcode()        meaning
 *   EINVAL        0                             a NULL argument, a string not UTF-8
 *   EINVAL        INQUERY_IMAP_E_BAD_REQUEST    the command is not exactly one command
 *   EPERM         INQUERY_IMAP_E_REFUSED        LOGIN, LOGOUT, STARTTLS, IDLE... are not passed on
 *   ENOENT        INQUERY_IMAP_E_NO_SESSION     nothing logged in for the session key: log in
 *   EBUSY         INQUERY_IMAP_E_BUSY           every connection is running a command
 *   EBUSY         INQUERY_IMAP_E_SESSION_BUSY   the session's connection is running one
 *   EACCES        INQUERY_IMAP_E_AUTH_FAILED    the IMAP server refused the login
 *   ECONNREFUSED  INQUERY_IMAP_E_CONNECT        the IMAP server cannot be reached
 *   EPROTO        INQUERY_IMAP_E_TLS            TLS failed (certificate, handshake, STARTTLS)
 *   EPROTO        INQUERY_IMAP_E_PROTOCOL       the server was out of step (session closed)
 *   ETIMEDOUT     INQUERY_IMAP_E_TIMEOUT        the server did not finish (session closed)
 *   ECONNRESET    INQUERY_IMAP_E_DISCONNECTED   the server closed the connection
 *   EMSGSIZE      INQUERY_IMAP_E_TOO_LARGE      the responses do not fit a reply (fetch in parts)
 *   ESHUTDOWN     INQUERY_IMAP_E_SHUTTING_DOWN  the daemon is stopping
 *   EIO           INQUERY_IMAP_E_OTHER          a reason this library does not know
 *   ENXIO, ETIMEDOUT, EIO, EPROTO  0            as for inquery(): no daemon, no reply in
 *                                               timeoutread, error reply (the daemon's IMAP
 *                                               queue is full), a malformed reply
 *   ERANGE        0                             inquery_imap_command(): buf too small
 *
 * inquery_error() has the message (for AUTH_FAILED, the server's text; never a password).
 * An IMAP login can take seconds (Dovecot delays a failed one by 2 s): give IMAP callers a
 * CONTROLDIR whose timeoutread allows for it.
 */
#define INQUERY_IMAP_E_BAD_REQUEST   1
#define INQUERY_IMAP_E_REFUSED       2
#define INQUERY_IMAP_E_NO_SESSION    3
#define INQUERY_IMAP_E_BUSY          4
#define INQUERY_IMAP_E_SESSION_BUSY  5
#define INQUERY_IMAP_E_AUTH_FAILED   6
#define INQUERY_IMAP_E_CONNECT       7
#define INQUERY_IMAP_E_TLS           8
#define INQUERY_IMAP_E_PROTOCOL      9
#define INQUERY_IMAP_E_TIMEOUT       10
#define INQUERY_IMAP_E_DISCONNECTED  11
#define INQUERY_IMAP_E_TOO_LARGE     12
#define INQUERY_IMAP_E_SHUTTING_DOWN 13
#define INQUERY_IMAP_E_OTHER         99

/* The tagged status of a command, as inquery_imap_command() returns it. */
#define INQUERY_IMAP_OK  0
#define INQUERY_IMAP_NO  1
#define INQUERY_IMAP_BAD 2

/* A buffer of this size holds any command's responses and the NUL (the daemon carries at
 * most 512 KiB of responses, and the caller's tag came in a request of at most 4096 bytes). */
#define INQUERY_IMAP_BUFSIZE (512 * 1024 + 4096)

/*
 * inquery_imap_login: a logged-in IMAP connection for session, a key the caller chooses
 * (a web session id, say; treat it as a secret). The daemon reuses the connection it holds
 * for exactly the same user, password, session and ip (NULL: ""), or connects to the user's
 * mail store and logs in. Returns 0, with *reused (when reused is not NULL) 1 when no new
 * IMAP login was needed; -1 on failure (EACCES: wrong user or password).
 */
int inquery_imap_login(const char *user, const char *password, const char *session,
		const char *ip, int *reused);

/*
 * inquery_imap_command: runs one IMAP command with the caller's own tag ("a1 SELECT INBOX";
 * literals inline: "a2 APPEND INBOX {5}\r\nhello") on the session's connection. The
 * command must fit one request (about 4 KB).
 *
 * Writes every byte the server sent for it into buf, as the server sent it (untagged
 * responses with their literals, continuation requests, and the tagged completion carrying
 * the caller's tag), then a NUL; *outlen (when outlen is not NULL) gets the number of bytes
 * before the NUL (the responses may hold NUL bytes of their own).
 *
 * Returns the tagged status: INQUERY_IMAP_OK, INQUERY_IMAP_NO or INQUERY_IMAP_BAD (a NO or
 * BAD is the server's answer, not a failure); -1 on failure.
 *
 * buf too small (buflen < the responses + 1): returns -1 with errno ERANGE; buf holds the
 * first buflen - 1 bytes and a NUL, *outlen the full length. The command did run and the
 * session is still logged in, but the rest of its responses is lost: do not repeat a
 * command that changes state. INQUERY_IMAP_BUFSIZE always suffices.
 */
int inquery_imap_command(const char *session, const char *command, char *buf, size_t buflen,
		size_t *outlen);

/*
 * inquery_imap_logout: ends the session. Its connection is reset and parked for the same
 * identity's next login (*parked = 1 when parked is not NULL), or closed (*parked = 0).
 * Returns 0, or -1 (ENOENT: no such session).
 */
int inquery_imap_logout(const char *session, int *parked);

/*
 * inquery_imap_auth: checks user and password (ip may be NULL), from the daemon's auth
 * cache or by a login at the user's mail store. Returns 1 valid, 0 invalid, -1 when the
 * check could not be made.
 */
int inquery_imap_auth(const char *user, const char *password, const char *ip);

/* The calling thread's last inquery_imap_* outcome: INQUERY_IMAP_E_*, or 0 after a success
 * or a failure that got no IMAP answer (then see errno). */
int inquery_imap_errcode(void);

#ifdef __cplusplus
}
#endif

#endif /* INQUERY_H */
