import type { Command } from 'commander';
import { resolveSettings, type ClientSettings, type SettingFlags } from './settings.ts';

/** The options every client command takes. */
export interface ClientFlags extends SettingFlags {
  json?: boolean;
}

/** What a client command's action receives besides its arguments. */
export interface ClientContext<O> {
  /** Resolved on first use, so that a command checks its own arguments first. */
  readonly settings: ClientSettings;
  json: boolean;
  /** The command's own options. */
  opts: O & ClientFlags;
}

/**
 * Declares a command that talks to the API, with `--json`, `--url`, `--user`
 * and `--token`. The options live on each command rather than on the program
 * so that they may come anywhere after the command name and never collide
 * with options of the same name on `serve` or `users`.
 */
export function clientCommand(parent: Command, nameAndArgs: string, description: string): Command {
  return parent
    .command(nameAndArgs)
    .description(description)
    .option('--json', "print the API's JSON")
    .option('--url <url>', 'control API URL (EPH_URL, default http://127.0.0.1:7070)')
    .option('--user <id>', 'user id (EPH_USER)')
    .option('--token <token>', 'auth token (EPH_TOKEN)');
}

/**
 * Sets `cmd`'s action: calls `fn` with the positional arguments (variadic
 * ones spread, absent optional ones left out) and the client settings,
 * resolved when first read. Errors propagate to main, which prints the one line.
 */
export function clientAction<O>(cmd: Command, fn: (ctx: ClientContext<O>, ...args: string[]) => Promise<void>): Command {
  return cmd.action(async () => {
    const opts = cmd.opts<O & ClientFlags>();
    let settings: ClientSettings | undefined;
    // Variadic arguments come last: flatten them; missing optional ones (also last) drop out.
    const args = (cmd.processedArgs as unknown[]).flat().filter((a) => a !== undefined).map(String);
    const ctx: ClientContext<O> = {
      get settings() {
        return (settings ??= resolveSettings(opts));
      },
      json: opts.json === true,
      opts,
    };
    await fn(ctx, ...args);
  });
}
