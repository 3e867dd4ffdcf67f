import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, type Appliance } from '../api.ts';
import { ActionButton, copyText, Facts, Field, NoticeLine, noticeOf, Select, usePolling, When, type Notice } from '../ui.ts';

const enc = encodeURIComponent;
const KINDS = ['postgres', 'redis', 'static', 'mongo'];

/** Item 5: create appliances, see their status and connection, and the stunnel tab of each. */
export function AppliancesPage(props: { userId: string }) {
  const { data, error, reload } = usePolling(() => api<{ appliances: Appliance[] }>('GET', '/v1/appliances').then((r) => r.appliances), 2000);
  const [notice, setNotice] = useState<Notice | null>(null);
  const [created, setCreated] = useState<Appliance | null>(null);
  return h('section', { 'aria-labelledby': 'appliances-title' }, [
    h('h1', { id: 'appliances-title' }, 'Appliances'),
    h(NoticeLine, { notice: notice ?? error }),
    h(CreateForm, { onCreated: (a) => (setCreated(a), void reload()), notify: setNotice }),
    created?.psk ? h(NewPsk, { appliance: created, onClose: () => setCreated(null) }) : null,
    data === null
      ? h('p', null, 'Loading…')
      : data.length === 0
        ? h('p', null, 'No appliances yet.')
        : h(
            'ul',
            { class: 'cards', 'aria-label': 'Your appliances' },
            data.map((a) => h(ApplianceCard, { key: a.name, app: a, userId: props.userId, reload, notify: setNotice })),
          ),
  ]);
}

function CreateForm(props: { onCreated: (a: Appliance) => void; notify: (n: Notice | null) => void }) {
  const [kind, setKind] = useState('postgres');
  const [name, setName] = useState('');
  const [busy, setBusy] = useState(false);
  return h(
    'form',
    {
      class: 'panel',
      'aria-labelledby': 'create-title',
      onSubmit: async (e: Event) => {
        e.preventDefault();
        setBusy(true);
        try {
          const a = await api<Appliance>('POST', '/v1/appliances', { kind, name: name.trim() });
          props.notify({ kind: 'ok', text: `${a.kind} appliance ${a.name} created` });
          setName('');
          props.onCreated(a);
        } catch (err) {
          props.notify(noticeOf(err));
        } finally {
          setBusy(false);
        }
      },
    },
    [
      h('h2', { id: 'create-title' }, 'Create an appliance'),
      h(Select, { id: 'appliance-kind', label: 'Kind', value: kind, onChange: setKind, options: KINDS.map((k) => ({ value: k, text: k })) }),
      h(Field, { id: 'appliance-name', label: 'Name', value: name, onInput: setName, required: true, placeholder: 'db' }),
      h('button', { type: 'submit', disabled: busy }, busy ? 'Creating…' : 'Create appliance'),
    ],
  );
}

/** The psk.txt of a new appliance: shown once, as the API gives it once. */
function NewPsk(props: { appliance: Appliance; onClose: () => void }) {
  const psk = props.appliance.psk ?? '';
  const [href, setHref] = useState('');
  useEffect(() => {
    const url = URL.createObjectURL(new Blob([psk], { type: 'text/plain' }));
    setHref(url);
    return () => URL.revokeObjectURL(url);
  }, [psk]);
  return h('div', { class: 'panel secret', role: 'region', 'aria-label': `psk.txt of ${props.appliance.name}` }, [
    h('h2', null, `psk.txt of ${props.appliance.name}`),
    h('p', null, 'Save it now: the key is shown only this once. Clients put it beside their stunnel.conf.'),
    h('pre', { class: 'conf', tabIndex: 0, 'aria-label': `psk.txt of ${props.appliance.name}` }, psk),
    h('div', { class: 'actions' }, [
      href ? h('a', { class: 'button', href, download: 'psk.txt' }, 'Download psk.txt') : null,
      h('button', { type: 'button', onClick: props.onClose }, 'I saved it'),
    ]),
  ]);
}

