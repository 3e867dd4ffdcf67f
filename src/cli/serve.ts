import type { Command } from 'commander';
import { loadConfig, type ConfigInput } from '../core/config.ts';
import { isEphError } from '../core/errors.ts';
import { installProcessGuard } from '../core/process-guard.ts';
import { lockDataDir } from './data-dir-lock.ts';

/**
 * `eph serve`: runs the whole cloud in this process until SIGINT/SIGTERM.
 * @example eph serve --data ./.eph --api 127.0.0.1:7070 --gate 127.0.0.1:8080 --domain eph.localhost --idle-timeout 30m
 */
export function serveCommand(program: Command): void {
  program
    .command('serve')
    .description('run the cloud: control API, gate, instances and appliances')
    .option('--data <dir>', 'data directory (EPH_DATA, default ./.eph)')
    .option('--api <host:port>', 'control API address (EPH_API, default 127.0.0.1:7070)')
    .option('--gate <host:port>', 'visitor gate address (EPH_GATE, default 127.0.0.1:8080)')
    .option('--gate-tls <host:port>', 'HTTPS gate address (EPH_GATE_TLS, default off)')
    .option('--domain <domain>', 'cloud domain for instance hostnames (EPH_DOMAIN, default eph.localhost)')
    .option('--idle-timeout <duration>', 'stop instances idle this long (EPH_IDLE_TIMEOUT, default 30m)')
    .option('--warm-idle-timeout <duration>', 'freeze instances idle this long, 0 = never (EPH_WARM_IDLE_TIMEOUT, default 60s)')
    .option('--warm-memory <size>', 'memory all frozen instances may hold; past it the least recently used is stopped (EPH_WARM_MEMORY, default 2GiB)')
    .option('--wake-timeout <duration>', 'deadline for a waking instance to accept connections (EPH_WAKE_TIMEOUT, default 60s)')
    .option('--runtime <driver>', 'process or swarm (EPH_RUNTIME, default process)')
    .option('--egress <policy>', 'what instances may reach besides their tunnels: public or none (EPH_EGRESS, default public)')
    .option('--store <spec>', 'sqlite or postgres://… (EPH_STORE, default sqlite)')
    .option('--pharo-vm <cmd>', 'Pharo VM command (EPH_PHARO_VM, default pharo)')
    .option('--max-archive <size>', 'archive size limit (EPH_MAX_ARCHIVE, default 50MB)')
    .option('--plans <list>', 'plan limits, e.g. free=1,standard=10 (EPH_PLANS)')
    .option('--plan-quotas <spec>', 'per-user limits of each plan, e.g. free:instances=20,storage=2GiB (EPH_PLAN_QUOTAS)')
    .option('--plan-limits <spec>', 'per-instance limits of each plan, e.g. free:memory=256MiB,cpus=0.5,pids=128,files=1024,tmp=64MiB (EPH_PLAN_LIMITS)')
    .option('--public-host <host>', 'address of appliance TLS-PSK endpoints (EPH_PUBLIC_HOST, default 127.0.0.1)')
    .option('--verify-domains', 'tenants prove a domain with a DNS TXT record before claiming it (EPH_VERIFY_DOMAINS=1)')
    .option('--acme-directory <url>', "ACME directory for automatic HTTPS (EPH_ACME_DIRECTORY; default Let's Encrypt when automatic HTTPS is on)")
    .option('--acme-email <address>', 'contact address of the ACME account; turns automatic HTTPS on (EPH_ACME_EMAIL)')
    .option('--acme-default', 'every mapped domain without an uploaded certificate gets an automatic one (EPH_ACME_DEFAULT=1)')
    .option('--log-format <format>', 'human or json (EPH_LOG_FORMAT; default: human on a terminal, json otherwise)')
    .option('--json', 'print the start-up summary as JSON on stdout (the log then goes to stderr)')
    .action(async (flags: ConfigInput & { json?: boolean; logFormat?: string }) => {
      try {
        const config = loadConfig(flags);
        const logFormat = flags.logFormat ?? process.env.EPH_LOG_FORMAT ?? (process.stdout.isTTY ? 'human' : 'json');
        if (logFormat !== 'human' && logFormat !== 'json') throw new Error(`--log-format: expected human or json, got '${logFormat}'`);
        // Before anything touches the data directory: a second server's start-up recovery would kill the first one's instances.
        const lock = await lockDataDir(config.dataDir);
        // What escapes every handler is logged and counted; only programming errors end the process (docs/operations.md).
        installProcessGuard({
          log: (fields, msg) => process.stderr.write(`${JSON.stringify({ level: fields.fatal ? 60 : 50, time: Date.now(), ...fields, msg })}\n`),
          exit: (code) => process.exit(code),
        });
        const { startCloud } = await import('../server.ts');
        // On a terminal the log is human lines and the start-up summary below says what 'ephemeric is up' would.
        const human = logFormat === 'human';
        // With --json, stdout carries the one summary document a script parses; the log goes to stderr.
        const pino = (await import('pino')).default;
        const logOut = flags.json ? process.stderr : process.stdout;
        const logger = human
          ? pino({ level: config.logLevel }, (await import('../core/human-log.ts')).humanLogDestination(logOut))
          : pino({ level: config.logLevel }, pino.destination(flags.json ? 2 : 1));
        const cloud = await startCloud(config, { logger, announce: !human });
        // Before the summary: whoever reads it may signal at once.
        let stopping = false;
        const stop = async () => {
          if (stopping) return;
          stopping = true;
          await cloud.close();
          await lock.close();
          process.exit(0);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
        const summary = { api: cloud.apiUrl, gate: cloud.gateUrl, domain: config.domain, data: config.dataDir, store: cloud.store.backend, isolation: cloud.driver.isolation };
        if (flags.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
        else {
          process.stderr.write(
            `ephemeric: API ${summary.api}  gate ${summary.gate}  domain ${summary.domain}  data ${summary.data} (${summary.store})\n` +
              `ephemeric: isolation: ${summary.isolation}\n`,
          );
          if ((await cloud.users.list()).length === 0) {
            process.stderr.write('ephemeric: no users yet: run `node bin/eph.js users add NAME --plan standard` in another terminal\n');
          }
        }
      } catch (e) {
        process.stderr.write(`eph: ${isEphError(e) ? e.message : e instanceof Error ? e.message : String(e)}\n`);
        process.exit(1);
      }
    });
}
