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
    .description('create the tables mailauth uses where they are missing; never alters or drops an existing table')
    .addHelpText('after', '\nSafe on a live mailcow database: existing tables are left exactly as they are.')
    .action(
      app.action(async (_opts: unknown, cmd: Command) => {
        const config = app.config(cmd);
        const db = app.db(config, { queryTimeoutMs: 60_000 });
        const result = await migrate(db);
        app.print(cmd, result, () =>
          table(
            ['table', 'action'],
            [...result.created.map((t) => [t, 'created']), ...result.existing.map((t) => [t, 'exists, untouched'])],
          ) + (result.seeded.length ? `seeded: ${result.seeded.join(', ')}\n` : ''),
        );
      }),
    );
  group
    .command('status')
    .description('list which tables exist and which are missing; exit 1 when any is missing')
    .action(
      app.action(async (_opts: unknown, cmd: Command) => {
        const config = app.config(cmd);
        const db = app.db(config);
        const status = await schemaStatus(db);
        app.print(cmd, { database: config.database.database, ...status }, () =>
          table(['table', 'status'], status.tables.map((t) => [t.name, t.exists ? 'present' : 'MISSING'])) +
          (status.missing.length ? `\n${status.missing.length} table(s) missing: run \`mailauth db migrate\`\n` : '\nschema complete\n'),
        );
        return status.missing.length ? EXIT.FAILED : EXIT.OK;
      }),
    );
}