function ApplianceCard(props: { app: Appliance; userId: string; reload: () => Promise<void>; notify: (n: Notice | null) => void }) {
  const { app: a, reload, notify } = props;
  const [tab, setTab] = useState<'connection' | 'stunnel'>('connection');
  const [confirm, setConfirm] = useState(false);
  const onError = (n: Notice) => notify(n);
  const done = (text: string) => () => {
    notify({ kind: 'ok', text });
    void reload();
  };
  const tabId = (t: string) => `tab-${a.name}-${t}`;
  return h('li', { class: 'card', 'data-appliance': a.name }, [
    h('div', { class: 'card-head' }, [h('h2', { class: 'host' }, a.name), h('span', { class: `state state-${a.status}` }, `${a.kind} · ${a.status}`)]),
    h('div', { role: 'tablist', 'aria-label': `Views of ${a.name}`, class: 'tabs' }, [
      h('button', { type: 'button', role: 'tab', id: tabId('connection'), 'aria-selected': tab === 'connection', 'aria-controls': `${tabId('connection')}-panel`, onClick: () => setTab('connection') }, 'Connection'),
      h('button', { type: 'button', role: 'tab', id: tabId('stunnel'), 'aria-selected': tab === 'stunnel', 'aria-controls': `${tabId('stunnel')}-panel`, onClick: () => setTab('stunnel') }, 'Stunnel'),
    ]),
    tab === 'connection'
      ? h('div', { role: 'tabpanel', id: `${tabId('connection')}-panel`, 'aria-labelledby': tabId('connection') }, [
          h(Facts, {
            rows: [
              ['Status', a.status],
              ['TLS-PSK endpoint', a.public],
              ['URL through a tunnel', a.url ? h('code', null, a.url) : '—'],
              ['Created', h(When, { iso: a.createdAt })],
              ...(a.lastError ? ([['Last error', a.lastError]] as Array<[string, string]>) : []),
            ],
          }),
          h('div', { class: 'actions' }, [
            a.status === 'running'
              ? h(ActionButton, { label: 'Stop', ariaLabel: `Stop ${a.name}`, run: () => api('POST', `/v1/appliances/${enc(a.name)}/stop`), onError, onDone: done(`${a.name} stopped`) })
              : h(ActionButton, { label: 'Start', ariaLabel: `Start ${a.name}`, run: () => api('POST', `/v1/appliances/${enc(a.name)}/start`), onError, onDone: done(`${a.name} started`) }),
            h('a', { class: 'button', href: `/v1/appliances/${enc(a.name)}/backup`, download: '', 'aria-label': `Download a backup of ${a.name}` }, 'Backup'),
            h('button', { type: 'button', class: 'danger', 'aria-expanded': confirm, 'aria-label': `Delete ${a.name}`, onClick: () => setConfirm(!confirm) }, 'Delete'),
          ]),
          confirm
            ? h('div', { class: 'confirm', role: 'group', 'aria-label': `Confirm deleting ${a.name}` }, [
                h('p', null, `Delete ${a.name} and all its data? This cannot be undone.`),
                h(ActionButton, { label: 'Yes, delete', class: 'danger', ariaLabel: `Yes, delete ${a.name}`, run: () => api('DELETE', `/v1/appliances/${enc(a.name)}`), onError, onDone: done(`${a.name} deleted`) }),
                h('button', { type: 'button', onClick: () => setConfirm(false) }, 'Cancel'),
              ])
            : null,
        ])
      : h(StunnelTab, { app: a, userId: props.userId, notify, panelId: `${tabId('stunnel')}-panel`, tabId: tabId('stunnel') }),
  ]);
}

/** The stunnel tab: who may connect (psk.txt), the client's stunnel.conf, and the `eph tunnel` way. */
function StunnelTab(props: { app: Appliance; userId: string; notify: (n: Notice | null) => void; panelId: string; tabId: string }) {
  const name = props.app.name;
  const [conf, setConf] = useState<string | null>(null);
  const [ids, setIds] = useState<string[] | null>(null);
  const load = async () => {
    const [c, p] = await Promise.all([api<string>('GET', `/v1/appliances/${enc(name)}/stunnel.conf`), api<{ identities: string[] }>('GET', `/v1/appliances/${enc(name)}/psk`)]);
    setConf(c);
    setIds(p.identities);
  };
  useEffect(() => {
    load().catch((e: unknown) => props.notify(noticeOf(e)));
  }, [name]);
  const command = `EPH_URL=${location.origin} EPH_USER=${props.userId} EPH_TOKEN=<your token> eph tunnel ${name} --psk psk.txt`;
  const copy = async (what: string, text: string) => {
    await copyText(text);
    props.notify({ kind: 'ok', text: `${what} copied` });
  };
  const inputId = `psk-${name}`;
  return h('div', { role: 'tabpanel', id: props.panelId, 'aria-labelledby': props.tabId, class: 'stunnel' }, [
    h('h3', null, '1. Who may connect: psk.txt'),
    h('p', null, ['Identities now: ', ids === null ? '…' : h('span', { class: 'identities' }, ids.join(', ') || '(none)')]),
    h('div', { class: 'field' }, [
      h('label', { for: inputId }, 'psk.txt'),
      h('input', {
        id: inputId,
        type: 'file',
        accept: '.txt,text/plain',
        onChange: async (e: Event) => {
          const input = e.currentTarget as HTMLInputElement;
          const f = input.files?.[0];
          if (!f) return;
          try {
            const r = await api<{ identities: string[] }>('PUT', `/v1/appliances/${enc(name)}/psk`, f);
            setIds(r.identities);
            props.notify({ kind: 'ok', text: `psk.txt of ${name} replaced: identities ${r.identities.join(', ')}` });
          } catch (err) {
            props.notify(noticeOf(err));
          } finally {
            input.value = '';
          }
        },
      }),
    ]),
    h('h3', null, '2. The client stunnel.conf'),
    h('pre', { class: 'conf', tabIndex: 0, 'aria-label': `stunnel.conf of ${name}` }, conf ?? '…'),
    h('div', { class: 'actions' }, [
      h(ActionButton, { label: 'Copy stunnel.conf', disabled: conf === null, run: () => copy('stunnel.conf', conf ?? ''), onError: props.notify }),
      h('a', { class: 'button', href: `/v1/appliances/${enc(name)}/stunnel.conf`, download: 'stunnel.conf' }, 'Download stunnel.conf'),
    ]),
    h('p', { class: 'hint' }, 'Put stunnel.conf and psk.txt in one folder and run stunnel there; the appliance then answers on the local port of stunnel.conf.'),
    h('h3', null, '3. Or without stunnel: eph tunnel'),
    h('pre', { class: 'conf', tabIndex: 0, 'aria-label': 'eph tunnel command' }, command),
    h('div', { class: 'actions' }, [h(ActionButton, { label: 'Copy command', ariaLabel: 'Copy the eph tunnel command', run: () => copy('command', command), onError: props.notify })]),
  ]);
}
