/*
 * The IMAP calls of libinquery from C, built by tests/e2e/imap_clients.rs against inquery.h
 * and libinquery, asking a real inlookup in front of a real Dovecot. The password comes from
 * the environment (CABI_PASSWORD), never from argv.
 *
 *   cabi_imap session USER SESSION IP   login, commands, logout, a reused login, auth
 *   cabi_imap wrong USER                a wrong password: auth, then login
 *   cabi_imap threads N ROUNDS USER     N threads, each its own session, ROUNDS of login,
 *                                       SELECT, logout: every login after the first reused
 *
 * One line per step; exit status 0 unless the program itself found something wrong.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inquery.h"

static const char *
errname(int e)
{
	switch (e) {
	case 0: return "0";
	case EINVAL: return "EINVAL";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EACCES: return "EACCES";
	case ERANGE: return "ERANGE";
	case ENXIO: return "ENXIO";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EIO: return "EIO";
	default: return strerror(e);
	}
}

static const char *
status(int rc)
{
	switch (rc) {
	case INQUERY_IMAP_OK: return "OK";
	case INQUERY_IMAP_NO: return "NO";
	case INQUERY_IMAP_BAD: return "BAD";
	default: return "failed";
	}
}

/* The tag and status of the last line of responses (the completion): "a1 OK". */
static void
completion(char *out, size_t n, const char *resp, size_t len)
{
	const char *end = resp + len, *line = resp, *p;
	size_t words = 0, at = 0;

	for (p = resp; p + 2 < end; p++)
		if (p[0] == '\r' && p[1] == '\n')
			line = p + 2;
	for (p = line; p < end && at + 1 < n && *p != '\r'; p++) {
		if (*p == ' ' && ++words == 2)
			break;
		out[at++] = *p;
	}
	out[at] = 0;
}

/* One command, shown by its tag: its status, whether outlen matched the NUL-terminated
 * text, the completion, and whether the responses hold look_for. */
static int
command(const char *session, const char *cmd, const char *look_for)
{
	static char buf[INQUERY_IMAP_BUFSIZE];
	char done[64];
	size_t len = 0;
	int tag = (int) strcspn(cmd, " ");
	int rc = inquery_imap_command(session, cmd, buf, sizeof buf, &len);

	if (rc < 0) {
		printf("%.*s: -1 errno=%s code=%d\n", tag, cmd, errname(errno), inquery_imap_errcode());
		return rc;
	}
	completion(done, sizeof done, buf, len);
	printf("%.*s: %s outlen=%s last=\"%s\"%s\n", tag, cmd, status(rc),
	       len == strlen(buf) ? "strlen" : "other", done,
	       look_for ? (strstr(buf, look_for) ? " found" : " missing") : "");
	return rc;
}

static int
session(const char *user, const char *key, const char *ip)
{
	const char *pw = getenv("CABI_PASSWORD");
	char small[8];
	size_t len = 0;
	int reused = -1, parked = -1, rc;

	if (!pw)
		return 100;
	rc = inquery_imap_login(user, pw, key, ip, &reused);
	printf("login: %d reused=%d\n", rc, reused);
	if (rc)
		return 1;
	command(key, "a1 SELECT INBOX", " EXISTS\r\n");
	command(key, "a2 CAPABILITY", "IMAP4rev1");
	command(key, "a3 SELECT NoSuchBox", NULL);
	command(key, "a4 LOGOUT", NULL);
	command(key, "a5 NOOP\r\na6 NOOP", NULL);
	rc = inquery_imap_command(key, "a7 CAPABILITY", small, sizeof small, &len);
	printf("small buffer: %d errno=%s kept=\"%s\" outlen>%zu=%d\n", rc, errname(errno), small,
	       sizeof small, len > sizeof small);
	rc = inquery_imap_logout(key, &parked);
	printf("logout: %d parked=%d\n", rc, parked);
	command(key, "a8 NOOP", NULL);
	rc = inquery_imap_login(user, pw, key, ip, &reused);
	printf("login again: %d reused=%d\n", rc, reused);
	command(key, "a9 NOOP", NULL);
	rc = inquery_imap_logout(key, NULL);
	printf("logout: %d\n", rc);
	rc = inquery_imap_logout(key, &parked);
	printf("logout again: %d errno=%s code=%d\n", rc, errname(errno), inquery_imap_errcode());
	printf("auth: %d\n", inquery_imap_auth(user, pw, ip));
	return 0;
}

