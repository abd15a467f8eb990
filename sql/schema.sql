-- inlookup: IndiMail-compatible tables read by the lookups.
-- Usage: mariadb --no-defaults -h HOST -P PORT -uroot DBNAME < sql/schema.sql
--        (or scripts/load-db.sh HOST PORT DBNAME, which also loads sql/demo.sql)
--
-- Column names, types and keys follow IndiMail's "small site" layout, so an existing
-- IndiMail database can be served unchanged. No database name and no charset/collation
-- here on purpose: the loader picks the database, and the server's default
-- (case-insensitive) collation is what IndiMail's lookups rely on, e.g.
-- ALICE@Example.COM finds alice@example.com.

-- indimail: active mail users (USER, PWD lookups; pw_dir/pw_shell are the maildir and
-- the quota string handed back in PWSTRUCT).
CREATE TABLE IF NOT EXISTS indimail (
  pw_name   char(40)  NOT NULL,
  pw_domain char(67)  NOT NULL,
  pw_passwd char(128) NOT NULL,
  pw_uid    int,
  pw_gid    int,
  pw_gecos  char(48)  NOT NULL,
  pw_dir    char(156),
  pw_shell  char(30),
  scram     char(255) NULL DEFAULT NULL,
  timestamp TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (pw_name, pw_domain)
) ENGINE=InnoDB;

-- indibak: inactive users, same layout as indimail (USER answers 2 for a user found
-- only here).
CREATE TABLE IF NOT EXISTS indibak (
  pw_name   char(40)  NOT NULL,
  pw_domain char(67)  NOT NULL,
  pw_passwd char(128) NOT NULL,
  pw_uid    int,
  pw_gid    int,
  pw_gecos  char(48)  NOT NULL,
  pw_dir    char(156),
  pw_shell  char(30),
  scram     char(255) NULL DEFAULT NULL,
  timestamp TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (pw_name, pw_domain)
) ENGINE=InnoDB;

-- relay: POP/IMAP-before-SMTP; a successful login records email + client IP with an
-- epoch-seconds timestamp, and the RELAY lookup asks whether an IP is still allowed.
CREATE TABLE IF NOT EXISTS relay (
  email     char(96) NOT NULL,
  ipaddr    char(46) NOT NULL,
  timestamp int      NOT NULL DEFAULT 0,
  UNIQUE KEY email_ipaddr (email, ipaddr)
) ENGINE=InnoDB;

-- valias: virtual aliases/forwards; each alias@domain has one row per delivery line
-- (ALIAS lookup; lines start with & for an address or | for a program).
CREATE TABLE IF NOT EXISTS valias (
  alias       char(40)  NOT NULL,
  domain      char(67)  NOT NULL,
  valias_line char(190) NOT NULL,
  timestamp   TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  UNIQUE KEY alias_domain_line (alias, domain, valias_line)
) ENGINE=InnoDB;

-- aliasdomain: domain aliases, alias domain -> real domain (DOMAIN lookup).
CREATE TABLE IF NOT EXISTS aliasdomain (
  alias     char(64) NOT NULL,
  domain    char(67) NOT NULL,
  timestamp TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (alias)
) ENGINE=InnoDB;

-- hostcntrl: clustered sites, which mail store host holds a user (HOST lookup).
CREATE TABLE IF NOT EXISTS hostcntrl (
  pw_name   char(40)  NOT NULL,
  pw_domain char(67)  NOT NULL,
  pw_passwd char(128) NOT NULL,
  host      char(64)  NOT NULL,
  timestamp TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (pw_name, pw_domain)
) ENGINE=InnoDB;

-- host_table: clustered sites, a mail store's host id -> its IP, spelled exactly as
-- mcdinfo's mdahost (the central database of host.cntrl).
CREATE TABLE IF NOT EXISTS host_table (
  host      char(64) NOT NULL,
  ipaddr    char(46) NOT NULL,
  timestamp TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (host)
) ENGINE=InnoDB;

-- smtp_port: clustered sites, the SMTP port of a mail store for a domain, per source host
-- (HOST's port for a distributed domain; src_host '*…' matches any).
CREATE TABLE IF NOT EXISTS smtp_port (
  host      char(64) NOT NULL,
  src_host  char(64) NOT NULL,
  domain    char(64) NOT NULL,
  port      int NOT NULL,
  timestamp TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (domain, host, src_host)
) ENGINE=InnoDB;

-- vlimits: per-domain limits, quotas, disabled services and admin permissions
-- (LIMIT lookup, returned as struct vlimits). -1 = unlimited for the int limits.
CREATE TABLE IF NOT EXISTS vlimits (
  domain                   char(67)        NOT NULL,
  domain_expiry            int             NOT NULL DEFAULT -1,
  passwd_expiry            int             NOT NULL DEFAULT -1,
  maxpopaccounts           int             NOT NULL DEFAULT -1,
  maxaliases               int             NOT NULL DEFAULT -1,
  maxforwards              int             NOT NULL DEFAULT -1,
  maxautoresponders        int             NOT NULL DEFAULT -1,
  maxmailinglists          int             NOT NULL DEFAULT -1,
  diskquota                bigint unsigned NOT NULL DEFAULT 0,
  maxmsgcount              bigint unsigned NOT NULL DEFAULT 0,
  defaultquota             bigint          NOT NULL DEFAULT 0,
  defaultmaxmsgcount       bigint unsigned NOT NULL DEFAULT 0,
  disable_pop              tinyint         NOT NULL DEFAULT 0,
  disable_imap             tinyint         NOT NULL DEFAULT 0,
  disable_dialup           tinyint         NOT NULL DEFAULT 0,
  disable_passwordchanging tinyint         NOT NULL DEFAULT 0,
  disable_webmail          tinyint         NOT NULL DEFAULT 0,
  disable_relay            tinyint         NOT NULL DEFAULT 0,
  disable_smtp             tinyint         NOT NULL DEFAULT 0,
  perm_account             tinyint         NOT NULL DEFAULT 0,
  perm_alias               tinyint         NOT NULL DEFAULT 0,
  perm_forward             tinyint         NOT NULL DEFAULT 0,
  perm_autoresponder       tinyint         NOT NULL DEFAULT 0,
  perm_maillist            tinyint         NOT NULL DEFAULT 0,
  perm_quota               tinyint         NOT NULL DEFAULT 0,
  perm_defaultquota        tinyint         NOT NULL DEFAULT 0,
  PRIMARY KEY (domain)
) ENGINE=InnoDB;

-- Who logged in when, and by which service (IndiMail's lastauth): inlookup -c SECS preloads
-- the PWD answers of users with a row of the last SECS (imap, pop3, webm).
CREATE TABLE IF NOT EXISTS lastauth (
  user      char(40) NOT NULL,
  domain    char(67) NOT NULL,
  service   char(10) NOT NULL,
  remote_ip char(46) NOT NULL,
  quota     int      NOT NULL DEFAULT 0,
  gecos     char(48) NOT NULL DEFAULT '',
  timestamp timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (user, domain, service),
  KEY (gecos),
  KEY (quota),
  KEY (timestamp)
) ENGINE=InnoDB;
