/** `mailauth config check`: validate and print the effective configuration, secrets masked. */
import type { Command } from 'commander';
import { describeConfig } from '../config/index.js';
import type { CliApp } from './app.js';

export function registerConfig(program: Command, app: CliApp): void {
  const group = program.command('config').description('inspect the configuration');
  group
    .command('check')
    .description('validate the config file and print the effective configuration (secrets masked); exit 2 when invalid')
    .action(
      app.action(async (_opts: unknown, cmd: Command) => {
        const config = app.config(cmd);
        const shown = describeConfig(config);
        app.print(cmd, shown, () => `config ${config.file ?? '(built in)'} is valid\n${JSON.stringify(shown, null, 2)}\n`);
      }),
    );
}
