/** `mailauth db migrate|status`. */
import type { Command } from 'commander';
import { migrate, schemaStatus } from '../db/index.js';
import type { CliApp } from './app.js';
import { EXIT } from './app.js';
import { table } from './render.js';

export function registerDb(program: Command, app: CliApp): void {
  const group = program.command('db').description('database schema (mailcow-compatible tables)');
  group
    .command('migrate')
    .description("create the tables mailauth uses where they are missing, and add mailcow's newer columns to existing ones; never drops or changes anything else")
    .addHelpText('after', "\nSafe on a live mailcow database: existing tables keep every row and column; only columns current mailcow\nhas and the table lacks (alias.internal, alias.sender_allowed, user_acl.pw_reset) are added, with mailcow's\ntypes and defaults, as mailcow's own update would.")
    .action(
      app.action(async (_opts: unknown, cmd: Command) => {
        const config = app.config(cmd);
        const db = app.db(config, { queryTimeoutMs: 60_000 });
        const result = await migrate(db);
        app.print(cmd, result, () =>
          table(
            ['table', 'action'],
            [
              ...result.created.map((t) => [t, 'created']),
              ...result.existing.map((t) => {
                const added = result.added.filter((a) => a.startsWith(`${t}.`)).map((a) => a.slice(t.length + 1));
                return [t, added.length ? `exists, added ${added.join(', ')}` : 'exists, untouched'];
              }),
            ],
          ) + (result.seeded.length ? `seeded: ${result.seeded.join(', ')}\n` : ''),
        );
      }),
    );
  group
    .command('status')
    .description("list which tables exist and which are missing (and mailcow's newer columns a table lacks); exit 1 when anything is missing")
    .action(
      app.action(async (_opts: unknown, cmd: Command) => {
        const config = app.config(cmd);
        const db = app.db(config);
        const status = await schemaStatus(db);
        app.print(cmd, { database: config.database.database, ...status }, () =>
          table(['table', 'status'], status.tables.map((t) => [t.name, t.exists ? 'present' : 'MISSING'])) +
          (status.missingColumns.length ? `\ncolumn(s) missing: ${status.missingColumns.join(', ')}` : '') +
          (status.missing.length || status.missingColumns.length ? `\n${status.missing.length} table(s) missing${status.missingColumns.length ? `, ${status.missingColumns.length} column(s) missing` : ''}: run \`mailauth db migrate\`\n` : '\nschema complete\n'),
        );
        return status.missing.length || status.missingColumns.length ? EXIT.FAILED : EXIT.OK;
      }),
    );
}
