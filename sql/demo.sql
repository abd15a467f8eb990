-- inlookup: demo rows for tests (tests assert on these exact values).
-- Usage: mariadb --no-defaults -h HOST -P PORT -uroot DBNAME < sql/demo.sql
--        (after sql/schema.sql; scripts/load-db.sh HOST PORT DBNAME does both)
-- Rerunnable: each block first deletes the demo keys, then inserts them afresh, so
-- edits made by earlier test runs to these keys are undone.

-- Active users.
DELETE FROM indimail
 WHERE pw_domain = 'example.com' AND pw_name IN ('testuser', 'alice', 'full');
INSERT INTO indimail
  (pw_name, pw_domain, pw_passwd, pw_uid, pw_gid, pw_gecos, pw_dir, pw_shell, scram)
VALUES
  ('testuser', 'example.com', '$5$rounds=5000$demo$Z3k9dEmoHashOnlyForDemo0', 1, 0,
   'Test User', '/home/mail/example.com/testuser', '524288000', NULL),
  ('alice', 'example.com', '$5$demo$alicehash', 1, 0,
   'Alice', '/home/mail/example.com/alice', '100000000',
   '{SCRAM-SHA-256}4096$c2FsdA==$c3RvcmVk$c2VydmVy'),
  ('full', 'example.com', '$5$demo$fullhash', 1, 16,
   'Over Quota', '/home/mail/example.com/full', '1000', NULL);

-- Inactive users.
DELETE FROM indibak WHERE pw_domain = 'example.com' AND pw_name = 'olduser';
INSERT INTO indibak
  (pw_name, pw_domain, pw_passwd, pw_uid, pw_gid, pw_gecos, pw_dir, pw_shell, scram)
VALUES
  ('olduser', 'example.com', '$5$demo$oldhash', 1, 0,
   'Old User', '/home/mail/example.com/olduser', '1000', NULL);

-- Aliases: sales has two lines, postmaster one.
DELETE FROM valias
 WHERE domain = 'example.com' AND alias IN ('sales', 'postmaster');
INSERT INTO valias (alias, domain, valias_line)
VALUES
  ('sales', 'example.com', '&alice@example.com'),
  ('sales', 'example.com', '&testuser@example.com'),
  ('postmaster', 'example.com', '&testuser@example.com');

-- Domain alias: example.org -> example.com.
DELETE FROM aliasdomain WHERE alias = 'example.org';
INSERT INTO aliasdomain (alias, domain) VALUES ('example.org', 'example.com');

-- Mail store hosts.
DELETE FROM hostcntrl
 WHERE pw_domain = 'example.com' AND pw_name IN ('testuser', 'alice');
INSERT INTO hostcntrl (pw_name, pw_domain, pw_passwd, host)
VALUES
  ('testuser', 'example.com', 'x', '127.0.0.1'),
  ('alice', 'example.com', 'x', '10.0.0.5');

-- Domain limits; every column not named keeps its default.
DELETE FROM vlimits WHERE domain = 'example.com';
INSERT INTO vlimits
  (domain, maxpopaccounts, maxaliases, diskquota, defaultquota, disable_imap, perm_quota)
VALUES
  ('example.com', 100, 50, 1073741824, 52428800, 1, 3);

-- POP/IMAP-before-SMTP: alice relayed from 192.0.2.10 just now.
DELETE FROM relay WHERE email = 'alice@example.com' AND ipaddr = '192.0.2.10';
INSERT INTO relay (email, ipaddr, timestamp)
VALUES ('alice@example.com', '192.0.2.10', UNIX_TIMESTAMP());
