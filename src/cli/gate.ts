import type { Command } from 'commander';
import type { GateRoute, GateTarget, RouteChange } from '../core/types.ts';
import { apiJson } from './client.ts';
import { CliError, UsageError } from './cli-error.ts';
import { clientAction, clientCommand } from './command-kit.ts';
import { ago, formatTable, printJson, printLine } from './output.ts';
import { parseSplitWeights } from './split-weights.ts';
import { gateCertCommands } from './gate-certs.ts';

const route = (domain: string): string => `/v1/gate/routes/${encodeURIComponent(domain)}`;

/** `eph-a (90) eph-b (10)`, or the one hostname of a plain route. */
export function targetsText(targets: readonly GateTarget[]): string {
  if (targets.length === 0) return '-';
  if (targets.length === 1) return targets[0]!.hostname;
  return targets.map((t) => `${t.hostname}=${t.weight}`).join(' ');
}

function routeLine(r: GateRoute): string {
  return `${r.domain} → ${targetsText(r.targets)}`;
}

interface SwitchFlags {
  skipHealth?: boolean;
}

/**
 * `eph gate ls|map|unmap|promote|rollback|split|history`: domains on the gate.
 * @example eph gate promote beta.example.org www.example.org
 */
export function gateCommands(program: Command): void {
  const gate = program.command('gate').description('map domains to instances: promotion, rollback, canary splits');
  const skipHealth = ['--skip-health', 'switch without waking the target and checking its health path'] as const;

  const ls = clientCommand(gate, 'ls', 'list your gate routes');
  clientAction(ls, async (ctx) => {
    const res = await apiJson<{ routes: GateRoute[] }>(ctx.settings, '/v1/gate/routes');
    if (ctx.json) return printJson(res);
    if (res.routes.length === 0) return printLine('no routes: map one with `eph gate map DOMAIN HOST`');
    printLine(
      formatTable(
        ['domain', 'targets', 'health', 'https', 'updated'],
        res.routes.map((r) => [r.domain, targetsText(r.targets), r.healthPath, r.httpsRedirect ? 'redirect' : '-', ago(r.updatedAt)]),
      ),
    );
  });

  const show = clientCommand(gate, 'show <domain>', 'show one route');
  clientAction(show, async (ctx, domain) => {
    const r = await apiJson<GateRoute>(ctx.settings, route(domain!));
    if (ctx.json) return printJson(r);
    printLine(routeLine(r));
  });

  const map = clientCommand(gate, 'map <domain> <host>', 'point DOMAIN at instance HOST (after it passes its health check)')
    .option('--health-path <path>', 'path that must answer below 500 before the switch (default /)')
    .option('--https-redirect', 'redirect http:// requests for DOMAIN to https://')
    .option('--tls <mode>', 'auto: the cloud obtains and renews a certificate for DOMAIN (ACME, Let\'s Encrypt by default)')
    .option(...skipHealth);
  clientAction<{ healthPath?: string; httpsRedirect?: boolean; tls?: string } & SwitchFlags>(map, async (ctx, domain, host) => {
    if (ctx.opts.tls !== undefined && ctx.opts.tls !== 'auto') throw new UsageError(`--tls: expected auto, got '${ctx.opts.tls}' (upload your own certificate with \`eph gate cert DOMAIN --cert FILE --key FILE\`)`);
    const body = {
      hostname: host,
      ...(ctx.opts.healthPath !== undefined ? { healthPath: ctx.opts.healthPath } : {}),
      ...(ctx.opts.httpsRedirect ? { httpsRedirect: true } : {}),
      ...(ctx.opts.skipHealth ? { skipHealth: true } : {}),
    };
    const r = await apiJson<GateRoute>(ctx.settings, route(domain!), { method: 'PUT', json: body });
    if (ctx.opts.tls !== 'auto') {
      if (ctx.json) return printJson(r);
      return printLine(routeLine(r));
    }
    // The route is in place first: the directory's HTTP-01 request must reach the gate for DOMAIN.
    const cert = await apiJson<{ status: string }>(ctx.settings, `/v1/gate/certs/${encodeURIComponent(r.domain)}/acme`, { method: 'POST' }).catch((e: unknown) => {
      throw new CliError(`${r.domain} is mapped, but automatic HTTPS was refused: ${e instanceof Error ? e.message : String(e)}`);
    });
    if (ctx.json) return printJson({ ...r, certificate: cert });
    printLine(routeLine(r));
    printLine(`certificate: ${cert.status} (the cloud orders it now; \`eph gate certs\` shows when it is issued, or why not)`);
  });

  const unmap = clientCommand(gate, 'unmap <domain>', 'remove the route of DOMAIN');
  clientAction(unmap, async (ctx, domain) => {
    const res = await apiJson<{ unmapped: string }>(ctx.settings, route(domain!), { method: 'DELETE' });
    if (ctx.json) return printJson(res);
    printLine(`unmapped ${res.unmapped}`);
  });

  const promote = clientCommand(gate, 'promote <from> <to>', "point domain TO at FROM's instance (e.g. beta → www)").option(...skipHealth);
  clientAction<SwitchFlags>(promote, async (ctx, from, to) => {
    const r = await apiJson<GateRoute>(ctx.settings, '/v1/gate/promote', {
      method: 'POST',
      json: { from, to, ...(ctx.opts.skipHealth ? { skipHealth: true } : {}) },
    });
    if (ctx.json) return printJson(r);
    printLine(routeLine(r));
  });

  const rollback = clientCommand(gate, 'rollback <domain>', 'point DOMAIN back where it pointed before its last change').option(...skipHealth);
  clientAction<SwitchFlags>(rollback, async (ctx, domain) => {
    const r = await apiJson<GateRoute>(ctx.settings, `${route(domain!)}/rollback`, {
      method: 'POST',
      json: ctx.opts.skipHealth ? { skipHealth: true } : {},
    });
    if (ctx.json) return printJson(r);
    printLine(routeLine(r));
  });

  const split = clientCommand(gate, 'split <domain> <targets...>', 'share DOMAIN between instances by weight: HOST1=90 HOST2=10').option(...skipHealth);
  clientAction<SwitchFlags>(split, async (ctx, domain, ...pairs) => {
    const targets = parseSplitWeights(pairs);
    const r = await apiJson<GateRoute>(ctx.settings, route(domain!), {
      method: 'PUT',
      json: { targets, ...(ctx.opts.skipHealth ? { skipHealth: true } : {}) },
    });
    if (ctx.json) return printJson(r);
    printLine(routeLine(r));
  });

  const history = clientCommand(gate, 'history <domain>', 'changes of the route, newest first');
  clientAction(history, async (ctx, domain) => {
    const res = await apiJson<{ history: RouteChange[] }>(ctx.settings, `${route(domain!)}/history`);
    if (ctx.json) return printJson(res);
    if (res.history.length === 0) return printLine(`no changes recorded for ${domain}`);
    printLine(
      formatTable(
        ['when', 'by', 'action', 'from', 'to'],
        res.history.map((c) => [new Date(c.at).toISOString(), c.by, c.action, targetsText(c.from), targetsText(c.to)]),
      ),
    );
  });

  gateCertCommands(gate);
}
