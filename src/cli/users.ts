import type { Command } from 'commander';
import { resolve } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { loadConfig } from '../core/config.ts';
import { isEphError } from '../core/errors.ts';
import { systemClock } from '../core/clock.ts';
import { openStore } from '../store/open.ts';
import { UserService } from '../services/users.ts';

/**
 * `eph users`: administration on the machine that runs the cloud, straight on
 * its store (like `dokku` or `createuser`): whoever can read the data dir is admin.
 * @example eph users add alice --plan standard --json
 */
export function usersCommand(program: Command): void {
  const users = program.command('users').description('manage users (on the cloud machine, reads EPH_DATA / EPH_STORE)');
  const withService = async <T>(flags: { data?: string; store?: string }, fn: (svc: UserService) => Promise<T>): Promise<T> => {
    const config = loadConfig({ ...(flags.data ? { data: flags.data } : {}), ...(flags.store ? { store: flags.store } : {}) });
    const dir = resolve(config.dataDir);
    await mkdir(dir, { recursive: true });
    const store = await openStore(config.store, dir);
    try {
      return await fn(new UserService(store, config.plans, systemClock));
    } finally {
      await store.close();
    }
  };
  const fail = (e: unknown): never => {
    process.stderr.write(`eph: ${isEphError(e) || e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  };

  users
    .command('add <name>')
    .description('create a user; prints its id and auth token (shown once)')
    .option('--plan <plan>', 'free or standard (or a configured plan)', 'free')
    .option('--data <dir>', 'data directory (EPH_DATA)')
    .option('--store <spec>', 'sqlite or postgres://… (EPH_STORE)')
    .option('--json', 'JSON output')
    .action(async (name: string, flags: { plan: string; data?: string; store?: string; json?: boolean }) => {
      try {
        const { user, token } = await withService(flags, (svc) => svc.add(name, flags.plan));
        if (flags.json) process.stdout.write(`${JSON.stringify({ userID: user.id, authToken: token, plan: user.plan, name: user.name })}\n`);
        else process.stdout.write(`user ${user.name} (${user.plan})\nEPH_USER=${user.id}\nEPH_TOKEN=${token}\n`);
      } catch (e) {
        fail(e);
      }
    });

  users
    .command('ls')
    .description('list users')
    .option('--data <dir>', 'data directory (EPH_DATA)')
    .option('--store <spec>', 'sqlite or postgres://… (EPH_STORE)')
    .option('--json', 'JSON output')
    .action(async (flags: { data?: string; store?: string; json?: boolean }) => {
      try {
        const list = await withService(flags, (svc) => svc.list());
        const rows = list.map((u) => ({ userID: u.id, name: u.name, plan: u.plan, createdAt: new Date(u.createdAt).toISOString() }));
        if (flags.json) process.stdout.write(`${JSON.stringify({ users: rows })}\n`);
        else for (const r of rows) process.stdout.write(`${r.name}\t${r.userID}\t${r.plan}\t${r.createdAt}\n`);
      } catch (e) {
        fail(e);
      }
    });
}
