import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { isEphError } from '../core/errors.ts';
import { applianceCommands } from './appliances.ts';
import { ciCommands } from './ci.ts';
import { CliError } from './cli-error.ts';
import { configCommands } from './config.ts';
import { closeClient } from './client.ts';
import { gateCommands } from './gate.ts';
import { instanceCommands } from './instances.ts';
import { logsCommand } from './logs.ts';
import { publishCommand } from './publish.ts';
import { tunnelCommand } from './tunnel.ts';

/** Exit status of a wrong command line (unknown command or option, missing argument). */
export const USAGE_EXIT = 2;

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** The commands of this folder that only talk to the API. */
const CLIENT_COMMANDS = new Set(['publish', 'ls', 'show', 'start', 'stop', 'alias', 'rm', 'logs', 'gate', 'appliance', 'tunnel', 'ci', 'config']);

/**
 * `serve` and `users` load the store and the server (kysely alone costs about
 * half a second); `eph ls` needs neither, so they are loaded only when the
 * command line may reach them: when it names no client command.
 */
function mayReachAdminCommands(argv: readonly string[]): boolean {
  const args = argv.slice(2);
  const first = args.find((a) => !a.startsWith('-'));
  // `eph --version` prints a constant: loading the server for it cost most of its start-up time.
  if (first === undefined && (args.includes('-V') || args.includes('--version'))) return false;
  return first === undefined || !CLIENT_COMMANDS.has(first);
}

/** The `eph` program with the commands `argv` may reach registered; nothing runs until it is parsed. */
export async function buildProgram(argv: readonly string[] = process.argv): Promise<Command> {
  const program = new Command('eph')
    .description('Ephemeric: a just-in-time application cloud. Client commands read EPH_URL, EPH_USER and EPH_TOKEN.')
    .version(version(), '-V, --version')
    .showSuggestionAfterError(true)
    // Every parse error becomes one line `eph: <reason>` and a thrown
    // CommanderError, so that main decides the exit status (2).
    .exitOverride()
    .configureOutput({
      outputError: (str, write) => write(`eph: ${str.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim()}\n`),
    });
  if (mayReachAdminCommands(argv)) {
    const [{ serveCommand }, { usersCommand }] = await Promise.all([import('./serve.ts'), import('./users.ts')]);
    serveCommand(program);
    usersCommand(program);
  }
  publishCommand(program);
  instanceCommands(program);
  logsCommand(program);
  gateCommands(program);
  applianceCommands(program);
  tunnelCommand(program);
  ciCommands(program);
  configCommands(program);
  return program;
}

/** The exit status for what a command threw, after printing its one line. */
export function reportFailure(e: unknown): number {
  if (e instanceof CommanderError) {
    // Help and version are "errors" only to exitOverride.
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0) return 0;
    // Commander printed the reason already (or the help, for a bare group command).
    return USAGE_EXIT;
  }
  const message = e instanceof Error ? e.message : String(e);
  process.stderr.write(`eph: ${message.replace(/\s*[\r\n]+\s*/g, ' ').trim()}\n`);
  if (e instanceof CliError) return e.exitCode;
  // A setting that does not parse (a duration, HOST:PORT…) is a usage error.
  if (isEphError(e)) return e.code === 'INVALID_CONFIG' ? USAGE_EXIT : 1;
  if (process.env.EPH_DEBUG && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
  return 1;
}

/** Runs `eph` with `argv` (process.argv form) and answers the exit status. */
export async function runCli(argv: readonly string[]): Promise<number> {
  let status = 0;
  try {
    await (await buildProgram(argv)).parseAsync([...argv]);
    // A command whose outcome is more than success or failure (`eph ci run`: tests failed) sets it.
    if (typeof process.exitCode === 'number') status = process.exitCode;
  } catch (e) {
    status = reportFailure(e);
  } finally {
    await closeClient();
  }
  return status;
}
