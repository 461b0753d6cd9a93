/**
 * `mailauth paths` / `mailauth lua-path`: where the installed package keeps the
 * files an admin copies or points at (the Lua script, the systemd units, the
 * example config, the docs). The npm prefix differs between installs (/usr with
 * NodeSource, /usr/local with Debian's npm, anything with nvm), so the CLI says.
 */
import { existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import type { CliApp } from './app.js';
import { CliFailure, EXIT } from './app.js';
import { keyValues } from './render.js';

export interface PackagePaths {
  /** The installed package directory (dist/ and src/ both sit one level below it). */
  package: string;
  lua: string;
  units: string;
  'config-example': string;
  docs: string;
}

export const PATH_NAMES = ['package', 'lua', 'units', 'config-example', 'docs'] as const;

/** Resolved through symlinks (npm link, a global bin link) so the admin copies the real file. */
export function packagePaths(root: string = fileURLToPath(new URL('../../', import.meta.url))): PackagePaths {
  const real = existsSync(root) ? realpathSync(root) : root;
  return {
    package: real,
    lua: join(real, 'lua', 'mailauth.lua'),
    units: join(real, 'systemd'),
    'config-example': join(real, 'config.example.yaml'),
    docs: join(real, 'docs'),
  };
}

function one(app: CliApp, name: keyof PackagePaths): number {
  const path = packagePaths()[name];
  if (!existsSync(path)) throw new CliFailure(`${name}: ${path} is missing from this installation; reinstall the package`);
  app.io.stdout.write(path + '\n');
  return EXIT.OK;
}

export function registerPaths(program: Command, app: CliApp): void {
  program
    .command('paths')
    .description('print where the installed package keeps the Lua script, systemd units, example config and docs')
    .argument('[name]', `print only this path: ${PATH_NAMES.join(', ')}`)
    .addHelpText(
      'after',
      `
Examples:
  mailauth paths                                        all of them
  install -D -m 0644 "$(mailauth paths lua)" /usr/share/mailauth/mailauth.lua
  cp "$(mailauth paths units)"/mailauth* /etc/systemd/system/`,
    )
    .action(
      app.action(async (name: string | undefined, _opts: unknown, cmd: Command) => {
        if (name !== undefined) {
          if (!(PATH_NAMES as readonly string[]).includes(name)) {
            throw new CliFailure(`unknown path name ${JSON.stringify(name)} (known: ${PATH_NAMES.join(', ')})`, EXIT.USAGE);
          }
          return one(app, name as keyof PackagePaths);
        }
        const paths = packagePaths();
        app.print(cmd, paths, () => keyValues(Object.entries(paths)));
        return EXIT.OK;
      }),
    );
  program
    .command('lua-path')
    .description('print the absolute path of the bundled Dovecot Lua script (same as `mailauth paths lua`)')
    .addHelpText(
      'after',
      `
Examples:
  mailauth lua-path
  ln -s "$(mailauth lua-path)" /usr/share/mailauth/mailauth.lua     follows package upgrades
  install -D -m 0644 "$(mailauth lua-path)" /usr/share/mailauth/mailauth.lua   a pinned copy`,
    )
    .action(app.action(async () => one(app, 'lua')));
}