static int
wrong(const char *user)
{
	const char *pw = getenv("CABI_PASSWORD");
	const char *e;
	int reused = -1, rc;

	if (!pw)
		return 100;
	printf("auth: %d\n", inquery_imap_auth(user, pw, NULL));
	rc = inquery_imap_login(user, pw, "wrong-1", NULL, &reused);
	printf("login: %d errno=%s code=%d reused=%d\n", rc, errname(errno), inquery_imap_errcode(),
	       reused);
	e = inquery_error();
	printf("error says authentication: %d\n", strstr(e, "uthentication") != NULL);
	return 0;
}

struct worker {
	const char *user;
	int         index;
	int         rounds;
	int         reused;
	int         failures;
	char        first[512];
};

static void *
work(void *arg)
{
	struct worker *w = arg;
	const char *pw = getenv("CABI_PASSWORD");
	static char bufs[16][INQUERY_IMAP_BUFSIZE];
	char *buf = bufs[w->index];
	char key[32], cmd[64], done[64], want[64];
	size_t len;

	snprintf(key, sizeof key, "thread-%d", w->index);
	for (int round = 0; round < w->rounds; round++) {
		int reused = 0, parked = 0, rc;

		if (inquery_imap_login(w->user, pw, key, NULL, &reused)) {
			if (!w->failures++)
				snprintf(w->first, sizeof w->first, "login: %s", inquery_error());
			continue;
		}
		w->reused += reused;
		snprintf(cmd, sizeof cmd, "t%dr%d SELECT INBOX", w->index, round);
		snprintf(want, sizeof want, "t%dr%d OK", w->index, round);
		rc = inquery_imap_command(key, cmd, buf, INQUERY_IMAP_BUFSIZE, &len);
		if (rc == INQUERY_IMAP_OK)
			completion(done, sizeof done, buf, len);
		if (rc != INQUERY_IMAP_OK || strcmp(done, want)) {
			if (!w->failures++)
				snprintf(w->first, sizeof w->first, "%s: rc %d, %s", cmd, rc,
					 rc < 0 ? inquery_error() : done);
		}
		if (inquery_imap_logout(key, &parked) || !parked) {
			if (!w->failures++)
				snprintf(w->first, sizeof w->first, "logout: %s", inquery_error());
		}
	}
	return NULL;
}

static int
threads(int n, int rounds, const char *user)
{
	pthread_t     t[16];
	struct worker w[16];
	int           reused = 0, failures = 0;

	if (n < 1 || n > 16 || !getenv("CABI_PASSWORD"))
		return 100;
	for (int i = 0; i < n; i++) {
		memset(&w[i], 0, sizeof w[i]);
		w[i].user = user;
		w[i].index = i;
		w[i].rounds = rounds;
		if (pthread_create(&t[i], NULL, work, &w[i]))
			return 1;
	}
	for (int i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		reused += w[i].reused;
		failures += w[i].failures;
		if (w[i].failures)
			printf("thread %d: %d failures, first %s\n", i, w[i].failures, w[i].first);
	}
	printf("threads=%d rounds=%d reused=%d failures=%d\n", n, rounds, reused, failures);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "session"))
		return session(argv[2], argv[3], argv[4]);
	if (argc == 3 && !strcmp(argv[1], "wrong"))
		return wrong(argv[2]);
	if (argc == 5 && !strcmp(argv[1], "threads"))
		return threads(atoi(argv[2]), atoi(argv[3]), argv[4]);
	fprintf(stderr, "usage: cabi_imap session USER SESSION IP | wrong USER | "
			"threads N ROUNDS USER\n");
	return 100;
}
