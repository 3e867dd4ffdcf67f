import type { Command } from 'commander';
import type { InstanceView } from '../api/views.ts';
import { apiJson } from './client.ts';
import { clientAction, clientCommand } from './command-kit.ts';
import { UsageError } from './cli-error.ts';
import { ago, formatFields, formatTable, printJson, printLine, show } from './output.ts';

const at = (host: string): string => `/v1/instances/${encodeURIComponent(host)}`;

/** One line per instance for humans: hostname, state, url. */
export function instanceLine(i: InstanceView): string {
  return `${i.hostname}  ${i.state}  ${i.url}`;
}

/** `show`'s fields, in reading order. */
export function instanceFields(i: InstanceView): string {
  return formatFields([
    ['hostname', i.hostname],
    ['url', i.url],
    ['state', i.state],
    ['alias', i.alias],
    ['name', i.imageName],
    ['created', i.createdTime],
    ['accessed', `${i.accessTime} (${ago(i.accessTime)})`],
    ['image', i.imageDigest],
    ['last error', i.lastError],
  ]);
}

/**
 * `eph ls|show|start|stop|alias|rm`: the instance commands over /v1/instances.
 * @example eph alias eph-1a2b3c4d.eph.localhost beta.example.org --json
 */
export function instanceCommands(program: Command): void {
  const ls = clientCommand(program, 'ls', 'list your instances');
  clientAction(ls, async (ctx) => {
    const res = await apiJson<{ instances: InstanceView[] }>(ctx.settings, '/v1/instances');
    if (ctx.json) return printJson(res);
    if (res.instances.length === 0) return printLine('no instances: publish one with `eph publish app.zip`');
    printLine(
      formatTable(
        ['hostname', 'state', 'alias', 'name', 'accessed'],
        res.instances.map((i) => [i.hostname, i.state, show(i.alias), i.imageName, ago(i.accessTime)]),
      ),
    );
  });

  const showCmd = clientCommand(program, 'show <host>', 'show one instance (by hostname or alias)');
  clientAction(showCmd, async (ctx, host) => {
    const i = await apiJson<InstanceView>(ctx.settings, at(host!));
    if (ctx.json) return printJson(i);
    printLine(instanceFields(i));
  });

  for (const verb of ['start', 'stop'] as const) {
    const cmd = clientCommand(
      program,
      `${verb} <host>`,
      verb === 'start' ? 'start an instance now and wait until it accepts connections' : 'stop an instance (it wakes again on the next request)',
    );
    clientAction(cmd, async (ctx, host) => {
      const i = await apiJson<InstanceView>(ctx.settings, `${at(host!)}/${verb}`, { method: 'POST' });
      if (ctx.json) return printJson(i);
      printLine(instanceLine(i));
    });
  }

  const alias = clientCommand(program, 'alias <host> [domain]', 'give an instance an alias domain (--clear removes it)').option(
    '--clear',
    'remove the alias',
  );
  clientAction<{ clear?: boolean }>(alias, async (ctx, host, domain) => {
    if (ctx.opts.clear && domain !== undefined) throw new UsageError('alias: give either a DOMAIN or --clear, not both');
    if (!ctx.opts.clear && domain === undefined) throw new UsageError('alias: missing DOMAIN (or --clear to remove the alias)');
    const i = await apiJson<InstanceView>(ctx.settings, at(host!), { method: 'PATCH', json: { alias: domain ?? null } });
    if (ctx.json) return printJson(i);
    printLine(i.alias ? `${i.hostname}  alias ${i.alias}` : `${i.hostname}  no alias`);
  });

  const rm = clientCommand(program, 'rm <host>', 'stop and delete an instance');
  clientAction(rm, async (ctx, host) => {
    const res = await apiJson<{ deleted: InstanceView }>(ctx.settings, at(host!), { method: 'DELETE' });
    if (ctx.json) return printJson(res);
    printLine(`deleted ${res.deleted.hostname}`);
  });
}
