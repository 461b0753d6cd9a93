/**
 * The tables mailauth reads or writes, with mailcow's names, columns and
 * defaults. Migration only creates what is missing, so pointing it at a live
 * mailcow database changes nothing there.
 */

export const DEFAULT_MAILBOX_TEMPLATE: Readonly<Record<string, unknown>> = Object.freeze({
  quota: 0,
  tags: [],
  active: '1',
  force_pw_update: '0',
  force_tfa: '0',
  sogo_access: '1',
  tls_enforce_in: '0',
  tls_enforce_out: '0',
  imap_access: '1',
  pop3_access: '1',
  smtp_access: '1',
  sieve_access: '1',
  eas_access: '1',
  dav_access: '1',
  quarantine_notification: 'hourly',
  quarantine_category: 'reject',
  rl_frame: 's',
  rl_value: '',
  acl_spam_alias: '1',
  acl_tls_policy: '1',
  acl_spam_score: '1',
  acl_spam_policy: '1',
  acl_delimiter_action: '1',
  acl_syncjobs: '0',
  acl_eas_reset: '1',
  acl_sogo_profile_reset: '0',
  acl_pushover: '1',
  acl_quarantine: '1',
  acl_quarantine_attachments: '1',
  acl_quarantine_notification: '1',
  acl_quarantine_category: '1',
  acl_app_passwds: '1',
});

