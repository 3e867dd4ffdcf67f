import { h, render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { currentSession, signIn, signOut, whenSignedOut, type SessionInfo } from './api.ts';
import { Field, NoticeLine, noticeOf, type Notice } from './ui.ts';
import { InstancesPage } from './pages/instances.ts';
import { PublishPage, takeDroppedFile } from './pages/publish.ts';
import { GatePage } from './pages/gate.ts';
import { AppliancesPage } from './pages/appliances.ts';
import { CiPage } from './pages/ci.ts';

/** The pages, by the hash of the address (#/gate): links and the back button work without a server route each. */
const PAGES = [
  { path: 'instances', title: 'Instances' },
  { path: 'publish', title: 'Publish' },
  { path: 'gate', title: 'Gate' },
  { path: 'appliances', title: 'Appliances' },
  { path: 'ci', title: 'CI runs' },
] as const;
type PagePath = (typeof PAGES)[number]['path'];

function pageOfHash(): PagePath {
  const p = location.hash.replace(/^#\/?/, '');
  return (PAGES.find((x) => x.path === p)?.path ?? 'instances') as PagePath;
}

function SignIn(props: { onSignedIn: (s: SessionInfo) => void; notice: Notice | null }) {
  const [user, setUser] = useState('');
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const [notice, setNotice] = useState<Notice | null>(props.notice);
  return h('main', { class: 'signin', id: 'main' }, [
    h('h1', null, 'Sign in to Ephemeric'),
    h('p', { class: 'hint' }, ['Your user ID and token are those ', h('code', null, 'eph users add'), ' printed.']),
    h(
      'form',
      {
        class: 'panel',
        onSubmit: async (e: Event) => {
          e.preventDefault();
          setBusy(true);
          setNotice(null);
          try {
            props.onSignedIn(await signIn(user.trim(), token.trim()));
          } catch (err) {
            const n = noticeOf(err);
            setNotice({ kind: 'error', text: n.text.includes('UNAUTHORIZED') ? 'Sign-in refused: unknown user ID or wrong token.' : n.text });
          } finally {
            setBusy(false);
          }
        },
      },
      [
        h(Field, { id: 'user-id', label: 'User ID', value: user, onInput: setUser, required: true, autocomplete: 'username' }),
        h(Field, { id: 'token', label: 'Token', value: token, onInput: setToken, required: true, type: 'password', autocomplete: 'current-password' }),
        h(NoticeLine, { notice }),
        h('button', { type: 'submit', disabled: busy }, busy ? 'Signing in…' : 'Sign in'),
      ],
    ),
  ]);
}

function App() {
  const [session, setSession] = useState<SessionInfo | null | 'loading'>('loading');
  const [page, setPage] = useState<PagePath>(pageOfHash());
  const [signedOutNotice, setSignedOutNotice] = useState<Notice | null>(null);
  const mainRef = useRef<HTMLElement>(null);

  useEffect(() => {
    whenSignedOut(() => {
      setSignedOutNotice({ kind: 'error', text: 'Your session ended; sign in again.' });
      setSession(null);
    });
    currentSession().then(setSession, (e: unknown) => {
      setSignedOutNotice(noticeOf(e));
      setSession(null);
    });
    const onHash = () => setPage(pageOfHash());
    window.addEventListener('hashchange', onHash);
    // An archive dropped anywhere is published: the drop zone is the whole window.
    const over = (e: DragEvent) => {
      if (e.dataTransfer?.types.includes('Files')) e.preventDefault();
    };
    const drop = (e: DragEvent) => {
      const f = e.dataTransfer?.files[0];
      if (!f) return;
      e.preventDefault();
      takeDroppedFile(f);
      if (pageOfHash() !== 'publish') location.hash = '#/publish';
      else setPage('publish');
    };
    window.addEventListener('dragover', over);
    window.addEventListener('drop', drop);
    return () => {
      window.removeEventListener('hashchange', onHash);
      window.removeEventListener('dragover', over);
      window.removeEventListener('drop', drop);
    };
  }, []);

  useEffect(() => {
    const title = PAGES.find((p) => p.path === page)?.title ?? '';
    document.title = session && session !== 'loading' ? `${title} · Ephemeric` : 'Ephemeric console';
  }, [page, session]);

  if (session === 'loading') return h('main', { id: 'main' }, h('p', null, 'Loading…'));
  if (session === null)
    return h(SignIn, {
      notice: signedOutNotice,
      onSignedIn: (s) => {
        setSignedOutNotice(null);
        setSession(s);
      },
    });

  const body =
    page === 'publish' ? h(PublishPage, { key: 'publish' })
    : page === 'gate' ? h(GatePage, null)
    : page === 'appliances' ? h(AppliancesPage, { userId: session.userID })
    : page === 'ci' ? h(CiPage, null)
    : h(InstancesPage, null);

  return h('div', { class: 'shell' }, [
    h('a', { class: 'skip', href: '#main', onClick: (e: Event) => (e.preventDefault(), mainRef.current?.focus()) }, 'Skip to content'),
    h('header', { class: 'top' }, [
      h('span', { class: 'brand' }, 'Ephemeric'),
      h(
        'nav',
        { 'aria-label': 'Console' },
        h(
          'ul',
          null,
          PAGES.map((p) => h('li', null, h('a', { href: `#/${p.path}`, 'aria-current': p.path === page ? 'page' : undefined }, p.title))),
        ),
      ),
      h('div', { class: 'who' }, [
        h('span', { class: 'user' }, `${session.name} · ${session.plan}`),
        h(
          'button',
          {
            type: 'button',
            onClick: async () => {
              await signOut();
              setSignedOutNotice({ kind: 'ok', text: 'Signed out.' });
              setSession(null);
            },
          },
          'Sign out',
        ),
      ]),
    ]),
    h('main', { id: 'main', ref: mainRef, tabIndex: -1 }, body),
  ]);
}

render(h(App, null), document.getElementById('app')!);
