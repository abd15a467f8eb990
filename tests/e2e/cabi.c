/*
 * A C program of the kind IndiMail's callers are, built by tests/e2e/cabi.rs against
 * inquery.h and libinquery, asking a real inlookup.
 *
 *   cabi all            every kind through inquery(), one line per answer
 *   cabi r              the same questions through inquery_r()
 *   cabi threads N M    N threads, each asking every question M times with inquery_r(),
 *                       checking each answer against a first sequential run; and two
 *                       threads holding inquery() answers at once
 *   cabi down           one USER query, then inquery_error() and inquery_fallbacks()
 *
 * Exit status 0 unless the program itself found something wrong (then 1, with a reason).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inquery.h"

struct question {
	char        type;
	const char *email;
	const char *ip;
};

static const struct question QUESTIONS[] = {
	{USER_QUERY, "testuser@example.com", NULL},
	{USER_QUERY, "nobody@example.com", NULL},
	{USER_QUERY, "olduser@example.com", NULL},
	{USER_QUERY, "full@example.com", NULL},
	{USER_QUERY, "sales@example.com", NULL},
	{RELAY_QUERY, "alice@example.com", "192.0.2.10"},
	{RELAY_QUERY, "alice@example.com", "192.0.2.11"},
	{RELAY_QUERY, "alice@example.com", NULL},
	{PWD_QUERY, "alice@example.com", NULL},
	{PWD_QUERY, "olduser@example.com", NULL},
	{PWD_QUERY, "nobody@example.com", NULL},
	{HOST_QUERY, "testuser@example.com", NULL},
	{HOST_QUERY, "nobody@example.com", NULL},
	{ALIAS_QUERY, "sales@example.com", NULL},
	{ALIAS_QUERY, "alice@example.com", NULL},
	{LIMIT_QUERY, "example.com", NULL},
	{LIMIT_QUERY, "someone@example.net", NULL},
	{LIMIT_QUERY, "example.net", NULL},
	{DOMAIN_QUERY, "example.org", NULL},
	{DOMAIN_QUERY, "example.net", NULL},
	{9, "testuser@example.com", NULL},
};
#define NQUESTIONS (sizeof QUESTIONS / sizeof QUESTIONS[0])

static const char *
errname(int e)
{
	switch (e) {
	case 0: return "0";
	case EINVAL: return "EINVAL";
	case ENXIO: return "ENXIO";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EIO: return "EIO";
	case EPROTO: return "EPROTO";
	case ERANGE: return "ERANGE";
	default: return strerror(e);
	}
}

/* A string with its newlines shown as \n, in quotes. */
static void
quoted(char *out, size_t n, const char *s)
{
	size_t at = 0;

	if (at < n - 1)
		out[at++] = '"';
	for (; *s && at < n - 3; s++) {
		if (*s == '\n') {
			out[at++] = '\\';
			out[at++] = 'n';
		} else
			out[at++] = *s;
	}
	out[at++] = '"';
	out[at] = 0;
}

/* One answer as a line (without the question), from what inquery() returned. */
static void
format_answer(char *out, size_t n, char type, void *p, int not_found, int err, int inactive)
{
	char q[1024];

	if (!p) {
		snprintf(out, n, "NULL userNotFound=%d errno=%s", not_found, errname(err));
		return;
	}
	switch (type) {
	case USER_QUERY:
	case RELAY_QUERY:
		snprintf(out, n, "%d", *(int *) p);
		break;
	case PWD_QUERY: {
		struct passwd *pw = p;
		snprintf(out, n, "%s|%s|%u|%u|%s|%s|%s inactive=%d", pw->pw_name, pw->pw_passwd,
			 (unsigned) pw->pw_uid, (unsigned) pw->pw_gid, pw->pw_gecos, pw->pw_dir,
			 pw->pw_shell, inactive);
		break;
	}
	case LIMIT_QUERY: {
		struct vlimits *l = p;
		snprintf(out, n,
			 "pop=%ld aliases=%ld forwards=%ld diskquota=%llu defaultquota=%llu "
			 "imap=%d pop3=%d perm_quota=%d type=%d",
			 l->maxpopaccounts, l->maxaliases, l->maxforwards,
			 (unsigned long long) l->diskquota, (unsigned long long) l->defaultquota,
			 l->disable_imap, l->disable_pop, l->perm_quota, l->limit_type);
		break;
	}
	default:
		quoted(q, sizeof q, (char *) p);
		snprintf(out, n, "%s", q);
	}
}

/* inquery_r's answer in the same words as inquery()'s. */
static void
format_r(char *out, size_t n, const struct question *qn, int rc, struct inquery_result *r)
{
	void *p;

	if (rc) {
		format_answer(out, n, qn->type, NULL, 0, rc, 0);
		return;
	}
	if (r->user_not_found) {
		format_answer(out, n, qn->type, NULL, 1, 0, 0);
		return;
	}
	switch (qn->type) {
	case USER_QUERY:
	case RELAY_QUERY: p = &r->status; break;
	case PWD_QUERY: p = &r->pw; break;
	case LIMIT_QUERY: p = &r->limits; break;
	default: p = r->text;
	}
	format_answer(out, n, qn->type, p, 0, 0, r->is_inactive);
}

