import type { Command } from 'commander';
import { UsageError } from './cli-error.ts';
import { apiJson } from './client.ts';
import { clientAction, clientCommand } from './command-kit.ts';
import { printJson, printLine } from './output.ts';

interface ConfigVar {
  name: string;
  value: string | null;
  secret: boolean;
  redacted: boolean;
  attachment: string | null;
}

interface ConfigAnswer {
  hostname: string;
  vars: ConfigVar[];
  restarted?: boolean;
}

interface AttachmentAnswer {
  hostname: string;
  appliance: string;
  var: string;
  local: string;
  restarted?: boolean;
}

const configPath = (host: string): string => `/v1/instances/${encodeURIComponent(host)}/config`;

/** `NAME=value`, quoted as JSON when the value would not read back from one line. */
function line(v: ConfigVar): string {
  const value = v.redacted ? '********' : (v.value ?? '');
  const shown = /^[\x21-\x7e]*$/.test(value) || v.redacted ? value : JSON.stringify(value);
  const notes = [v.secret ? 'secret' : '', v.attachment ? `attachment ${v.attachment}` : ''].filter(Boolean);
  return `${v.name}=${shown}${notes.length ? `  (${notes.join(', ')})` : ''}`;
}

/** `KEY=VALUE` arguments: split at the first `=`; the value may hold further `=` and be empty. */
export function parseAssignments(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new UsageError(`config set: expected KEY=VALUE, got '${p.length > 40 ? `${p.slice(0, 40)}…` : p}'`);
    const key = p.slice(0, eq);
    if (key in out) throw new UsageError(`config set: ${key} is given twice`);
    out[key] = p.slice(eq + 1);
  }
  return out;
}

function whenApplied(a: { hostname: string; restarted?: boolean }, asked: boolean | undefined): string {
  if (a.restarted) return `${a.hostname} restarted: the app sees it now`;
  return asked ? 'not running: the app sees it when it starts' : 'the app sees it at its next start (--restart to restart it now)';
}

/**
 * `eph config HOST [--reveal]`, `eph config set HOST KEY=VALUE… [--secret]
 * [--restart]`, `eph config unset HOST KEY… [--restart]`: an instance's
 * config vars, given to its app as environment variables at its next start.
 *
 * @example
 * eph config set eph-1a2b3c4d API_KEY=s3cret --secret --restart
 * eph config eph-1a2b3c4d --reveal
 */
export function configCommands(program: Command): void {
  const config = program.command('config').description("an instance's config vars and secrets (environment variables of its app)");

  // The default command, so that `eph config HOST` lists them; the client options as clientCommand gives them.
  const show = config
    .command('show <host>', { isDefault: true })
    .description('list the config vars (the default: `eph config HOST`)')
    .option('--reveal', 'show the values of secrets too')
    .option('--json', "print the API's JSON")
    .option('--url <url>', 'control API URL (EPH_URL, default http://127.0.0.1:7070)')
    .option('--user <id>', 'user id (EPH_USER)')
    .option('--token <token>', 'auth token (EPH_TOKEN)');
  clientAction<{ reveal?: boolean }>(show, async (ctx, host) => {
    const res = await apiJson<ConfigAnswer>(ctx.settings, `${configPath(host!)}${ctx.opts.reveal ? '?reveal=true' : ''}`);
    if (ctx.json) return printJson(res);
    if (res.vars.length === 0) return printLine(`no config vars on ${res.hostname}: set one with \`eph config set ${host} KEY=VALUE\``);
    for (const v of res.vars) printLine(line(v));
  });

  const set = clientCommand(config, 'set <host> <pairs...>', 'set config vars KEY=VALUE (several at once)')
    .option('--secret', 'secrets: stored encrypted like every value, and shown redacted unless --reveal')
    .option('--restart', 'restart the instance now if it runs, so that the app sees them at once');
  clientAction<{ secret?: boolean; restart?: boolean }>(set, async (ctx, host, ...pairs) => {
    const values = parseAssignments(pairs);
    const res = await apiJson<ConfigAnswer>(ctx.settings, configPath(host!), {
      method: 'PATCH',
      json: { set: values, secret: ctx.opts.secret === true, restart: ctx.opts.restart === true },
    });
    if (ctx.json) return printJson(res);
    const names = Object.keys(values);
    printLine(`set ${names.join(', ')}${ctx.opts.secret ? ' (secret)' : ''} on ${res.hostname}: ${whenApplied(res, ctx.opts.restart)}`);
  });

  const unset = clientCommand(config, 'unset <host> <keys...>', 'remove config vars').option('--restart', 'restart the instance now if it runs');
  clientAction<{ restart?: boolean }>(unset, async (ctx, host, ...keys) => {
    const res = await apiJson<ConfigAnswer>(ctx.settings, configPath(host!), { method: 'PATCH', json: { unset: keys, restart: ctx.opts.restart === true } });
    if (ctx.json) return printJson(res);
    printLine(`unset ${keys.join(', ')} on ${res.hostname}: ${whenApplied(res, ctx.opts.restart)}`);
  });
}

/**
 * `eph appliance attach APPLIANCE HOST [--as NAME] [--restart]` and
 * `eph appliance detach APPLIANCE HOST [--restart]`, added to the
 * `appliance` group.
 *
 * @example
 * eph appliance attach mydb eph-1a2b3c4d --restart   # DATABASE_URL=postgres://…@127.0.0.1:5432/mydb inside
 */
export function attachCommands(appliance: Command): void {
  const at = (host: string, name: string): string => `/v1/instances/${encodeURIComponent(host)}/attachments/${encodeURIComponent(name)}`;

  const attach = clientCommand(appliance, 'attach <appliance> <host>', 'open a tunnel to the appliance inside the instance and set a config var to its local URL')
    .option('--as <name>', 'the config var (default DATABASE_URL, REDIS_URL, STATIC_URL or MONGODB_URL by kind)')
    .option('--restart', 'restart the instance now if it runs');
  clientAction<{ as?: string; restart?: boolean }>(attach, async (ctx, name, host) => {
    const res = await apiJson<AttachmentAnswer>(ctx.settings, at(host!, name!), {
      method: 'POST',
      json: { ...(ctx.opts.as !== undefined ? { as: ctx.opts.as } : {}), restart: ctx.opts.restart === true },
    });
    if (ctx.json) return printJson(res);
    printLine(`attached ${res.appliance} to ${res.hostname} as ${res.var} (tunnel on ${res.local} inside): ${whenApplied(res, ctx.opts.restart)}`);
  });

  const detach = clientCommand(appliance, 'detach <appliance> <host>', 'remove the tunnel and the config var; the instance loses access at once')
    .option('--restart', 'restart the instance now if it runs');
  clientAction<{ restart?: boolean }>(detach, async (ctx, name, host) => {
    const res = await apiJson<{ detached: AttachmentAnswer; restarted: boolean }>(ctx.settings, `${at(host!, name!)}${ctx.opts.restart ? '?restart=true' : ''}`, {
      method: 'DELETE',
    });
    if (ctx.json) return printJson(res);
    printLine(`detached ${res.detached.appliance} from ${res.detached.hostname}: ${res.detached.var} is gone and its tunnel no longer gets in`);
  });
}