/** Table name → CREATE statement. Order matters: foreign keys point to earlier tables. */
export const TABLES: ReadonlyArray<readonly [string, string]> = [
  [
    'domain',
    `CREATE TABLE IF NOT EXISTS \`domain\` (
      \`domain\` VARCHAR(255) NOT NULL,
      \`description\` VARCHAR(255),
      \`aliases\` INT(10) NOT NULL DEFAULT '0',
      \`mailboxes\` INT(10) NOT NULL DEFAULT '0',
      \`defquota\` BIGINT(20) NOT NULL DEFAULT '3072',
      \`maxquota\` BIGINT(20) NOT NULL DEFAULT '102400',
      \`quota\` BIGINT(20) NOT NULL DEFAULT '102400',
      \`relayhost\` VARCHAR(255) NOT NULL DEFAULT '0',
      \`backupmx\` TINYINT(1) NOT NULL DEFAULT '0',
      \`gal\` TINYINT(1) NOT NULL DEFAULT '1',
      \`relay_all_recipients\` TINYINT(1) NOT NULL DEFAULT '0',
      \`relay_unknown_only\` TINYINT(1) NOT NULL DEFAULT '0',
      \`created\` DATETIME(0) NOT NULL DEFAULT NOW(0),
      \`modified\` DATETIME ON UPDATE CURRENT_TIMESTAMP,
      \`active\` TINYINT(1) NOT NULL DEFAULT '1',
      PRIMARY KEY (\`domain\`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
  ],
  [
    'mailbox',
    `CREATE TABLE IF NOT EXISTS \`mailbox\` (
      \`username\` VARCHAR(255) NOT NULL,
      \`password\` VARCHAR(255) NOT NULL,
      \`name\` VARCHAR(255),
      \`description\` VARCHAR(255),
      \`mailbox_path_prefix\` VARCHAR(150) DEFAULT '/var/vmail/',
      \`quota\` BIGINT(20) NOT NULL DEFAULT '102400',
      \`local_part\` VARCHAR(255) NOT NULL,
      \`domain\` VARCHAR(255) NOT NULL,
      \`attributes\` JSON,
      \`custom_attributes\` JSON NOT NULL DEFAULT ('{}'),
      \`kind\` VARCHAR(100) NOT NULL DEFAULT '',
      \`multiple_bookings\` INT NOT NULL DEFAULT -1,
      \`authsource\` ENUM('mailcow','keycloak','generic-oidc','ldap') DEFAULT 'mailcow',
      \`created\` DATETIME(0) NOT NULL DEFAULT NOW(0),
      \`modified\` DATETIME ON UPDATE CURRENT_TIMESTAMP,
      \`active\` TINYINT(1) NOT NULL DEFAULT '1',
      PRIMARY KEY (\`username\`),
      KEY \`domain\` (\`domain\`),
      KEY \`kind\` (\`kind\`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
  ],
  [
    'app_passwd',
    `CREATE TABLE IF NOT EXISTS \`app_passwd\` (
      \`id\` INT NOT NULL AUTO_INCREMENT,
      \`name\` VARCHAR(255) NOT NULL,
      \`mailbox\` VARCHAR(255) NOT NULL,
      \`domain\` VARCHAR(255) NOT NULL,
      \`password\` VARCHAR(255) NOT NULL,
      \`created\` DATETIME(0) NOT NULL DEFAULT NOW(0),
      \`modified\` DATETIME ON UPDATE CURRENT_TIMESTAMP,
      \`imap_access\` TINYINT(1) NOT NULL DEFAULT '1',
      \`smtp_access\` TINYINT(1) NOT NULL DEFAULT '1',
      \`dav_access\` TINYINT(1) NOT NULL DEFAULT '1',
      \`eas_access\` TINYINT(1) NOT NULL DEFAULT '1',
      \`pop3_access\` TINYINT(1) NOT NULL DEFAULT '1',
      \`sieve_access\` TINYINT(1) NOT NULL DEFAULT '1',
      \`active\` TINYINT(1) NOT NULL DEFAULT '1',
      PRIMARY KEY (\`id\`),
      KEY \`mailbox\` (\`mailbox\`),
      CONSTRAINT \`fk_username_app_passwd\` FOREIGN KEY (\`mailbox\`) REFERENCES \`mailbox\` (\`username\`) ON DELETE CASCADE
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
  ],
  [
    'templates',
    `CREATE TABLE IF NOT EXISTS \`templates\` (
      \`id\` INT NOT NULL AUTO_INCREMENT,
      \`template\` VARCHAR(255) NOT NULL,
      \`type\` VARCHAR(255) NOT NULL,
      \`attributes\` JSON,
      \`created\` DATETIME(0) NOT NULL DEFAULT NOW(0),
      \`modified\` DATETIME ON UPDATE CURRENT_TIMESTAMP,
      PRIMARY KEY (\`id\`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
  ],
  [
    'identity_provider',
    `CREATE TABLE IF NOT EXISTS \`identity_provider\` (
      \`key\` VARCHAR(255) NOT NULL,
      \`value\` TEXT NOT NULL,
      \`created\` DATETIME(0) NOT NULL DEFAULT NOW(0),
      \`modified\` DATETIME ON UPDATE CURRENT_TIMESTAMP,
      PRIMARY KEY (\`key\`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
  ],
  [
    'sasl_log',
    `CREATE TABLE IF NOT EXISTS \`sasl_log\` (
      \`service\` VARCHAR(32) NOT NULL DEFAULT '',
      \`app_password\` INT,
      \`username\` VARCHAR(255) NOT NULL,
      \`real_rip\` VARCHAR(64) NOT NULL,
      \`datetime\` DATETIME(0) NOT NULL DEFAULT NOW(0),
      PRIMARY KEY (\`service\`, \`real_rip\`, \`username\`),
      KEY \`username\` (\`username\`),
      KEY \`service\` (\`service\`),
      KEY \`datetime\` (\`datetime\`),
      KEY \`real_rip\` (\`real_rip\`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
  ],
  [
    'quota2',
    `CREATE TABLE IF NOT EXISTS \`quota2\` (
      \`username\` VARCHAR(255) NOT NULL,
      \`bytes\` BIGINT(20) NOT NULL DEFAULT '0',
      \`messages\` BIGINT(20) NOT NULL DEFAULT '0',
      PRIMARY KEY (\`username\`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
  ],
  [
    'quota2replica',
    `CREATE TABLE IF NOT EXISTS \`quota2replica\` (
      \`username\` VARCHAR(255) NOT NULL,
      \`bytes\` BIGINT(20) NOT NULL DEFAULT '0',
      \`messages\` BIGINT(20) NOT NULL DEFAULT '0',
      PRIMARY KEY (\`username\`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
  ],
  [
    'alias',
    `CREATE TABLE IF NOT EXISTS \`alias\` (
      \`id\` INT NOT NULL AUTO_INCREMENT,
      \`address\` VARCHAR(255) NOT NULL,
      \`goto\` TEXT NOT NULL,
      \`domain\` VARCHAR(255) NOT NULL,
      \`created\` DATETIME(0) NOT NULL DEFAULT NOW(0),
      \`modified\` DATETIME ON UPDATE CURRENT_TIMESTAMP,
      \`private_comment\` TEXT,
      \`public_comment\` TEXT,
      \`sogo_visible\` TINYINT(1) NOT NULL DEFAULT '1',
      \`internal\` TINYINT(1) NOT NULL DEFAULT '0',
      \`sender_allowed\` TINYINT(1) NOT NULL DEFAULT '1',
      \`active\` TINYINT(1) NOT NULL DEFAULT '1',
      PRIMARY KEY (\`id\`),
      UNIQUE KEY \`address\` (\`address\`),
      KEY \`domain\` (\`domain\`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
  ],
  [
    'user_acl',
    `CREATE TABLE IF NOT EXISTS \`user_acl\` (
      \`username\` VARCHAR(255) NOT NULL,
      \`spam_alias\` TINYINT(1) NOT NULL DEFAULT '1',
      \`tls_policy\` TINYINT(1) NOT NULL DEFAULT '1',
      \`spam_score\` TINYINT(1) NOT NULL DEFAULT '1',
      \`spam_policy\` TINYINT(1) NOT NULL DEFAULT '1',
      \`delimiter_action\` TINYINT(1) NOT NULL DEFAULT '1',
      \`syncjobs\` TINYINT(1) NOT NULL DEFAULT '0',
      \`eas_reset\` TINYINT(1) NOT NULL DEFAULT '1',
      \`sogo_profile_reset\` TINYINT(1) NOT NULL DEFAULT '0',
      \`pushover\` TINYINT(1) NOT NULL DEFAULT '1',
      \`quarantine\` TINYINT(1) NOT NULL DEFAULT '1',
      \`quarantine_attachments\` TINYINT(1) NOT NULL DEFAULT '1',
      \`quarantine_notification\` TINYINT(1) NOT NULL DEFAULT '1',
      \`quarantine_category\` TINYINT(1) NOT NULL DEFAULT '1',
      \`app_passwds\` TINYINT(1) NOT NULL DEFAULT '1',
      \`pw_reset\` TINYINT(1) NOT NULL DEFAULT '1',
      PRIMARY KEY (\`username\`),
      CONSTRAINT \`fk_username\` FOREIGN KEY (\`username\`) REFERENCES \`mailbox\` (\`username\`) ON DELETE CASCADE
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
  ],
  [
    'mailauth_sync_run',
    `CREATE TABLE IF NOT EXISTS \`mailauth_sync_run\` (
      \`id\` INT NOT NULL AUTO_INCREMENT,
      \`started\` DATETIME(3) NOT NULL,
      \`finished\` DATETIME(3),
      \`status\` VARCHAR(32) NOT NULL,
      \`forced\` TINYINT(1) NOT NULL DEFAULT '0',
      \`dry_run\` TINYINT(1) NOT NULL DEFAULT '0',
      \`counts\` JSON,
      \`errors\` JSON,
      \`host\` VARCHAR(255) NOT NULL DEFAULT '',
      PRIMARY KEY (\`id\`),
      KEY \`started\` (\`started\`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
  ],
  [
    // Issue 17: Dovecot notifications (doveadm auth cache flush / kick) that failed and are retried.
    'mailauth_dovecot_pending',
    `CREATE TABLE IF NOT EXISTS \`mailauth_dovecot_pending\` (
      \`id\` INT NOT NULL AUTO_INCREMENT,
      \`host\` VARCHAR(255) NOT NULL,
      \`username\` VARCHAR(255) NOT NULL,
      \`action\` VARCHAR(16) NOT NULL,
      \`attempts\` INT NOT NULL DEFAULT '1',
      \`first_failed\` DATETIME(3) NOT NULL,
      \`last_try\` DATETIME(3) NOT NULL,
      \`last_error\` VARCHAR(1000) NOT NULL DEFAULT '',
      PRIMARY KEY (\`id\`),
      UNIQUE KEY \`host_user_action\` (\`host\`, \`username\`, \`action\`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
  ],
];

export const TABLE_NAMES: readonly string[] = TABLES.map(([name]) => name);

/**
 * Columns mailcow added to a table after mailauth first created it (mailcow's
 * init_db.inc.php at 06424670; test/fixtures/mailcow-schema.json). `migrate`
 * adds them, with mailcow's type, default and position, to an existing table
 * that lacks them, as mailcow's own schema update does; nothing else is altered.
 */
export const ADDED_COLUMNS: ReadonlyArray<{ table: string; column: string; definition: string; after: string }> = [
  { table: 'alias', column: 'internal', definition: "TINYINT(1) NOT NULL DEFAULT '0'", after: 'sogo_visible' },
  { table: 'alias', column: 'sender_allowed', definition: "TINYINT(1) NOT NULL DEFAULT '1'", after: 'internal' },
  { table: 'user_acl', column: 'pw_reset', definition: "TINYINT(1) NOT NULL DEFAULT '1'", after: 'app_passwds' },
];
