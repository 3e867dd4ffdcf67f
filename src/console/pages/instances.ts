import { h } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, followLog, type Instance } from '../api.ts';
import { ActionButton, Facts, Field, NoticeLine, noticeOf, usePolling, When, type Notice } from '../ui.ts';

// frozen: asleep in memory (the short idle tier), it wakes in an instant.
const STATE_TEXT: Record<string, string> = { running: 'running', frozen: 'frozen (light sleep)', asleep: 'asleep', starting: 'starting', failed: 'failed' };
const enc = encodeURIComponent;

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Item 2: the instances, kept current by polling every 2 s, with their actions. */
export function InstancesPage() {
  const { data, error, reload } = usePolling(() => api<{ instances: Instance[] }>('GET', '/v1/instances').then((r) => r.instances), 2000);
  const [notice, setNotice] = useState<Notice | null>(null);
  return h('section', { 'aria-labelledby': 'instances-title' }, [
    h('h1', { id: 'instances-title' }, 'Instances'),
    h(NoticeLine, { notice: notice ?? error }),
    data === null
      ? h('p', null, 'Loading…')
      : data.length === 0
        ? h('p', null, ['No instances yet. ', h('a', { href: '#/publish' }, 'Publish an archive'), '.'])
        : h(
            'ul',
            { class: 'cards', 'aria-label': 'Your instances' },
            data.map((i) => h(InstanceCard, { key: i.hostname, inst: i, reload, notify: setNotice })),
          ),
  ]);
}

function InstanceCard(props: { inst: Instance; reload: () => Promise<void>; notify: (n: Notice | null) => void }) {
  const { inst, reload, notify } = props;
  const host = inst.hostname;
  const [panel, setPanel] = useState<'none' | 'alias' | 'logs' | 'delete'>('none');
  const [alias, setAlias] = useState(inst.alias ?? '');
  const onError = (n: Notice) => notify(n);
  const done = (text: string) => () => {
    notify({ kind: 'ok', text });
    void reload();
  };
  const awake = inst.state === 'running' || inst.state === 'starting';
  const toggle = (p: typeof panel) => setPanel(panel === p ? 'none' : p);
  return h('li', { class: 'card', 'data-host': host }, [
    h('div', { class: 'card-head' }, [
      h('h2', { class: 'host' }, host),
      h('span', { class: `state state-${inst.state}`, 'data-state': inst.state }, STATE_TEXT[inst.state] ?? inst.state),
    ]),
    h(Facts, {
      rows: [
        ['Image', inst.imageName],
        ...(typeof inst.imageSize === 'number' ? ([['Size', bytes(inst.imageSize)]] as Array<[string, string]>) : []),
        ['Alias', inst.alias ?? '—'],
        ['Last access', h(When, { iso: inst.accessTime })],
        ['Created', h(When, { iso: inst.createdTime })],
        ...(inst.lastError ? ([['Last error', inst.lastError]] as Array<[string, string]>) : []),
      ],
    }),
    h('div', { class: 'actions' }, [
      awake
        ? h(ActionButton, { label: 'Stop', ariaLabel: `Stop ${host}`, run: () => api('POST', `/v1/instances/${enc(host)}/stop`), onError, onDone: done(`${host} stopped`) })
        : h(ActionButton, { label: 'Wake', busyLabel: 'Waking…', ariaLabel: `Wake ${host}`, run: () => api('POST', `/v1/instances/${enc(host)}/start`), onError, onDone: done(`${host} is awake`) }),
      h('a', { class: 'button', href: inst.url, target: '_blank', rel: 'noopener noreferrer', 'aria-label': `Open the app of ${host}` }, 'Open'),
      h('button', { type: 'button', 'aria-expanded': panel === 'alias', 'aria-label': `Set alias of ${host}`, onClick: () => toggle('alias') }, 'Alias'),
      h('button', { type: 'button', 'aria-expanded': panel === 'logs', 'aria-label': `Log of ${host}`, onClick: () => toggle('logs') }, 'Log'),
      h('button', { type: 'button', class: 'danger', 'aria-expanded': panel === 'delete', 'aria-label': `Delete ${host}`, onClick: () => toggle('delete') }, 'Delete'),
    ]),
    panel === 'alias'
      ? h(
          'form',
          {
            class: 'inline-form',
            onSubmit: async (e: Event) => {
              e.preventDefault();
              try {
                await api('PATCH', `/v1/instances/${enc(host)}`, { alias: alias.trim() === '' ? null : alias.trim() });
                setPanel('none');
                done(alias.trim() ? `${host} answers at ${alias.trim()} too` : `alias of ${host} removed`)();
              } catch (err) {
                notify(noticeOf(err));
              }
            },
          },
          [
            h(Field, { id: `alias-${host}`, label: `Alias (a domain, empty for none)`, value: alias, onInput: setAlias, placeholder: 'www.example.org' }),
            h('button', { type: 'submit' }, 'Save alias'),
          ],
        )
      : null,
    panel === 'delete'
      ? h('div', { class: 'confirm', role: 'group', 'aria-label': `Confirm deleting ${host}` }, [
          h('p', null, `Delete ${host}? It is stopped and its files are removed; this cannot be undone.`),
          h(ActionButton, { label: 'Yes, delete', class: 'danger', ariaLabel: `Yes, delete ${host}`, run: () => api('DELETE', `/v1/instances/${enc(host)}`), onError, onDone: done(`${host} deleted`) }),
          h('button', { type: 'button', onClick: () => setPanel('none') }, 'Cancel'),
        ])
      : null,
    panel === 'logs' ? h(LogView, { host, onError }) : null,
  ]);
}

/** The log, followed live (fetch streaming) while the panel is open; at most the last 256 KiB kept. */
function LogView(props: { host: string; onError: (n: Notice) => void }) {
  const [text, setText] = useState('');
  const pre = useRef<HTMLPreElement>(null);
  useEffect(() => {
    const ctl = new AbortController();
    followLog(
      props.host,
      (s) => setText((t) => (t + s).slice(-256 * 1024)),
      ctl.signal,
    ).catch((e: unknown) => {
      if (!ctl.signal.aborted) props.onError(noticeOf(e));
    });
    return () => ctl.abort();
  }, [props.host]);
  useEffect(() => {
    const el = pre.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [text]);
  return h('pre', { class: 'log', ref: pre, role: 'log', 'aria-live': 'polite', 'aria-label': `Log of ${props.host}`, tabIndex: 0 }, text || '(nothing logged yet)');
}
