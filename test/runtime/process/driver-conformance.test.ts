import { ProcessDriver } from '../../../src/runtime/process/process-driver.ts';
import { listNamespaces, namespacePids } from '../../../src/runtime/process/netns.ts';
import { appMarker, runDriverConformance } from '../driver.conformance.ts';
import { netnsSkip, pidsWithArg } from './helpers.ts';

// Own prefix and subnet: the process driver's recover() deletes every namespace with its prefix.
const PREFIX = 'tcf';
const HOST_BASE = 'c1';
/** Spare namespaces made ahead of the next starts: not leftovers while nothing runs in them. */
const SPARE = /^tcf-w[0-9a-f]{7}$/;

runDriverConformance('process driver (network namespaces)', {
  skip: netnsSkip(),
  hostBase: HOST_BASE,
  appPort: 8080,
  makeDriver: (stateDir) => new ProcessDriver({ stateDir, prefix: PREFIX, subnet: '10.214.40.0/24', isolation: 'netns', stopGraceMs: 2000 }),
  leftovers: async () => {
    const found: string[] = [];
    for (const ns of (await listNamespaces()).filter((n) => n.startsWith(`${PREFIX}-`))) {
      if (!SPARE.test(ns)) found.push(`namespace ${ns}`);
      else for (const pid of await namespacePids(ns)) found.push(`process ${pid} in spare namespace ${ns}`);
    }
    for (const pid of await pidsWithArg(appMarker(HOST_BASE))) found.push(`process ${pid}`);
    return found;
  },
});