static int
all(void)
{
	char line[2048];

	for (size_t i = 0; i < NQUESTIONS; i++) {
		const struct question *qn = &QUESTIONS[i];
		void *p;
		int err;

		errno = 12345; /* inquery() must set it on every NULL */
		p = inquery(qn->type, (char *) qn->email, (char *) qn->ip);
		err = errno;
		format_answer(line, sizeof line, qn->type, p, userNotFound, err, is_inactive);
		printf("%d %s %s: %s\n", qn->type, qn->email, qn->ip ? qn->ip : "-", line);
	}
	return 0;
}

static int
ask_r(const struct question *qn, char *line, size_t n)
{
	struct inquery_result r;
	char buf[INQUERY_BUFSIZE];
	int rc = inquery_r(qn->type, qn->email, qn->ip, &r, buf, sizeof buf);

	format_r(line, n, qn, rc, &r);
	return rc;
}

static int
reentrant(void)
{
	char line[2048];
	struct inquery_result r;
	char tiny[8];
	int rc;

	if (inquery_result_size() != sizeof(struct inquery_result)) {
		printf("header and library disagree: %zu != %zu\n", inquery_result_size(),
		       sizeof(struct inquery_result));
		return 1;
	}
	for (size_t i = 0; i < NQUESTIONS; i++) {
		ask_r(&QUESTIONS[i], line, sizeof line);
		printf("%d %s %s: %s\n", QUESTIONS[i].type, QUESTIONS[i].email,
		       QUESTIONS[i].ip ? QUESTIONS[i].ip : "-", line);
	}
	rc = inquery_r(PWD_QUERY, "alice@example.com", NULL, &r, tiny, sizeof tiny);
	printf("small buffer: %s\n", errname(rc));
	return 0;
}

struct worker {
	int  rounds;
	int  mismatches;
	int  asked;
	char first[4200];
};

static char expected[NQUESTIONS][2048];

static void *
work(void *arg)
{
	struct worker *w = arg;
	char line[2048];

	for (int round = 0; round < w->rounds; round++) {
		for (size_t i = 0; i < NQUESTIONS; i++) {
			ask_r(&QUESTIONS[i], line, sizeof line);
			w->asked++;
			if (strcmp(line, expected[i])) {
				if (!w->mismatches++)
					snprintf(w->first, sizeof w->first, "%s: got %s, want %s",
						 QUESTIONS[i].email, line, expected[i]);
			}
		}
	}
	return NULL;
}

static pthread_barrier_t held;

/* inquery()'s storage is per thread: two threads' answers do not overwrite each other. */
static void *
hold(void *arg)
{
	const char *domain = arg;
	char *p = inquery(DOMAIN_QUERY, (char *) domain, NULL);
	char before[256];

	snprintf(before, sizeof before, "%s", p ? p : "(null)");
	/* Once both have asked, shared storage would hold only the later answer. */
	pthread_barrier_wait(&held);
	return (void *) (long) (p && !strcmp(before, p) ? 0 : 1);
}

static int
threads(int n, int rounds)
{
	pthread_t       t[64];
	struct worker   w[64];
	pthread_t       h[2];
	void           *bad[2];
	int             total = 0, mismatches = 0;

	if (n < 1 || n > 64)
		return 1;
	for (size_t i = 0; i < NQUESTIONS; i++)
		ask_r(&QUESTIONS[i], expected[i], sizeof expected[i]);
	for (int i = 0; i < n; i++) {
		memset(&w[i], 0, sizeof w[i]);
		w[i].rounds = rounds;
		if (pthread_create(&t[i], NULL, work, &w[i]))
			return 1;
	}
	for (int i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		total += w[i].asked;
		mismatches += w[i].mismatches;
		if (w[i].mismatches)
			printf("thread %d: %d mismatches, first %s\n", i, w[i].mismatches, w[i].first);
	}
	pthread_barrier_init(&held, NULL, 2);
	pthread_create(&h[0], NULL, hold, "example.org");
	pthread_create(&h[1], NULL, hold, "example.net");
	pthread_join(h[0], &bad[0]);
	pthread_join(h[1], &bad[1]);
	printf("threads=%d queries=%d mismatches=%d held=%s\n", n, total, mismatches,
	       bad[0] || bad[1] ? "overwritten" : "kept");
	return 0;
}

static int
down(void)
{
	char line[2048];
	void *p;
	int err;

	errno = 12345;
	p = inquery(USER_QUERY, "testuser@example.com", NULL);
	err = errno;
	format_answer(line, sizeof line, USER_QUERY, p, userNotFound, err, 0);
	printf("%s\n", line);
	printf("error: %s\n", p ? "-" : inquery_error());
	printf("fallbacks=%lu\n", inquery_fallbacks());
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "all"))
		return all();
	if (argc >= 2 && !strcmp(argv[1], "r"))
		return reentrant();
	if (argc >= 4 && !strcmp(argv[1], "threads"))
		return threads(atoi(argv[2]), atoi(argv[3]));
	if (argc >= 2 && !strcmp(argv[1], "down"))
		return down();
	fprintf(stderr, "usage: cabi all | r | threads N M | down\n");
	return 100;
}
